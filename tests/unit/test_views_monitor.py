"""The monitor's views: headless, one line per event, the launcher's events as sentences, never twice and never
as raw ``RECIPE_EVENT`` JSON; in JupyterLab, a panel above a collapsed log with whole labels.

The event lines are written by the launcher's own ``EventLog`` (launcher/events.py), the producer the monitor
reads in a pod, so the format under test is the real one.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from datetime import datetime, timezone

import pytest
from helpers import REPO

from recipelib.monitor import EventLine, Outcome, Progress, RunStatus
from recipelib.views.monitor import EventSentences, TextView, WidgetView, duration, readable_lines

_spec = importlib.util.spec_from_file_location("launcher_events", REPO / "launcher" / "events.py")
assert _spec and _spec.loader
launcher_events = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = launcher_events  # dataclasses look their module up there
_spec.loader.exec_module(launcher_events)

IDS = ["isl128-osl128-n30000", "isl2048-osl128-n3000", "isl128-osl2048-n3000"]


def sweep_log(*, replay: bool = False) -> list[str]:
    """A three-experiment run as the launcher logs it: the second experiment's benchmark fails."""
    out = io.StringIO()
    log = launcher_events.EventLog(stream=out, redact=launcher_events.Redactor(), replay=replay)
    log.event("run", "started", total=3, run_id="run-1", release="bob-llama", attempt="a1")
    log.event("preflight", "skipped", reason="disabled")
    log.event("download", "started", model="meta-llama/Llama-3.1-405B")
    log.info("downloading 191 files")
    log.event("download", "finished", seconds=181.2, bytes=812_000_000_000)
    log.event("build", "started", engine="e1")
    log.raw("[TensorRT-LLM] building rank 0")
    log.event("build", "finished", engine="e1", seconds=492.0)
    for index, exp in enumerate(IDS, start=1):
        where = {"experiment": exp, "index": index, "total": 3}
        log.event("dataset", "started", **where)
        log.event("dataset", "finished", seconds=3.5, bytes=1000, **where)
        log.event("benchmark", "started", **where)
        log.raw("Token Throughput (tokens/sec):  3914.4509")
        if index == 2:
            log.event("benchmark", "failed", seconds=61.0, error="trtllm-bench exited with code 1:\nOOM", **where)
        else:
            log.event("benchmark", "finished", seconds=982.4, **where)
        log.event("upload", "started", **where)
        log.event("upload", "finished", seconds=0.4, bytes=24003, objects=4, **where)
    log.event("run", "failed", total=3, status="failed", exit_code=1, failed=[IDS[1]])
    return out.getvalue().splitlines()


def printed(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_duration_reads_like_a_person_writes_it() -> None:
    assert [duration(s) for s in (0.01, 2.5, 42, 492, 3725)] == ["0s", "2.5s", "42s", "8m12s", "1h02m"]


def test_headless_shows_each_launcher_event_once_as_a_sentence(capsys) -> None:
    lines = sweep_log()
    events = [line for line in lines if line.startswith("RECIPE_EVENT ")]
    view = TextView(show_log=False)
    for line in lines:
        view.line(line)
    out = printed(capsys)
    assert len(out) == len(events)  # one line per event, and nothing else with show_log=False
    assert not any("RECIPE_EVENT" in line or "{" in line for line in out)
    text = "\n".join(out)
    for sentence in ("run run-1 started: 3 experiment(s), attempt a1", "GPU preflight skipped: disabled",
                     "download of meta-llama/Llama-3.1-405B started", "download finished in 3m01s (812.0 GB)",
                     "build finished in 8m12s", "experiment 1/3 isl128-osl128-n30000: dataset ready in 3.5s",
                     "experiment 1/3 isl128-osl128-n30000: benchmark finished in 16m22s",
                     "experiment 1/3 isl128-osl128-n30000 finished: report kept",
                     "experiment 2/3 isl2048-osl128-n3000: benchmark failed after 1m01s: trtllm-bench exited "
                     "with code 1: OOM",
                     "experiment 2/3 isl2048-osl128-n3000 failed: its output kept for inspection",
                     "experiment 3/3 isl128-osl2048-n3000 finished: report kept",
                     "run failed: 1 of 3 experiment(s) without a report (isl2048-osl128-n3000)"):
        assert sentence in text, sentence
    assert all(line.startswith("[") and line[9] == "]" for line in out)  # [HH:MM:SS] first

    for line in lines:  # the same log again (a re-read after a dropped connection): nothing new to say
        view.line(line)
    assert printed(capsys) == []


def test_headless_log_lines_are_kept_apart_and_raw_events_never_printed(capsys) -> None:
    view = TextView(show_log=True)
    for line in [*sweep_log(replay=True), "RECIPE_EVENT {not json"]:
        view.line(line)
    out = printed(capsys)
    log_lines = [line for line in out if line.startswith("  | ")]
    assert "  | [replay] [TensorRT-LLM] building rank 0" in log_lines
    assert len(log_lines) == 1 + 1 + 3  # the info line, the build line, three throughput lines
    assert not any("RECIPE_EVENT" in line for line in out)
    assert "(replay of a recorded run, not a measurement)" in out[0]


def status(events: tuple[EventLine, ...], state: str = "Running", reason: str = "1 pod(s) active") -> RunStatus:
    return RunStatus(release="bob-llama", namespace="ns", state=state, reason=reason, events=events,
                     progress=Progress(phase="build", state="started", total=3))


def test_headless_status_says_each_state_and_kubernetes_event_once(capsys) -> None:
    at = datetime(2026, 11, 29, 9, 24, 12, tzinfo=timezone.utc)
    pulled = EventLine(at, "Pod", "bob-llama-x", "Pulled", "image ready: pulled")
    backoff = EventLine(at, "Pod", "bob-llama-x", "BackOff", "restarting after a failure: back-off")
    view = TextView()
    view.status(status((pulled,)))
    view.status(status((pulled,)))  # polled again, nothing changed
    view.status(status((pulled, backoff)))
    view.status(status((pulled, EventLine(at, "Pod", "bob-llama-x", "BackOff", backoff.text + " (x3)"))))
    view.status(status((pulled,), "Complete", "every experiment reported"))
    out = printed(capsys)
    assert len(out) == 4, out
    assert out[0].endswith("] Running: 1 pod(s) active")
    assert out[1].endswith("Pod/bob-llama-x: image ready: pulled")
    assert out[2].endswith("Pod/bob-llama-x: restarting after a failure: back-off")
    assert out[3].endswith("] Complete: every experiment reported")


def test_readable_lines_turn_events_into_sentences_once() -> None:
    lines = sweep_log()
    readable = readable_lines([*lines, *lines[-3:]])
    assert not any("RECIPE_EVENT" in line for line in readable)
    assert readable.count("Token Throughput (tokens/sec):  3914.4509") == 3  # readable lines kept as they are
    assert sum("run failed" in line for line in readable) == 1


def test_sentences_cover_the_other_states() -> None:
    say = EventSentences().sentence
    assert say({"phase": "run", "state": "skipped", "experiment": None, "reason": "run.json exists",
                "status": "succeeded"}) == "run skipped: run.json exists (status succeeded)"
    assert say({"phase": "run", "state": "failed", "experiment": None, "error": "invalid config: tp_size"}) == \
        "run failed: invalid config: tp_size"
    assert say({"phase": "build", "state": "skipped", "experiment": None, "reason": "engine cached on this node"}) \
        == "engine build skipped: engine cached on this node"
    assert say({"phase": "download", "state": "failed", "experiment": None, "seconds": 12.0, "error": "403"}) == \
        "download failed after 12s: 403"
    assert say({"phase": "benchmark", "state": "skipped", "experiment": "isl1-osl1-n1", "index": 1, "total": 2,
                "reason": "already recorded (succeeded)"}) == \
        "experiment 1/2 isl1-osl1-n1 skipped: already recorded (succeeded)"
    assert say({"phase": "upload", "state": "failed", "experiment": "isl1-osl1-n1", "index": 1, "total": 2,
                "seconds": 1.0, "error": "503"}) == "experiment 1/2 isl1-osl1-n1: upload failed after 1s: 503"


def test_widget_panel_sits_above_a_collapsed_log_with_whole_labels(capsys) -> None:
    pytest.importorskip("ipywidgets")
    view = WidgetView("bob-llama", tail=5, refresh_s=0)
    view.status(status(()))
    assert "no log lines yet" in view.log.value  # an empty log still says what it is
    for line in sweep_log():
        view.line(line)
    final = RunStatus(release="bob-llama", namespace="ns", state="Failed", reason="launcher: 1 experiment failed",
                      progress=Progress(phase="run", state="failed", total=3,
                                        finished_experiments=(IDS[0], IDS[2]), failed_experiments=(IDS[1],)))
    view.close(Outcome(final, ()))
    assert view.box.children[0] is view.panel and view.box.children[1] is view.log_box  # panel on top
    assert view.log_box.selected_index is None  # the log starts closed
    assert view.label.value == "<b>experiments</b>" and view.label.layout.width == "auto"
    assert view.count.value == "3/3 done" and view.bar.value == 3 and view.bar.bar_style == "danger"
    assert view.bar.description == ""  # no description for ipywidgets to cut to "experime..."
    assert "RECIPE_EVENT" not in view.log.value and "RECIPE_EVENT" not in view.recent.value
    assert view.log.value.count("\n") == 4  # the last five lines only
    assert "run failed: 1 of 3 experiment(s)" in view.recent.value
