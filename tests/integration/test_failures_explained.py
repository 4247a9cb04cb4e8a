"""Every failure in one line, with what to do (issue 13, part 4): the monitor's headline is the launcher's own
reason, its events are the current Job's only, cleanup of an absent release names those that exist, and an
API server that is gone is named as such before any setting is blamed.

The launcher's reasons are read from what the real launcher prints (launcher/testing/harness.py runs it with
its stand-ins, and the sandbox runs it in a pod); the servers are the real ones on loopback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import papermill as pm
import pytest
import yaml
from helpers import NOTEBOOKS, REPO, TESTS, deploy_on_sandbox, run_notebook, until

import recipelib
from recipelib.cluster import from_kubeconfig
from recipelib.deploy import deploy, plan_benchmark
from recipelib.errors import ClusterError
from recipelib.monitor import parse_event, progress_from_lines, read_log, status, wait
from recipelib.sandbox.gcs import free_port
from recipelib.settings import Settings, load_settings, save_settings
from recipelib.views.notebook import show_uninstall

HINT = "if this is the local sandbox, start it with `python -m recipelib.sandbox start`"


def launcher_node(tmp_path: Path):
    sys.path.insert(0, str(REPO / "launcher" / "testing"))
    try:
        from harness import Node
    finally:
        sys.path.remove(str(REPO / "launcher" / "testing"))
    return Node(tmp_path / "node")


def event_errors(lines: list[str], phase: str) -> dict[str | None, str]:
    return {e["experiment"]: e["error"] for line in lines
            if (e := parse_event(line)) and e["phase"] == phase and e["state"] == "failed"}


# --- the launcher's own reason --------------------------------------------------------------------------

def test_a_failed_experiment_is_the_reason_not_a_count(tmp_path):
    node = launcher_node(tmp_path)
    result = node.run(node.config(), STANDIN_FAIL_ISL="9000")
    lines = result.stdout.splitlines()
    error = event_errors(lines, "benchmark")["isl9000-osl100-n5-c4-stream"]
    failure = progress_from_lines(lines).failure
    assert failure.startswith("1 of 3 experiment(s) failed; isl9000-osl100-n5-c4-stream: ")
    assert " ".join(error.split())[:100] in failure and "\n" not in failure and len(failure) < 400


def test_an_invalid_config_is_the_reason(tmp_path):
    node = launcher_node(tmp_path)
    result = node.run(node.config(tp_size=0, kv_cache_free_gpu_mem_fraction=2))
    assert result.returncode == 2
    p = progress_from_lines(result.stdout.splitlines())
    assert p.failure.startswith("invalid config: ") and "tp_size" in p.failure
    assert "kv_cache_free_gpu_mem_fraction" in p.failure and "\n" not in p.failure
    assert p.exit_code == 2


def test_a_retried_run_on_the_sandbox_is_headlined_with_the_launchers_reason(sandbox, ns):
    """A failed experiment closes the run; the Job's retry pod finds it closed and re-runs nothing; the Job
    ends BackoffLimitExceeded. The headline is the experiment's error, not the Job's condition, and not
    "run skipped, 0/1 done" (what the retry pod alone says)."""
    sandbox.set_controls(fail="benchmark")
    plan = deploy_on_sandbox(sandbox, ns, "meta-llama/Llama-3.1-405B", user="why", run_prefix="why")
    outcome = wait(ns, plan.release, timeout_s=120, poll_s=0.5)
    for st in (outcome.status, status(ns, plan.release)):  # followed, and read afresh
        assert st.state == "Failed" and st.job_condition.startswith("BackoffLimitExceeded")
        pods = ns.core.list_namespaced_pod(ns.namespace).items
        assert len(pods) == 2 and st.progress.attempts == 2  # the retry happened, and both logs were read
        lines = [line for p in sorted(pods, key=lambda p: p.metadata.creation_timestamp)
                 for line in read_log(ns, p.metadata.name)]
        error = event_errors(lines, "benchmark")["isl128-osl128-n30000"]
        assert st.reason.startswith("1 of 1 experiment(s) failed; isl128-osl128-n30000: ")
        assert " ".join(error.split())[:80] in st.reason and st.reason.endswith("(launcher exit code 1)")
        assert "BackoffLimitExceeded" not in st.reason and "\n" not in st.reason
        assert "1/1 experiments done" in st.progress.describe()
        assert "run already finished (failed) before this pod" in st.progress.describe()
        shown = st.lines()
        assert shown[0].endswith(st.reason) and any(line.startswith("  Job: BackoffLimitExceeded") for line in shown)


# --- events of the current Job only ---------------------------------------------------------------------

def test_events_are_the_current_jobs_not_an_earlier_one_of_the_same_release(sandbox, ns):
    first = deploy_on_sandbox(sandbox, ns, "meta-llama/Llama-3.1-405B", user="ev", run_prefix="old",
                              overrides={"backoff_limit": 0})  # one pod, whether the replay completes or fails
    assert wait(ns, first.release, timeout_s=120, poll_s=0.5).status.finished
    old_pod = ns.core.list_namespaced_pod(ns.namespace).items[0].metadata.name
    assert any(old_pod in e.text or e.name == old_pod for e in status(ns, first.release).events)
    recipelib.uninstall(ns, first.release)
    until("the old Job and its pod to be gone", lambda: not ns.batch.list_namespaced_job(ns.namespace).items
          and not ns.core.list_namespaced_pod(ns.namespace).items)
    second = deploy_on_sandbox(sandbox, ns, "meta-llama/Llama-3.1-405B", user="ev", run_prefix="new",
                               overrides={"backoff_limit": 0})
    assert second.release == first.release
    st = wait(ns, second.release, timeout_s=120, poll_s=0.5).status
    new_pod = st.pod
    assert new_pod != old_pod
    # the old Job's events are still stored (same Job name), and none of them is shown
    stored = ns.core.list_namespaced_event(ns.namespace).items
    assert any(old_pod in (e.message or "") for e in stored)
    assert st.events and any(new_pod in e.text or e.name == new_pod for e in st.events)
    assert not [e for e in st.events if old_pod in e.text or e.name == old_pod]


# --- cleanup of a release that is not there -------------------------------------------------------------

@pytest.fixture
def on_cluster(tmp_path, monkeypatch, kube, namespace):
    """Settings of the test's own naming the local API server and a fresh namespace."""
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"KUBECONFIG": kube.kubeconfig, "KUBE_CONTEXT": kube.context,
                                        "NAMESPACE": namespace, "GCS_BUCKET": "my-results",
                                        "ARTIFACT_REGISTRY": "us-central1-docker.pkg.dev/my-project/my-repo"}))
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(settings))
    monkeypatch.setenv("RECIPELIB_LAUNCHER", str(TESTS / "fixtures" / "launcher"))
    for name in ("GCS_BUCKET", "NAMESPACE", "KUBECONFIG", "KUBE_CONTEXT", "CLUSTER_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return load_settings()


def output_of(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def test_cleanup_of_an_absent_release_names_the_releases_there(on_cluster, cluster, tmp_path):
    plan = plan_benchmark(on_cluster, "meta-llama/Llama-3.1-8B", user="alice")
    deploy(plan, cluster)
    out = output_of(run_notebook(NOTEBOOKS / "cleanup.ipynb", tmp_path / "out.ipynb", release="alice-llama-3-1-8"))
    assert (f"Release alice-llama-3-1-8 not found in namespace {cluster.namespace}: nothing to delete (already "
            f"removed, or a misspelt name). Releases there: {plan.release}.") in out
    assert "Deleted 0" not in out
    assert cluster.batch.read_namespaced_job(plan.release, cluster.namespace)  # and nothing else was touched


def test_cleanup_in_a_namespace_without_releases_says_there_are_none(capsys):
    show_uninstall("gone", [], [], "team-a")
    assert capsys.readouterr().out.strip() == (
        "Release gone not found in namespace team-a: nothing to delete (already removed, or a misspelt name). "
        "There are no recipelib releases there.")


# --- an API server that is gone ---------------------------------------------------------------------------

def dead_kubeconfig(folder: Path) -> tuple[Path, str]:
    """A kubeconfig whose server is a loopback port nothing listens on: a stopped sandbox's API server."""
    server = f"https://127.0.0.1:{free_port()}"
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
    }))
    return path, server


def test_a_dead_sandbox_is_named_before_any_setting_is_blamed(tmp_path, monkeypatch):
    """The sandbox's API server is gone: the settings it offered (the overlay) are stale and ignored, so no
    cluster and no bucket is configured. Deploy used to blame GCS_BUCKET and cleanup KUBECONFIG."""
    kubeconfig, server = dead_kubeconfig(tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()  # the API server's process id, now of no process
    overlay = tmp_path / "overlay.yaml"
    save_settings(Settings(kubeconfig=str(kubeconfig), kube_context="gone", gcs_bucket="recipelib-sandbox",
                           artifact_registry="us-central1-docker.pkg.dev/sandbox-project/recipelib", sandbox=True),
                  overlay, pid=gone.pid)
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "absent.yaml"))
    monkeypatch.setenv("RECIPELIB_OVERLAY", str(overlay))
    for name in ("GCS_BUCKET", "ARTIFACT_REGISTRY", "KUBECONFIG", "KUBE_CONTEXT", "CLUSTER_NAME", "GCS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_settings().gcs_bucket is None  # the stale overlay is ignored: nothing is configured
    for name, params in (("deploy", {"model": "meta-llama/Llama-3.1-8B"}), ("cleanup", {"release": "x"})):
        with pytest.raises(pm.PapermillExecutionError) as e:
            run_notebook(NOTEBOOKS / f"{name}.ipynb", tmp_path / f"{name}-out.ipynb", **params)
        assert e.value.ename == "ClusterError", name
        assert e.value.evalue.startswith(f"cannot reach the Kubernetes API at {server}: connection refused; {HINT}")
        assert "GCS_BUCKET" not in e.value.evalue and "KUBECONFIG" not in e.value.evalue


def test_an_api_server_that_is_gone_is_named_by_deploy(tmp_path, on_cluster):
    kubeconfig, server = dead_kubeconfig(tmp_path)
    cluster = from_kubeconfig(kubeconfig, "gone", "default")
    with pytest.raises(ClusterError) as e:
        deploy(plan_benchmark(on_cluster, "meta-llama/Llama-3.1-8B", user="alice"), cluster)
    assert str(e.value).startswith(f"cannot reach the Kubernetes API at {server}: connection refused; {HINT}")
    assert "\n" not in str(e.value)
