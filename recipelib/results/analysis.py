"""Tables that answer the questions a benchmark run raises: how fast, compared with what, how far from
the limit.

Everything takes the DataFrame of :mod:`recipelib.results` (one row per report, units in the column
names) and returns a new DataFrame; plots are in :mod:`recipelib.plots`, the HTML/CSV export in
:mod:`recipelib.html_report`.

Example::

    results = load_results(runs="all")
    summary_table(results.frame)
    compare_runs(results.frame)                  # ISL/OSL rows, one column per run, ratios to the first
    against_speed_of_light(results.frame, gpu="H200")
    compare_to_published(results.frame, gpu="H200", runs=results.runs)  # says where methods differ
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from recipelib.errors import AnalysisError
from recipelib.results.reference import compare_to_published
from recipelib.results.speed_of_light import SpeedOfLightError, throughput_bound

log = logging.getLogger(__name__)

__all__ = [
    "AnalysisError",
    "against_speed_of_light",
    "compare_runs",
    "compare_to_published",
    "export_csv",
    "summary_table",
]

SUMMARY_COLUMNS = (
    "run", "experiment", "model", "gpu", "tp_size", "quantization", "backend", "flow", "engine_method",
    "trtllm_version", "isl", "osl",
    "num_requests", "output_throughput_tok_s", "request_throughput_req_s", "total_token_throughput_tok_s",
    "per_gpu_output_throughput_tok_s", "total_latency_ms", "avg_request_latency_ms", "latency_p99_ms", "ttft_ms",
    "tpot_ms", "replay",
)


def _text(value: object) -> str | None:
    """A string cell, or None where the cell is empty (pandas gives NaN for missing strings)."""
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _require_rows(frame: pd.DataFrame) -> None:
    if frame.empty:
        raise AnalysisError("no results to analyse: the selected runs have no reports")


def summary_table(frame: pd.DataFrame, runs: Sequence[str] | None = None) -> pd.DataFrame:
    """The key numbers of each experiment, one row each, sorted by run then ISL/OSL.

    ``flow``/``engine_method`` (how it was measured) are shown where the table has them
    (:func:`recipelib.results.reference.with_methods` adds them from each run's ``run.json``).
    """
    _require_rows(frame)
    rows = frame if runs is None else frame[frame["run"].isin(list(runs))]
    table = rows.loc[:, [c for c in SUMMARY_COLUMNS if c in rows.columns]]
    table = table.sort_values(["run", "isl", "osl", "experiment"], kind="stable")
    return table.reset_index(drop=True)


def compare_runs(
    frame: pd.DataFrame,
    metric: str = "output_throughput_tok_s",
    runs: Sequence[str] | None = None,
    baseline: str | None = None,
) -> pd.DataFrame:
    """Runs side by side: one row per (model, ISL, OSL), one column per run, and ratios to ``baseline``.

    ``baseline`` defaults to the first run in ``runs`` (the earliest started when not given). Where a run
    lacks a model/ISL/OSL the cell is empty: nothing is carried over between runs or models.
    """
    _require_rows(frame)
    if metric not in frame.columns:
        raise AnalysisError(f"unknown metric {metric!r}; use a numeric column such as output_throughput_tok_s")
    order = list(runs) if runs is not None else list(dict.fromkeys(frame["run"]))
    unknown = [r for r in order if r not in set(frame["run"])]
    if unknown:
        raise AnalysisError(f"runs not loaded: {', '.join(unknown)}")
    rows = frame[frame["run"].isin(order) & frame["isl"].notna() & frame["osl"].notna()]
    rows = rows.assign(model=rows["model"].fillna("(unknown model)"))
    table = rows.pivot_table(index=["model", "isl", "osl"], columns="run", values=metric, aggfunc="mean")
    table = table.reindex(columns=order)
    base = baseline or order[0]
    if base not in table.columns:
        raise AnalysisError(f"baseline run {base!r} is not among {', '.join(order)}")
    for run in order:
        if run != base:
            table[f"{run} / {base}"] = table[run] / table[base]
    table.columns.name = metric
    return table.reset_index()


def against_speed_of_light(frame: pd.DataFrame, gpu: str | None = None) -> pd.DataFrame:
    """Each result as a fraction of its compute and memory ceilings (see :mod:`recipelib.speed_of_light`).

    ``gpu`` fills in the GPU where the report does not say. Rows that cannot be bounded (unknown model
    or GPU, no TP size) are kept with a ``note`` saying why, and no numbers.
    """
    _require_rows(frame)
    out = []
    for r in frame.itertuples(index=False):
        the_gpu = _text(r.gpu) or gpu or None
        model, quantization, kv_dtype = _text(r.model), _text(r.quantization), _text(r.kv_cache_dtype)
        row = {"run": r.run, "experiment": r.experiment, "model": model, "gpu": the_gpu,
               "gpus": r.gpu_count, "isl": r.isl, "osl": r.osl, "quantization": quantization,
               "output_throughput_tok_s": r.output_throughput_tok_s, "compute_limit_tok_s": None,
               "memory_limit_tok_s": None, "limit_tok_s": None, "limited_by": None, "fraction_of_limit": None,
               "note": ""}
        missing = [name for name, value in (("model", model), ("GPU", the_gpu), ("GPU count", r.gpu_count),
                                            ("ISL", r.isl), ("OSL", r.osl)) if value is None or pd.isna(value)]
        if missing:
            row["note"] = f"not bounded: {', '.join(missing)} unknown"
        else:
            try:
                bound = throughput_bound(str(model), str(the_gpu), int(r.gpu_count), isl=int(r.isl),
                                         osl=int(r.osl), quantization=quantization, kv_cache_dtype=kv_dtype)
            except SpeedOfLightError as e:
                row["note"] = f"not bounded: {e}"
            else:
                row.update(compute_limit_tok_s=bound.compute_tok_s, memory_limit_tok_s=bound.memory_tok_s,
                           limit_tok_s=bound.limit_tok_s, limited_by=bound.limited_by,
                           fraction_of_limit=bound.fraction(r.output_throughput_tok_s),
                           note=f"{bound.precision} Tensor Core rate, KV room for {bound.max_batch} sequences")
        out.append(row)
    table = pd.DataFrame(out)
    for column in ("compute_limit_tok_s", "memory_limit_tok_s", "limit_tok_s", "fraction_of_limit"):
        table[column] = pd.to_numeric(table[column])
    return table


def export_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as CSV (units are in the column names); the folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
