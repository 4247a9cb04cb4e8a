"""Read trtllm-bench reports, text or JSON, of every version we have seen, into one typed record.

trtllm-bench has printed its summary in several layouts (each verified against a published sample,
see ``tests/data/reports/SOURCES.md``):

- 0.16/0.17: ``= ENGINE DETAILS`` (or ``= PyTorch backend``), ``= WORLD + RUNTIME INFORMATION``, and a
  ``= PERFORMANCE OVERVIEW`` that holds the request count and lengths and calls output tokens/s
  "Token Throughput"; ``--streaming`` adds ``= STREAMING STATISTICS`` (TTFT, inter-token latency).
  The code prints tab separators; logs copied from a terminal or a README have spaces.
- ~0.19/0.20: ``= REQUEST DETAILS``; "Total Output Throughput", per-user/per-GPU throughput in
  ``tokens/sec/user``, a request-latency percentile breakdown, TTFT/TPOT breakdowns when streaming.
- ~0.21: ``= PYTORCH BACKEND``, ``[w/ ctx] (tps/user)``, ``(tps/gpu)``, a GTPS breakdown.
- ~1.x: ``= MACHINE DETAILS`` (the GPU), "TensorRT LLM Version" without the hyphen, ``Revision``.

Headers may carry trailing spaces and values may follow tabs, spaces or both. A file may hold several
runs (a launcher log of a sweep): every ``PERFORMANCE OVERVIEW`` section is one report, described by the
sections printed before it (engine, world, request details) and completed by those printed after it
(streaming statistics, dataset details) up to the next run's first section.

A report whose required values are missing, or whose values are not finite numbers, raises
:class:`ReportError` naming the field and the file: a placeholder (``<value>``) or a truncated copy
never becomes a silent NaN in a table.

Example::

    from recipelib.reports import parse_text
    [report] = parse_text(Path("report.txt").read_text(), source="report.txt")
    report.output_throughput   # output tokens/s
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from recipelib.errors import ReportError

log = logging.getLogger(__name__)

__all__ = [
    "BenchReport",
    "Percentiles",
    "ReportError",
    "parse_json",
    "parse_report",
    "parse_text",
]


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

_INT_FIELDS = frozenset(
    {"max_input_len", "max_seq_len", "tp_size", "pp_size", "ep_size", "max_batch_size", "max_num_tokens",
     "num_requests"}
)
_STR_FIELDS = frozenset(
    {"model", "model_path", "engine_dir", "trtllm_version", "backend", "dtype", "kv_cache_dtype",
     "quantization", "gpu", "scheduling_policy", "source", "layout"}
)
_PERCENTILE_FIELDS = ("latency_percentiles_ms", "ttft_percentiles_ms", "tpot_percentiles_ms", "gen_tps_percentiles")
_NONE_WORDS = frozenset({"none", "n/a", "null", ""})
"""What trtllm-bench prints for an unset value (Python's ``None``); only allowed where it can be unset."""
_NULLABLE = frozenset({"ep_size", "kv_cache_percent", "max_input_len", "max_seq_len", "max_batch_size",
                       "max_num_tokens"})

# ---------------------------------------------------------------------------------------------------
# Text reports
# ---------------------------------------------------------------------------------------------------

# Printed label (lower case, whitespace collapsed) -> BenchReport attribute. One table for all layouts.
_LABELS: dict[str, str] = {
    "model": "model",
    "model path": "model_path",
    "engine directory": "engine_dir",
    "tensorrt-llm version": "trtllm_version",
    "tensorrt llm version": "trtllm_version",
    "dtype": "dtype",
    "kv cache dtype": "kv_cache_dtype",
    "quantization": "quantization",
    "max input length": "max_input_len",
    "max sequence length": "max_seq_len",
    "tp size": "tp_size",
    "pp size": "pp_size",
    "ep size": "ep_size",
    "max runtime batch size": "max_batch_size",
    "max runtime tokens": "max_num_tokens",
    "scheduling policy": "scheduling_policy",
    "kv memory percentage": "kv_cache_percent",
    "number of requests": "num_requests",
    "number of concurrent requests": "avg_concurrency",
    "average input length (tokens)": "avg_isl",
    "average output length (tokens)": "avg_osl",
    "request throughput (req/sec)": "request_throughput",
    "token throughput (tokens/sec)": "output_throughput",  # 0.16/0.17: output tokens/s
    "total output throughput (tokens/sec)": "output_throughput",
    "total token throughput (tokens/sec)": "total_token_throughput",
    "per user output throughput (tokens/sec/user)": "per_user_output_throughput",
    "per user output throughput [w/ ctx] (tps/user)": "per_user_output_throughput",
    "per gpu output throughput (tokens/sec/gpu)": "per_gpu_output_throughput",
    "per gpu output throughput (tps/gpu)": "per_gpu_output_throughput",
    "per user output speed [1/tpot] (tokens/sec/user)": "per_user_output_speed",
    "per user output speed (tps/user)": "per_user_output_speed",
    "total latency (ms)": "total_latency_ms",
    "average request latency (ms)": "avg_request_latency_ms",
    "average time-to-first-token (ms)": "ttft_ms",
    "average time-to-first-token [ttft] (ms)": "ttft_ms",
    "average inter-token latency (ms)": "tpot_ms",  # 0.16/0.17: (last - first token) / generated tokens
    "average time-per-output-token [tpot] (ms)": "tpot_ms",
}
_LAYOUT_HINTS = {
    "token throughput (tokens/sec)": "0.16-0.17",
    "per user output throughput (tokens/sec/user)": "0.19-0.20",
    "per user output throughput [w/ ctx] (tps/user)": "0.21+",
}
_PERCENTILE_TAGS = {
    "latency": "latency_percentiles_ms",
    "ttft": "ttft_percentiles_ms",
    "tpot": "tpot_percentiles_ms",
    "gtps": "gen_tps_percentiles",
}
_STATS = {"minimum": "minimum", "maximum": "maximum", "average": "average",
          "p50": "p50", "p90": "p90", "p95": "p95", "p99": "p99"}

# Sections that describe the run printed *before* its PERFORMANCE OVERVIEW, and those that complete it.
_CONTEXT = frozenset({"ENGINE DETAILS", "PYTORCH BACKEND", "MACHINE DETAILS", "REQUEST DETAILS",
                      "WORLD + RUNTIME INFORMATION"})
_AFTER = frozenset({"STREAMING STATISTICS", "DATASET DETAILS"})
_PERFORMANCE = "PERFORMANCE OVERVIEW"

_RULE = re.compile(r"^={10,}$")
_TITLE = re.compile(r"^=\s+(\S.*?)$")
_PCT_LINE = re.compile(r"^\[(\w+)\]\s+(MINIMUM|MAXIMUM|AVERAGE|P\d+)\s*:\s*(.*)$", re.IGNORECASE)
_BANNER = re.compile(r"\[TensorRT-LLM\]\s+TensorRT-LLM version:\s*(\S+)")
_WS = re.compile(r"\s+")
_MACHINE = re.compile(r"^(?P<name>.+?),\s*memory\s+(?P<mem>[^,]+?)\s*GB\b", re.IGNORECASE)


@dataclass
class _Section:
    title: str
    lines: list[str] = field(default_factory=list)


def _sections(text: str) -> Iterator[_Section | str]:
    """Yield each ``= TITLE`` section (its body: the lines up to the next rule) and version banners.

    A section is a title line between two rules of ``=``; its body ends at the next rule. Lines outside
    sections are log noise, except the ``[TensorRT-LLM] TensorRT-LLM version:`` banner, yielded as str.
    """
    current: _Section | None = None
    in_body = False
    for raw in text.splitlines():
        line = raw.strip()
        if _RULE.match(line):
            if current is not None and in_body:
                yield current
                current, in_body = None, False
            elif current is not None:
                in_body = True
            continue
        title = _TITLE.match(line)
        if title and not line.startswith("=="):
            if current is not None:
                yield current
            current, in_body = _Section(_WS.sub(" ", title.group(1)).upper()), False
            continue
        if current is not None:
            current.lines.append(line)
            in_body = True
            continue
        banner = _BANNER.search(line)
        if banner:
            yield banner.group(1)
    if current is not None:
        yield current


def _kind(title: str) -> str:
    if title == _PERFORMANCE:
        return "performance"
    if title in _CONTEXT:
        return "context"
    if title in _AFTER or title.startswith("DECODING STATISTICS"):
        return "after"
    return "other"  # build-time sections (ENGINE BUILD INFO, ...): not part of a report


@dataclass
class _Draft:
    """Raw strings collected for one report before they are converted and checked."""

    values: dict[str, str] = field(default_factory=dict)
    percentiles: dict[str, dict[str, str]] = field(default_factory=dict)
    layout: str | None = None
    banner_version: str | None = None

    def take(self, section: _Section) -> None:
        if section.title == "ENGINE DETAILS":
            self.values.setdefault("backend", "tensorrt")
        elif section.title == "PYTORCH BACKEND":
            self.values.setdefault("backend", "pytorch")
        elif section.title == "MACHINE DETAILS":
            self.layout = "1.x"
        for line in section.lines:
            if not line or line.startswith("--"):
                continue
            pct = _PCT_LINE.match(line)
            if pct:
                target = _PERCENTILE_TAGS.get(pct.group(1).lower())
                if target is not None:
                    self.percentiles.setdefault(target, {})[pct.group(2).lower()] = pct.group(3).strip()
                continue
            label, sep, value = line.partition(":")
            if not sep:
                if section.title == "MACHINE DETAILS":
                    self._machine(line)
                continue
            key = _WS.sub(" ", label).strip().lower()
            attr = _LABELS.get(key)
            if attr is None:
                continue
            if key == "tensorrt llm version":
                self.layout = "1.x"
            elif key in _LAYOUT_HINTS and self.layout != "1.x":
                self.layout = _LAYOUT_HINTS[key]
            self.values[attr] = value.strip()

    def _machine(self, line: str) -> None:
        if line.lower().startswith("no gpu info"):
            return
        m = _MACHINE.match(line)
        if m:
            self.values["gpu"] = m.group("name").strip()
            self.values["gpu_memory_gb"] = m.group("mem").strip()
        else:
            self.values["gpu"] = line.split(",")[0].strip()


def parse_text(text: str, *, source: str | None = None) -> list[BenchReport]:
    """Every run in a trtllm-bench text report or log, one :class:`BenchReport` per PERFORMANCE OVERVIEW.

    Raises :class:`ReportError` if the text holds no PERFORMANCE OVERVIEW at all, or if any run's
    values are missing or not numbers.
    """
    reports: list[BenchReport] = []
    context = _Draft()
    current: _Draft | None = None
    banner: str | None = None
    for item in _sections(text):
        if isinstance(item, str):
            banner = item
            continue
        kind = _kind(item.title)
        if kind == "performance":
            if current is not None:
                reports.append(_finish(current, source, len(reports)))
            current, context = context, _Draft()
            current.banner_version = banner
            current.take(item)
        elif kind == "after" and current is not None:
            current.take(item)
        elif kind in ("context", "other"):
            if current is not None:
                reports.append(_finish(current, source, len(reports)))
                current = None
            if kind == "context":
                context.take(item)
    if current is not None:
        reports.append(_finish(current, source, len(reports)))
    if not reports:
        raise ReportError(
            "output_throughput",
            "no '= PERFORMANCE OVERVIEW' section: not a trtllm-bench throughput report, or cut off before it",
            source=source,
        )
    return reports


def _finish(draft: _Draft, source: str | None, index: int) -> BenchReport:
    where = source if index == 0 or source is None else f"{source} (run {index + 1})"
    values: dict[str, Any] = {}
    for attr, raw in draft.values.items():
        values[attr] = _convert(attr, raw, where)
    if values.get("trtllm_version") is None and draft.banner_version:
        values["trtllm_version"] = draft.banner_version
    for attr, stats in draft.percentiles.items():
        values[attr] = Percentiles(
            **{_STATS[k]: _number(f"{attr}.{k}", v, where) for k, v in stats.items() if k in _STATS}
        )
    values["layout"] = draft.layout or "unknown"
    values["source"] = source
    return _checked(values, where)


def _convert(attr: str, raw: str, where: str | None) -> Any:
    if attr in _STR_FIELDS:
        return None if raw.strip().lower() in _NONE_WORDS else raw.strip()
    if attr in _NULLABLE and raw.strip().lower() in _NONE_WORDS:
        return None
    if attr == "kv_cache_percent":
        raw = raw.strip().removesuffix("%")
    value = _number(attr, raw, where)
    if attr in _INT_FIELDS:
        if value != int(value):
            raise ReportError(attr, f"{raw!r} is not a whole number", source=where)
        return int(value)
    return value


def _number(attr: str, raw: Any, where: str | None) -> float:
    """A finite, non-negative float, or a ReportError that names the field and shows the value."""
    if isinstance(raw, bool):
        raise ReportError(attr, f"{raw!r} is not a number", source=where)
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        text = str(raw).strip().replace(",", "")
        if not text:
            raise ReportError(attr, "has no value", source=where)
        try:
            value = float(text)
        except ValueError:
            raise ReportError(attr, f"{str(raw).strip()!r} is not a number", source=where) from None
    if not math.isfinite(value):
        raise ReportError(attr, f"{raw!r} is not a finite number", source=where)
    if value < 0:
        raise ReportError(attr, f"{raw!r} is negative", source=where)
    return value


def _checked(values: Mapping[str, Any], where: str | None) -> BenchReport:
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


# ---------------------------------------------------------------------------------------------------
# JSON reports (--report_json)
# ---------------------------------------------------------------------------------------------------

# (section, key) in ReportUtility.get_statistics_dict() -> BenchReport attribute.
_JSON_KEYS: tuple[tuple[str, str, str], ...] = (
    ("engine", "model", "model"),
    ("engine", "model_path", "model_path"),
    ("engine", "engine_dir", "engine_dir"),
    ("engine", "version", "trtllm_version"),
    ("engine", "dtype", "dtype"),
    ("engine", "kv_cache_dtype", "kv_cache_dtype"),
    ("engine", "quantization", "quantization"),
    ("engine", "max_input_length", "max_input_len"),
    ("engine", "max_sequence_length", "max_seq_len"),
    ("machine", "name", "gpu"),
    ("machine", "memory.total", "gpu_memory_gb"),
    ("world_info", "tp_size", "tp_size"),
    ("world_info", "pp_size", "pp_size"),
    ("world_info", "ep_size", "ep_size"),
    ("world_info", "max_batch_size", "max_batch_size"),
    ("world_info", "max_num_tokens", "max_num_tokens"),
    ("world_info", "scheduling_policy", "scheduling_policy"),
    ("request_info", "num_requests", "num_requests"),
    ("request_info", "avg_num_concurrent_requests", "avg_concurrency"),
    ("request_info", "avg_input_length", "avg_isl"),
    ("request_info", "avg_output_length", "avg_osl"),
    ("performance", "total_latency_ms", "total_latency_ms"),
    ("performance", "avg_request_latency_ms", "avg_request_latency_ms"),
    ("performance", "request_throughput_req_s", "request_throughput"),
    ("performance", "system_output_throughput_tok_s", "output_throughput"),
    ("performance", "system_total_throughput_tok_s", "total_token_throughput"),
    ("performance", "output_throughput_per_user_tok_s", "per_user_output_throughput"),
    ("performance", "output_throughput_per_gpu_tok_s", "per_gpu_output_throughput"),
    ("streaming_metrics", "token_output_speed_tok_s", "per_user_output_speed"),
    ("streaming_metrics", "avg_ttft_ms", "ttft_ms"),
    ("streaming_metrics", "avg_tpot_ms", "tpot_ms"),
)
_JSON_PERCENTILES = (
    ("performance", "request_latency_percentiles_ms", "latency_percentiles_ms"),
    ("streaming_metrics", "ttft_percentiles", "ttft_percentiles_ms"),
    ("streaming_metrics", "tpot_percentiles", "tpot_percentiles_ms"),
    ("streaming_metrics", "itl_percentiles", "tpot_percentiles_ms"),
    ("streaming_metrics", "gen_tps_percentiles", "gen_tps_percentiles"),
)
_JSON_BACKENDS = {"trt": "tensorrt", "tensorrt": "tensorrt", "pytorch": "pytorch", "_autodeploy": "pytorch"}


def parse_json(obj_or_text: Mapping[str, Any] | str | bytes, *, source: str | None = None) -> BenchReport:
    """One report from trtllm-bench's ``--report_json`` file (a dict, or its JSON text).

    The layout is ``ReportUtility.get_statistics_dict()`` (0.18 and later): ``engine``, ``machine``
    (1.x), ``world_info``, ``request_info``, ``performance``, ``streaming_metrics``, ``dataset``.
    """
    if isinstance(obj_or_text, str | bytes | bytearray):
        try:
            obj = json.loads(obj_or_text, parse_constant=_reject_constant)
        except (ValueError, TypeError) as e:
            raise ReportError("report_json", f"is not valid JSON: {e}", source=source) from None
    else:
        obj = obj_or_text
    if not isinstance(obj, Mapping):
        raise ReportError("report_json", f"must be a JSON object, got {type(obj).__name__}", source=source)
    if not isinstance(obj.get("performance"), Mapping):
        raise ReportError(
            "output_throughput", "no 'performance' object: not a trtllm-bench --report_json file", source=source
        )

    values: dict[str, Any] = {}
    for section, key, attr in _JSON_KEYS:
        part = obj.get(section)
        if not isinstance(part, Mapping) or part.get(key) is None:
            continue
        raw = part[key]
        if attr in _STR_FIELDS:  # trtllm-bench writes str(None) for an unset path
            values[attr] = None if str(raw).strip().lower() in _NONE_WORDS else str(raw)
        else:
            values[attr] = _json_number(attr, f"{section}.{key}", raw, source)
    world = obj.get("world_info")
    if isinstance(world, Mapping) and world.get("kv_cache_percentage") is not None:
        values["kv_cache_percent"] = 100.0 * _json_number(
            "kv_cache_percent", "world_info.kv_cache_percentage", world["kv_cache_percentage"], source
        )
    dataset = obj.get("dataset")
    if isinstance(dataset, Mapping):  # older files without request_info
        for key, attr in (("avg_isl", "avg_isl"), ("avg_osl", "avg_osl"), ("num_requests", "num_requests")):
            if attr not in values and dataset.get(key) is not None:
                values[attr] = _json_number(attr, f"dataset.{key}", dataset[key], source)
    engine = obj.get("engine")
    if isinstance(engine, Mapping) and engine.get("backend") is not None:
        name = str(engine["backend"]).strip().lower()
        if name not in _JSON_BACKENDS:
            raise ReportError("backend", f"unknown backend {engine['backend']!r}", source=source)
        values["backend"] = _JSON_BACKENDS[name]
    for section, key, attr in _JSON_PERCENTILES:
        part = obj.get(section)
        stats = part.get(key) if isinstance(part, Mapping) else None
        if stats is None or attr in values:
            continue
        if not isinstance(stats, Mapping):
            raise ReportError(attr, f"{section}.{key} must be an object", source=source)
        values[attr] = Percentiles(
            **{k: _json_number(f"{attr}.{k}", f"{section}.{key}.{k}", v, source)
               for k, v in stats.items() if k in _STATS}
        )
    values["layout"] = "json"
    values["source"] = source
    return _checked(values, source)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _json_number(attr: str, path: str, raw: Any, source: str | None) -> float | int:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ReportError(attr, f"{path} = {raw!r} is not a number", source=source)
    value = _number(attr, raw, source)
    if attr in _INT_FIELDS:
        if value != int(value):
            raise ReportError(attr, f"{path} = {raw!r} is not a whole number", source=source)
        return int(value)
    return value


# ---------------------------------------------------------------------------------------------------


def parse_report(data: str | bytes, *, name: str, source: str | None = None) -> list[BenchReport]:
    """Parse a file's content by its name: ``*.json`` as ``--report_json``, anything else as text."""
    if name.endswith(".json"):
        return [parse_json(data, source=source or name)]
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes | bytearray) else data
    return parse_text(text, source=source or name)


def _percentile_columns(prefix: str, unit: str, value: Percentiles | None) -> dict[str, float | None]:
    keys = ("minimum", "p50", "p90", "p95", "p99", "maximum")
    short = {"minimum": "min", "maximum": "max"}
    return {f"{prefix}_{short.get(k, k)}_{unit}": (getattr(value, k) if value else None) for k in keys}


PERCENTILE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("latency_percentiles_ms", "latency", "ms"),
    ("ttft_percentiles_ms", "ttft", "ms"),
    ("tpot_percentiles_ms", "tpot", "ms"),
    ("gen_tps_percentiles", "gen_tps", "tok_s"),
)


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

