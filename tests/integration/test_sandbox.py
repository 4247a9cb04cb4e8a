"""The local sandbox end to end: a real API server, the node agent as its kubelet, fake-gcs-server, and the
benchmark Job that recipelib deploys, replaying the recipe's recorded 405B run.

One sandbox for the session (``sandbox``) and a fresh namespace per test (``ns``), both from
``tests/conftest.py``. Scenarios a monitor must tell apart: pending (does not fit), running, completed,
failed, evicted, node lost, deleted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import deploy_on_sandbox
from helpers import until as wait
from kubernetes.client import CoordinationV1Api

import recipelib
from recipelib.cluster import Cluster
from recipelib.cluster.checks import check_cluster
from recipelib.results import load_results
from recipelib.sandbox import BUCKET, CONTEXT, Sandbox
from recipelib.sandbox.kube import cache_dir, ensure_binaries
from recipelib.sandbox.nodeagent import LEASE_NAMESPACE, NodeShape
from recipelib.settings import load_settings
from recipelib.views.notebook import banner

FAST = 20000.0  # recorded seconds per second, as the conftest's sandbox: the recorded hour in a fifth of a second
SLOW = 5.0  # the build alone takes 8 minutes: a pod stays Running until a test speeds it up
MODEL = "meta-llama/Llama-3.1-405B"
NODE = NodeShape.name


def deploy(sandbox: Sandbox, cluster: Cluster, user: str = "alice", **options: Any) -> recipelib.BenchmarkPlan:
    return deploy_on_sandbox(sandbox, cluster, MODEL, user=user, **options)


def pods(cluster: Cluster, release: str) -> list[Any]:
    items = cluster.core.list_namespaced_pod(cluster.namespace,
                                             label_selector=f"app.kubernetes.io/instance={release}").items
    return sorted(items, key=lambda p: p.metadata.creation_timestamp)


def job_condition(cluster: Cluster, release: str) -> str | None:
    job = cluster.batch.read_namespaced_job(release, cluster.namespace)
    return next((c.type for c in job.status.conditions or [] if c.status == "True"), None)


def running_pod(cluster: Cluster, release: str) -> Any:
    return wait("a Running pod", lambda: next((p for p in pods(cluster, release) if p.status.phase == "Running"), None))


def events(cluster: Cluster, name: str) -> list[tuple[str, str, str, str]]:
    items = cluster.core.list_namespaced_event(cluster.namespace, field_selector=f"involvedObject.name={name}").items
    items.sort(key=lambda e: (e.first_timestamp, e.metadata.creation_timestamp))
    return [(e.type, e.reason, e.message, e.source.component) for e in items]


def condition(pod: Any, kind: str) -> Any:
    return next(c for c in pod.status.conditions or [] if c.type == kind)


# --- the node --------------------------------------------------------------------------------------------


def test_the_node_is_registered_as_gke_registers_an_a3_ultra_node(sandbox, ns):
    node = ns.core.read_node(NODE)
    labels = node.metadata.labels
    assert labels["cloud.google.com/gke-accelerator"] == "nvidia-h200-141gb"
    assert labels["node.kubernetes.io/instance-type"] == "a3-ultragpu-8g"
    assert labels["cloud.google.com/gke-nodepool"] == NodeShape.nodepool and labels["kubernetes.io/hostname"] == NODE
    assert node.status.capacity["nvidia.com/gpu"] == node.status.allocatable["nvidia.com/gpu"] == "8"
    assert {"cpu", "memory", "ephemeral-storage", "pods"} <= set(node.status.allocatable)
    assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [("nvidia.com/gpu", "present", "NoSchedule")]
    ready = condition(node, "Ready")
    assert (ready.status, ready.reason) == ("True", "KubeletReady")
    assert node.status.daemon_endpoints.kubelet_endpoint.port == sandbox.state()["ports"]["node"]
    assert ("InternalIP", "127.0.0.1") in [(a.type, a.address) for a in node.status.addresses]
    assert node.spec.provider_id.startswith("gce://sandbox-project/us-central1-b/")
    lease = CoordinationV1Api(ns.api).read_namespaced_lease(NODE, LEASE_NAMESPACE)
    assert lease.spec.holder_identity == NODE and lease.spec.renew_time is not None


def test_the_recipes_preflight_passes_on_the_sandbox(ns):
    checks = {c.name: c for c in check_cluster(ns)}
    assert all(c.ok for c in checks.values()), [str(c) for c in checks.values()]
    assert "1 nvidia-h200-141gb node(s)" in checks["GPU nodes"].detail and "8 GPUs" in checks["GPU nodes"].detail


# --- a benchmark, replayed ---------------------------------------------------------------------------------


def test_a_deployed_benchmark_replays_to_complete_and_uploads_its_report(sandbox, ns):
    plan = deploy(sandbox, ns)
    assert wait("the Job to complete", lambda: job_condition(ns, plan.release), timeout=90) == "Complete"
    (pod,) = pods(ns, plan.release)
    assert pod.status.phase == "Succeeded" and pod.spec.node_name == NODE
    (main,), (init,) = pod.status.container_statuses, pod.status.init_container_statuses
    assert (main.state.terminated.exit_code, main.state.terminated.reason) == (0, "Completed")
    assert (init.name, init.state.terminated.reason) == ("nccl-plugin-installer", "Completed")
    assert condition(pod, "Ready").reason == "PodCompleted" and condition(pod, "PodScheduled").status == "True"
    seen = [(reason, component) for _, reason, _, component in events(ns, pod.metadata.name)]
    assert seen[0] == ("Scheduled", "default-scheduler")
    kubelet = [r for r, c in seen if c == "kubelet"]
    assert kubelet[:2] in (["Pulling", "Pulled"], ["Pulled", "Created"])  # the image may be on the node already
    assert kubelet.count("Created") == kubelet.count("Started") == 2

    # the report, in the sandbox bucket under the run's prefix, read back as the analyze notebook reads it
    base = f"{plan.results_prefix}/{plan.release}/{plan.run_id}/"
    names = {b.name[len(base):] for b in sandbox.storage_client().list_blobs(BUCKET, prefix=base)}
    assert {"run.json", "isl128-osl128-n30000/report.txt",
            "isl128-osl128-n30000/metadata.json", "isl128-osl128-n30000/launcher.log"} <= names
    # the replay plays 0.17.0.post1, whose throughput --help lists no --report_json: the text report is the result
    assert "isl128-osl128-n30000/report.json" not in names
    results = load_results(bucket=BUCKET, prefix=plan.results_prefix, runs=f"{plan.release}/{plan.run_id}",
                           endpoint=sandbox.state()["gcs"], cache_dir=str(sandbox.root / "cache"))
    row = results.frame.iloc[0]
    assert (row["output_throughput_tok_s"], row["replay"], row["gpu"], row["gpu_count"]) == (3914.4509, True, "H200", 8)
    bucket = sandbox.storage_client().bucket(BUCKET)
    run = json.loads(bucket.blob(base + "run.json").download_as_bytes())
    meta = json.loads(bucket.blob(base + "isl128-osl128-n30000/metadata.json").download_as_bytes())
    assert run["replay"] is True and meta["replay"] is True and run["status"] == "succeeded"
    assert "3914.4509" in bucket.blob(base + "isl128-osl128-n30000/report.txt").download_as_text()


def test_logs_through_the_api_server_are_labelled_and_can_be_followed(sandbox, ns):
    sandbox.set_controls(replay_speed=1500)  # the benchmark's recorded 16 minutes in under a second
    plan = deploy(sandbox, ns)
    pod = running_pod(ns, plan.release).metadata.name
    stream = ns.core.read_namespaced_pod_log(pod, ns.namespace, container="benchmark", follow=True, timestamps=True,
                                             _preload_content=False)
    lines, arrivals, buffer = [], [], b""
    for chunk in stream.stream(4096):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            lines.append(raw.decode())
            arrivals.append(time.monotonic())
    stream.release_conn()
    assert wait("the Job to finish", lambda: job_condition(ns, plan.release)) == "Complete"
    stamps = [line.split(" ", 1)[0] for line in lines]
    assert stamps == sorted(stamps) and all(s.endswith("Z") for s in stamps)
    texts = [line.split(" ", 1)[1] for line in lines]
    events_ = [json.loads(t[len("RECIPE_EVENT "):]) for t in texts if t.startswith("RECIPE_EVENT ")]
    assert all(e["replay"] is True for e in events_) and events_[-1]["phase"] == "run"
    assert events_[-1]["state"] == "finished"
    assert all(t.startswith("[replay] ") for t in texts if not t.startswith("RECIPE_EVENT "))
    assert any("REPLAY: a replay of a recorded real run" in t for t in texts)
    assert any("= PERFORMANCE OVERVIEW" in t for t in texts)
    assert arrivals[-1] - arrivals[0] > 0.3  # streamed as the replay played, not in one piece at the end
    whole = ns.core.read_namespaced_pod_log(pod, ns.namespace, container="benchmark")
    assert whole.splitlines() == texts  # the same log, unfollowed
    last = ns.core.read_namespaced_pod_log(pod, ns.namespace, container="benchmark", tail_lines=1)
    assert last.splitlines() == texts[-1:]
    init = ns.core.read_namespaced_pod_log(pod, ns.namespace, container="nccl-plugin-installer")
    assert "is not run in the local sandbox" in init and init.count("\n") == 2


def test_the_engine_is_built_once_per_node_until_its_local_ssd_is_cleared(sandbox, ns):
    def build_events(release: str) -> list[str]:
        assert wait("the Job", lambda: job_condition(ns, release), timeout=90) == "Complete"
        log = ns.core.read_namespaced_pod_log(pods(ns, release)[0].metadata.name, ns.namespace, container="benchmark")
        found = [json.loads(line[len("RECIPE_EVENT "):]) for line in log.splitlines()
                 if line.startswith('RECIPE_EVENT {"phase": "build"')]
        return [e["state"] + (f" ({e['reason']})" if "reason" in e else "") for e in found]

    sandbox.clear_local_ssd()  # a new node: nothing cached
    assert build_events(deploy(sandbox, ns, user="first").release) == ["started", "finished"]
    assert build_events(deploy(sandbox, ns, user="second").release) == ["skipped (engine cached on this node)"]


# --- scenarios: pending, failed, evicted, deleted, node lost ---------------------------------------------


def test_a_pod_that_does_not_fit_stays_pending_as_the_scheduler_leaves_it(sandbox, ns):
    plan = deploy(sandbox, ns, overrides={"accelerator": "nvidia-h100-80gb"})
    message = "0/1 nodes are available: 1 node(s) didn't match node selector."
    # (resources are checked first: a pod of an earlier test still stopping may hold the GPUs for a moment)
    pod = wait("FailedScheduling", lambda: next((p for p in pods(ns, plan.release) if p.status.conditions
                                                 and condition(p, "PodScheduled").message == message), None))
    scheduled = condition(pod, "PodScheduled")
    assert (pod.status.phase, scheduled.status, scheduled.reason) == ("Pending", "False", "Unschedulable")
    assert ("Warning", "FailedScheduling", message, "default-scheduler") in events(ns, pod.metadata.name)
    said = len(events(ns, pod.metadata.name))
    time.sleep(1.5)  # an absence: the scheduler retries at least once a second, and must neither bind nor repeat
    assert pods(ns, plan.release)[0].spec.node_name is None  # still pending, and not said again
    assert len(events(ns, pod.metadata.name)) == said and {e[1] for e in events(ns, pod.metadata.name)} == {
        "FailedScheduling"}


def test_a_second_benchmark_waits_for_the_gpus_then_runs(sandbox, ns):
    sandbox.set_controls(replay_speed=SLOW)
    first = deploy(sandbox, ns, user="alice")
    running_pod(ns, first.release)
    second = deploy(sandbox, ns, user="bob")
    pending = wait("the second pod unschedulable",
                   lambda: next((p for p in pods(ns, second.release) if p.status.conditions), None))
    assert condition(pending, "PodScheduled").message == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    sandbox.set_controls(replay_speed=FAST)
    assert wait("the first Job", lambda: job_condition(ns, first.release), timeout=60) == "Complete"
    assert wait("the second Job", lambda: job_condition(ns, second.release), timeout=60) == "Complete"
    assert pods(ns, second.release)[0].spec.node_name == NODE


def test_a_failing_benchmark_fails_its_pod_and_job(sandbox, ns):
    sandbox.set_controls(fail="benchmark")
    plan = deploy(sandbox, ns, overrides={"backoff_limit": 0})
    assert wait("the Job to fail", lambda: job_condition(ns, plan.release), timeout=90) == "Failed"
    (pod,) = pods(ns, plan.release)
    (main,) = pod.status.container_statuses
    assert pod.status.phase == "Failed"
    assert (main.state.terminated.exit_code, main.state.terminated.reason) == (1, "Error")
    log = ns.core.read_namespaced_pod_log(pod.metadata.name, ns.namespace, container="benchmark")
    assert "simulated failure of the benchmark" in log and '"phase": "run", "state": "failed"' in log
    base = f"{plan.results_prefix}/{plan.release}/{plan.run_id}/isl128-osl128-n30000/"
    meta = json.loads(sandbox.storage_client().bucket(BUCKET).blob(base + "metadata.json").download_as_bytes())
    assert (meta["status"], meta["replay"]) == ("failed", True) and "exited with code 1" in meta["error"]


def test_an_evicted_pod_is_failed_with_the_kubelets_reason_and_replaced(sandbox, ns):
    sandbox.set_controls(replay_speed=SLOW)
    plan = deploy(sandbox, ns)
    first = running_pod(ns, plan.release).metadata.name
    sandbox.evict(first, ns.namespace)
    pod = ns.core.read_namespaced_pod(first, ns.namespace)
    assert (pod.status.phase, pod.status.reason) == ("Failed", "Evicted")
    assert pod.status.message.startswith("The node was low on resource: ephemeral-storage.")
    assert pod.status.container_statuses[0].state.terminated.exit_code == 143  # the launcher's answer to SIGTERM
    reasons = [(kind, reason) for kind, reason, _, _ in events(ns, first)]
    assert ("Warning", "Evicted") in reasons and ("Normal", "Killing") in reasons
    sandbox.set_controls(replay_speed=FAST)
    # backoffLimit 1: the Job controller replaces the pod and the run completes
    assert wait("the Job to complete", lambda: job_condition(ns, plan.release), timeout=90) == "Complete"
    phases = {p.metadata.name: p.status.phase for p in pods(ns, plan.release)}
    assert phases.pop(first) == "Failed" and list(phases.values()) == ["Succeeded"]


def test_deleting_a_release_stops_its_pod_gracefully(sandbox, ns):
    sandbox.set_controls(replay_speed=SLOW)
    plan = deploy(sandbox, ns)
    pod = running_pod(ns, plan.release).metadata.name
    wait("the launcher under way", lambda: "RECIPE_EVENT " in ns.core.read_namespaced_pod_log(
        pod, ns.namespace, container="benchmark"))
    recipelib.uninstall(ns, plan.release)
    wait("the pod to be gone", lambda: not pods(ns, plan.release), timeout=60)
    assert ("Normal", "Killing", "Stopping container benchmark", "kubelet") in events(ns, pod)
    # the launcher got SIGTERM and recorded its attempt as interrupted, as in a real cluster
    base = f"{plan.results_prefix}/{plan.release}/{plan.run_id}/.attempts/"
    results = [b for b in sandbox.storage_client().list_blobs(BUCKET, prefix=base) if b.name.endswith("result.json")]
    assert [json.loads(b.download_as_bytes())["status"] for b in results] == ["interrupted"]


def test_a_node_that_goes_not_ready_then_away_then_comes_back(sandbox, ns):
    sandbox.set_controls(replay_speed=SLOW)
    plan = deploy(sandbox, ns)
    pod = running_pod(ns, plan.release).metadata.name
    sandbox.node_not_ready()
    ready = condition(ns.core.read_node(NODE), "Ready")
    assert (ready.status, ready.reason) == ("False", "KubeletNotReady")
    sandbox.remove_node()
    nodes = ns.core.list_node().items
    assert nodes == [] and ns.core.read_namespaced_pod(pod, ns.namespace).status.phase == "Running"  # nobody says
    other = deploy(sandbox, ns, user="carol")
    stuck = wait("no nodes", lambda: next((p for p in pods(ns, other.release) if p.status.conditions), None))
    assert condition(stuck, "PodScheduled").message == "no nodes available to schedule pods"
    sandbox.set_controls(replay_speed=FAST)
    sandbox.restore_node()
    assert condition(ns.core.read_node(NODE), "Ready").status == "True"
    lost = ns.core.read_namespaced_pod(pod, ns.namespace)
    assert (lost.status.phase, lost.status.reason) == ("Failed", "NodeLost")
    assert wait("carol's Job", lambda: job_condition(ns, other.release), timeout=90) == "Complete"


# --- settings, reuse, restart --------------------------------------------------------------------------


def test_settings_use_the_overlay_the_running_sandbox_offers_when_no_cluster_is_configured(
        sandbox, tmp_path, monkeypatch, capsys):
    for name in ("KUBECONFIG", "KUBE_CONTEXT", "CLUSTER_NAME", "GCS_BUCKET", "GCS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "absent.yaml"))
    monkeypatch.delenv("RECIPELIB_OVERLAY", raising=False)
    assert not load_settings().sandbox  # a named settings file, even absent, is a configuration
    monkeypatch.setenv("RECIPELIB_OVERLAY", str(sandbox.overlay))
    settings = load_settings()
    assert settings.sandbox and settings.gcs_bucket == BUCKET and settings.gcs_endpoint == sandbox.state()["gcs"]
    assert (settings.kubeconfig, settings.kube_context) == (str(sandbox.kubeconfig), CONTEXT)
    assert str(sandbox.root) in (settings.note or "")
    offered = yaml.safe_load(sandbox.overlay.read_text())
    assert offered["SANDBOX"] is True and offered["PID"] == sandbox.state()["pids"]["kube-apiserver"]
    assert not load_settings(kubeconfig=str(sandbox.kubeconfig), kube_context="other").sandbox  # asked for another
    line = banner(settings)
    assert line.startswith("Using the local sandbox (a replay of a recorded run, not a real cluster)")
    assert line in capsys.readouterr().out
    mine = tmp_path / "mine.yaml"  # a settings file of the user's wins, whole: nothing of the overlay leaks in
    mine.write_text("GCS_BUCKET: my-own-bucket\n")
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(mine))
    own = load_settings()
    assert (own.sandbox, own.gcs_bucket, own.gcs_endpoint, own.kubeconfig) == (False, "my-own-bucket", None, None)
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "absent.yaml"))
    monkeypatch.setenv("RECIPELIB_OVERLAY", str(tmp_path / "no-overlay.yaml"))
    assert not load_settings().sandbox and banner(load_settings()).startswith("No cluster configured")


def test_stop_withdraws_only_its_own_overlay(tmp_path):
    """Two sandboxes, one overlay: the last started owns it, and stopping the other leaves it alone."""
    overlay = tmp_path / "overlay.yaml"
    box = Sandbox(tmp_path / "box", overlay=overlay)
    overlay.write_text(f"KUBECONFIG: {tmp_path / 'other' / 'kubeconfig'}\nSANDBOX: true\n")
    assert not box.stop() and overlay.exists()
    overlay.write_text(f"KUBECONFIG: {box.kubeconfig}\nSANDBOX: true\n")
    assert not box.stop() and not overlay.exists()


def cached_build_only(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Make any rebuild of the kube binaries fail the test; returns where the cached ones were found."""
    import recipelib.sandbox.control

    found: list[Path] = []
    monkeypatch.setattr(recipelib.sandbox.control, "ensure_binaries",
                        lambda build=True: found.append(ensure_binaries(build=False)) or found[-1])
    return found


def test_start_reuses_the_running_sandbox(sandbox, monkeypatch):
    found = cached_build_only(monkeypatch)
    pids = sandbox.state()["pids"]
    start = time.monotonic()
    again = Sandbox(sandbox.root, overlay=sandbox.overlay).start()
    assert time.monotonic() - start < 2 and again.state()["pids"] == pids and found == []
    cli = subprocess.run([sys.executable, "-m", "recipelib.sandbox", "status", "--root", str(sandbox.root)],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and "running since" in cli.stdout and f"{NODE}: ready" in cli.stdout


def test_a_restart_is_clean_reuses_the_cached_build_keeps_the_bucket_and_the_ports(sandbox, monkeypatch):
    """Last: it restarts the session's sandbox."""
    found = cached_build_only(monkeypatch)
    binaries = {p: p.stat().st_mtime_ns for p in ensure_binaries(build=False).iterdir()}
    before = {b.name for b in sandbox.storage_client().list_blobs(BUCKET)}
    ports = sandbox.state()["ports"]
    old = sandbox.state()["pids"]
    assert sandbox.stop()
    assert not any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in old.values())
    assert not sandbox.status().running and not sandbox.overlay.exists()  # nothing points at a dead server
    start = time.monotonic()
    sandbox.start()
    assert time.monotonic() - start < 20
    assert yaml.safe_load(sandbox.overlay.read_text())["PID"] == sandbox.state()["pids"]["kube-apiserver"]
    assert sandbox.state()["ports"] == ports and sandbox.state()["pids"] != old
    assert found == [cache_dir()] and {p: p.stat().st_mtime_ns for p in cache_dir().iterdir()} == binaries
    assert {b.name for b in sandbox.storage_client().list_blobs(BUCKET)} == before
    namespaces = {n.metadata.name for n in sandbox.cluster().core.list_namespace().items}
    assert not any(n.startswith("t-") for n in namespaces)  # a fresh cluster


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"
