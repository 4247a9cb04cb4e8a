"""setup.ipynb and the Hugging Face token, headless: none needed on the sandbox, a clear error elsewhere."""

from __future__ import annotations

import base64
import uuid

import papermill as pm
import pytest
from helpers import NOTEBOOKS, run_notebook

from recipelib.cluster.hf_secret import PLACEHOLDER_ANNOTATION, SANDBOX_PLACEHOLDER, SECRET_KEY, SECRET_NAME


def outputs(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    for name in ("HF_TOKEN", "GCS_BUCKET", "NAMESPACE", "KUBECONFIG", "KUBE_CONTEXT", "CLUSTER_NAME", "GCS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "settings.yaml"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_on_the_sandbox_setup_stores_a_marked_placeholder_and_asks_for_nothing(sandbox, no_token, monkeypatch):
    monkeypatch.setenv("RECIPELIB_OVERLAY", str(sandbox.overlay))
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster = sandbox.cluster(name)
    cluster.core.create_namespace({"metadata": {"name": name}})
    try:
        nb = run_notebook(NOTEBOOKS / "setup.ipynb", no_token / "out.ipynb", namespace=name, require_ready=False)
        assert "Secret hf-secret: created, holding a placeholder" in outputs(nb)
        secret = cluster.core.read_namespaced_secret(SECRET_NAME, name)
        assert base64.b64decode(secret.data[SECRET_KEY]).decode() == SANDBOX_PLACEHOLDER.get_secret_value()
        assert "no Hugging Face token needed" in secret.metadata.annotations[PLACEHOLDER_ANNOTATION]
        again = run_notebook(NOTEBOOKS / "setup.ipynb", no_token / "again.ipynb", namespace=name, require_ready=False)
        assert "Secret hf-secret: unchanged, holding a placeholder" in outputs(again)
        assert not (no_token / "settings.yaml").exists()  # the sandbox's settings are never saved as the user's
    finally:
        cluster.core.delete_namespace(name)


def test_headless_on_a_real_cluster_without_hf_token_is_a_clear_error_not_a_getpass_crash(kube, namespace, no_token):
    with pytest.raises(pm.PapermillExecutionError) as e:
        run_notebook(NOTEBOOKS / "setup.ipynb", no_token / "out.ipynb", kubeconfig=kube.kubeconfig,
                     kube_context=kube.context, namespace=namespace, gcs_bucket="my-results", require_ready=False)
    assert e.value.ename == "SecretError"
    assert "cannot ask for one" in e.value.evalue and "export HF_TOKEN" in e.value.evalue
