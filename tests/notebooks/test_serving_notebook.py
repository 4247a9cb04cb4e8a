"""deploy.ipynb's serving mode as a user runs it: a dry run from the command line, bad input refused, and on
the sandbox: server, an aiperf load to the bucket, then cleanup.ipynb removing that release and only it."""

from __future__ import annotations

import subprocess
import sys

import kubernetes
import nbformat
import papermill as pm
import pytest
from helpers import REPO, run_notebook, until

from recipelib.deploy.serving import serving_release
from recipelib.monitor.serving import load_jobs, load_progress

NOTEBOOKS = REPO / "notebooks"
MODEL = "meta-llama/Llama-3.1-8B"


def text_of(nb: nbformat.NotebookNode) -> str:
    return "\n".join(str(o.get("text", "")) + str(o.get("evalue", "")) + "".join(map(str, o.get("data", {}).values()))
                     for c in nb.cells for o in c.get("outputs", []))


def test_serving_dry_run_from_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "none.yaml"))
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(NOTEBOOKS / "deploy.ipynb"), "out.ipynb", "-p", "mode", "serving",
         "-p", "model", MODEL, "-p", "experiments", "128/128/200", "-p", "concurrency", "1,2,4,8",
         "-p", "ttft_ms", "2000", "-p", "dry_run", "True"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(p.name for p in (tmp_path / "deploy-manifests").iterdir())
    assert [f.split("-", 2)[1] for f in files] == ["configmap", "configmap", "deployment", "job", "service"]
    out = text_of(nbformat.read(tmp_path / "out.ipynb", as_version=4))
    assert "kind: Deployment" in out and "startupProbe" in out and "kind: Service" in out and "kind: Job" in out
    assert "Load " in out and "4 point(s) of aiperf 0.13.0" in out


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"mode": "serve"}, "mode"),
        ({"concurrency": "1,2"}, "concurrency"),  # mode throughput: a load parameter is refused, not ignored
        ({"mode": "serving", "concurrency": "4,0"}, "concurrency"),
        ({"mode": "serving", "request_rate": "fast"}, "request_rate"),
        ({"mode": "serving", "tp_size": 16}, "tp_size"),
    ],
)
def test_bad_serving_input_fails_before_anything_is_written(tmp_path, monkeypatch, params, field):
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "none.yaml"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(pm.PapermillExecutionError) as e:
        run_notebook(NOTEBOOKS / "deploy.ipynb", tmp_path / "out.ipynb", dry_run=True, model=MODEL, **params)
    assert e.value.ename == "ConfigError" and e.value.evalue.startswith(f"{field}: ")
    assert not (tmp_path / "deploy-manifests").exists()


@pytest.mark.skipif(not (REPO / ".venv-aiperf" / "bin" / "aiperf").is_file(), reason="no .venv-aiperf")
def test_serving_on_the_sandbox_then_cleanup_removes_that_release_only(sandbox, ns, tmp_path, monkeypatch):
    for name in ("GCS_BUCKET", "KUBECONFIG", "KUBE_CONTEXT", "CLUSTER_NAME", "GCS_ENDPOINT", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "absent.yaml"))
    monkeypatch.setenv("RECIPELIB_OVERLAY", str(sandbox.overlay))
    monkeypatch.setenv("NAMESPACE", ns.namespace)
    monkeypatch.chdir(tmp_path)
    other = {"metadata": {"name": "someone-elses", "labels": {"app.kubernetes.io/instance": "other"}}}
    ns.core.create_namespaced_config_map(ns.namespace, other)
    nb = run_notebook(NOTEBOOKS / "deploy.ipynb", tmp_path / "serve.ipynb", mode="serving", model=MODEL,
                      user="nb", experiments="32/8/10", concurrency="2", wait_ready_s=90, out_dir="",
                      overrides={"serve_startup_period_seconds": 1, "serve_readiness_period_seconds": 1})
    out = text_of(nb)
    release = serving_release(MODEL, user="nb")
    assert f"Server {release}-serve" in out and "Deployment/" in out and "Job/" in out
    [job] = load_jobs(ns, release)
    done = until("the load Job", lambda: (p := load_progress(ns, job)).status in ("Complete", "Failed") and p,
                 timeout=240, poll=1)
    assert (done.status, done.done, done.total) == ("Complete", 1, 1)
    run_id = ns.batch.read_namespaced_job(job, ns.namespace).metadata.annotations["recipelib.io/run-id"]
    bucket = sandbox.storage_client().bucket(sandbox.settings().gcs_bucket)
    assert any(b.name.endswith("isl32-osl8-c2/load_summary.json")
               for b in bucket.list_blobs(prefix=f"trtllm-benchmarks/{release}/{run_id}/"))

    clean = text_of(run_notebook(NOTEBOOKS / "cleanup.ipynb", tmp_path / "clean.ipynb", release=release))
    for kind in ("Deployment", "Service", "Job", "ConfigMap"):
        assert f"{kind}/" in clean
    apps = kubernetes.client.AppsV1Api(ns.api)
    until("the release's objects gone", lambda: not apps.list_namespaced_deployment(ns.namespace).items and
          not ns.core.list_namespaced_service(ns.namespace).items and
          not ns.batch.list_namespaced_job(ns.namespace).items)
    left = [c.metadata.name for c in ns.core.list_namespaced_config_map(ns.namespace).items]
    assert "someone-elses" in left and not [n for n in left if n.startswith(release)]
