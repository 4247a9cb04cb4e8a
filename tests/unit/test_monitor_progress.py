"""The monitor's reading of the launcher: fed with what the real launcher prints (run with its stand-ins)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from helpers import REPO

from recipelib.monitor.events import explain_event
from recipelib.monitor.logs import _split_timestamp
from recipelib.monitor.progress import Progress, advance, parse_event, progress_from_lines

LAUNCHER_TESTING = REPO / "launcher" / "testing"


@pytest.fixture(scope="module")
def launcher_output(tmp_path_factory) -> list[str]:
    """A real 3-experiment sweep's stdout, one experiment failing (the stand-in fails ISL 9000)."""
    sys.path.insert(0, str(LAUNCHER_TESTING))
    try:
        from harness import Node
    finally:
        sys.path.remove(str(LAUNCHER_TESTING))
    node = Node(tmp_path_factory.mktemp("node"))
    result = node.run(node.config(), STANDIN_FAIL_ISL="9000")
    assert result.returncode == 1
    return result.stdout.splitlines()


def test_progress_of_a_real_run(launcher_output):
    p = progress_from_lines(launcher_output)
    assert p.total == 3 and p.done == 3
    assert p.finished_experiments == ("isl128-osl128-n30", "isl500-osl200-n10")
    assert p.failed_experiments == ("isl9000-osl100-n5-c4-stream",)
    assert p.run_state == "failed" and p.phase == "run"
    assert p.eta_s == 0.0 and p.elapsed_s is not None and p.elapsed_s >= 0
    assert "3/3 experiments done" in p.describe()


def test_progress_part_way_through_has_an_estimate(launcher_output):
    first_done = next(i for i, line in enumerate(launcher_output)
                      if (e := parse_event(line)) and e["phase"] == "benchmark" and e["state"] == "finished")
    p = progress_from_lines(launcher_output[: first_done + 1])
    assert p.done == 1 and p.total == 3 and p.index == 1
    assert p.eta_s is not None and p.eta_s >= 0
    assert "experiment 1/3" in p.describe() and "left" in p.describe()


def test_readable_lines_and_broken_events_are_ignored():
    assert parse_event("[TRT-LLM] [I] Starting benchmark...") is None
    assert parse_event("RECIPE_EVENT {not json") is None
    assert parse_event('RECIPE_EVENT {"phase": "build"}') is None  # no state: not an event
    stamped = '2026-11-27T03:10:00.5Z RECIPE_EVENT {"phase": "build", "state": "started", "experiment": null}'
    assert parse_event(stamped)["phase"] == "build"


def test_eta_from_the_mean_experiment_time():
    def ev(t, phase, state, exp=None, index=None):
        return {"phase": phase, "state": state, "experiment": exp, "index": index, "total": 4,
                "time": f"2026-11-27T00:{t:02d}:00Z"}

    p = Progress()
    for e in (ev(0, "run", "started"), ev(1, "dataset", "started", "a", 1), ev(11, "benchmark", "finished", "a", 1),
              ev(11, "dataset", "started", "b", 2), ev(31, "benchmark", "finished", "b", 2),
              ev(31, "dataset", "started", "c", 3), ev(36, "benchmark", "started", "c", 3)):
        p = advance(p, e)
    # mean 15 min per experiment; c has run 5 min of it, d is still to come: 10 + 15 minutes
    assert p.experiment_seconds == (600.0, 1200.0)
    assert p.eta_s == pytest.approx(25 * 60)
    assert p.elapsed_s == 36 * 60


def event(reason, message, count=1):
    return SimpleNamespace(reason=reason, message=message, count=count,
                           last_timestamp=datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc), event_time=None,
                           first_timestamp=None, involved_object=SimpleNamespace(kind="Pod", name="p-1"))


@pytest.mark.parametrize(
    ("reason", "message", "expected"),
    [
        ("FailedScheduling", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.", "8 free GPUs"),
        ("FailedScheduling", "0/1 nodes are available: 1 node(s) didn't match node selector.", "node selector"),
        ("Failed", "Failed to pull image \"x\": not found", "check ARTIFACT_REGISTRY"),
        ("Evicted", "The node was low on resource: memory.", "results already uploaded are kept"),
        ("BackoffLimitExceeded", "Job has reached the specified backoff limit", "allowed retries"),
        ("DeadlineExceeded", "Job was active longer than specified deadline", "activeDeadlineSeconds"),
        ("FailedMount", "MountVolume.SetUp failed for volume \"results\"", "GCS FUSE"),
        ("SomethingNew", "as the server said", "SomethingNew: as the server said"),
    ],
)
def test_events_are_explained_in_one_line(reason, message, expected):
    line = explain_event(event(reason, message))
    assert expected in line.text and "\n" not in str(line)
    assert str(line).startswith("03:00:00 Pod/p-1: ")


def test_repeated_events_show_their_count():
    assert explain_event(event("BackOff", "Back-off restarting failed container", count=4)).text.endswith("(x4)")


def test_kubelet_timestamps_compare_in_time_order():
    a, _ = _split_timestamp("2026-11-27T03:10:00.5Z x")
    b, _ = _split_timestamp("2026-11-27T03:10:00.123456789Z y")
    c, text = _split_timestamp("2026-11-27T03:10:01Z z z")
    assert b < a < c and text == "z z"
