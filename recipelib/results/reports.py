"""trtllm-bench reports, text or JSON, of every version we have seen, read into one typed record.

This is the module to import: it gathers the record (:class:`BenchReport`, from ``bench_report``), the two
parsers (:func:`parse_text` from ``report_text``, :func:`parse_json` from ``report_json``), picks one by
file name (:func:`parse_report`) and flattens a report into a table row (:func:`flatten`).

A report whose required values are missing, or whose values are not finite numbers, raises
:class:`ReportError` naming the field and the file: a placeholder (``<value>``) or a truncated copy
never becomes a silent NaN in a table.

Example::

    from recipelib.results.reports import parse_report
    [report] = parse_report(Path("report.json").read_bytes(), name="report.json")
    report.output_throughput   # output tokens/s
"""

from __future__ import annotations

from typing import Any

from recipelib.errors import ReportError
from recipelib.results.bench_report import REQUIRED, BenchReport, Percentiles
from recipelib.results.report_json import parse_json
from recipelib.results.report_text import parse_text

__all__ = [
    "PERCENTILE_COLUMNS",
    "REQUIRED",
    "BenchReport",
    "Percentiles",
    "ReportError",
    "flatten",
    "parse_json",
    "parse_report",
    "parse_text",
]


def parse_report(data: str | bytes, *, name: str, source: str | None = None,
                 excerpt: bool = False) -> list[BenchReport]:
    """Parse a file's content by its name: ``*.json`` as ``--report_json``, anything else as text.

    Bytes must be UTF-8; ``excerpt`` is :func:`parse_text`'s (a published quote that may stop before the
    closing rule). Every problem is a :class:`ReportError` naming the file and the field.
    """
    if name.endswith(".json"):
        return [parse_json(data, source=source or name)]
    return parse_text(data, source=source or name, excerpt=excerpt)


PERCENTILE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("latency_percentiles_ms", "latency", "ms"),
    ("ttft_percentiles_ms", "ttft", "ms"),
    ("tpot_percentiles_ms", "tpot", "ms"),
    ("gen_tps_percentiles", "gen_tps", "tok_s"),
)
"""(BenchReport attribute, column prefix, unit) of each percentile breakdown that becomes columns."""


def _percentile_columns(prefix: str, unit: str, value: Percentiles | None) -> dict[str, float | None]:
    keys = ("minimum", "p50", "p90", "p95", "p99", "maximum")
    short = {"minimum": "min", "maximum": "max"}
    return {f"{prefix}_{short.get(k, k)}_{unit}": (getattr(value, k) if value else None) for k in keys}


def flatten(report: BenchReport) -> dict[str, Any]:
    """The report as one flat row, with units in the column names (the DataFrame's report columns)."""
    row: dict[str, Any] = {
        "model": report.model,
        "backend": report.backend,
        "trtllm_version": report.trtllm_version,
        "report_gpu": report.gpu,
        "tp_size": report.tp_size,
        "pp_size": report.pp_size,
        "ep_size": report.ep_size,
        "quantization": report.quantization,
        "kv_cache_dtype": report.kv_cache_dtype,
        "dtype": report.dtype,
        "max_batch_size": report.max_batch_size,
        "max_num_tokens": report.max_num_tokens,
        "report_num_requests": report.num_requests,
        "avg_concurrency": report.avg_concurrency,
        "avg_isl_tokens": report.avg_isl,
        "avg_osl_tokens": report.avg_osl,
        "request_throughput_req_s": report.request_throughput,
        "output_throughput_tok_s": report.output_throughput,
        "total_token_throughput_tok_s": report.total_token_throughput,
        "per_user_output_throughput_tok_s": report.per_user_output_throughput,
        "per_gpu_output_throughput_tok_s": report.per_gpu_output_throughput,
        "per_user_output_speed_tok_s": report.per_user_output_speed,
        "total_latency_ms": report.total_latency_ms,
        "avg_request_latency_ms": report.avg_request_latency_ms,
        "ttft_ms": report.ttft_ms,
        "tpot_ms": report.tpot_ms,
    }
    for attr, prefix, unit in PERCENTILE_COLUMNS:
        row.update(_percentile_columns(prefix, unit, getattr(report, attr)))
    row["report_layout"] = report.layout
    row["source"] = report.source
    return row
