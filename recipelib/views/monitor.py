"""Showing a run as it goes: a live ipywidgets panel in JupyterLab, plain text lines headless.

Headless means papermill or a terminal: no front end renders widgets there, so the same updates are
printed as one line per change, and the notebook ends when the run does.
"""

from __future__ import annotations

import os
from collections import deque
from datetime import datetime
from typing import Any

from recipelib.monitor import Outcome, RunStatus
from recipelib.results import layout


def has_widget_frontend() -> bool:
    """True inside a kernel started by a Jupyter server (JupyterLab sets ``JPY_SESSION_NAME``), where
    widgets render; False under papermill, nbclient or a plain Python process."""
    if not os.environ.get("JPY_SESSION_NAME"):
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


class TextView:
    """One line per status change; log lines as they come if ``show_log``."""

    def __init__(self, *, show_log: bool = True) -> None:
        self.show_log = show_log

    def status(self, st: RunStatus) -> None:
        now = datetime.now().strftime("%H:%M:%S")
        print(f"[{now}] {st.state}: {st.reason} | {st.progress.describe()}", flush=True)
        for event in st.events[-3:]:
            print(f"           {event}", flush=True)

    def line(self, text: str) -> None:
        if self.show_log:
            print(f"  | {text}", flush=True)

    def close(self, outcome: Outcome) -> None:
        pass


class WidgetView:
    """A panel: state, a progress bar over the experiments, the launcher's phase, events, the log tail."""

    def __init__(self, release: str, *, tail: int = 15) -> None:
        import ipywidgets as w
        from IPython.display import display

        self.header = w.HTML(f"<b>{release}</b>: connecting...")
        self.bar = w.IntProgress(value=0, min=0, max=1, description="experiments", bar_style="info")
        self.phase = w.HTML("")
        self.events = w.HTML("")
        self.log = w.HTML("")
        self.tail: deque[str] = deque(maxlen=tail)
        self.panel = w.VBox([self.header, self.bar, self.phase, self.events, self.log])
        self.panel.add_class("recipelib-monitor")
        display(self.panel)

    def status(self, st: RunStatus) -> None:
        import html

        colour = {"Complete": "green", "Failed": "red", "Running": "#1a73e8"}.get(st.state, "#b06000")
        self.header.value = (f"<b>{html.escape(st.release)}</b> <span style='color:{colour}'>{st.state}</span>: "
                             f"{html.escape(st.reason)}")
        p = st.progress
        self.bar.max = max(p.total or 1, 1)
        self.bar.value = min(p.done, self.bar.max)
        self.bar.bar_style = {"Complete": "success", "Failed": "danger"}.get(st.state, "info")
        self.phase.value = html.escape(p.describe())
        self.events.value = "<br>".join(html.escape(str(e)) for e in st.events[-5:])

    def line(self, text: str) -> None:
        import html

        self.tail.append(text)
        self.log.value = "<pre style='margin:0'>" + html.escape("\n".join(self.tail)) + "</pre>"

    def close(self, outcome: Outcome) -> None:
        self.status(outcome.status)


def make_view(release: str, *, widgets: bool | None = None, show_log: bool = True) -> Any:
    use_widgets = has_widget_frontend() if widgets is None else widgets
    return WidgetView(release) if use_widgets else TextView(show_log=show_log)


def watch(
    cluster: Any,
    settings: Any,
    release: str,
    *,
    timeout_s: float = 86400,
    widgets: bool | None = None,
    show_log: bool = True,
    fail_on_error: bool = True,
    storage_client: Any = None,
) -> Outcome:
    """Follow ``release`` to its end, showing it live; on failure say why, show the last log lines and
    which experiments' results are already safe in the bucket, then raise (if ``fail_on_error``)."""
    from recipelib.errors import RecipelibError
    from recipelib.monitor import kept_results, wait

    view = make_view(release, widgets=widgets, show_log=show_log)
    outcome = wait(cluster, release, timeout_s=timeout_s, on_line=view.line, on_status=view.status)
    view.close(outcome)
    st = outcome.status
    print(f"\n{release}: {st.state} - {st.reason}")
    print(f"Launcher: {st.progress.describe()}")
    if st.run_id and settings.gcs_bucket:
        if storage_client is None:
            from recipelib.results.store import make_client

            storage_client = make_client(endpoint=settings.gcs_endpoint)
        kept = kept_results(storage_client, settings.gcs_bucket, settings.results_prefix, release, st.run_id)
        where = f"gs://{settings.gcs_bucket}/{settings.results_prefix}/{layout.run_prefix(release, st.run_id)}/"
        print(f"Results kept in {where}: {', '.join(kept) if kept else 'none yet'}")
    if not outcome.succeeded:
        print("Last log lines:", *outcome.last_lines[-15:], sep="\n  ")
        if fail_on_error:
            raise RecipelibError(f"run {release} {st.state.lower()}: {st.reason}")
    return outcome
