"""Export an analysis: the full results as CSV, each figure as PNG, and one self-contained HTML page.

The HTML page embeds its figures as base64 PNG and needs nothing else: it can be mailed, attached to an
issue or opened from a bucket. Tables are rendered by pandas with escaping on; the page template
(``recipelib/data/report.html.j2``) is rendered by Jinja2 with autoescape and ``StrictUndefined``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import jinja2
import pandas as pd

from recipelib.results.analysis import against_speed_of_light, compare_runs, export_csv, summary_table
from recipelib.results.plots import figure_png, fraction_figure, latency_figure, throughput_figure
from recipelib.results.reference import compare_to_published
from recipelib.results.table import Results

__all__ = ["Analysis", "ReportFiles", "analyse", "write_report"]


@dataclass(frozen=True)
class Analysis:
    """Every table and figure of one analysis, computed once, shown by the notebook and written to disk."""

    summary: pd.DataFrame
    limits: pd.DataFrame
    published: pd.DataFrame
    comparison: pd.DataFrame | None
    figures: dict[str, bytes]  # name -> PNG


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    csv: Path
    figures: dict[str, Path]


def analyse(results: Results, *, gpu: str | None = None) -> Analysis:
    """Compute the tables and figures; ``gpu`` fills in the GPU where the reports do not name it."""
    frame = results.frame
    summary = summary_table(frame)
    limits = against_speed_of_light(frame, gpu=gpu)
    published = compare_to_published(frame, gpu=gpu)
    runs = list(dict.fromkeys(frame["run"]))
    comparison = compare_runs(frame) if len(runs) > 1 else None
    figures = {
        "throughput": figure_png(throughput_figure(frame, published=published, limits=limits)),
        "fractions": figure_png(fraction_figure(limits, published)),
        "latency": figure_png(latency_figure(frame)),
    }
    return Analysis(summary, limits, published, comparison, figures)


def write_report(results: Results, out_dir: str | Path, *, gpu: str | None = None,
                 title: str = "TensorRT-LLM benchmark results", analysis: Analysis | None = None) -> ReportFiles:
    """Write ``results.csv``, one PNG per figure and ``report.html`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    analysis = analysis or analyse(results, gpu=gpu)
    csv = export_csv(results.frame, out / "results.csv")
    figures = {}
    for name, png in analysis.figures.items():
        path = out / f"{name}.png"
        path.write_bytes(png)
        figures[name] = path
    page = _template().render(
        title=title,
        origin=results.origin,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        replay=bool(results.frame["replay"].any()),
        runs_html=_html(results.runs_table()),
        missing_html=_html(results.missing_table()) if results.missing else "",
        summary_html=_html(analysis.summary),
        limits_html=_html(analysis.limits),
        published_html=_html(analysis.published) if not analysis.published.empty else "",
        compare_html=_html(analysis.comparison) if analysis.comparison is not None else "",
        images={name: base64.b64encode(png).decode("ascii") for name, png in analysis.figures.items()},
    )
    html = out / "report.html"
    html.write_text(page, encoding="utf-8")
    return ReportFiles(html=html, csv=csv, figures=figures)


def _html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:,.4g}" if abs(v) < 10
                         else f"{v:,.1f}", border=0)


def _template() -> jinja2.Template:
    source = resources.files("recipelib").joinpath("data", "report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(source)
