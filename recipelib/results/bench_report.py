"""The record a trtllm-bench report becomes (:class:`BenchReport`), and the checks every parser applies.

Both parsers (``report_text`` for the printed layouts, ``report_json`` for ``--report_json``) fill the same
record and convert values through the same functions, so a placeholder, a negative or a non-finite value
is refused the same way whichever file it came from: :class:`~recipelib.errors.ReportError` names the
field and the file, and never turns into a silent NaN in a table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recipelib.errors import ReportError

__all__ = ["REQUIRED", "BenchReport", "Percentiles"]


@dataclass(frozen=True, slots=True)
class Percentiles:
    """One printed percentile breakdown, in the unit its attribute name says (ms, or tokens/s/user)."""

    minimum: float | None = None
    maximum: float | None = None
    average: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None


@dataclass(frozen=True, slots=True)
class BenchReport:
    """One trtllm-bench throughput run. ``None`` wherever the report does not print the value.

    Throughputs are per second over the whole system unless the name says per user or per GPU;
    "output" tokens include the first token, as trtllm-bench counts them.
    """

    # what ran
    model: str | None = None
    model_path: str | None = None
    engine_dir: str | None = None
    trtllm_version: str | None = None
    backend: str | None = None  # "tensorrt" | "pytorch"
    dtype: str | None = None
    kv_cache_dtype: str | None = None
    quantization: str | None = None
    max_input_len: int | None = None
    max_seq_len: int | None = None
    gpu: str | None = None  # the MACHINE DETAILS line (1.x) or the JSON's machine name
    gpu_memory_gb: float | None = None
    tp_size: int | None = None
    pp_size: int | None = None
    ep_size: int | None = None
    max_batch_size: int | None = None
    max_num_tokens: int | None = None
    scheduling_policy: str | None = None
    kv_cache_percent: float | None = None
    # the requests
    num_requests: int | None = None
    avg_concurrency: float | None = None
    avg_isl: float | None = None
    avg_osl: float | None = None
    # performance
    request_throughput: float | None = None  # req/s
    output_throughput: float | None = None  # output tokens/s
    total_token_throughput: float | None = None  # input + output tokens/s
    per_user_output_throughput: float | None = None  # tokens/s/user, first token included
    per_gpu_output_throughput: float | None = None  # tokens/s/GPU
    per_user_output_speed: float | None = None  # tokens/s/user after the first token (1/TPOT)
    total_latency_ms: float | None = None
    avg_request_latency_ms: float | None = None
    ttft_ms: float | None = None  # average time to first token
    tpot_ms: float | None = None  # average time per output token (0.16/0.17: "inter-token latency")
    latency_percentiles_ms: Percentiles | None = None
    ttft_percentiles_ms: Percentiles | None = None
    tpot_percentiles_ms: Percentiles | None = None
    gen_tps_percentiles: Percentiles | None = None  # tokens/s/user
    # where it came from
    source: str | None = None
    layout: str = "unknown"  # "0.16-0.17", "0.19-0.20", "0.21+", "1.x" (MACHINE DETAILS), "json"


REQUIRED = ("request_throughput", "output_throughput", "total_latency_ms")
"""Without these a report says nothing about performance: their absence means a truncated report."""

INT_FIELDS = frozenset(
    {"max_input_len", "max_seq_len", "tp_size", "pp_size", "ep_size", "max_batch_size", "max_num_tokens",
     "num_requests"}
)
STR_FIELDS = frozenset(
    {"model", "model_path", "engine_dir", "trtllm_version", "backend", "dtype", "kv_cache_dtype",
     "quantization", "gpu", "scheduling_policy", "source", "layout"}
)
NONE_WORDS = frozenset({"none", "n/a", "null", ""})
"""What trtllm-bench prints for an unset value (Python's ``None``); only allowed where it can be unset."""
NULLABLE = frozenset({"ep_size", "kv_cache_percent", "max_input_len", "max_seq_len", "max_batch_size",
                      "max_num_tokens"})
STATS = {"minimum": "minimum", "maximum": "maximum", "average": "average",
         "p50": "p50", "p90": "p90", "p95": "p95", "p99": "p99"}
"""A percentile breakdown's statistic (as printed, lower case) -> the :class:`Percentiles` attribute."""


MAX_INT = 2**53
"""The largest whole number a report may hold: beyond it a float no longer counts exactly, and a table's
64-bit integer column would overflow. No real count (requests, tokens, GPUs) comes near it."""


def shown(raw: Any, limit: int = 60) -> str:
    """A value as an error shows it: short, and never a crash for a huge or deeply nested one."""
    if isinstance(raw, list | dict | tuple):
        return f"a JSON {'array' if isinstance(raw, list | tuple) else 'object'}"
    try:
        text = repr(raw)
    except (RecursionError, ValueError):  # ValueError: an int past Python's digit limit
        return f"a {type(raw).__name__}"
    return text if len(text) <= limit else text[: limit - 5] + "...'" + f" ({len(text)} characters)"


def number(attr: str, raw: Any, where: str | None) -> float:
    """A finite, non-negative float, or a ReportError that names the field and shows the value."""
    if isinstance(raw, bool):
        raise ReportError(attr, f"{raw!r} is not a number", source=where)
    if isinstance(raw, int | float):
        try:
            value = float(raw)
        except OverflowError:  # an int too large for a float
            raise ReportError(attr, f"{shown(raw)} is too large to be a measurement", source=where) from None
    else:
        text = str(raw).strip().replace(",", "")
        if not text:
            raise ReportError(attr, "has no value", source=where)
        try:
            value = float(text)
        except ValueError:
            raise ReportError(attr, f"{shown(str(raw).strip())} is not a number", source=where) from None
    if not math.isfinite(value):
        raise ReportError(attr, f"{shown(raw)} is not a finite number", source=where)
    if value < 0:
        raise ReportError(attr, f"{shown(raw)} is negative", source=where)
    return value


def whole(attr: str, value: float, raw: Any, where: str | None) -> int:
    """``value`` as an int, if it is a whole number no larger than :data:`MAX_INT`."""
    if value != int(value):
        raise ReportError(attr, f"{shown(raw)} is not a whole number", source=where)
    if value > MAX_INT:
        raise ReportError(attr, f"{shown(raw)} is too large (at most {MAX_INT})", source=where)
    return int(value)


def checked(values: Mapping[str, Any], where: str | None) -> BenchReport:
    """The record, once every :data:`REQUIRED` value is present and not zero (a run that completed nothing)."""
    missing = [attr for attr in REQUIRED if values.get(attr) is None]
    if missing:
        also = f"; also missing: {', '.join(missing[1:])}" if len(missing) > 1 else ""
        raise ReportError(
            missing[0], f"missing from the report (truncated, or a layout this parser does not know){also}",
            source=where,
        )
    for attr in REQUIRED:
        if values[attr] == 0:
            raise ReportError(attr, "is 0: the benchmark did not complete any request", source=where)
    return BenchReport(**values)
