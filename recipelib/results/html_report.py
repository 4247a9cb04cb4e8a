"""Export an analysis: the full results as CSV, each figure as PNG, and one self-contained HTML page.

The HTML page embeds its figures as base64 PNG and needs nothing else: it can be mailed, attached to an
issue or opened from a bucket. Tables are rendered by pandas with escaping on; the page template
(``recipelib/data/report.html.j2``) is rendered by Jinja2 with autoescape and ``StrictUndefined``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import jinja2
import pandas as pd

from recipelib.results.analysis import against_speed_of_light, compare_runs, export_csv, summary_table
from recipelib.results.plots import draw_figures, figure_png
from recipelib.results.records import ExperimentSpec
from recipelib.results.reference import compare_to_published, method_note_html, with_methods
from recipelib.results.serving_analysis import ServingAnalysis
from recipelib.results.table import MissingReport, Results

__all__ = ["Analysis", "ReportFiles", "analyse", "missing_reasons", "table_html", "write_report"]


@dataclass(frozen=True)
class Analysis:
    """Every table and figure of one analysis, computed once, shown by the notebook and written to disk."""

    summary: pd.DataFrame
    limits: pd.DataFrame
    published: pd.DataFrame
    comparison: pd.DataFrame | None
    figures: dict[str, bytes]  # name -> PNG, only the figures there is data for
    notes: dict[str, str] = field(default_factory=dict)  # name -> why that figure is left out


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    csv: Path
    figures: dict[str, Path]


def analyse(results: Results, *, gpu: str | None = None) -> Analysis:
    """Compute the tables and figures; ``gpu`` fills in the GPU where the reports do not name it."""
    frame = with_methods(results.frame, results.runs)
    summary = summary_table(frame)
    limits = against_speed_of_light(frame, gpu=gpu)
    published = compare_to_published(frame, gpu=gpu)
    runs = list(dict.fromkeys(frame["run"]))
    comparison = compare_runs(frame) if len(runs) > 1 else None
    drawn, notes = draw_figures(frame, limits=limits, published=published)
    figures = {name: figure_png(fig) for name, fig in drawn.items()}
    return Analysis(summary, limits, published, comparison, figures, notes)


def write_report(results: Results, out_dir: str | Path, *, gpu: str | None = None,
                 title: str = "TensorRT-LLM benchmark results", analysis: Analysis | None = None,
                 serving: ServingAnalysis | None = None) -> ReportFiles:
    """Write ``results.csv``, one PNG per figure and ``report.html`` into ``out_dir``; ``serving``
    (:func:`~recipelib.results.serving_analysis.analyse_serving`) adds the online serving sections."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    analysis = analysis or analyse(results, gpu=gpu)
    csv = export_csv(results.frame, out / "results.csv")
    figures = {}
    pngs = {**analysis.figures, **(serving.figures if serving else {})}
    for name, png in pngs.items():
        path = out / f"{name}.png"
        path.write_bytes(png)
        figures[name] = path
    page = _template().render(
        title=title,
        origin=results.origin,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        replay=bool(results.frame["replay"].any()),
        runs_html=_html(results.runs_table()),
        missing_html=_html(missing_reasons(results.missing)) if results.missing else "",
        summary_html=_html(analysis.summary),
        limits_html=_html(analysis.limits),
        published_html=method_note_html(analysis.published) + _html(analysis.published)
        if not analysis.published.empty else "",
        compare_html=_html(analysis.comparison) if analysis.comparison is not None else "",
        images={name: base64.b64encode(png).decode("ascii") for name, png in pngs.items()},
        notes={**analysis.notes, **(serving.notes if serving else {})},
        serving=_serving_parts(serving),
    )
    html = out / "report.html"
    html.write_text(page, encoding="utf-8")
    return ReportFiles(html=html, csv=csv, figures=figures)


def _serving_parts(serving: ServingAnalysis | None) -> dict[str, object] | None:
    """The serving sections' tables as HTML, and how the numbers were measured (stand-in, replay)."""
    if serving is None or serving.points.empty:
        return None
    mark = " (stand-in measurement)" if serving.standin else ""
    return {"mark": mark + (" (replay)" if serving.replay else ""), "standin": serving.standin,
            "runs_html": _html(serving.runs), "points_html": _html(serving.points),
            "frontier_html": _html(serving.frontier),
            "offline_html": _html(serving.offline), "mlperf_html": _html(serving.mlperf) if not serving.mlperf.empty
            else ""}


def table_html(frame: pd.DataFrame) -> str:
    """A table as the report and the notebook show it: an em dash where a value is missing (None, NaN or
    NA alike), short numbers, and a box that scrolls sideways rather than overflow the page."""
    shown = frame.copy()
    for column in shown.columns:  # pandas prints None as "None" and pd.NA as "<NA>"; only NaN as na_rep
        if not pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].astype(object).where(shown[column].notna(), float("nan"))
    table = shown.to_html(index=False, escape=True, na_rep="\u2014", border=0,
                          float_format=lambda v: f"{v:,.4g}" if abs(v) < 10 else f"{v:,.1f}")
    return f'<div class="table-wrap" style="overflow-x:auto;max-width:100%">{table}</div>'


_html = table_html
_REASON_LIMIT = 400


def missing_reasons(missing: Sequence[MissingReport]) -> pd.DataFrame:
    """Why experiments have no report, one row per distinct reason, with how many and which.

    Reasons that differ only in the experiment's own id and numbers (ISL, OSL, requests) or in time stamps
    are one reason: a sweep that failed the same way nine times reads as one line, not nine. Very long
    reasons keep their start and their end (where a tool's last words are).
    """
    numbers = {str(v) for m in missing if (spec := ExperimentSpec.from_id(m.experiment))
               for v in (spec.isl, spec.osl, spec.num_requests, spec.concurrency) if v is not None and v >= 10}
    groups: dict[str, list[MissingReport]] = {}
    for m in missing:
        groups.setdefault(_reason_key(m, numbers), []).append(m)
    rows = []
    for items in groups.values():
        reason = items[0].reason
        if len(reason) > _REASON_LIMIT:
            reason = f"{reason[:150]} \u2026 {reason[-(_REASON_LIMIT - 153):]}"
        runs = list(dict.fromkeys(m.run for m in items))
        if len({m.reason for m in items}) > 1:
            reason += f" (as worded for {items[0].experiment}; the others differ only in their own numbers)"
        rows.append({"reason": " ".join(reason.split()), "count": len(items), "runs": ", ".join(runs),
                     "experiments": ", ".join(m.experiment for m in items)})
    return pd.DataFrame(rows, columns=["reason", "count", "runs", "experiments"])


_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?|\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d")


def _reason_key(m: MissingReport, numbers: set[str]) -> str:
    """The reason without what names one experiment: its id, time stamps, and any experiment's ISL, OSL,
    request count or concurrency (a message may quote the others', like the recorded run's). Other numbers
    stay: "exit code 1" and "exit code 137" are different reasons."""
    key = _STAMP.sub("<time>", m.reason.replace(m.experiment, "<experiment>"))
    return re.sub(r"(?<![\w.])\d+(?!\w|\.\d)", lambda n: "<n>" if n.group() in numbers else n.group(), key)


def _template() -> jinja2.Template:
    source = resources.files("recipelib").joinpath("data", "report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(source)
