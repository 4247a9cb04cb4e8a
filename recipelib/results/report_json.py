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
        if attr in STR_FIELDS:  # trtllm-bench writes str(None) for an unset path
            values[attr] = None if str(raw).strip().lower() in NONE_WORDS else str(raw)
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
               for k, v in stats.items() if k in STATS}
        )
    values["layout"] = "json"
    values["source"] = source
    return checked(values, source)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _json_number(attr: str, path: str, raw: Any, source: str | None) -> float | int:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ReportError(attr, f"{path} = {raw!r} is not a number", source=source)
    value = number(attr, raw, source)
    if attr in INT_FIELDS:
        if value != int(value):
            raise ReportError(attr, f"{path} = {raw!r} is not a whole number", source=source)
        return int(value)
    return value
