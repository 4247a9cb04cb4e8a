"""NVIDIA's published trtllm-bench throughput, and MLPerf's server scenario, to put each of our results beside.

``recipelib/data/nvidia_published_throughput.csv`` holds the output tokens/s that NVIDIA's
``perf-overview`` pages give for Llama 3.x 8B/70B/405B on H100/H200, per TensorRT-LLM version, with the
pages it was read from in its header. A result is matched on model size, GPU, TP, ISL and OSL; the
published figure of the same TensorRT-LLM minor version is used when there is one, otherwise the
nearest version (the chosen one is named in the output, as the engine flow of 0.14/0.17 and the PyTorch
flow of 0.19+ are different things).

**Methods.** A figure is comparable only when measured the same way. NVIDIA's 0.14/0.17 figures come from
the engine flow with one engine built per dataset (``trtllm-bench build --dataset``, which tunes the
engine to that ISL/OSL); from 0.19 from the PyTorch flow, no engine, on NVIDIA's pre-quantized
checkpoints (:data:`PUBLISHED_METHODS` cites each). Each result records its own (``flow`` and
``engine_method`` in ``run.json``/``metadata.json``); the comparison says, per row, whether the methods
are the same, differ (a shared engine, another flow or backend) or cannot be told (a result that does
not record them: "method unknown").
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import pandas as pd

from recipelib.results.records import RunInfo

__all__ = ["PUBLISHED_METHODS", "Method", "compare_methods", "compare_to_mlperf", "compare_to_published",
           "method_note_html", "method_notes", "mlperf_server_points", "model_family", "published_figures",
           "result_method", "version_key", "with_methods"]


@dataclass(frozen=True)
class Method:
    """How a throughput figure was measured: the flow, and for the engine flow how engines were built."""

    flow: str | None  # "engine" | "pytorch"; None: not recorded
    engine_method: str | None = None  # "per-dataset" | "shared" (engine flow only); None: not recorded
    backend: str | None = None  # "tensorrt" | "pytorch", as the report or run.json says

    @property
    def label(self) -> str:
        if self.flow == "engine":
            return f"engine flow, {self.engine_method or 'engine method unknown'}"
        if self.flow == "pytorch":
            return "PyTorch flow (no engine)"
        if self.flow:
            return f"{self.flow} flow"
        return "method unknown" + (f" (backend {self.backend})" if self.backend else "")


_PERF = "NVIDIA/TensorRT-LLM docs/source/performance/perf-overview.md"
_ENGINE_SOURCE = (f"{_PERF} at {{v}}, Commands: `trtllm-bench --model $model_name build --tp_size $tp_size "
                  "--quantization FP8 --dataset $dataset_file`, then `throughput --dataset $dataset_file "
                  "--engine_dir $engine_dir`: one engine per dataset")
_TORCH_SOURCE = (f"{_PERF} (nvidia.github.io/TensorRT-LLM/latest/performance/perf-overview.html): \"Starting with "
                 "v0.19, testing was performed using the PyTorch backend - this workflow does not require an engine "
                 "to be built\", on nvidia/Llama-3.1-{8B,70B,405B}-Instruct-FP8")
PUBLISHED_METHODS: dict[str, tuple[Method, str]] = {
    "v0.14": (Method("engine", "per-dataset", "tensorrt"), _ENGINE_SOURCE.format(v="v0.14.0")),
    "v0.17": (Method("engine", "per-dataset", "tensorrt"),
              _ENGINE_SOURCE.format(v="v0.17.0").replace("--tp_size $tp_size", "--tp_size $tp_size --pp_size "
                                                                                "$pp_size")),
    "v0.19": (Method("pytorch", None, "pytorch"), _TORCH_SOURCE),
    "v0.20": (Method("pytorch", None, "pytorch"), _TORCH_SOURCE),
    "v0.21": (Method("pytorch", None, "pytorch"), _TORCH_SOURCE),
    "v1.0": (Method("pytorch", None, "pytorch"), _TORCH_SOURCE),
}
"""The method behind each version column of the published table, and where it was read."""

_VERSION = re.compile(r"v?(\d+)\.(\d+)")


@cache
def _published_wide() -> pd.DataFrame:
    with resources.files("recipelib").joinpath("data", "nvidia_published_throughput.csv").open() as f:
        return pd.read_csv(f, comment="#")


def published_figures() -> pd.DataFrame:
    """Long form: ``model`` (8B/70B/405B), ``gpu``, ``tp``, ``isl``, ``osl``, ``version``, ``output_tok_s``."""
    wide = _published_wide()
    versions = [c for c in wide.columns if c.startswith("v")]
    long = wide.melt(id_vars=["model", "gpu", "tp", "isl", "osl"], value_vars=versions, var_name="version",
                     value_name="output_tok_s").dropna(subset=["output_tok_s"])
    return long.reset_index(drop=True)


def version_key(version: str | None) -> tuple[int, int] | None:
    """``0.17.0.post1`` -> ``(0, 17)``; ``v1.0`` -> ``(1, 0)``."""
    m = _VERSION.match(str(version or "").strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def model_family(model: str | None) -> str | None:
    """The published table's model key for a Llama 3.x model name (``...Llama-3.1-405B...`` -> ``405B``)."""
    m = re.search(r"llama[-_ ]?3(?:\.\d)?[-_ ](\d+)b", str(model or ""), re.IGNORECASE)
    return f"{m.group(1)}B" if m else None


def _text(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) or value == "" else str(value)


def with_methods(frame: pd.DataFrame, runs: Sequence[RunInfo]) -> pd.DataFrame:
    """``frame`` with ``flow`` and ``engine_method`` columns, filled from each run's ``run.json`` where the
    table does not carry them (results written before they were recorded stay empty: "method unknown")."""
    documents = {r.key: r.document for r in runs}
    out = frame.copy()
    for column in ("flow", "engine_method"):
        given = out[column] if column in out.columns else pd.Series([None] * len(out), index=out.index, dtype=object)
        from_runs = out["run"].map(lambda run, c=column: _text(documents.get(run, {}).get(c)))
        out[column] = [_text(g) or f for g, f in zip(given, from_runs, strict=True)]
    return out


def result_method(row: Any, document: Mapping[str, Any] | None = None) -> Method:
    """The method one result row records (``flow``/``engine_method``/``backend`` columns, else ``document``)."""
    doc = document or {}
    flow = _text(getattr(row, "flow", None)) or _text(doc.get("flow"))
    engine_method = _text(getattr(row, "engine_method", None)) or _text(doc.get("engine_method"))
    backend = _text(getattr(row, "backend", None)) or _text(doc.get("backend"))
    return Method(flow, engine_method if flow in (None, "engine") else None, backend)


def compare_methods(ours: Method, theirs: Method) -> tuple[bool | None, str]:
    """``(same, note)``: True when measured alike, False when not (the note says how), None when unknown."""
    if ours.flow is None:
        if ours.backend and theirs.backend and ours.backend != theirs.backend:
            return False, f"different backend: this result {ours.backend}, NVIDIA's {theirs.backend}"
        return None, (f"method unknown: the result does not record its flow and engine method; NVIDIA's figure is "
                      f"{theirs.label}")
    if ours.flow != theirs.flow:
        return False, f"different flow: this result {ours.label}, NVIDIA's {theirs.label}"
    if ours.flow != "engine" or ours.engine_method == theirs.engine_method:
        return True, f"same method ({theirs.label})"
    if ours.engine_method == "shared":
        return False, ("shared engine: one engine for the whole sweep, built for its longest request; NVIDIA built "
                       "one engine per dataset (trtllm-bench build --dataset)")
    if ours.engine_method is None:
        return None, f"engine method unknown: NVIDIA's figure is {theirs.label}"
    return False, f"different engine method: this result {ours.engine_method}, NVIDIA's {theirs.engine_method}"


def compare_to_published(frame: pd.DataFrame, gpu: str | None = None,
                         runs: Sequence[RunInfo] | None = None) -> pd.DataFrame:
    """One row per result that NVIDIA published a figure for: measured, published, ratio, version used,
    and whether the two were measured alike (``method``, ``published_method``, ``same_method``,
    ``method_note``).

    ``gpu`` fills in the GPU where the results do not say (reports before 1.x do not print it); ``runs``
    (``Results.runs``) supply each result's method where the table has no ``flow``/``engine_method``. Only
    like is compared with like: NVIDIA's figures are FP8 models at maximum throughput (no concurrency
    limit, no streaming), so other results are left out.
    """
    published = published_figures()
    documents = {r.key: r.document for r in runs or ()}
    rows = []
    for r in frame.itertuples(index=False):
        family = model_family(r.model if isinstance(r.model, str) else None)
        the_gpu = r.gpu if isinstance(r.gpu, str) and r.gpu else gpu
        if family is None or not the_gpu or pd.isna(r.tp_size) or pd.isna(r.isl) or pd.isna(r.osl):
            continue
        if r.quantization != "FP8" or not pd.isna(r.concurrency) or bool(r.streaming):
            continue
        match = published[(published.model == family) & (published.gpu == str(the_gpu).upper())
                          & (published.tp == int(r.tp_size)) & (published.isl == int(r.isl))
                          & (published.osl == int(r.osl))]
        if match.empty:
            continue
        chosen = _closest(match, version_key(r.trtllm_version))
        ours = result_method(r, documents.get(r.run))
        theirs = PUBLISHED_METHODS[chosen.version][0]
        same, note = compare_methods(ours, theirs)
        rows.append({
            "run": r.run, "experiment": r.experiment, "model": r.model, "gpu": str(the_gpu).upper(),
            "tp_size": int(r.tp_size), "isl": int(r.isl), "osl": int(r.osl),
            "trtllm_version": r.trtllm_version, "published_version": chosen.version,
            "same_version": version_key(chosen.version) == version_key(r.trtllm_version),
            "method": ours.label, "published_method": theirs.label, "same_method": same, "method_note": note,
            "output_throughput_tok_s": r.output_throughput_tok_s,
            "published_output_tok_s": float(chosen.output_tok_s),
            "ratio_to_published": r.output_throughput_tok_s / float(chosen.output_tok_s),
        })
    columns = ["run", "experiment", "model", "gpu", "tp_size", "isl", "osl", "trtllm_version",
               "published_version", "same_version", "method", "published_method", "same_method", "method_note",
               "output_throughput_tok_s", "published_output_tok_s", "ratio_to_published"]
    return pd.DataFrame(rows, columns=columns)


def method_notes(published: pd.DataFrame) -> list[str]:
    """What to say above a comparison with NVIDIA's figures: how NVIDIA measured the figures used, and which
    results were measured otherwise or cannot tell (grouped by reason), so that no ratio reads as like for
    like when it is not."""
    if published.empty:
        return []
    versions = sorted(set(published["published_version"]), key=lambda v: version_key(v) or (0, 0))
    how = "; ".join(f"{v}: {PUBLISHED_METHODS[v][0].label}" for v in versions)
    notes = [f"NVIDIA's figures used here were measured with: {how}."]
    same = published["same_method"]
    differ = published[same.map(lambda v: v is False)]
    unknown = published[same.map(lambda v: v is not True and v is not False)]
    if differ.empty and unknown.empty:
        notes.append("Every result compared here was measured the same way as NVIDIA's figure.")
    for label, rows in (("measured differently, not like for like", differ), ("method not known", unknown)):
        for note, group in rows.groupby("method_note", sort=True):
            notes.append(f"{len(group)} of {len(published)} {label}: {note}.")
    return notes


def method_note_html(published: pd.DataFrame) -> str:
    """:func:`method_notes` as escaped HTML paragraphs, for the report above the comparison table."""
    return "".join(f'<p class="note method">{html.escape(text)}</p>' for text in method_notes(published))


def _closest(match: pd.DataFrame, ours: tuple[int, int] | None):
    if ours is None:
        return match.assign(k=match.version.map(version_key)).sort_values("k").iloc[-1]

    def distance(v: str) -> tuple[int, int]:
        key = version_key(v) or (0, 0)
        return (abs((key[0] * 100 + key[1]) - (ours[0] * 100 + ours[1])), -(key[0] * 100 + key[1]))

    return match.assign(d=match.version.map(distance)).sort_values("d").iloc[0]


# -- MLPerf Inference, server scenario (online serving) ---------------------------------------------------


@cache
def mlperf_server_points() -> pd.DataFrame:
    """``recipelib/data/mlperf_server.csv``: MLPerf server-scenario results (output tokens/s at p99 TTFT/TPOT
    within the scenario's limits), with where each was read in the file's header."""
    with resources.files("recipelib").joinpath("data", "mlperf_server.csv").open() as f:
        return pd.read_csv(f, comment="#")


MLPERF_COLUMNS = ["run", "model", "gpu", "gpu_count", "mlperf", "mlperf_system", "mlperf_output_tok_s",
                  "mlperf_ttft_p99_ms", "mlperf_tpot_p99_ms", "ttft_limit_ms", "tpot_limit_ms", "best_point_in_limits",
                  "output_tok_s_in_limits", "ratio_to_mlperf", "note", "source"]


def compare_to_mlperf(serving: pd.DataFrame, gpu: str | None = None) -> pd.DataFrame:
    """One row per serving run whose model, GPU and GPU count match an MLPerf server-scenario result: MLPerf's
    figure beside the run's best load point within the same latency limits (p99 TTFT and p99 inter-token
    latency, aiperf's name for MLPerf's TPOT). ``gpu`` fills in the GPU where the run does not record it.

    The workloads differ (MLPerf's dataset and Poisson arrivals against a fixed ISL/OSL sweep), so the
    ratio is indicative; ``note`` says so, and says when no point met the limits.
    """
    reference = mlperf_server_points()
    rows = []
    for run, group in serving.groupby("run", sort=False):
        first = group.iloc[0]
        family = model_family(first["model"] if isinstance(first["model"], str) else None)
        the_gpu = str(first["gpu"] if isinstance(first["gpu"], str) and first["gpu"] else gpu or "").upper()
        count = first["gpu_count"] if not pd.isna(first["gpu_count"]) else first["tp_size"]
        if family is None or not the_gpu or pd.isna(count):
            continue
        match = reference[(reference.model_family == family) & (reference.gpu == the_gpu)
                          & (reference.gpu_count == int(count))]
        for ref in match.itertuples(index=False):
            inside = group[(group["ttft_p99_ms"] <= ref.ttft_limit_ms) & (group["itl_p99_ms"] <= ref.tpot_limit_ms)]
            best = inside.loc[inside["output_throughput_tok_s"].idxmax()] if not inside.empty else None
            if group["ttft_p99_ms"].isna().all():
                note = "no TTFT/inter-token latency (the sweep did not stream): the limits cannot be checked"
            elif best is None:
                note = "no load point met MLPerf's limits"
            else:
                note = "indicative: MLPerf's dataset and Poisson arrivals, not this sweep's fixed ISL/OSL"
            rows.append({
                "run": run, "model": first["model"], "gpu": the_gpu, "gpu_count": int(count),
                "mlperf": f"MLPerf Inference {ref.version} {ref.division}, {ref.scenario}, {ref.submitter}",
                "mlperf_system": ref.system, "mlperf_output_tok_s": float(ref.output_tok_s),
                "mlperf_ttft_p99_ms": float(ref.ttft_p99_ms), "mlperf_tpot_p99_ms": float(ref.tpot_p99_ms),
                "ttft_limit_ms": float(ref.ttft_limit_ms), "tpot_limit_ms": float(ref.tpot_limit_ms),
                "best_point_in_limits": None if best is None else best["point"],
                "output_tok_s_in_limits": None if best is None else float(best["output_throughput_tok_s"]),
                "ratio_to_mlperf": None if best is None else float(best["output_throughput_tok_s"]) / ref.output_tok_s,
                "note": note, "source": ref.source,
            })
    return pd.DataFrame(rows, columns=MLPERF_COLUMNS)
