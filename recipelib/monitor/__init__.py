"""Watching a release: Job, Kueue admission, pods, events explained, the launcher's progress, logs, waiting."""

from recipelib.monitor.events import EventLine, explain_event
from recipelib.monitor.logs import follow_logs, read_log
from recipelib.monitor.progress import Progress, parse_event, progress_from_lines
from recipelib.monitor.state import RunStatus, latest_release, status
from recipelib.monitor.waiting import Outcome, kept_results, wait

__all__ = [
    "EventLine", "Outcome", "Progress", "RunStatus", "explain_event", "follow_logs", "kept_results",
    "latest_release", "parse_event", "progress_from_lines", "read_log", "status", "wait",
]
