"""Figures of online serving results, drawn with matplotlib's object API (no pyplot), like :mod:`plots`.

The same three rules hold as for the throughput figures: a figure only where there is data (otherwise
:func:`draw_serving_figures` says why in a sentence), legends outside the axes (in the space the
constrained layout keeps below them, never over a point's label), and anything not measured on a real
server marked in the title and beside each run's name: "(stand-in)" for the trtllm-serve stand-in of the
local sandbox and tests, "(replay)" for a replayed recording.

What they show: latency against throughput (one marker per load point, labelled with its concurrency
``c16`` or its rate ``2.5/s``), goodput against load, the frontier (the best latency each throughput was
had at, across runs and versions), the offline maximum beside the online one, and MLPerf's server-scenario
result where the model, GPU and GPU count match.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from recipelib.results.plots import figure_png

__all__ = ["draw_serving_figures", "figure_png", "frontier_figure", "goodput_figure", "latency_figure",
           "offline_figure"]

STANDIN = " (stand-in)"
REPLAY = " (replay)"
_PANELS = (("ttft", "time to first token (ms)"), ("itl", "inter-token latency (ms)"))
_MODE = {"concurrency": "concurrency", "request_rate": "request rate"}


def _new(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _mark(rows: pd.DataFrame) -> str:
    """What the title says about where the numbers come from: nothing for a real server."""
    return (" (stand-in measurement)" if rows["standin"].any() else "") + (REPLAY if rows["replay"].any() else "")


def _run_label(rows: pd.DataFrame) -> str:
    first = rows.iloc[0]
    version = f" TRT-LLM {first['trtllm_version']}" if isinstance(first["trtllm_version"], str) else ""
    mark = STANDIN if rows["standin"].any() else REPLAY if rows["replay"].any() else ""
    return f"{first['run']}{version}{mark}"


def _point_label(row: pd.Series) -> str:
    return f"c{int(row['load'])}" if row["mode"] == "concurrency" else f"{row['load']:g}/s"


def _series(frame: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """One line per run, kind of load and workload, in load order, with a legend label."""
    runs = list(dict.fromkeys(frame["run"]))
    workloads = {(i, o) for i, o in zip(frame["isl"], frame["osl"], strict=True)}
    for (_run, mode, isl, osl), rows in frame.groupby(["run", "mode", "isl", "osl"], sort=False):
        parts = [] if len(runs) == 1 else [_run_label(rows)]
        parts.append(_MODE[mode])
        if len(workloads) > 1:
            parts.append(f"ISL/OSL {isl:g}/{osl:g}")
        yield ", ".join(parts), rows.sort_values("load")


def _subtitle(frame: pd.DataFrame) -> str:
    runs = list(dict.fromkeys(frame["run"]))
    return f"\n{_run_label(frame[frame['run'] == runs[0]])}" if len(runs) == 1 else ""


def _log_if_wide(ax, values: pd.Series, axis: str = "y") -> None:
    """A log scale where values span more than 30x (latency past saturation), base 2 for loads (1, 2, 4 ...)."""
    positive = values[values > 0]
    if positive.empty:
        return
    if axis == "y" and positive.max() / positive.min() > 30:
        ax.set_yscale("log")
    elif axis == "x" and positive.max() / positive.min() >= 8:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(set(positive)), [f"{v:g}" for v in sorted(set(positive))])


def _legend(fig: Figure, handles: list, labels: list[str]) -> None:
    fig.legend(handles, labels, loc="outside lower center", fontsize=8, frameon=False,
               ncol=2 if len(labels) > 3 else len(labels) or 1)


# -- latency against throughput -----------------------------------------------------------------------


def latency_note(frame: pd.DataFrame) -> str | None:
    if not frame.empty and frame[["ttft_p50_ms", "itl_p50_ms"]].notna().any(axis=None):
        return None
    return ("No latency-throughput figure: no load point has TTFT or inter-token latency (aiperf measures "
            "them on streamed responses only: run the load step with streaming on).")


def latency_figure(frame: pd.DataFrame, mlperf: pd.DataFrame | None = None) -> Figure:
    """TTFT and inter-token latency (p50 solid, p99 dashed) against output tokens/s, a marker per load point
    labelled with its load; MLPerf's server-scenario result and limits where ``mlperf`` has a row."""
    panels = [(k, t) for k, t in _PANELS if frame[f"{k}_p50_ms"].notna().any()]
    series = list(_series(frame))
    fig = _new(max(7.5, 4.6 * len(panels)), 4.4 + 0.2 * len(series))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    handles, labels = [], []
    for ax, (key, title) in zip(axes, panels, strict=True):
        for k, (label, rows) in enumerate(series):
            color = f"C{k % 10}"
            x = rows["output_throughput_tok_s"]
            (line,) = ax.plot(x, rows[f"{key}_p50_ms"], marker="o", color=color)
            ax.plot(x, rows[f"{key}_p99_ms"], marker="s", linestyle="--", color=color, alpha=0.8)
            for (_, row), y in zip(rows.iterrows(), rows[f"{key}_p50_ms"], strict=True):
                if pd.notna(y):
                    below = row["mode"] == "concurrency"  # rates above their marker: the two kinds overlap less
                    ax.annotate(_point_label(row), (row["output_throughput_tok_s"], y), textcoords="offset points",
                                xytext=(4, -9 if below else 4), fontsize=7, color=color)
            if label not in labels:
                handles.append(line)
                labels.append(label)
        if mlperf is not None and not mlperf.empty:
            ref = mlperf.iloc[0]
            y, limit = ((ref["mlperf_ttft_p99_ms"], ref["ttft_limit_ms"]) if key == "ttft"
                        else (ref["mlperf_tpot_p99_ms"], ref["tpot_limit_ms"]))
            star = ax.scatter([ref["mlperf_output_tok_s"]], [y], marker="*", s=160, color="black", zorder=5)
            rule = ax.axhline(limit, color="black", linestyle=":", linewidth=1)
            if "MLPerf server p99" not in " ".join(labels):
                handles += [star, rule]
                labels += [f"MLPerf server p99 ({ref['mlperf']})", "MLPerf p99 limit"]
        _log_if_wide(ax, pd.concat([frame[f"{key}_p50_ms"], frame[f"{key}_p99_ms"]]).dropna())
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("output tokens/s (whole server)")
        ax.set_ylabel("ms")
        ax.grid(alpha=0.3)
    handles += [Line2D([], [], color="gray", marker="o"), Line2D([], [], color="gray", marker="s", linestyle="--")]
    labels += ["p50", "p99"]
    _legend(fig, handles, labels)
    fig.suptitle(f"Latency against throughput{_mark(frame)}{_subtitle(frame)}")
    return fig


# -- goodput --------------------------------------------------------------------------------------------


def goodput_note(frame: pd.DataFrame) -> str | None:
    if not frame.empty and frame["goodput_req_s"].notna().any():
        return None
    return "No goodput figure: no sweep was run with SLOs (give the load step ttft_ms / tpot_ms limits)."


def goodput_figure(frame: pd.DataFrame) -> Figure:
    """Requests/s that met every SLO (solid) and all requests/s (dashed) against the load asked for, one
    panel per kind of load (concurrency, request rate)."""
    rows = frame[frame["goodput_req_s"].notna()]
    modes = list(dict.fromkeys(rows["mode"]))
    series = list(_series(rows))
    fig = _new(max(7.0, 4.6 * len(modes)), 4.2 + 0.2 * len(series))
    axes = dict(zip(modes, fig.subplots(1, len(modes), squeeze=False)[0], strict=True))
    handles, labels = [], []
    for k, (label, part) in enumerate(series):
        ax = axes[part["mode"].iloc[0]]
        (line,) = ax.plot(part["load"], part["goodput_req_s"], marker="o", color=f"C{k % 10}")
        ax.plot(part["load"], part["request_throughput_req_s"], marker=".", linestyle="--", color=f"C{k % 10}",
                alpha=0.6)
        handles.append(line)
        labels.append(label)
    for mode, ax in axes.items():
        _log_if_wide(ax, rows.loc[rows["mode"] == mode, "load"], axis="x")
        ax.set_xlabel("concurrency (requests in flight)" if mode == "concurrency" else "request rate asked (req/s)")
        ax.set_ylabel("requests/s")
        ax.set_ylim(bottom=0)
        ax.set_title(_MODE[mode], fontsize=10)
        ax.grid(alpha=0.3)
    handles.append(Line2D([], [], color="gray", marker=".", linestyle="--"))
    labels.append("all requests/s (goodput: solid)")
    _legend(fig, handles, labels)
    slos = "; ".join(sorted({str(s) for s in rows["slos"].dropna()}))
    fig.suptitle(f"Goodput against load{_mark(rows)}{_subtitle(rows)}\nSLOs: {slos}", fontsize=11)
    return fig


# -- the frontier ------------------------------------------------------------------------------------------


def frontier_note(frame: pd.DataFrame) -> str | None:
    if not frame.empty and frame["ttft_p99_ms"].notna().any():
        return None
    return "No frontier figure: no load point has a p99 time to first token (streaming off)."


def frontier_figure(frame: pd.DataFrame) -> Figure:
    """Every load point of every run (a colour per run and version) and, per model and workload, the
    frontier: the points no other point beats on both throughput and p99 latency."""
    from recipelib.results.serving_analysis import pareto_front

    panels = [(k, t) for k, t in _PANELS if frame[f"{k}_p99_ms"].notna().any()]
    runs = list(dict.fromkeys(frame["run"]))
    fig = _new(max(7.5, 4.6 * len(panels)), 4.4 + 0.2 * len(runs))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    handles, labels = [], []
    for ax, (key, title) in zip(axes, panels, strict=True):
        for k, run in enumerate(runs):
            rows = frame[frame["run"] == run]
            dots = ax.scatter(rows["output_throughput_tok_s"], rows[f"{key}_p99_ms"], color=f"C{k % 10}", s=22)
            if _run_label(rows) not in labels:
                handles.append(dots)
                labels.append(_run_label(rows))
        front = pareto_front(frame, latency=f"{key}_p99_ms")
        groups = list(front.groupby(["model", "isl", "osl"], sort=True))
        for g, ((model, isl, osl), rows) in enumerate(groups):
            (line,) = ax.plot(rows["output_throughput_tok_s"], rows[f"{key}_p99_ms"], color="black",
                              linestyle=("-", "--", "-.", ":")[g % 4], drawstyle="steps-pre", linewidth=1.2,
                              marker="o", markersize=9, markerfacecolor="none")  # a ring on each frontier point
            label = "frontier" + (f": {model} {isl:g}/{osl:g}" if len(groups) > 1 else "")
            if label not in labels:
                handles.append(line)
                labels.append(label)
        _log_if_wide(ax, frame[f"{key}_p99_ms"].dropna())
        ax.set_title(f"p99 {title}", fontsize=10)
        ax.set_xlabel("output tokens/s (whole server)")
        ax.set_ylabel("ms")
        ax.grid(alpha=0.3)
    _legend(fig, handles, labels)
    fig.suptitle(f"Frontier across runs and versions{_mark(frame)}")
    return fig


# -- offline beside online ---------------------------------------------------------------------------------


def offline_note(table: pd.DataFrame) -> str | None:
    if not table.empty and table["offline_tok_s"].notna().any():
        return None
    models = ", ".join(sorted({f"{m} TP{t}" if not pd.isna(t) else f"{m} (TP not recorded)"
                               for m, t in zip(table.get("model", []), table.get("tp_size", []), strict=True)}))
    return (f"No offline-against-online figure: no throughput run of the same model and TP in these results"
            f"{f' ({models})' if models else ''}.")


def offline_figure(table: pd.DataFrame) -> Figure:
    """The online maximum of each sweep beside the offline trtllm-bench throughput of the same model and TP."""
    rows = table[table["offline_tok_s"].notna()].reset_index(drop=True)
    fig = _new(8.0, 2.0 + 0.7 * len(rows))
    ax = fig.subplots()
    names = [f"{r.run}{STANDIN if r.standin else ''}\nISL/OSL {r.isl:g}/{r.osl:g}" for r in rows.itertuples()]
    y = range(len(rows))
    online = ax.barh([i + 0.2 for i in y], rows["online_max_tok_s"], height=0.38, color="tab:blue",
                     label="online maximum (aiperf)")
    offline = ax.barh([i - 0.2 for i in y], rows["offline_tok_s"], height=0.38, color="tab:gray",
                      label="offline (trtllm-bench)")
    ax.bar_label(online, fmt="%.0f", fontsize=8, padding=2)
    ax.bar_label(offline, labels=[f"{v:.0f}" + ("" if same else " (other ISL/OSL)") for v, same in
                                  zip(rows["offline_tok_s"], rows["same_isl_osl"], strict=True)], fontsize=8, padding=2)
    ax.set_yticks(list(y), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, ax.get_xlim()[1] * 1.25)
    ax.set_xlabel("output tokens/s (whole server)")
    ax.set_title(f"Offline throughput beside the online maximum{_mark(table.assign(replay=False))}", fontsize=11)
    _legend(fig, *ax.get_legend_handles_labels())
    return fig


# -- all of them ---------------------------------------------------------------------------------------------


def draw_serving_figures(frame: pd.DataFrame, *, offline: pd.DataFrame | None = None,
                         mlperf: pd.DataFrame | None = None) -> tuple[dict[str, Figure], dict[str, str]]:
    """The figures there is data for (``serving_latency``, ``serving_goodput``, ``serving_frontier``,
    ``serving_offline``) and, for each one left out, the sentence saying why."""
    figures: dict[str, Figure] = {}
    notes: dict[str, str] = {}
    if frame.empty:
        return figures, {"serving_latency": "No serving runs in these results."}
    table = offline if offline is not None else pd.DataFrame(columns=["offline_tok_s"])
    for name, note, draw in (
        ("serving_latency", latency_note(frame), lambda: latency_figure(frame, mlperf)),
        ("serving_goodput", goodput_note(frame), lambda: goodput_figure(frame)),
        ("serving_frontier", frontier_note(frame), lambda: frontier_figure(frame)),
        ("serving_offline", offline_note(table), lambda: offline_figure(table)),
    ):
        if note is None:
            figures[name] = draw()
        else:
            notes[name] = note
    return figures, notes
