"""Read trtllm-bench's ``--report_json`` file (``ReportUtility.get_statistics_dict()``, 0.18 and later).

The JSON carries the same numbers as the printed report under fixed keys, so one table maps each
``(section, key)`` to a :class:`~recipelib.results.bench_report.BenchReport` attribute. Values must be
JSON numbers: a string, ``NaN`` or ``Infinity`` is a :class:`~recipelib.errors.ReportError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from recipelib.errors import ReportError
from recipelib.results.bench_report import (
    INT_FIELDS,
    NONE_WORDS,
    STATS,
    STR_FIELDS,
    BenchReport,
    Percentiles,
    checked,
    number,
    shown,
    whole,
)

__all__ = ["parse_json"]

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
_SECTIONS = ("engine", "machine", "world_info", "request_info", "performance", "streaming_metrics", "dataset")
_JSON_BACKENDS = {"trt": "tensorrt", "tensorrt": "tensorrt", "pytorch": "pytorch", "_autodeploy": "pytorch"}


def parse_json(obj_or_text: Mapping[str, Any] | str | bytes, *, source: str | None = None) -> BenchReport:
    """One report from trtllm-bench's ``--report_json`` file (a dict, or its JSON text; bytes must be UTF-8).

    The layout is ``ReportUtility.get_statistics_dict()`` (0.18 and later): ``engine``, ``machine``
    (1.x), ``world_info``, ``request_info``, ``performance``, ``streaming_metrics``, ``dataset``.
    Anything malformed is a :class:`ReportError` naming the file and the field, never another exception: a
    section that is not an object, a string where a number belongs (or the reverse), ``NaN``/``Infinity``,
    a number too large to be a measurement, nesting deeper than Python's parser follows, bytes that are not
    UTF-8. A section that is absent or ``null`` is not printed by that version, and left out.
    """
    obj = _load(obj_or_text, source)
    if not isinstance(obj, Mapping):
        raise ReportError("report_json", f"must be a JSON object, got {_kind(obj)}", source=source)
    for section in _SECTIONS:
        if obj.get(section) is not None and not isinstance(obj[section], Mapping):
            raise ReportError(section, f"must be a JSON object, got {_kind(obj[section])}", source=source)
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
        if attr in STR_FIELDS:  # trtllm-bench writes str(None) for an unset path
            if not isinstance(raw, str):
                raise ReportError(attr, f"{section}.{key} must be a string, got {_kind(raw)}", source=source)
            values[attr] = None if raw.strip().lower() in NONE_WORDS else raw
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
        name = engine["backend"].strip().lower() if isinstance(engine["backend"], str) else None
        if name not in _JSON_BACKENDS:
            raise ReportError("backend", f"unknown backend {shown(engine['backend'])}; allowed: "
                              f"{', '.join(sorted(_JSON_BACKENDS))}", source=source)
        values["backend"] = _JSON_BACKENDS[name]
    for section, key, attr in _JSON_PERCENTILES:
        part = obj.get(section)
        stats = part.get(key) if isinstance(part, Mapping) else None
        if stats is None or attr in values:
            continue
        if not isinstance(stats, Mapping):
            raise ReportError(attr, f"{section}.{key} must be an object, got {_kind(stats)}", source=source)
        values[attr] = Percentiles(
            **{k: _json_number(f"{attr}.{k}", f"{section}.{key}.{k}", v, source)
               for k, v in stats.items() if k in STATS}
        )
    values["layout"] = "json"
    values["source"] = source
    return checked(values, source)


def _load(obj_or_text: Any, source: str | None) -> Any:
    """The decoded document; text and bytes are parsed, anything else is taken as already decoded."""
    if not isinstance(obj_or_text, str | bytes | bytearray):
        return obj_or_text
    try:
        text = obj_or_text if isinstance(obj_or_text, str) else bytes(obj_or_text).decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as e:
        raise ReportError("report_json", f"is not UTF-8 text ({e.reason} at byte {e.start})", source=source) from None
    except RecursionError:
        raise ReportError("report_json", "nests arrays or objects too deeply to be a trtllm-bench report",
                          source=source) from None
    except ValueError as e:  # includes an integer longer than Python's digit limit
        raise ReportError("report_json", f"is not valid JSON: {str(e)[:200]}", source=source) from None


def _kind(value: Any) -> str:
    """A JSON value's kind, as an error names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {shown(value)}"
    if isinstance(value, int | float):
        return f"the number {shown(value)}"
    return shown(value)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _json_number(attr: str, path: str, raw: Any, source: str | None) -> float | int:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ReportError(attr, f"{path} = {_kind(raw)} is not a number", source=source)
    value = number(attr, raw, source)
    if attr in INT_FIELDS:
        return whole(attr, value, raw, source)
    return value
