"""Where a benchmark run is, from the launcher's ``RECIPE_EVENT {json}`` lines alone.

The launcher announces every phase change on one line (format documented in ``launcher/launch.py``);
this folds those lines into a small state: phase, experiment i of n, elapsed, and an estimate of what
remains from the experiments already finished. Pure functions: the monitor feeds it log lines.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

EVENT_PREFIX = "RECIPE_EVENT "


def parse_event(line: str) -> dict[str, Any] | None:
    """The event on ``line`` (a kubelet timestamp prefix is allowed), or None for a readable line."""
    at = line.find(EVENT_PREFIX)
    if at < 0:
        return None
    try:
        event = json.loads(line[at + len(EVENT_PREFIX):])
    except ValueError:
        return None
    return event if isinstance(event, dict) and "phase" in event and "state" in event else None


def _time(event: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(event.get("time", "")).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Progress:
    """The run as the launcher last described it."""

    phase: str | None = None
    state: str | None = None
    experiment: str | None = None
    index: int | None = None
    total: int | None = None
    started: datetime | None = None
    last: datetime | None = None
    finished_experiments: tuple[str, ...] = ()
    failed_experiments: tuple[str, ...] = ()
    skipped_experiments: tuple[str, ...] = ()
    experiment_seconds: tuple[float, ...] = ()
    run_state: str | None = None
    error: str | None = None
    run_error: str | None = None  # the launcher's own reason on ``run failed`` (config, preflight, setup, store)
    run_status: str | None = None  # the run's recorded status on its last run event: succeeded or failed
    exit_code: int | None = None
    attempts: int = 0  # pods that started the launcher (a Job retry is one more)
    experiment_errors: tuple[tuple[str, str], ...] = ()  # (experiment id, the launcher's reason) per failure
    earlier_failure: str | None = None  # why an earlier attempt failed, kept when a retry starts
    _experiment_started: dict[str, datetime] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> int:
        """Experiments with a final record; one a retry skips because it is recorded counts once."""
        return len({*self.finished_experiments, *self.failed_experiments, *self.skipped_experiments})

    @property
    def failure(self) -> str | None:
        """The launcher's own reason the run failed, in one line (None unless its events say it failed).

        This, not the Job's condition (``BackoffLimitExceeded``), is what a user can act on: which
        experiment failed and why, or which setting the launcher refused.
        """
        if self.run_state == "failed":
            return self._own_failure() or self.earlier_failure or "the launcher failed without saying why"
        if self.run_state == "skipped" and self.run_status == "failed":  # a retry found the run closed
            return self.earlier_failure or self._own_failure() or (
                "the run had already finished as failed in an earlier pod (its run.json exists), and this pod "
                "re-ran nothing: deploy with a new run_id to measure again")
        return None

    def _own_failure(self) -> str | None:
        if self.run_error:
            return _one_line(self.run_error)
        failed = list(self.failed_experiments)
        if not failed:
            return None
        errors = dict(self.experiment_errors)
        first = failed[0]
        line = f"{len(failed)} of {self.total or '?'} experiment(s) failed; {first}: " + _one_line(
            errors.get(first, "no reason given"))
        same = [e for e in failed[1:] if _shape(errors.get(e, "")) == _shape(errors.get(first, ""))]
        other = [e for e in failed[1:] if e not in same]
        if same:
            line += f" (the same for {len(same)} more)"
        if other:
            line += f"; {other[0]}: " + _one_line(errors.get(other[0], "no reason given"))
            if len(other) > 1:
                line += f" (and {len(other) - 1} more failed)"
        return line

    @property
    def elapsed_s(self) -> float | None:
        if self.started and self.last:
            return (self.last - self.started).total_seconds()
        return None

    @property
    def eta_s(self) -> float | None:
        """Seconds left: the mean finished experiment times those still to run (None before the first)."""
        if not self.total or not self.experiment_seconds:
            return None
        if self.run_state in ("finished", "failed"):
            return 0.0
        mean = sum(self.experiment_seconds) / len(self.experiment_seconds)
        left = max(self.total - self.done, 0) * mean
        if self.experiment in self._experiment_started and self.last and self.experiment not in (
            *self.finished_experiments, *self.failed_experiments
        ):
            left -= min((self.last - self._experiment_started[self.experiment]).total_seconds(), mean)
        return max(left, 0.0)

    def describe(self) -> str:
        if self.phase is None:
            return "launcher not started yet"
        where = f"{self.phase} {self.state}"
        if self.phase == "run" and self.state == "skipped" and self.run_status:
            where = f"run already finished ({self.run_status}) before this pod"
        if self.experiment and self.index and self.total:
            where += f", experiment {self.index}/{self.total} ({self.experiment})"
        elif self.total:
            where += f", {self.total} experiment(s)"
        parts = [where, f"{self.done}/{self.total or '?'} experiments done"]
        if self.elapsed_s is not None:
            parts.append(f"elapsed {_duration(self.elapsed_s)}")
        if self.eta_s is not None:
            parts.append(f"about {_duration(self.eta_s)} left")
        if self.error:
            parts.append(f"error: {_one_line(self.error)}")
        return "; ".join(parts)


_LIMIT = 240


def _one_line(text: str, limit: int = _LIMIT) -> str:
    """A reason as one line of at most ``limit`` characters (the whole text stays in the log)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _shape(error: str) -> str:
    """An error with its numbers and experiment ids blanked: errors of one cause compare equal."""
    return re.sub(r"isl\d+-osl\d+-n\d+(-c\d+)?(-stream)?|\d+", "#", error)


def _duration(seconds: float) -> str:
    h, rest = divmod(round(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def advance(progress: Progress, event: dict[str, Any]) -> Progress:
    """The progress after one event; unknown phases and states are kept as reported."""
    when = _time(event)
    phase, state, exp = event.get("phase"), event.get("state"), event.get("experiment")
    changes: dict[str, Any] = {"phase": phase, "state": state, "last": when or progress.last}
    if progress.started is None:
        changes["started"] = when
    if isinstance(event.get("total"), int):
        changes["total"] = event["total"]
    if exp:
        changes["experiment"] = exp
        changes["index"] = event.get("index") if isinstance(event.get("index"), int) else progress.index
    if event.get("error"):
        changes["error"] = str(event["error"])
    if phase == "run":
        changes.update(_run_changes(progress, state, event))
    if exp and state == "failed" and event.get("error"):
        changes["experiment_errors"] = (*((e, m) for e, m in progress.experiment_errors if e != exp),
                                        (exp, str(event["error"])))
    started = dict(progress._experiment_started)
    if exp and state == "started" and phase in ("dataset", "benchmark") and exp not in started and when:
        started[exp] = when
    changes["_experiment_started"] = started
    recorded = (*progress.finished_experiments, *progress.failed_experiments)
    if phase == "benchmark" and exp and state in ("finished", "failed", "skipped") and not (
            state == "skipped" and exp in recorded):  # a retry skips what an earlier pod recorded
        key = {"finished": "finished_experiments", "failed": "failed_experiments",
               "skipped": "skipped_experiments"}[state]
        if exp not in getattr(progress, key):
            changes[key] = (*getattr(progress, key), exp)
            if state == "finished" and exp in started and when:
                changes["experiment_seconds"] = (*progress.experiment_seconds,
                                                 (when - started[exp]).total_seconds())
    return replace(progress, **changes)


def _run_changes(progress: Progress, state: Any, event: dict[str, Any]) -> dict[str, Any]:
    """A ``run`` event: a new attempt starts afresh (keeping why the last one failed), or the attempt ends."""
    if state == "started":
        # exit_code stays: a retry that finds the run closed exits as the attempt that closed it
        return {"attempts": progress.attempts + 1, "run_state": None, "run_status": None, "run_error": None,
                "earlier_failure": progress.failure or progress.earlier_failure}
    changes: dict[str, Any] = {}
    if state in ("finished", "failed", "skipped"):
        changes["run_state"] = state
    if state == "failed" and event.get("error"):
        changes["run_error"] = str(event["error"])
    if isinstance(event.get("status"), str):
        changes["run_status"] = event["status"]
    elif state in ("finished", "failed"):
        changes["run_status"] = "succeeded" if state == "finished" else "failed"
    if isinstance(event.get("exit_code"), int):
        changes["exit_code"] = event["exit_code"]
    return changes


def progress_from_lines(lines: list[str], progress: Progress | None = None) -> Progress:
    progress = progress or Progress()
    for line in lines:
        event = parse_event(line)
        if event is not None:
            progress = advance(progress, event)
    return progress
