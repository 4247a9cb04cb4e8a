"""aiperf's exports -> our per-point summary of a load sweep (aiperf's files are read, never changed).

Why our own summary beside aiperf's: analysis wants one small typed record per load point (concurrency
or request rate; throughput; TTFT, inter-token and end-to-end latency p50/p99; goodput) across runs and
aiperf versions, while aiperf's ``profile_export_aiperf.json`` holds ~80 metrics in a schema that moves
with its releases. Every figure here is copied from aiperf's JSON export unchanged (same statistic, same
unit); nothing is recomputed. A figure that should be there and is not, or is not a number, or comes in
another unit, is an error naming the file and field, never a silent NaN.

Layout read: ``<sweep dir>/<kind>/[concurrency_16|rate_10.0/]profile_export_aiperf.json`` (a one-value
sweep writes straight into the artifact folder); aiperf's ``aggregate/`` and ``sweep_aggregate/``
folders are skipped (they restate the same runs).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recipelib.errors import ReportError

EXPORT = "profile_export_aiperf.json"
SUMMARY = "load_summary.json"
_SKIP = {"aggregate", "sweep_aggregate", "phases"}  # phases/: aiperf 0.13 splits warmup and profiling there


@dataclass(frozen=True)
class LoadPoint:
    """One load point as aiperf measured it. Latencies in ms, throughputs per second; see module doc."""

    mode: str  # "concurrency" or "request_rate"
    value: float  # the concurrency or the requests/s asked for
    requests: int  # successful requests aiperf counted
    errors: int
    output_tokens_per_s: float
    requests_per_s: float
    e2e_p50_ms: float
    e2e_p99_ms: float
    ttft_p50_ms: float | None  # None when the sweep did not stream (aiperf measures TTFT/ITL on streams)
    ttft_p99_ms: float | None
    itl_p50_ms: float | None
    itl_p99_ms: float | None
    goodput_rps: float | None  # requests/s meeting every SLO; None without SLOs
    good_fraction: float | None
    slos: dict[str, float]
    isl: float
    osl: float
    aiperf_version: str
    source: str  # the export this came from, relative to the sweep folder


def _metric(data: dict[str, Any], name: str, stat: str, unit: str, source: Path, *, required: bool) -> float | None:
    entry = data.get(name)
    if entry is None:
        if required:
            raise ReportError(name, f"missing from aiperf's export (needed: {stat} in {unit})", source=str(source))
        return None
    if not isinstance(entry, dict) or entry.get("unit") != unit:
        got = entry.get("unit") if isinstance(entry, dict) else type(entry).__name__
        raise ReportError(name, f"unit is {got!r}, expected {unit!r}", source=str(source))
    value = entry.get(stat)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ReportError(f"{name}.{stat}", f"is {value!r}, not a number", source=str(source))
    return float(value)


def _profiling_phase(data: dict[str, Any], source: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    config = data.get("input_config")
    phases = config.get("phases") if isinstance(config, dict) else None
    phase = next((p for p in phases or [] if isinstance(p, dict) and p.get("kind") == "profiling"), None)
    if phase is None:
        raise ReportError("input_config.phases", "no profiling phase recorded", source=str(source))
    return config, phase  # type: ignore[return-value]


def read_point(path: Path, root: Path | None = None) -> LoadPoint:
    """One ``profile_export_aiperf.json`` -> :class:`LoadPoint`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ReportError(EXPORT, f"cannot be read as JSON ({e})", source=str(path)) from e
    if not isinstance(data, dict):
        raise ReportError(EXPORT, "is not a JSON object", source=str(path))
    config, phase = _profiling_phase(data, path)
    if phase.get("concurrency") is not None and phase.get("rate") is None:
        mode, value = "concurrency", phase["concurrency"]
    elif phase.get("rate") is not None:
        mode, value = "request_rate", phase["rate"]
    else:
        raise ReportError("input_config.phases.profiling", "has neither concurrency nor rate", source=str(path))
    streaming = bool((config.get("endpoint") or {}).get("streaming"))
    slos = {str(k): float(v) for k, v in (config.get("slos") or {}).items()}

    def get(name: str, stat: str, unit: str, required: bool = True) -> float | None:
        return _metric(data, name, stat, unit, path, required=required)

    requests = get("request_count", "avg", "requests")
    return LoadPoint(
        mode=mode, value=float(value), requests=int(requests or 0),
        errors=int(get("error_request_count", "avg", "requests", required=False) or 0),
        output_tokens_per_s=get("output_token_throughput", "avg", "tokens/sec"),  # type: ignore[arg-type]
        requests_per_s=get("request_throughput", "avg", "requests/sec"),  # type: ignore[arg-type]
        e2e_p50_ms=get("request_latency", "p50", "ms"),  # type: ignore[arg-type]
        e2e_p99_ms=get("request_latency", "p99", "ms"),  # type: ignore[arg-type]
        ttft_p50_ms=get("time_to_first_token", "p50", "ms", streaming),
        ttft_p99_ms=get("time_to_first_token", "p99", "ms", streaming),
        itl_p50_ms=get("inter_token_latency", "p50", "ms", streaming),
        itl_p99_ms=get("inter_token_latency", "p99", "ms", streaming),
        goodput_rps=get("goodput", "avg", "requests/sec", bool(slos)),
        good_fraction=get("good_request_fraction", "avg", "ratio", False),
        slos=slos,
        isl=get("input_sequence_length", "avg", "tokens"),  # type: ignore[arg-type]
        osl=get("output_sequence_length", "avg", "tokens"),  # type: ignore[arg-type]
        aiperf_version=str(data.get("aiperf_version") or "unknown"),
        source=str(path.relative_to(root)) if root else str(path),
    )


def exports(directory: Path) -> list[Path]:
    """Every per-point export under ``directory``, aiperf's aggregate folders left out."""
    return sorted(p for p in directory.rglob(EXPORT) if not _SKIP & set(p.relative_to(directory).parts[:-1]))


def read_sweep(directory: Path) -> list[LoadPoint]:
    """All points of a sweep folder, ordered by mode then value; an empty folder is an error."""
    found = exports(directory)
    if not found:
        raise ReportError(EXPORT, "no aiperf export found (did the sweep run?)", source=str(directory))
    points = [read_point(p, directory) for p in found]
    return sorted(points, key=lambda p: (p.mode, p.value))


def write_summary(points: list[LoadPoint], path: Path, **about: Any) -> Path:
    """Our summary as JSON, create-only (an existing file is never overwritten): ``{"points": [...]}``."""
    body = {"schema": 1, **about, "points": [asdict(p) for p in points]}
    with open(path, "x", encoding="utf-8") as f:
        json.dump(body, f, indent=2)
        f.write("\n")
    return path
