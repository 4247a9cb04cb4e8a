"""Google Cloud access in one place: credentials, clients, and what Google's errors mean.

Every recipelib call to a Google API gets its credentials and its client here, and every failure goes
through :func:`translate`, so a 403 reads the same whether Cloud Build, Cloud Storage, GKE or Artifact
Registry said it. Call sites say what they were doing; this module says what the status means and what to
do next::

    try:
        blob.upload_from_string(data, if_generation_match=0)
    except GoogleAPICallError as e:
        raise gcp.translate(e, "uploading the build context to gs://b/x",
                            role="roles/storage.objectAdmin", on="bucket gs://b", api="storage.googleapis.com")

A quota 403 (``rateLimitExceeded``, ``RESOURCE_EXHAUSTED``, ...) is not a missing role: it becomes a
:class:`~recipelib.errors.QuotaError` that says to wait or raise the quota, never to ask for a role.
Messages carry Google's own sentence, never a request, a header or a token.

Clients accept injected ``credentials`` and ``endpoint`` so tests point them at local servers; an
``http://`` endpoint is a local fake and gets anonymous credentials.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recipelib.errors import (
    CloudConflictError,
    CloudError,
    CloudNotFoundError,
    CredentialsError,
    PermissionDeniedError,
    QuotaError,
    RecipelibError,
)

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
"""The one scope recipelib asks for; IAM roles, not scopes, decide what a call may do."""

LOGIN_HINT = ("run 'gcloud auth application-default login' once on this machine, or run the notebook on a VM or "
              "Workbench instance with a service account")
RELOGIN_HINT = ("run 'gcloud auth application-default login' again (the login may have expired), or check the "
                "service account's key")
QUOTA_HINT = ("wait a minute and retry; if it keeps happening, ask for a higher quota (console: IAM & Admin > "
              "Quotas). No role is missing: a new role would not help")

QUOTA_REASONS = frozenset({
    "ratelimitexceeded", "quotaexceeded", "userratelimitexceeded", "dailylimitexceeded",
    "rate_limit_exceeded", "resource_exhausted", "ratelimitexceededunreg",
})
"""Reasons (lower-cased) Google gives a 403 or 429 that a wait or a higher quota fixes, not a role."""
DISABLED_REASONS = frozenset({"service_disabled", "accessnotconfigured", "api_disabled"})
"""Reasons (lower-cased) for a 403 from an API that is not enabled in the project."""

_REST_PREFIX = re.compile(r"^(?:GET|POST|PUT|PATCH|DELETE|HEAD) \S+: ")


# --------------------------------------------------------------------------------------------------
# Credentials and clients
# --------------------------------------------------------------------------------------------------


def default_credentials(credentials: Any = None, *, scopes: Sequence[str] = (CLOUD_PLATFORM_SCOPE,),
                        alternative: str | None = None) -> Any:
    """Application Default Credentials, or ``credentials`` when given (tests inject their own).

    The only place recipelib calls ``google.auth.default``. Raises CredentialsError saying how to log in;
    ``alternative`` adds another way out (``use a kubeconfig context instead``).
    """
    if credentials is not None:
        return credentials
    import google.auth
    import google.auth.exceptions

    try:
        found, _ = google.auth.default(scopes=list(scopes))
    except google.auth.exceptions.DefaultCredentialsError as e:
        hint = LOGIN_HINT + (f", or {alternative}" if alternative else "")
        raise CredentialsError(f"no Google Cloud credentials: {hint} ({e})", doing="finding Google credentials",
                               hint=hint) from None
    return found


def anonymous_credentials() -> Any:
    """Credentials that send no token: what a local emulator (fake-gcs-server, a test fake) expects."""
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


def is_local(endpoint: str | None) -> bool:
    """An ``http://`` endpoint is a local stand-in; Google's APIs are only served over https."""
    return bool(endpoint) and str(endpoint).startswith("http://")


def storage_client(project: str | None = None, endpoint: str | None = None, credentials: Any = None) -> Any:
    """A ``google.cloud.storage.Client``.

    With an ``endpoint`` (a fake-gcs-server URL such as ``http://127.0.0.1:4443``) and no credentials it is
    anonymous, with ``project`` defaulting to ``local-sandbox``. Without one, ``STORAGE_EMULATOR_HOST``
    is honoured as google-cloud-storage does; otherwise the default credentials are used.
    """
    from google.cloud import storage

    if endpoint:
        return storage.Client(
            project=project or "local-sandbox",
            credentials=credentials if credentials is not None else anonymous_credentials(),
            client_options={"api_endpoint": endpoint},
        )
    if credentials is None and not os.environ.get("STORAGE_EMULATOR_HOST"):
        credentials = _credentials(None)
    return storage.Client(project=project, credentials=credentials)


def cloudbuild_client(credentials: Any = None, endpoint: str | None = None) -> Any:
    """A Cloud Build client over REST (what a local fake can answer); anonymous for an ``http://`` endpoint."""
    from google.cloud.devtools import cloudbuild_v1

    return cloudbuild_v1.CloudBuildClient(
        credentials=_credentials(credentials, endpoint), transport="rest",
        client_options={"api_endpoint": endpoint} if endpoint else None,
    )


def cluster_manager_client(credentials: Any = None, endpoint: str | None = None) -> Any:
    """A GKE ``ClusterManagerClient`` (REST when an endpoint is given, as test fakes speak only HTTP)."""
    from google.cloud import container_v1

    if endpoint:
        return container_v1.ClusterManagerClient(
            credentials=_credentials(credentials, endpoint), transport="rest",
            client_options={"api_endpoint": endpoint},
        )
    return container_v1.ClusterManagerClient(credentials=_credentials(credentials))


def authorized_session(credentials: Any = None) -> Any:
    """A ``requests`` session that adds the bearer token: for REST APIs without a client library here."""
    from google.auth.transport.requests import AuthorizedSession

    return AuthorizedSession(_credentials(credentials))


def bearer_token(credentials: Any) -> str:
    """A current access token, refreshed first when it expired (the Kubernetes client's auth hook)."""
    import google.auth.transport.requests

    if not credentials.valid:
        credentials.refresh(google.auth.transport.requests.Request())
    return str(credentials.token)


def _credentials(credentials: Any, endpoint: str | None = None) -> Any:
    if credentials is None and is_local(endpoint):
        return anonymous_credentials()
    return default_credentials(credentials)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiFailure:
    """What a Google error says, read the same way from a client exception or a raw HTTP response."""

    status: int | None
    message: str
    reasons: tuple[str, ...] = ()
    service: str | None = None

    @property
    def quota(self) -> bool:
        return self.status == 429 or any(r.lower() in QUOTA_REASONS for r in self.reasons)

    @property
    def api_disabled(self) -> bool:
        lowered = self.message.lower()
        return (any(r.lower() in DISABLED_REASONS for r in self.reasons) or "has not been used" in lowered
                or "service_disabled" in lowered or "it is disabled" in lowered)


def read_failure(error: Any) -> ApiFailure:
    """The status, Google's message, the reasons and the service of an api_core error or an HTTP response."""
    status = getattr(error, "code", None)
    if hasattr(error, "status_code"):  # requests.Response, or google.auth's transport Response
        return _from_envelope(int(error.status_code), _json(error), getattr(error, "text", "") or "")
    if not isinstance(status, int):
        status = None
    message = _REST_PREFIX.sub("", str(getattr(error, "message", "") or error))
    reasons: list[str] = []
    reason = getattr(error, "reason", None)
    if reason:
        reasons.append(str(reason))
    reasons += _reasons(getattr(error, "errors", ()))
    reasons += _reasons(getattr(error, "details", ()))
    grpc_code = getattr(error, "grpc_status_code", None)
    if grpc_code is not None and getattr(grpc_code, "name", "") == "RESOURCE_EXHAUSTED":
        reasons.append("RESOURCE_EXHAUSTED")
    metadata = getattr(error, "metadata", None)
    service = metadata.get("service") if isinstance(metadata, Mapping) else None
    return ApiFailure(status, message, tuple(reasons), service or _service(getattr(error, "details", ())))


def api_errors() -> tuple[type[BaseException], ...]:
    """What a Google call raises when Google refuses or cannot be reached: ``except gcp.api_errors() as e``.

    A function, not a constant, so that importing recipelib does not import the Google libraries.
    """
    import google.auth.exceptions
    from google.api_core import exceptions as api_exceptions

    return (api_exceptions.GoogleAPIError, google.auth.exceptions.GoogleAuthError, OSError)


def status_of(error: Any) -> int | None:
    """The HTTP status of a Google error (None for a transport failure): for control flow such as 404 = "not yet"."""
    return read_failure(error).status


def translate(
    error: Any,
    doing: str,
    *,
    role: str | None = None,
    on: str | None = None,
    api: str | None = None,
    not_found: str | None = None,
    conflict: str | None = None,
) -> CloudError:
    """The recipelib error for a Google failure while ``doing`` (``"creating a build in projects/p/..."``).

    ``error`` is a ``google.api_core`` exception, a google-auth error, a transport error, or an HTTP
    response with Google's JSON error envelope. ``role`` and ``on`` say which role a 403 needs, and where
    (``"roles/cloudbuild.builds.editor"``, ``"project p"``); ``api`` names the service to enable when a 403
    says it is disabled. ``not_found`` and ``conflict`` are what to do on a 404 or a 409/412. Raise the
    result ``from None``: the original carries request details the message does not need.
    """
    import google.auth.exceptions as auth_exceptions
    from google.api_core import exceptions as api_exceptions

    if isinstance(error, CloudError):
        return error
    if isinstance(error, RecipelibError):
        return CloudError(str(error), doing=doing)
    if isinstance(error, api_exceptions.RetryError) and error.cause is not None:
        return translate(error.cause, doing, role=role, on=on, api=api, not_found=not_found, conflict=conflict)
    if isinstance(error, auth_exceptions.DefaultCredentialsError):
        return CredentialsError(f"no Google Cloud credentials while {doing}: {LOGIN_HINT}", doing=doing,
                                hint=LOGIN_HINT)
    if isinstance(error, auth_exceptions.RefreshError):  # its text can quote the token endpoint's answer: left out
        return CredentialsError(f"Google Cloud credentials could not be refreshed while {doing}: {RELOGIN_HINT}",
                                doing=doing, hint=RELOGIN_HINT)
    if not (isinstance(error, api_exceptions.GoogleAPICallError) or hasattr(error, "status_code")):
        detail = f"{type(error).__name__}: {str(error)[:300]}"
        if isinstance(error, (OSError, auth_exceptions.TransportError)):
            hint = "check the network connection and any proxy, then retry"
            return CloudError(f"cannot reach Google Cloud while {doing} ({detail}): {hint}", doing=doing, hint=hint)
        return CloudError(f"{doing} failed: {detail}", doing=doing)
    failure = read_failure(error)
    said = f" (The API said: {failure.message})" if failure.message else ""
    status = failure.status
    if failure.quota:
        return QuotaError(f"quota or rate limit reached while {doing}: {QUOTA_HINT}.{said}", doing=doing,
                          hint=QUOTA_HINT, status=status)
    if status == 401:
        return CredentialsError(f"Google Cloud refused the credentials while {doing}: {RELOGIN_HINT}.{said}",
                                doing=doing, hint=RELOGIN_HINT, status=status)
    if status == 403 and failure.api_disabled:
        service = api or failure.service
        named = f"the {service} API" if service else "the API this call uses"
        hint = f"enable {named} in the console (APIs & Services) and retry"
        return PermissionDeniedError(
            f"{named} is not enabled in this project (seen while {doing}): {hint}.{said}",
            api=api or failure.service, api_disabled=True, doing=doing, hint=hint, status=status)
    if status == 403:
        needs = f"the role {role}" if role else "a role that allows it"
        hint = f"your account needs {needs}" + (f" on {on}" if on else "") + "; ask a project owner to grant it"
        return PermissionDeniedError(f"permission denied while {doing}: {hint}.{said}", role=role, api=api,
                                     doing=doing, hint=hint, status=status)
    if status == 404:
        hint = not_found or "check the name, the project and the location"
        return CloudNotFoundError(f"not found while {doing}: {hint}.{said}", doing=doing, hint=hint, status=status)
    if status in (409, 412):
        hint = conflict or "it already exists or changed meanwhile; nothing was overwritten"
        return CloudConflictError(f"conflict while {doing}: {hint}.{said}", doing=doing, hint=hint, status=status)
    hint = "Google Cloud had a problem: retry in a minute" if (status or 0) >= 500 else None
    headline = f"{doing} failed" + (f" with HTTP {status}" if status else "")
    return CloudError(headline + (f": {hint}." if hint else ".") + said, doing=doing, hint=hint, status=status)


def _json(response: Any) -> Any:
    try:
        return response.json()
    except (ValueError, AttributeError, TypeError):
        return None


def _from_envelope(status: int, body: Any, text: str) -> ApiFailure:
    err = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping):
        return ApiFailure(status, text[:200].strip())
    reasons = _reasons(err.get("errors") or ()) + _reasons(err.get("details") or ())
    if err.get("status"):
        reasons.append(str(err["status"]))
    return ApiFailure(status, str(err.get("message") or ""), tuple(reasons), _service(err.get("details") or ()))


def _reasons(items: Iterable[Any]) -> list[str]:
    found = []
    for item in items or ():
        reason = item.get("reason") if isinstance(item, Mapping) else getattr(item, "reason", None)
        if reason and isinstance(reason, str):
            found.append(reason)
    return found


def _service(details: Iterable[Any]) -> str | None:
    for item in details or ():
        metadata = item.get("metadata") if isinstance(item, Mapping) else None
        if isinstance(metadata, Mapping) and metadata.get("service"):
            return str(metadata["service"])
    return None
