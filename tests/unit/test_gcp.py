"""recipelib.gcp: one translation of Google's errors, credentials from one place, clients that take fakes.

Pure unit tests: the errors are built the way google-api-core builds them from a response, so no server
is needed.
"""

from __future__ import annotations

import ast
import json

import pytest
import requests
from google.api_core import exceptions as gexc
from helpers import REPO

from recipelib import gcp
from recipelib.errors import (
    CloudConflictError,
    CloudError,
    CloudNotFoundError,
    CredentialsError,
    PermissionDeniedError,
    QuotaError,
    RecipelibError,
)

TOKEN = "ya29.a0AfB_secretAccessToken0123456789"
DOING = "uploading the build context to gs://b/source/x.tgz"


def http_error(status: int, message: str, *, reason: str | None = None, status_name: str = "",
               info_reason: str | None = None, service: str | None = None) -> gexc.GoogleAPICallError:
    """A client exception as google-api-core makes it from a REST response, the request carrying a token."""
    error: dict = {"code": status, "message": message, "status": status_name}
    if reason:
        error["errors"] = [{"reason": reason, "message": message, "domain": "global"}]
    if info_reason:
        info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": info_reason}
        if service:
            info["metadata"] = {"service": service}
        error["details"] = [info]
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps({"error": error}).encode()
    response.request = requests.Request(
        "POST", "https://storage.googleapis.com/upload/storage/v1/b/b/o?uploadType=multipart",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).prepare()
    return gexc.from_http_response(response)


def translate(error, **kwargs) -> CloudError:
    result = gcp.translate(error, DOING, **kwargs)
    assert TOKEN not in str(result) and "Bearer" not in str(result)
    assert "uploadType" not in str(result), "the request's URL stays out of the message"
    assert result.doing == DOING and DOING in str(result)
    return result


def test_401_says_to_log_in_again():
    e = translate(http_error(401, "Invalid Credentials", reason="authError", status_name="UNAUTHENTICATED"))
    assert type(e) is CredentialsError and e.status == 401
    assert "application-default login" in e.hint and "Invalid Credentials" in str(e)


def test_a_role_403_names_the_role_and_where():
    e = translate(http_error(403, "tester@example.com does not have storage.objects.create access",
                             reason="forbidden", status_name="PERMISSION_DENIED"),
                  role="roles/storage.objectAdmin", on="bucket gs://b", api="storage.googleapis.com")
    assert type(e) is PermissionDeniedError and e.role == "roles/storage.objectAdmin" and not e.api_disabled
    assert str(e).startswith("permission denied while " + DOING)
    assert "roles/storage.objectAdmin on bucket gs://b" in e.hint and "ask a project owner" in e.hint
    assert "quota" not in str(e).lower()


@pytest.mark.parametrize("reason", ["rateLimitExceeded", "quotaExceeded", "userRateLimitExceeded"])
def test_a_quota_403_is_not_a_missing_role(reason):
    e = translate(http_error(403, "Rate Limit Exceeded", reason=reason), role="roles/storage.objectAdmin",
                  on="bucket gs://b")
    assert type(e) is QuotaError and e.status == 403
    assert "retry" in e.hint and "quota" in e.hint
    assert "roles/storage.objectAdmin" not in str(e) and "ask a project owner" not in str(e)


def test_resource_exhausted_and_429_are_quota_errors():
    exhausted = translate(gexc.ResourceExhausted("Quota exceeded for quota metric 'Build requests'"),
                          role="roles/cloudbuild.builds.editor")
    too_many = translate(http_error(429, "Too many requests", status_name="RESOURCE_EXHAUSTED"))
    for e in (exhausted, too_many):
        assert type(e) is QuotaError and e.status == 429 and e.hint == gcp.QUOTA_HINT
        assert "roles/" not in str(e)


def test_a_403_from_a_disabled_api_says_to_enable_it():
    e = translate(http_error(403, "Cloud Build API has not been used in project 123 before or it is disabled.",
                             status_name="PERMISSION_DENIED", info_reason="SERVICE_DISABLED",
                             service="cloudbuild.googleapis.com"),
                  role="roles/cloudbuild.builds.editor")
    assert type(e) is PermissionDeniedError and e.api_disabled and e.api == "cloudbuild.googleapis.com"
    assert "the cloudbuild.googleapis.com API is not enabled" in str(e) and "roles/" not in e.hint


def test_404_carries_the_call_sites_hint_or_a_general_one():
    error = http_error(404, "No such object: b/source/x.tgz", reason="notFound", status_name="NOT_FOUND")
    e = translate(error, not_found="source bucket gs://b does not exist: create it")
    assert type(e) is CloudNotFoundError and e.status == 404 and e.hint.startswith("source bucket gs://b")
    assert "check the name" in translate(error).hint


def test_409_and_412_are_conflicts():
    for status in (409, 412):
        e = translate(http_error(status, "conditionNotMet"), conflict="never overwritten: submit again")
        assert type(e) is CloudConflictError and e.status == status and "never overwritten" in str(e)


def test_other_failures_keep_the_status_and_transport_errors_say_so():
    e = translate(gexc.InternalServerError("backend error"))
    assert type(e) is CloudError and e.status == 500 and "retry" in e.hint
    retried = translate(gexc.RetryError("deadline exceeded", gexc.TooManyRequests("slow down")))
    assert type(retried) is QuotaError
    unreachable = translate(requests.ConnectionError("Max retries exceeded with url: /b/o"))
    assert type(unreachable) is CloudError and "cannot reach Google Cloud" in str(unreachable)
    assert unreachable.status is None and "network" in unreachable.hint


def test_credential_failures_never_quote_the_token_endpoints_answer():
    import google.auth.exceptions

    e = translate(google.auth.exceptions.RefreshError(f"invalid_grant: bad token {TOKEN}"))
    assert type(e) is CredentialsError and "application-default login" in e.hint


def test_recipelib_errors_pass_through():
    already = PermissionDeniedError("permission denied: x", role="roles/x")
    assert gcp.translate(already, DOING) is already
    other = gcp.translate(RecipelibError("something"), DOING)
    assert type(other) is CloudError and str(other) == "something"


def test_an_http_response_reads_like_an_exception():
    response = requests.Response()
    response.status_code = 403
    response._content = json.dumps({"error": {"code": 403, "status": "PERMISSION_DENIED",
                                              "message": "Permission 'artifactregistry.tags.get' denied"}}).encode()
    e = translate(response, role="roles/artifactregistry.reader", on="repository bench")
    assert type(e) is PermissionDeniedError and "roles/artifactregistry.reader on repository bench" in str(e)
    assert "artifactregistry.tags.get" in str(e)
    assert gcp.status_of(response) == 403 and gcp.status_of(gexc.NotFound("x")) == 404


def test_missing_credentials_say_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(CredentialsError, match=r"application-default login.*kubeconfig context"):
        gcp.default_credentials(alternative="use a kubeconfig context instead")
    injected = object()
    assert gcp.default_credentials(injected) is injected


def test_a_local_endpoint_gets_anonymous_credentials(monkeypatch, tmp_path):
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    client = gcp.storage_client(endpoint="http://127.0.0.1:1")
    assert isinstance(client._credentials, AnonymousCredentials) and client.project == "local-sandbox"
    build = gcp.cloudbuild_client(endpoint="http://127.0.0.1:1")
    assert isinstance(build._transport._credentials, AnonymousCredentials)
    with pytest.raises(CredentialsError):
        gcp.storage_client(project="p")  # no emulator, no credentials: says how to log in


def test_google_auth_default_is_called_in_gcp_only():
    callers = []
    for path in sorted((REPO / "recipelib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Attribute) and node.attr == "default" and isinstance(node.value, ast.Attribute)
                    and node.value.attr == "auth"):
                callers.append(str(path.relative_to(REPO)))
    assert callers == ["recipelib/gcp.py"]
