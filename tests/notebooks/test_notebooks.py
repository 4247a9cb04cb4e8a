"""The notebooks as a user runs them: headless with papermill, against the real local API server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import yaml
from helpers import REPO, TESTS, run_notebook

NOTEBOOKS = REPO / "notebooks"
TOKEN = "hf_NotebookTokenValue0123456789abcdef"


@pytest.fixture
def env(tmp_path, monkeypatch, kube, namespace):
    """A settings file of the test's own, the local cluster, and a token in the environment only."""
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "settings.yaml"))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("RECIPELIB_LAUNCHER", str(TESTS / "fixtures" / "launcher"))
    for name in ("GCS_BUCKET", "ARTIFACT_REGISTRY", "NAMESPACE", "KUBECONFIG", "KUBE_CONTEXT", "KUEUE_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(name: str, out: Path, **parameters) -> nbformat.NotebookNode:
    return run_notebook(NOTEBOOKS / f"{name}.ipynb", out, **parameters)


def text_of(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.extend(str(v) for v in output.get("data", {}).values())
            parts.append(output.get("evalue", ""))
    return "\n".join(parts)


def setup_params(kube, namespace, **extra):
    return dict(gcs_bucket="my-results", artifact_registry="us-central1-docker.pkg.dev/my-project/my-repo",
                kubeconfig=kube.kubeconfig, kube_context=kube.context, namespace=namespace, **extra)


def test_setup_saves_settings_creates_the_secret_and_reports_preflight(env, kube, namespace, cluster):
    nb = run("setup", env / "setup-out.ipynb", **setup_params(kube, namespace, require_ready=False))
    out = text_of(nb)
    assert "Secret hf-secret: created" in out
    assert "[FAIL] GPU nodes" in out and "[  ok] Hugging Face secret" in out
    assert "continuing because require_ready=False" in out
    settings = yaml.safe_load((env / "settings.yaml").read_text())
    assert settings["GCS_BUCKET"] == "my-results" and settings["NAMESPACE"] == namespace
    # the token is in the cluster, and nowhere a user or a log can read it
    assert cluster.core.read_namespaced_secret("hf-secret", namespace).data["hf_api_token"]
    for path in env.rglob("*"):
        if path.is_file():
            assert TOKEN not in path.read_text(errors="replace"), path
    assert TOKEN not in json.dumps(nb)


def test_setup_fails_when_the_cluster_is_not_ready(env, kube, namespace):
    with pytest.raises(pm.PapermillExecutionError) as e:
        run("setup", env / "setup-out.ipynb", **setup_params(kube, namespace))
    assert "cluster not ready" in e.value.evalue and "GPU nodes" in e.value.evalue


def test_deploy_then_cleanup_against_the_cluster(env, kube, namespace, cluster):
    run("setup", env / "setup-out.ipynb", **setup_params(kube, namespace, require_ready=False))
    nb = run("deploy", env / "deploy-out.ipynb", model="meta-llama/Llama-3.1-8B",
             experiments=[{"isl": 128, "osl": 128, "num_requests": 100}], user="alice", out_dir="")
    out = text_of(nb)
    assert "Job/alice-llama-3-1-8b created" in out
    assert cluster.batch.read_namespaced_job("alice-llama-3-1-8b", namespace).spec.backoff_limit == 1
    again = text_of(run("deploy", env / "deploy-again.ipynb", model="meta-llama/Llama-3.1-8B",
                        experiments="128/128/100", user="alice", out_dir=""))
    assert "Job/alice-llama-3-1-8b unchanged" in again

    listed = text_of(run("cleanup", env / "cleanup-list.ipynb"))
    assert "alice-llama-3-1-8b" in listed and "meta-llama/Llama-3.1-8B" in listed
    removed = text_of(run("cleanup", env / "cleanup-out.ipynb", release="alice-llama-3-1-8b"))
    assert "Deleted 3 object(s) of release alice-llama-3-1-8b" in removed
    assert cluster.batch.list_namespaced_job(namespace).items == []


def test_with_no_cluster_configured_a_notebook_uses_the_running_sandbox_and_says_so_first(
        sandbox, tmp_path, monkeypatch):
    """The settings overlay the sandbox offers, found with no special case: the banner is the first line."""
    for name in ("GCS_BUCKET", "NAMESPACE", "KUBECONFIG", "KUBE_CONTEXT", "CLUSTER_NAME", "GCS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "absent.yaml"))
    monkeypatch.setenv("RECIPELIB_OVERLAY", str(sandbox.overlay))
    monkeypatch.chdir(tmp_path)
    nb = run("cleanup", tmp_path / "cleanup-out.ipynb")
    first = text_of(nb).strip().splitlines()[0]
    assert first.startswith("Using the local sandbox (a replay of a recorded run, not a real cluster): context "
                            "recipelib-sandbox")
    assert not (tmp_path / "absent.yaml").exists()  # nothing saved as the user's


def test_dry_run_deploy_as_the_issue_writes_it(tmp_path, monkeypatch):
    """``papermill notebooks/deploy.ipynb out.ipynb -p model meta-llama/Llama-3.1-405B -p dry_run True``."""
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "none.yaml"))
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(NOTEBOOKS / "deploy.ipynb"), "out.ipynb",
         "-p", "model", "meta-llama/Llama-3.1-405B", "-p", "dry_run", "True"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(p.name for p in (tmp_path / "deploy-manifests").iterdir())
    assert files[-1].startswith("03-job-") and len(files) == 3
    out = text_of(nbformat.read(tmp_path / "out.ipynb", as_version=4))
    assert "kind: Job" in out and "restartPolicy: Never" in out


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"model": "meta-llama/Llama-3.1-405B; rm -rf /"}, "model"),
        ({"experiments": "128/0/30000"}, "experiments[0].osl"),
        ({"experiments": [{"isl": -1, "osl": 128, "num_requests": 10}]}, "experiments[0].isl"),
        ({"experiments": "128/128/2.5"}, "experiments[0].num_requests"),
        ({"release": "Alice_Release"}, "release"),
        ({"gpus": 16}, "gpus"),
    ],
)
def test_bad_deploy_input_fails_before_anything_is_applied(tmp_path, monkeypatch, params, field):
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "none.yaml"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(pm.PapermillExecutionError) as e:
        run("deploy", tmp_path / "out.ipynb", dry_run=True, **params)
    assert e.value.ename == "ConfigError"
    assert e.value.evalue.startswith(f"{field}: ")
    assert not (tmp_path / "deploy-manifests").exists()


def test_unknown_settings_key_fails_the_notebook(tmp_path, monkeypatch):
    (tmp_path / "settings.yaml").write_text("GCS_BUCKET: b-1\nTP_SIZE: 8\n")
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "settings.yaml"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(pm.PapermillExecutionError) as e:
        run("deploy", tmp_path / "out.ipynb", dry_run=True)
    assert e.value.evalue.startswith("TP_SIZE: unknown setting")


@pytest.mark.parametrize("name", ["setup", "deploy", "cleanup"])
def test_every_parameter_is_documented_for_help_notebook(name):
    """papermill skips a parameter line silently if it has a second '=' or an annotation it can't read."""
    path = NOTEBOOKS / f"{name}.ipynb"
    proc = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook", str(path)],
                          capture_output=True, text=True, check=True)
    cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    declared = [line.split(":")[0] for line in cell.source.splitlines() if line and not line.startswith("#")]
    shown = re.findall(r"^  ([a-z_]+): ", proc.stdout, flags=re.M)
    assert shown == declared
    assert "(default" in proc.stdout and "token" not in " ".join(declared)  # the HF token is never a parameter
    if name == "deploy":
        for line in ("model: str", "experiments: list or str", "dry_run: bool", "out_dir: str"):
            assert line in proc.stdout


@pytest.mark.parametrize("name", ["setup", "deploy", "cleanup"])
def test_notebooks_are_committed_thin_and_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert all(len(c.source.splitlines()) <= 25 for c in code)
    assert not any(line.lstrip().startswith(("def ", "class ")) for c in code for line in c.source.splitlines())
