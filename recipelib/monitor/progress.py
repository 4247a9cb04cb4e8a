"""Where a benchmark run is, from the launcher's ``RECIPE_EVENT {json}`` lines alone.

The launcher announces every phase change on one line (format documented in ``launcher/launch.py``);
this folds those lines into a small state: phase, experiment i of n, elapsed, and an estimate of what
remains from the experiments already finished. Pure functions: the monitor feeds it log lines.
"""

from __future__ import annotations

import json
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
    _experiment_started: dict[str, datetime] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> int:
        return len(self.finished_experiments) + len(self.failed_experiments) + len(self.skipped_experiments)

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
            parts.append(f"error: {self.error}")
        return "; ".join(parts)


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
    started = dict(progress._experiment_started)
    if exp and state == "started" and phase in ("dataset", "benchmark") and exp not in started and when:
        started[exp] = when
    changes["_experiment_started"] = started
    if phase == "benchmark" and exp and state in ("finished", "failed", "skipped"):
        key = {"finished": "finished_experiments", "failed": "failed_experiments",
               "skipped": "skipped_experiments"}[state]
        if exp not in getattr(progress, key):
            changes[key] = (*getattr(progress, key), exp)
            if state == "finished" and exp in started and when:
                changes["experiment_seconds"] = (*progress.experiment_seconds,
                                                 (when - started[exp]).total_seconds())
    if phase == "run" and state in ("finished", "failed", "skipped"):
        changes["run_state"] = state
    return replace(progress, **changes)


def progress_from_lines(lines: list[str], progress: Progress | None = None) -> Progress:
    progress = progress or Progress()
    for line in lines:
        event = parse_event(line)
        if event is not None:
            progress = advance(progress, event)
    return progress
