"""Figures of benchmark results, drawn with matplotlib's object API (no pyplot, no global state).

Every function returns a ``matplotlib.figure.Figure`` that renders with the Agg backend, so it works
headless (papermill, CI) and in JupyterLab alike; :func:`figure_png` turns one into PNG bytes for the
notebook and the HTML report.

Three rules hold for every figure, because a reader trusts a picture more than a table:

- a figure is drawn only where there is data: :func:`draw_figures` leaves the others out and says why
  in a sentence (a chart of placeholders or zeros reads as a measurement);
- legends sit outside the axes, in the space the constrained layout keeps for them, so they never cover
  an axis label, a bar or another legend;
- results replayed in the local sandbox are marked "(replay)" in the title and beside each run's name.
"""

from __future__ import annotations

import io

import pandas as pd
from matplotlib.figure import Figure

__all__ = ["LATENCY_PERCENTILES", "draw_figures", "figure_png", "fraction_figure", "fraction_note",
           "latency_figure", "latency_note", "throughput_figure", "throughput_note"]

LATENCY_PERCENTILES = ("p50", "p90", "p99")
"""The percentiles drawn: what service-level objectives are written in (median, tail, far tail)."""
_LATENCY_PANELS = (("latency", "end-to-end request latency (ms)"), ("ttft", "time to first token (ms)"),
                   ("tpot", "time per output token (ms)"))
REPLAY = " (replay)"


def figure_png(fig: Figure, *, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _new(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _replayed(frame: pd.DataFrame | None) -> set[str]:
    if frame is None or frame.empty or "replay" not in frame.columns:
        return set()
    return set(frame.loc[frame["replay"].astype(bool), "run"])


def _title(text: str, replayed: set[str]) -> str:
    return text + (REPLAY if replayed else "")


def _run_labels(frame: pd.DataFrame, replayed: set[str] | None = None) -> dict[str, str]:
    replayed = _replayed(frame) if replayed is None else replayed
    return {run: f"{run}{REPLAY}" if run in replayed else run for run in dict.fromkeys(frame["run"])}


def _row_labels(rows: pd.DataFrame, replayed: set[str]) -> list[str]:
    """One label per row: the experiment alone when every row is of one run (named in the title instead)."""
    runs = list(dict.fromkeys(rows["run"]))
    labels = _run_labels(rows, replayed)
    if len(runs) == 1:
        return [str(e) for e in rows["experiment"]]
    return [f"{labels[r]} {e}" for r, e in zip(rows["run"], rows["experiment"], strict=True)]


def _one_run(rows: pd.DataFrame) -> str:
    """A second title line naming the run when every row is of one run (the title marks a replay)."""
    runs = list(dict.fromkeys(rows["run"]))
    return f"\n{runs[0]}" if len(runs) == 1 else ""


def _note(fig: Figure, text: str) -> Figure:
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return fig


# -- throughput ------------------------------------------------------------------------------------------


def throughput_note(frame: pd.DataFrame) -> str | None:
    """Why there is no throughput figure, or None when there is one to draw."""
    rows = frame[frame["isl"].notna() & frame["osl"].notna() & frame["output_throughput_tok_s"].notna()]
    if not rows.empty:
        return None
    return "No throughput figure: no report gives an output throughput with a known ISL/OSL."


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
    groups = sorted({(int(i), int(o)) for i, o in zip(rows["isl"], rows["osl"], strict=True)})
    runs = list(dict.fromkeys(rows["run"]))
    fig = _new(max(6.5, 1.4 * max(1, len(groups)) * max(1.0, len(runs) / 3)), 4.6 + 0.22 * len(runs))
    if rows.empty:
        return _note(fig, throughput_note(frame) or "")
    replayed = _replayed(rows)
    ax = fig.subplots()
    labels = _run_labels(rows, replayed)
    width = 0.8 / len(runs)
    shown_published = shown_limit = False
    for k, run in enumerate(runs):
        part = rows[rows["run"] == run].groupby(["isl", "osl"])["output_throughput_tok_s"].mean()
        keys = [key for key in groups if key in part.index]
        xs = [groups.index(key) - 0.4 + width * (k + 0.5) for key in keys]
        bars = ax.bar(xs, [float(part.loc[key]) for key in keys], width=width * 0.95, label=labels[run])
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
        for x, key in zip(xs, keys, strict=True):
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
    ax.set_title(_title("Throughput by input/output length", replayed))
    ax.set_ylim(0, ax.get_ylim()[1] * 1.08)
    ax.grid(axis="y", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=8, ncol=1, frameon=False)
    return fig


def _lookup(table: pd.DataFrame | None, run: str, key: tuple[int, int], column: str) -> float | None:
    if table is None or table.empty or column not in table.columns:
        return None
    match = table[(table["run"] == run) & (table["isl"] == key[0]) & (table["osl"] == key[1])][column].dropna()
    return float(match.iloc[0]) if not match.empty else None


# -- latency ---------------------------------------------------------------------------------------------


def _latency_columns(prefix: str) -> list[str]:
    return [f"{prefix}_{p}_ms" for p in LATENCY_PERCENTILES]


def _latency_panels(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return [(prefix, title) for prefix, title in _LATENCY_PANELS
            if all(c in frame.columns for c in _latency_columns(prefix))
            and frame[_latency_columns(prefix)].notna().any(axis=None)]


def latency_note(frame: pd.DataFrame) -> str | None:
    """Why there is no latency figure, or None when some report has latency percentiles."""
    if _latency_panels(frame):
        return None
    versions = sorted({str(v) for v in frame.get("trtllm_version", pd.Series(dtype=object)).dropna()})
    which = f" (TensorRT-LLM {', '.join(versions)})" if versions else ""
    return (f"No latency figure: these reports{which} give no latency percentiles: reports of TensorRT-LLM "
            "0.16/0.17 print averages only (see the summary table); those of 0.19 and later give TTFT, TPOT "
            "and request latency at p50/p90/p99.")


def latency_figure(frame: pd.DataFrame) -> Figure:
    """Request latency, TTFT and TPOT at p50/p90/p99, one line per experiment whose report prints them.

    Where no report has percentiles, the figure only holds :func:`latency_note`'s sentence: callers that
    show figures only where there is data (:func:`draw_figures`) check that first.
    """
    panels = _latency_panels(frame)
    if not panels:
        return _note(_new(7.0, 2.0), latency_note(frame) or "")
    columns = [c for prefix, _ in panels for c in _latency_columns(prefix)]
    rows = frame[frame[columns].notna().any(axis=1)]
    replayed = _replayed(rows)
    fig = _new(max(7.0, 3.8 * len(panels)), 3.6 + 0.2 * len(rows))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    names = _row_labels(rows, replayed)
    for ax, (prefix, title) in zip(axes, panels, strict=True):
        for name, (_, r) in zip(names, rows.iterrows(), strict=True):
            values = [float(r[c]) if pd.notna(r[c]) else float("nan") for c in _latency_columns(prefix)]
            ax.plot(list(LATENCY_PERCENTILES), values, marker="o", label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("percentile")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.08)  # the p99 marker clear of the frame
        ax.grid(alpha=0.3)
    handles, labels = [], []
    for ax in axes:  # one entry per experiment, even if a panel lacks some of them
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="outside lower center", fontsize=8, ncol=2 if len(labels) > 4 else 1,
               frameon=False)
    fig.suptitle(_title("Latency percentiles", replayed) + _one_run(rows))
    return fig


# -- against the limit -----------------------------------------------------------------------------------


def fraction_note(limits: pd.DataFrame) -> str | None:
    """Why there is no figure against the limit, or None when at least one result has a limit."""
    if not limits.empty and limits["fraction_of_limit"].notna().any():
        return None
    reasons = sorted({str(n) for n in limits.get("note", pd.Series(dtype=object)).dropna() if str(n)})
    why = f" ({'; '.join(reasons)})" if reasons else ""
    return f"No figure against the limit: no result could be bounded{why}."


def fraction_figure(limits: pd.DataFrame, published: pd.DataFrame | None = None, *,
                    frame: pd.DataFrame | None = None) -> Figure:
    """Each result as % of its speed-of-light limit and, where NVIDIA published one, % of that figure.

    ``frame`` (the results table) tells which runs are replays, for the title and the labels.
    """
    bounded = limits.dropna(subset=["fraction_of_limit"]) if not limits.empty else limits
    if bounded.empty:
        return _note(_new(7.0, 1.5), fraction_note(limits) or "")
    replayed = _replayed(frame) & set(bounded["run"])
    names = _row_labels(bounded, replayed)
    fig = _new(8.0, 1.9 + 0.55 * len(bounded))
    ax = fig.subplots()
    y = range(len(names))
    ratios: list[float | None] = [None] * len(names)
    if published is not None and not published.empty:
        ratios = [_lookup(published, r.run, (int(r.isl), int(r.osl)), "ratio_to_published")
                  for r in bounded.itertuples(index=False)]
    pair = any(v is not None for v in ratios)  # two bars a row only where there is a second one to draw
    limit_bars = ax.barh([i + 0.2 if pair else i for i in y], 100 * bounded["fraction_of_limit"],
                         height=0.38 if pair else 0.6, label="% of speed of light", color="tab:red")
    ax.bar_label(limit_bars, fmt="%.0f%%", fontsize=8, padding=2)
    if pair:
        xs = [i - 0.2 for i, v in zip(y, ratios, strict=True) if v is not None]
        vs = [100 * v for v in ratios if v is not None]
        pub_bars = ax.barh(xs, vs, height=0.38, label="% of NVIDIA published", color="tab:gray")
        ax.bar_label(pub_bars, fmt="%.0f%%", fontsize=8, padding=2)
    ax.set_yticks(list(y), names, fontsize=8)
    ax.invert_yaxis()  # first row on top, as in the table below the figure
    ax.axvline(100, color="black", linewidth=0.8)
    ax.set_xlim(0, max(115.0, ax.get_xlim()[1] * 1.1))
    ax.set_xlabel("percent")
    ax.set_title(_title("Results against the limit and against NVIDIA's figures", replayed)
                 + _one_run(bounded), fontsize=11)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=8, ncol=2, frameon=False)
    return fig


# -- all of them -----------------------------------------------------------------------------------------


def draw_figures(frame: pd.DataFrame, *, limits: pd.DataFrame,
                 published: pd.DataFrame | None = None) -> tuple[dict[str, Figure], dict[str, str]]:
    """The figures there is data for (``throughput``, ``fractions``, ``latency``), and for each one left out
    the sentence saying why."""
    figures: dict[str, Figure] = {}
    notes: dict[str, str] = {}
    for name, note, draw in (
        ("throughput", throughput_note(frame), lambda: throughput_figure(frame, published=published, limits=limits)),
        ("fractions", fraction_note(limits), lambda: fraction_figure(limits, published, frame=frame)),
        ("latency", latency_note(frame), lambda: latency_figure(frame)),
    ):
        if note is None:
            figures[name] = draw()
        else:
            notes[name] = note
    return figures, notes
