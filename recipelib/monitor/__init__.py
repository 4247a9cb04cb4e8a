"""Watching a release: Job, Kueue admission, pods, events explained, the launcher's progress, logs, waiting."""

from recipelib.monitor.progress import Progress, parse_event, progress_from_lines
from recipelib.monitor.state import (
    EventLine,
    Outcome,
    RunStatus,
    explain_event,
    follow_logs,
    kept_results,
    latest_release,
    read_log,
    status,
    wait,
)

__all__ = [
    "EventLine", "Outcome", "Progress", "RunStatus", "explain_event", "follow_logs", "kept_results",
    "latest_release", "parse_event", "progress_from_lines", "read_log", "status", "wait",
]
