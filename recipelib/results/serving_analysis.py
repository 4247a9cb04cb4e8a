"""Tables of online serving results: the frontier across runs and versions, offline beside online, and
everything at once (:func:`analyse_serving`) for the notebook and the HTML report.

Each takes :class:`~recipelib.results.serving.ServingResults`' frame (one row per load point) and returns a
new DataFrame; nothing here reads files or draws.

Example::

    serving = load_serving(local_dir="results/")
    pareto_front(serving.frame, latency="ttft_p99_ms")
    offline_vs_online(serving.frame, load_results(runs="all").frame)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from recipelib.results.reference import compare_to_mlperf, model_family
from recipelib.results.serving import ServingResults

__all__ = ["POINT_COLUMNS", "ServingAnalysis", "analyse_serving", "offline_vs_online", "pareto_front", "runs_table"]


def pareto_front(frame: pd.DataFrame, latency: str = "ttft_p99_ms",
                 by: Sequence[str] = ("model", "isl", "osl")) -> pd.DataFrame:
    """The points no other point beats (at least as many output tokens/s at no more ``latency``, better in
    one), across runs and versions, within each group of ``by`` (comparing unlike workloads says nothing).

    Sorted by group then throughput: read down a group, each row buys throughput with latency.
    """
    rows = frame.dropna(subset=["output_throughput_tok_s", latency])
    keep = []
    for _, group in rows.groupby([rows[c].astype(str) for c in by], sort=True):
        tput, lat = group["output_throughput_tok_s"], group[latency]
        for index in group.index:
            beaten = ((tput >= tput[index]) & (lat <= lat[index])
                      & ((tput > tput[index]) | (lat < lat[index]))).any()
            if not beaten:
                keep.append(index)
    front = rows.loc[keep]
    columns = [*by, "run", "trtllm_version", "point", "output_throughput_tok_s", latency, "standin", "replay"]
    return front.sort_values([*by, "output_throughput_tok_s"], kind="stable").loc[:, columns].reset_index(drop=True)


def _model_key(model: Any) -> str | None:
    if not isinstance(model, str) or not model:
        return None
    return model_family(model) or model.rsplit("/", 1)[-1].lower()


def offline_vs_online(frame: pd.DataFrame, offline: pd.DataFrame | None) -> pd.DataFrame:
    """Per serving run and workload: the highest online output tokens/s of the sweep (and the load and p99
    TTFT it came at) beside the offline ``trtllm-bench`` throughput of the same model and TP from
    ``offline`` (``Results.frame``), same ISL/OSL where there is one (``same_isl_osl`` says)."""
    out = []
    for (run, isl, osl), group in frame.dropna(subset=["output_throughput_tok_s"]).groupby(
            ["run", "isl", "osl"], sort=False):
        best = group.loc[group["output_throughput_tok_s"].idxmax()]
        row = {"run": run, "model": best["model"], "tp_size": best["tp_size"], "isl": isl, "osl": osl,
               "online_max_tok_s": best["output_throughput_tok_s"], "at_point": best["point"],
               "ttft_p99_ms_there": best["ttft_p99_ms"], "offline_run": None, "offline_experiment": None,
               "offline_tok_s": None, "same_isl_osl": None, "online_over_offline": None,
               "standin": bool(group["standin"].any())}
        match = _offline_match(best, offline)
        if match is not None:
            row.update(offline_run=match["run"], offline_experiment=match["experiment"],
                       offline_tok_s=float(match["output_throughput_tok_s"]),
                       same_isl_osl=bool(match["isl"] == round(isl) and match["osl"] == round(osl)),
                       online_over_offline=best["output_throughput_tok_s"] / float(match["output_throughput_tok_s"]))
        out.append(row)
    return pd.DataFrame(out, columns=["run", "model", "tp_size", "isl", "osl", "online_max_tok_s", "at_point",
                                      "ttft_p99_ms_there", "offline_run", "offline_experiment", "offline_tok_s",
                                      "same_isl_osl", "online_over_offline", "standin"])


def _offline_match(best: pd.Series, offline: pd.DataFrame | None) -> pd.Series | None:
    key = _model_key(best["model"])
    if offline is None or offline.empty or key is None or pd.isna(best["tp_size"]):
        return None
    rows = offline.dropna(subset=["output_throughput_tok_s", "tp_size"])
    rows = rows[(rows["model"].map(_model_key) == key) & (rows["tp_size"] == int(best["tp_size"]))
                & ~rows["streaming"].astype(bool) & rows["concurrency"].isna()]  # max-throughput runs only
    if rows.empty:
        return None
    distance = (rows["isl"].astype(float) - best["isl"]).abs() + (rows["osl"].astype(float) - best["osl"]).abs()
    rows = rows.assign(_d=distance.to_numpy()).sort_values(["_d", "output_throughput_tok_s"],
                                                           ascending=[True, False], kind="stable")
    return rows.iloc[0]


@dataclass(frozen=True)
class ServingAnalysis:
    """Every serving table and figure, computed once; ``notes`` says why a figure is left out."""

    runs: pd.DataFrame
    points: pd.DataFrame
    frontier: pd.DataFrame
    offline: pd.DataFrame
    mlperf: pd.DataFrame
    figures: dict[str, bytes]
    notes: dict[str, str] = field(default_factory=dict)
    standin: bool = False
    replay: bool = False


POINT_COLUMNS = ("run", "point", "model", "tp_size", "trtllm_version", "mode", "load", "requests", "errors",
                 "output_throughput_tok_s", "request_throughput_req_s", "ttft_p50_ms", "ttft_p99_ms",
                 "itl_p50_ms", "itl_p99_ms", "e2e_p50_ms", "e2e_p99_ms", "goodput_req_s", "slos", "standin")


def runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per serving run: what served (``server`` says when it was the stand-in) and what measured."""
    rows = frame.groupby("run", sort=False).agg(
        model=("model", "first"), tp_size=("tp_size", "first"), gpu=("gpu", "first"),
        trtllm_version=("trtllm_version", "first"), aiperf_version=("aiperf_version", "first"),
        points=("point", "count"), server=("server", "first"), standin=("standin", "any"))
    return rows.reset_index()


def analyse_serving(serving: ServingResults, offline: pd.DataFrame | None = None, *,
                    gpu: str | None = None) -> ServingAnalysis:
    """Tables and figures of the serving runs; ``offline`` is the throughput runs' ``Results.frame``, ``gpu``
    the GPU of runs that do not record it (for the MLPerf comparison)."""
    from recipelib.results.serving_plots import draw_serving_figures, figure_png

    frame = serving.frame
    points = frame.loc[:, list(POINT_COLUMNS)].reset_index(drop=True)
    if frame.empty:
        empty = pd.DataFrame()
        return ServingAnalysis(empty, points, empty, empty, empty, {},
                               {"serving_latency": "No serving runs in these results."})
    frontier = pareto_front(frame)
    table = offline_vs_online(frame, offline)
    mlperf = compare_to_mlperf(frame, gpu=gpu)
    drawn, notes = draw_serving_figures(frame, offline=table, mlperf=mlperf)
    pngs = {name: figure_png(fig) for name, fig in drawn.items()}
    return ServingAnalysis(runs_table(frame), points, frontier, table, mlperf, pngs, notes, serving.standin,
                           serving.replay)

