"""The monitor against the sandbox: pending, running, completed, failed, evicted, node lost, and the log
follow resuming after a dropped connection without a repeated or missing line.

Uses the session's ``sandbox`` and a fresh namespace per test (``ns``), both from tests/conftest.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import deploy_on_sandbox, until
from urllib3.exceptions import ProtocolError

import recipelib
from recipelib.monitor import follow_logs, latest_release, read_log, status, wait
from recipelib.views.monitor import watch

FAST = 20000.0
SLOW = 5.0
MODEL = "meta-llama/Llama-3.1-405B"


def deploy(sandbox, cluster, experiments="recipe-default", **options: Any) -> recipelib.BenchmarkPlan:
    return deploy_on_sandbox(sandbox, cluster, MODEL, experiments, user="mon", run_prefix="mon", **options)


def test_pending_says_why_the_pod_is_not_scheduled(sandbox, ns):
    plan = deploy(sandbox, ns, overrides={"accelerator": "nvidia-b200"})
    st = until("FailedScheduling on the node selector", lambda: (s := status(ns, plan.release)).events and
               any(e.reason == "FailedScheduling" and "node selector" in e.text for e in s.events) and s)
    assert st.state == "Pending"
    assert st.reason == "pod not scheduled yet"
    assert st.progress.phase is None and "launcher not started yet" in "\n".join(st.lines())


def test_running_shows_the_launchers_phase(sandbox, ns):
    sandbox.clear_local_ssd()  # a fresh node: the engine is built, not found in the node's cache
    sandbox.set_controls(replay_speed=SLOW)
    plan = deploy(sandbox, ns)
    st = until("the launcher's build", lambda: (s := status(ns, plan.release)).progress.phase == "build" and s)
    assert st.state == "Running" and st.pod_phase == "Running" and st.node
    assert st.progress.total == 1 and st.progress.done == 0
    assert any(line.startswith("benchmark: running since") for line in st.containers)
    assert any(e.reason == "Started" for e in st.events)
    sandbox.set_controls(replay_speed=FAST)
    outcome = wait(ns, plan.release, timeout_s=120, poll_s=0.5)
    assert outcome.succeeded


def test_completed_run_with_progress_and_kept_results(sandbox, ns, capsys):
    plan = deploy(sandbox, ns)
    assert latest_release(ns) == plan.release
    statuses, lines = [], []
    outcome = wait(ns, plan.release, timeout_s=120, poll_s=0.5, on_line=lines.append, on_status=statuses.append)
    assert outcome.succeeded and outcome.status.state == "Complete"
    p = outcome.status.progress
    assert p.total == 1 and p.finished_experiments == ("isl128-osl128-n30000",) and p.run_state == "finished"
    assert any("PERFORMANCE OVERVIEW" in line for line in lines)
    assert lines == read_log(ns, outcome.status.pod)  # every line once, in order
    assert statuses[-1].state == "Complete" and len(statuses) >= 2

    settings = sandbox.settings(namespace=ns.namespace)
    watch(ns, settings, plan.release, timeout_s=60, widgets=False, show_log=False,
          storage_client=sandbox.storage_client())
    out = capsys.readouterr().out
    assert f"{plan.release}: Complete" in out
    assert "Results kept in gs://" in out and "isl128-osl128-n30000" in out


def test_failed_run_says_why_and_shows_the_last_lines(sandbox, ns, capsys):
    sandbox.set_controls(fail="benchmark")
    plan = deploy(sandbox, ns, overrides={"backoff_limit": 0})
    outcome = wait(ns, plan.release, timeout_s=120, poll_s=0.5)
    assert not outcome.succeeded and outcome.status.state == "Failed"
    assert outcome.status.reason.startswith("1 of 1 experiment(s) failed; isl128-osl128-n30000: ")  # the launcher's
    assert outcome.status.reason.endswith("(launcher exit code 1)")
    assert outcome.status.progress.failed_experiments == ("isl128-osl128-n30000",)
    assert outcome.last_lines and any("RECIPE_EVENT" in line for line in outcome.last_lines)
    with pytest.raises(recipelib.RecipelibError, match="failed"):
        watch(ns, sandbox.settings(namespace=ns.namespace), plan.release, timeout_s=60, widgets=False,
              show_log=False, storage_client=sandbox.storage_client())
    assert "Last log lines:" in capsys.readouterr().out


def test_an_evicted_pod_is_reported_as_evicted(sandbox, ns):
    sandbox.set_controls(replay_speed=SLOW)
    plan = deploy(sandbox, ns, overrides={"backoff_limit": 0})
    st = until("a running pod", lambda: (s := status(ns, plan.release)).pod_phase == "Running" and s)
    sandbox.evict(st.pod, namespace=ns.namespace)
    st = until("the Job to fail", lambda: (s := status(ns, plan.release)).state == "Failed" and s, timeout=60)
    assert st.evicted and st.reason.startswith(f"pod {st.pod} was evicted")
    assert any(e.reason == "Evicted" and "results already uploaded are kept" in e.text for e in st.events)


def test_a_lost_node_is_reported_as_such(sandbox, ns):
    sandbox.set_controls(replay_speed=SLOW)
    plan = deploy(sandbox, ns)
    st = until("a running pod", lambda: (s := status(ns, plan.release)).pod_phase == "Running" and s)
    sandbox.remove_node()
    try:
        st = until("the node to be gone", lambda: (s := status(ns, plan.release)).node_lost and s)
        assert "lost with its node" in st.reason
    finally:
        sandbox.restore_node()
        sandbox.set_controls(replay_speed=FAST)


class DroppingStream:
    """The real log request, whose first response breaks after ``after`` lines like a dropped connection."""

    def __init__(self, read, after: int) -> None:
        self.read, self.after, self.calls = read, after, []

    def __call__(self, *args, **kwargs):
        self.calls.append(kwargs)
        response = self.read(*args, **kwargs)
        if len(self.calls) > 1:
            return response
        real_read1, state = response.read1, {"seen": 0}

        def read1(amt=None):
            if state["seen"] >= self.after:
                raise ProtocolError("Connection broken: IncompleteRead")
            chunk = real_read1(amt)
            state["seen"] += chunk.count(b"\n")
            return chunk
        response.read1 = read1
        return response


def test_log_follow_resumes_after_a_dropped_connection_without_repeating(sandbox, ns):
    sandbox.set_controls(replay_speed=200.0)
    plan = deploy(sandbox, ns)
    pod = until("a running pod", lambda: (s := status(ns, plan.release)).pod_phase == "Running" and s.pod)
    until("some log", lambda: len(read_log(ns, pod)) > 5)
    dropping = DroppingStream(ns.core.read_namespaced_pod_log, after=5)
    sandbox.set_controls(replay_speed=2000.0)
    followed = list(follow_logs(ns, pod, stream=dropping, retry_delay_s=0.1))
    full = read_log(ns, pod)
    assert followed == full  # every line once, in order, none lost
    assert len(dropping.calls) == 2  # one streaming request, one resume; no polling
    assert all(c["follow"] for c in dropping.calls) and "since_seconds" in dropping.calls[1]
