"""Serving on the sandbox, end to end: the trtllm-serve Deployment (the stand-in behind its probes), a load
Job running the real aiperf against the Service, results create-only in the bucket; the refusals.

Uses the session's ``sandbox`` and a fresh namespace per test (``ns``), both from tests/conftest.py. The
stand-in server loads for 2 s (refusing connections, as the real one does before its port opens); the
probes here run every second so that the tests do not wait for a 30 s period.
"""

from __future__ import annotations

import json
import uuid

import pytest
from helpers import REPO, until

from recipelib.deploy.serving import deploy_serving, plan_serving
from recipelib.deploy.serving_load import deploy_load, plan_load
from recipelib.errors import ClusterError
from recipelib.monitor.logs import read_log
from recipelib.monitor.serving import load_progress, server_state, serving_status

MODEL = "meta-llama/Llama-3.1-8B"
FAST_PROBES = {"serve_startup_period_seconds": 1, "serve_readiness_period_seconds": 1}

needs_aiperf = pytest.mark.skipif(not (REPO / ".venv-aiperf" / "bin" / "aiperf").is_file(),
                                  reason="aiperf's environment is missing: python -m recipelib.serving.aiperf_env")


def _objects(ns) -> list[str]:
    jobs = [f"Job/{j.metadata.name}" for j in ns.batch.list_namespaced_job(ns.namespace).items]
    maps = [f"ConfigMap/{c.metadata.name}" for c in ns.core.list_namespaced_config_map(ns.namespace).items
            if (c.metadata.labels or {}).get("app.kubernetes.io/managed-by") == "recipelib"]
    return jobs + maps


def test_load_against_a_release_without_a_server_is_refused_and_creates_nothing(sandbox, ns):
    settings = sandbox.settings(namespace=ns.namespace)
    before = _objects(ns)
    with pytest.raises(ClusterError) as e:
        plan_load(settings, MODEL, release="nobody-here", experiments="32/8/10", concurrency="1,2", cluster=ns)
    text = str(e.value)
    assert "release nobody-here" in text and "absent" in text and "Nothing was created" in text
    assert _objects(ns) == before


@needs_aiperf
def test_server_then_aiperf_load_end_to_end_with_results_in_the_bucket(sandbox, ns):
    settings = sandbox.settings(namespace=ns.namespace)
    plan = plan_serving(settings, MODEL, user="srv", overrides=FAST_PROBES)
    deploy_serving(plan, ns)

    # while the server is still coming up, a load step is refused naming its state, and creates nothing
    with pytest.raises(ClusterError) as e:
        plan_load(settings, MODEL, user="srv", experiments="32/8/12", concurrency="1,4", cluster=ns)
    assert f"release {plan.release}" in str(e.value)
    assert any(f"is {s} " in str(e.value) for s in ("pending", "loading"))
    assert not [o for o in _objects(ns) if o.startswith("Job/")]

    # the stand-in refuses connections while it loads: the startup probe says so, then the pod is Ready
    state = until("the server ready", lambda: (s := server_state(ns, plan.release)).ready and s, timeout=90)
    assert state.node and state.pod
    probes = [e for e in server_state(ns, plan.release).events if e.reason == "Unhealthy"]
    assert probes and "Startup probe" in probes[0].text and "connection refused" in probes[0].text
    endpoints = ns.core.read_namespaced_endpoints(plan.server_name, ns.namespace)
    assert endpoints.subsets and endpoints.subsets[0].addresses  # the Service routes to the ready pod

    run_id = f"load-{uuid.uuid4().hex[:8]}"
    load = plan_load(settings, MODEL, user="srv", experiments="32/8/12", concurrency="1,4", ttft_ms=500,
                     tpot_ms=100, run_id=run_id, cluster=ns)
    assert load.server.node == state.node and load.points == 2
    deploy_load(load, ns)
    job = until("the load Job to finish", lambda: (p := load_progress(ns, load.job_name)).status in
                ("Complete", "Failed") and p, timeout=300, poll=1)
    pods = ns.core.list_namespaced_pod(ns.namespace, label_selector=f"job-name={load.job_name}").items
    said = [line for p in pods for line in read_log(ns, p.metadata.name, container="load")]
    assert job.status == "Complete", "\n".join([*serving_status(ns, plan.release), *said[-40:]])
    assert (job.done, job.total, job.failed) == (2, 2, ())

    bucket = sandbox.storage_client().bucket(settings.gcs_bucket)
    prefix = f"{settings.results_prefix}/{plan.release}/{run_id}/"
    names = {b.name.removeprefix(prefix) for b in bucket.list_blobs(prefix=prefix)}
    for point in ("isl32-osl8-c1", "isl32-osl8-c4"):
        assert {f"{point}/load_summary.json", f"{point}/profile_export_aiperf.json", f"{point}/aiperf.log"} <= names
    assert "run.json" in names
    run = json.loads(bucket.blob(prefix + "run.json").download_as_bytes())
    assert run["status"] == "succeeded" and run["mode"] == "serving" and run["aiperf_version"] == "0.13.0"
    assert run["standin"] is True and "STAND-IN" in run["server_version"]["stand_in"]
    summary = json.loads(bucket.blob(prefix + "isl32-osl8-c1/load_summary.json").download_as_bytes())
    point = summary["points"][0]
    assert point["mode"] == "concurrency" and point["value"] == 1 and point["requests"] == 12 and point["errors"] == 0
    # the stand-in keeps TTFT 50 ms and 10 ms between tokens: aiperf, through the Service, measures about that
    assert 45 <= point["ttft_p50_ms"] <= 150 and 8 <= point["itl_p50_ms"] <= 30
    assert point["goodput_rps"] > 0 and summary["model"] == MODEL and summary["standin"] is True
    assert summary["server"].startswith("trtllm-serve 0.17.0 at http://") and "STAND-IN" in summary["server"]

    # the same load again: the Job is there, unchanged; nothing is re-run or overwritten
    again = deploy_load(load, ns)
    assert {a.action for a in again.applied} == {"unchanged"}
