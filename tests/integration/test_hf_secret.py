"""The hf-secret Secret against a real API server; the token never shows up in what a user can read."""

import base64

import pytest
from pydantic import SecretStr

from recipelib.cluster.hf_secret import delete_hf_secret, ensure_hf_secret, hf_token
from recipelib.errors import SecretError

TOKEN = "hf_TestTokenValue1234567890abcdef"


def stored(cluster):
    data = cluster.core.read_namespaced_secret("hf-secret", cluster.namespace).data
    return base64.b64decode(data["hf_api_token"]).decode()


def test_secret_is_created_updated_and_left_alone(cluster):
    assert ensure_hf_secret(cluster, SecretStr(TOKEN)) == "created"
    assert stored(cluster) == TOKEN
    version = cluster.core.read_namespaced_secret("hf-secret", cluster.namespace).metadata.resource_version
    assert ensure_hf_secret(cluster, SecretStr(TOKEN)) == "unchanged"
    assert cluster.core.read_namespaced_secret("hf-secret", cluster.namespace).metadata.resource_version == version
    assert ensure_hf_secret(cluster, SecretStr(TOKEN + "2")) == "updated"
    assert stored(cluster) == TOKEN + "2"
    assert delete_hf_secret(cluster) is True
    assert delete_hf_secret(cluster) is False


def test_token_comes_from_the_environment_and_is_masked(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", f"  {TOKEN}\n")
    token = hf_token(prompt=False)
    assert token.get_secret_value() == TOKEN
    assert TOKEN not in repr(token) and TOKEN not in str(token)


def test_missing_token_without_a_terminal_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("sys.stdin", open("/dev/null"))  # noqa: SIM115 - as papermill runs it
    with pytest.raises(SecretError, match="export HF_TOKEN"):
        hf_token(prompt=True)


def test_a_failure_to_store_never_carries_the_token(cluster):
    from recipelib.cluster import Cluster
    from recipelib.errors import ClusterError

    missing = Cluster(cluster.api, "no-such-namespace", cluster.source)
    with pytest.raises(ClusterError) as e:
        ensure_hf_secret(missing, SecretStr(TOKEN))
    text = str(e.value) + repr(e.value) + str(e.value.__cause__) + str(e.value.__context__)
    assert TOKEN not in text and base64.b64encode(TOKEN.encode()).decode() not in text
    assert "no-such-namespace" in str(e.value)
