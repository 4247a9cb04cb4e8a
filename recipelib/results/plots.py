"""Figures of benchmark results, drawn with matplotlib's object API (no pyplot, no global state).

Every function returns a ``matplotlib.figure.Figure`` that renders with the Agg backend, so it works
headless (papermill, CI) and in JupyterLab alike; :func:`figure_png` turns one into PNG bytes for the
notebook and the HTML report. Results replayed in the local sandbox are labelled "(replay)".
"""

from __future__ import annotations

import io

import pandas as pd
from matplotlib.figure import Figure

__all__ = ["figure_png", "fraction_figure", "latency_figure", "throughput_figure"]

_PERCENTILES = (("min", "min"), ("p50", "p50"), ("p90", "p90"), ("p95", "p95"), ("p99", "p99"), ("max", "max"))
_LATENCY_PANELS = (("latency", "request latency (ms)", "ms"), ("ttft", "time to first token (ms)", "ms"),
                   ("tpot", "time per output token (ms)", "ms"))


def figure_png(fig: Figure, *, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _run_labels(frame: pd.DataFrame) -> dict[str, str]:
    replayed = set(frame.loc[frame["replay"].astype(bool), "run"])
    return {run: f"{run} (replay)" if run in replayed else run for run in dict.fromkeys(frame["run"])}


def _note(fig: Figure, text: str) -> Figure:
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return fig


def throughput_figure(
    frame: pd.DataFrame,
    *,
    published: pd.DataFrame | None = None,
    limits: pd.DataFrame | None = None,
) -> Figure:
    """Output tokens/s for each ISL/OSL, one bar per run; NVIDIA's figure and the limit marked where known.

    ``published`` is :func:`recipelib.reference.compare_to_published`'s table, ``limits``
    :func:`recipelib.analysis.against_speed_of_light`'s.
    """
    rows = frame[frame["isl"].notna() & frame["osl"].notna()]
    fig = Figure(figsize=(max(6.0, 1.6 * max(1, rows[["isl", "osl"]].drop_duplicates().shape[0])), 4.2))
    if rows.empty:
        return _note(fig, "No results with a known ISL/OSL to plot.")
    ax = fig.subplots()
    groups = sorted({(int(i), int(o)) for i, o in zip(rows["isl"], rows["osl"], strict=True)})
    labels = _run_labels(rows)
    runs = list(labels)
    width = 0.8 / len(runs)
    shown_published = shown_limit = False
    for k, run in enumerate(runs):
        part = rows[rows["run"] == run].groupby(["isl", "osl"])["output_throughput_tok_s"].mean()
        xs, ys = [], []
        for g, key in enumerate(groups):
            if key in part.index:
                xs.append(g - 0.4 + width * (k + 0.5))
                ys.append(float(part.loc[key]))
        bars = ax.bar(xs, ys, width=width * 0.95, label=labels[run])
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
        for x, key in zip(xs, [key for key in groups if key in part.index], strict=True):
            ref = _lookup(published, run, key, "published_output_tok_s")
            if ref is not None:
                ax.plot([x - width / 2, x + width / 2], [ref, ref], color="black", linewidth=2,
                        label=None if shown_published else "NVIDIA published")
                shown_published = True
            limit = _lookup(limits, run, key, "limit_tok_s")
            if limit is not None:
                ax.plot([x - width / 2, x + width / 2], [limit, limit], color="tab:red", linestyle="--",
                        label=None if shown_limit else "speed of light")
                shown_limit = True
    ax.set_xticks(range(len(groups)), [f"{i}/{o}" for i, o in groups])
    ax.set_xlabel("ISL / OSL (tokens)")
    ax.set_ylabel("output tokens/s (whole system)")
    ax.set_title("Throughput by input/output length")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.08)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _lookup(table: pd.DataFrame | None, run: str, key: tuple[int, int], column: str) -> float | None:
    if table is None or table.empty or column not in table.columns:
        return None
    match = table[(table["run"] == run) & (table["isl"] == key[0]) & (table["osl"] == key[1])][column].dropna()
    return float(match.iloc[0]) if not match.empty else None


def latency_figure(frame: pd.DataFrame) -> Figure:
    """Latency percentiles (request, TTFT, TPOT), one line per run and experiment, where reports print them.

    TensorRT-LLM 0.16/0.17 reports print averages only; then the figure says so instead of drawing zeros.
    """
    panels = [(prefix, title) for prefix, title, _ in _LATENCY_PANELS
              if frame[[f"{prefix}_{c}_ms" for _, c in _PERCENTILES]].notna().any(axis=None)]
    fig = Figure(figsize=(4.5 * max(1, len(panels)), 3.8))
    if not panels:
        return _note(fig, "No latency percentiles in these reports: TensorRT-LLM 0.16/0.17 print averages only\n"
                          "(see the summary table's latency and TTFT/TPOT averages).")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    labels = _run_labels(frame)
    for ax, (prefix, title) in zip(axes, panels, strict=True):
        columns = [f"{prefix}_{c}_ms" for _, c in _PERCENTILES]
        for r in frame.itertuples(index=False):
            values = [getattr(r, c) for c in columns]
            if all(pd.isna(v) for v in values):
                continue
            ax.plot([name for name, _ in _PERCENTILES], values, marker="o", label=f"{labels[r.run]} {r.experiment}")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            if name not in names:
                handles.append(handle)
                names.append(name)
    fig.legend(handles, names, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False)
    fig.suptitle("Latency percentiles")
    return fig


def fraction_figure(limits: pd.DataFrame, published: pd.DataFrame | None = None) -> Figure:
    """Each result as % of its speed-of-light limit and, where NVIDIA published one, % of that figure."""
    bounded = limits.dropna(subset=["fraction_of_limit"]) if not limits.empty else limits
    fig = Figure(figsize=(7.0, 0.6 + 0.55 * max(1, len(bounded))))
    if bounded.empty:
        return _note(fig, "No result could be put against a limit (model, GPU or GPU count unknown).")
    ax = fig.subplots()
    names = [f"{r.run} {r.experiment}" for r in bounded.itertuples(index=False)]
    y = range(len(names))
    limit_bars = ax.barh([i + 0.2 for i in y], 100 * bounded["fraction_of_limit"], height=0.38,
                         label="% of speed of light", color="tab:red")
    ax.bar_label(limit_bars, fmt="%.0f%%", fontsize=8, padding=2)
    if published is not None and not published.empty:
        ratios = [_lookup(published, r.run, (int(r.isl), int(r.osl)), "ratio_to_published")
                  for r in bounded.itertuples(index=False)]
        xs = [i - 0.2 for i, v in zip(y, ratios, strict=True) if v is not None]
        vs = [100 * v for v in ratios if v is not None]
        if xs:
            pub_bars = ax.barh(xs, vs, height=0.38, label="% of NVIDIA published", color="tab:gray")
            ax.bar_label(pub_bars, fmt="%.0f%%", fontsize=8, padding=2)
    ax.set_yticks(list(y), names, fontsize=8)
    ax.axvline(100, color="black", linewidth=0.8)
    ax.set_xlim(0, max(110.0, ax.get_xlim()[1] * 1.1))
    ax.set_xlabel("percent")
    ax.set_title("Results against the limit and against NVIDIA's figures")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, frameon=False)
    return fig
