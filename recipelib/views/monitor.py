"""Showing a run as it goes: a live ipywidgets panel in JupyterLab, plain text lines headless.

Headless means papermill or a terminal: no front end renders widgets there, so the same updates are
printed, one line per change, and the notebook ends when the run does. The launcher's machine-readable
``RECIPE_EVENT {json}`` lines are for programs: a person reads them as sentences ("build finished in
8m12s"), each event once, and never as raw JSON (:class:`EventSentences`).
"""

from __future__ import annotations

import html
import os
import re
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import recipelib.results.layout as layout
from recipelib.monitor.events import EventLine
from recipelib.monitor.progress import EVENT_PREFIX, parse_event
from recipelib.monitor.state import RunStatus
from recipelib.monitor.waiting import Outcome

__all__ = ["EventSentences", "TextView", "WidgetView", "duration", "has_widget_frontend", "make_view",
           "readable_lines", "watch"]


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


# -- the launcher's events as sentences --------------------------------------------------------------------


def duration(seconds: float) -> str:
    """``492`` -> ``8m12s``; ``4000`` -> ``1h06m``; ``2.5`` -> ``2.5s`` (short phases keep a decimal)."""
    if seconds < 10:
        return f"{seconds:.1f}s".replace(".0s", "s")
    h, rest = divmod(round(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _size(count: Any) -> str:
    value = float(count)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover - the loop always returns


def _clock(when: datetime | None) -> str:
    """``HH:MM:SS`` in this machine's time zone (events carry UTC; the status lines use the local clock)."""
    if when is None:
        return datetime.now().strftime("%H:%M:%S")
    return (when.astimezone() if when.tzinfo else when).strftime("%H:%M:%S")


def _event_time(event: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(event.get("time", "")).replace("Z", "+00:00"))
    except ValueError:
        return None


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


class EventSentences:
    """Turns launcher events (format: ``launcher/launch.py``) into sentences, each distinct event once.

    Stateful on purpose: "experiment 3/9 ... finished" depends on whether its benchmark failed earlier,
    and an event seen twice (a log read again after a dropped connection) must not be shown twice.

    >>> s = EventSentences()
    >>> s.sentence({"phase": "build", "state": "finished", "experiment": None, "seconds": 492})
    'build finished in 8m12s'
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._failed: dict[str, str] = {}

    def sentence(self, event: dict[str, Any]) -> str | None:
        """The event in words, or None when this very event was already told."""
        import json

        key = json.dumps(event, sort_keys=True, default=str)
        if key in self._seen:
            return None
        self._seen.add(key)
        return self._words(event)

    def line(self, event: dict[str, Any]) -> str | None:
        """``[HH:MM:SS] sentence`` with the event's own time, or None when already told."""
        words = self.sentence(event)
        return None if words is None else f"[{_clock(_event_time(event))}] {words}"

    def _words(self, e: dict[str, Any]) -> str:
        phase, state = str(e.get("phase")), str(e.get("state"))
        took = f" in {duration(float(e['seconds']))}" if isinstance(e.get("seconds"), int | float) else ""
        after = f" after {duration(float(e['seconds']))}" if took else ""
        error = _one_line(e["error"]) if e.get("error") else ""
        reason = _one_line(e["reason"]) if e.get("reason") else ""
        exp = e.get("experiment")
        if exp:
            where = f"experiment {e['index']}/{e['total']} {exp}" if e.get("index") and e.get("total") else \
                f"experiment {exp}"
            if state == "failed":
                self._failed[str(exp)] = error
            return self._experiment_words(where, str(exp), phase, state, took, after, error, reason, e)
        if phase == "run":
            total = e.get("total")
            if state == "started":
                run = f"run {e['run_id']}" if e.get("run_id") else "run"
                attempt = f", attempt {e['attempt']}" if e.get("attempt") else ""
                replay = " (replay of a recorded run, not a measurement)" if e.get("replay") else ""
                return f"{run} started: {total if total is not None else '?'} experiment(s){attempt}{replay}"
            if state == "finished":
                return f"run finished: {total}/{total} experiment(s) reported" if total else "run finished"
            if state == "skipped":
                return f"run skipped: {reason or 'nothing to do'}" + (f" (status {e['status']})" if e.get("status")
                                                                       else "")
            failed = e.get("failed")
            if isinstance(failed, list) and failed:
                return (f"run failed: {len(failed)} of {total or '?'} experiment(s) without a report "
                        f"({', '.join(map(str, failed))})")
            return f"run failed: {error or 'no reason given'}"
        what = {"preflight": "GPU preflight", "build": "engine build", "download": "download"}.get(phase, phase)
        if state == "started":
            model = f" of {e['model']}" if phase == "download" and e.get("model") else ""
            mode = f" ({e['mode']} mode)" if phase == "preflight" and e.get("mode") else ""
            return f"{what}{model}{mode} started"
        if state == "finished":
            size = f" ({_size(e['bytes'])})" if isinstance(e.get("bytes"), int) and phase == "download" else ""
            warning = f"; warning: {_one_line(e['warning'])}" if e.get("warning") else ""
            name = "build" if phase == "build" else what
            return f"{name} finished{took}{size}{warning}"
        if state == "skipped":
            return f"{what} skipped: {reason}" if reason else f"{what} skipped"
        if state == "failed":
            return f"{what} failed{after}: {error or 'no reason given'}"
        return f"{what} {state}" + (f": {error or reason}" if error or reason else "")

    def _experiment_words(self, where: str, exp: str, phase: str, state: str, took: str, after: str, error: str,
                          reason: str, e: dict[str, Any]) -> str:
        if phase == "upload":
            if state == "started":
                return f"{where}: uploading its results"
            if state == "finished":
                if exp in self._failed:
                    return f"{where} failed: its output kept for inspection"
                return f"{where} finished: report kept"
            if state == "failed":
                return f"{where}: upload failed{after}: {error or 'no reason given'}"
        if state == "skipped":
            return f"{where} skipped: {reason}" if reason else f"{where} skipped"
        if state == "failed":
            return f"{where}: {phase} failed{after}: {error or 'no reason given'}"
        if phase == "dataset":
            return f"{where}: preparing the dataset" if state == "started" else f"{where}: dataset ready{took}"
        if phase == "benchmark":
            return f"{where}: benchmark started" if state == "started" else f"{where}: benchmark finished{took}"
        return f"{where}: {phase} {state}"


def readable_lines(lines: Iterable[str]) -> list[str]:
    """Log lines for a person: events as sentences (each once), every other line as it is."""
    sentences = EventSentences()
    out: list[str] = []
    for line in lines:
        event = parse_event(line)
        if event is not None:
            if (said := sentences.line(event)) is not None:
                out.append(said)
        elif EVENT_PREFIX not in line:  # a malformed event line is noise for a person either way
            out.append(line)
    return out


# -- headless ----------------------------------------------------------------------------------------------


_COUNT = re.compile(r" \(x\d+\)$")


def _event_key(e: EventLine) -> tuple[str, str, str, str]:
    """The same Kubernetes event seen again, only with a higher count, is not news."""
    return (e.kind, e.name, e.reason, _COUNT.sub("", e.text))


class TextView:
    """One line per change: the Job's state when it changes, each Kubernetes event and each launcher event
    once (as a sentence); the launcher's readable log lines (``  | ...``) if ``show_log``."""

    def __init__(self, *, show_log: bool = True) -> None:
        self.show_log = show_log
        self.sentences = EventSentences()
        self._state: tuple[str, str] | None = None
        self._events: set[tuple[str, str, str, str]] = set()

    def status(self, st: RunStatus) -> None:
        if (st.state, st.reason) != self._state:
            self._state = (st.state, st.reason)
            print(f"[{_clock(None)}] {st.state}: {st.reason}", flush=True)
        for event in st.events:
            key = _event_key(event)
            if key not in self._events:
                self._events.add(key)
                print(f"[{_clock(event.time)}] {event.kind}/{event.name}: {event.text}", flush=True)

    def line(self, text: str) -> None:
        event = parse_event(text)
        if event is not None:
            said = self.sentences.line(event)
            if said is not None:
                print(said, flush=True)
        elif self.show_log and EVENT_PREFIX not in text:
            print(f"  | {text}", flush=True)

    def close(self, outcome: Outcome) -> None:
        self.status(outcome.status)


# -- JupyterLab --------------------------------------------------------------------------------------------


_COLOURS = {"Complete": "green", "Failed": "red", "Running": "#1a73e8"}


class WidgetView:
    """A panel that stays put: state, a progress bar over the experiments with its count, the launcher's
    phase, the latest launcher and Kubernetes events; below it, collapsed, the launcher's log.

    The log is kept to ``tail`` lines in a scrolling box inside a closed Accordion, so however much the
    tools print, the panel never moves off screen; the labels sit in their own widgets at their natural
    width (an ``IntProgress`` description is cut to about 80 pixels: "experime...").
    """

    def __init__(self, release: str, *, tail: int = 200, recent: int = 6, refresh_s: float = 0.5) -> None:
        import ipywidgets as w
        from IPython.display import display

        auto = w.Layout(width="auto", flex="0 0 auto")
        self.header = w.HTML(f"<b>{html.escape(release)}</b>: connecting...", layout=w.Layout(width="100%"))
        self.label = w.HTML("<b>experiments</b>", layout=auto)
        self.bar = w.IntProgress(value=0, min=0, max=1, bar_style="info", layout=w.Layout(width="320px"))
        self.count = w.HTML("0/?", layout=auto)
        self.label.add_class("recipelib-label")
        self.count.add_class("recipelib-count")
        self.phase = w.HTML("", layout=w.Layout(width="100%"))
        self.recent = w.HTML("", layout=w.Layout(width="100%"))
        self.log = w.HTML("", layout=w.Layout(width="100%"))
        self.log_box = w.Accordion(children=[self.log], selected_index=None, layout=w.Layout(width="100%"))
        self.log_box.set_title(0, f"Launcher log (last {tail} lines)")
        self.log_box.add_class("recipelib-log")
        row = w.HBox([self.label, self.bar, self.count], layout=w.Layout(align_items="center", width="100%"))
        self.panel = w.VBox([self.header, row, self.phase, self.recent], layout=w.Layout(width="100%"))
        self.panel.add_class("recipelib-monitor")
        self.box = w.VBox([self.panel, self.log_box], layout=w.Layout(width="100%"))
        self.sentences = EventSentences()
        self.tail: deque[str] = deque(maxlen=tail)
        self.said: deque[str] = deque(maxlen=recent)
        self.k8s: deque[str] = deque(maxlen=recent)
        self._k8s_seen: set[tuple[str, str, str, str]] = set()
        self.refresh_s = refresh_s
        self._drawn = 0.0
        display(self.box)

    def status(self, st: RunStatus) -> None:
        colour = _COLOURS.get(st.state, "#b06000")
        self.header.value = (f"<div style='line-height:1.4'><b>{html.escape(st.release)}</b> "
                             f"<span style='color:{colour}'>{st.state}</span>: {html.escape(st.reason)}</div>")
        p = st.progress
        self.bar.max = max(p.total or 1, 1)
        self.bar.value = min(p.done, self.bar.max)
        self.bar.bar_style = {"Complete": "success", "Failed": "danger"}.get(st.state, "info")
        self.count.value = f"{p.done}/{p.total or '?'} done"
        self.phase.value = f"<div style='line-height:1.4'>{html.escape(p.describe())}</div>"
        for event in st.events:
            key = _event_key(event)
            if key not in self._k8s_seen:
                self._k8s_seen.add(key)
                self.k8s.append(f"[{_clock(event.time)}] {event.kind}/{event.name}: {event.text}")
        self._draw(force=True)

    def line(self, text: str) -> None:
        event = parse_event(text)
        if event is not None:
            said = self.sentences.line(event)
            if said is None:
                return
            self.said.append(said)
            self.tail.append(f"» {said}")
        elif EVENT_PREFIX not in text:
            self.tail.append(text)
        self._draw()

    def _draw(self, *, force: bool = False) -> None:
        """Redraw at most every ``refresh_s`` (a tool can print thousands of lines a minute)."""
        now = time.monotonic()
        if not force and now - self._drawn < self.refresh_s:
            return
        self._drawn = now
        blocks = []
        if self.said:
            blocks.append("<b>Launcher</b><br>" + "<br>".join(html.escape(s) for s in self.said))
        if self.k8s:
            blocks.append("<b>Kubernetes</b><br>" + "<br>".join(html.escape(s) for s in self.k8s))
        self.recent.value = "<div style='font-size:0.9em;line-height:1.35'>" + "<br>".join(blocks) + "</div>"
        text = "\n".join(self.tail) or "(no log lines yet: the launcher's output shows here once its container runs)"
        # column-reverse keeps the box scrolled to its newest line, as a terminal is
        self.log.value = ("<div style='max-height:24em;overflow:auto;display:flex;flex-direction:column-reverse'>"
                          "<pre style='margin:0;flex-shrink:0;white-space:pre-wrap;word-break:break-all'>"
                          + html.escape(text) + "</pre></div>")

    def close(self, outcome: Outcome) -> None:
        self.status(outcome.status)


def make_view(release: str, *, widgets: bool | None = None, show_log: bool = True) -> TextView | WidgetView:
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
        print("Last log lines:", *readable_lines(outcome.last_lines)[-15:], sep="\n  ")
        if fail_on_error:
            raise RecipelibError(f"run {release} {st.state.lower()}: {st.reason}")
    return outcome
