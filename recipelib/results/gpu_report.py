"""Read a run's GPU preflight (``launcher/preflight.py``'s JSON) for the analysis notebook.

The launcher runs the preflight before its first phase and stores the report in each experiment's
``metadata.json`` under the key ``"preflight"``. A benchmark number means little without knowing
the node it came from was healthy: this module turns that report into a typed record and into
tables to show beside the run's results ("HBM copy 0.89 of the datasheet on every GPU").

A report with a missing field, an unknown status or a non-finite figure raises
:class:`GpuReportError` naming the field and the file, never a silent NaN. Skipped or failed checks
legitimately carry no figure (``null`` in the JSON); those show as empty cells.

Example::

    from recipelib.preflight import from_metadata, checks_table
    record = from_metadata(Path("metadata.json"))
    if record is not None:
        display(checks_table(record, numeric_only=True))
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recipelib.errors import GpuReportError, PreflightError

__all__ = [
    "GpuReportError",
    "PreflightCheck",
    "PreflightError",
    "PreflightGpu",
    "PreflightRecord",
    "checks_table",
    "from_metadata",
    "gpus_table",
    "headline",
    "parse_preflight",
    "runs_table",
]

SCHEMA_PREFIX = "preflight/"
DECISIONS = frozenset({"pass", "fail", "error", "crash"})
STATUSES = frozenset({"pass", "fail", "warn", "skip", "error"})


@dataclass(frozen=True, slots=True)
class PreflightCheck:
    """One check line: a figure against its datasheet limit, or a fact against what was expected.

    ``measured``/``limit`` are numbers for the measured checks (unit in ``unit``) and strings for
    identity checks (GPU model, versions); ``fraction`` = measured / limit where both are numbers.
    """

    name: str
    status: str
    measured: float | str | None
    limit: float | str | None
    unit: str
    fraction: float | None
    threshold: float | None
    gpu: int | None
    note: str


@dataclass(frozen=True, slots=True)
class PreflightGpu:
    """One GPU's inventory and measured figures."""

    index: int
    name: str
    memory_total_gib: float | None
    hbm_copy_tbps: float | None
    bf16_matmul_tflops: float | None
    ecc_uncorrected: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class PreflightRecord:
    """A whole preflight report, typed. ``healthy`` is what a reader of the results wants first."""

    decision: str
    mode: str
    seconds: float
    host: str
    started_at: str
    replay: bool
    gpu_count: int
    gpu_model: str
    datasheet: str | None
    versions: Mapping[str, str | None]
    link_type: str
    link_detail: str
    allreduce_busbw_gbps: float | None
    reasons: tuple[str, ...]
    checks: tuple[PreflightCheck, ...]
    gpus: tuple[PreflightGpu, ...]
    source: str | None = None

    @property
    def healthy(self) -> bool:
        return self.decision == "pass"


def _require(data: Mapping[str, Any], key: str, path: str, source: str | None) -> Any:
    if key not in data:
        raise GpuReportError(path, "is missing", source=source)
    return data[key]


def _number(raw: Any, path: str, source: str | None, *, allow_none: bool = True) -> float | None:
    if raw is None:
        if allow_none:
            return None
        raise GpuReportError(path, "has no value", source=source)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise GpuReportError(path, f"{raw!r} is not a number", source=source)
    if not math.isfinite(raw):
        raise GpuReportError(path, f"{raw!r} is not a finite number", source=source)
    return float(raw)


def _figure(raw: Any, path: str, source: str | None) -> float | str | None:
    """A check's measured/limit: a finite number, a string (identity checks), or None (not measured)."""
    if isinstance(raw, str) or raw is None:
        return raw
    return _number(raw, path, source)


def _text(raw: Any, path: str, source: str | None) -> str:
    if not isinstance(raw, str):
        raise GpuReportError(path, f"{raw!r} is not a string", source=source)
    return raw


def _check(raw: Any, i: int, source: str | None) -> PreflightCheck:
    path = f"checks[{i}]"
    if not isinstance(raw, Mapping):
        raise GpuReportError(path, "must be an object", source=source)
    name = _text(_require(raw, "name", f"{path}.name", source), f"{path}.name", source)
    status = _require(raw, "status", f"{path}.status", source)
    if status not in STATUSES:
        raise GpuReportError(f"{path}.status", f"{status!r} is not one of {sorted(STATUSES)}", source=source)
    gpu = raw.get("gpu")
    if gpu is not None and (isinstance(gpu, bool) or not isinstance(gpu, int)):
        raise GpuReportError(f"{path}.gpu", f"{gpu!r} is not a GPU index", source=source)
    return PreflightCheck(
        name=name,
        status=status,
        measured=_figure(_require(raw, "measured", f"{path}.measured", source), f"{path}.measured", source),
        limit=_figure(_require(raw, "limit", f"{path}.limit", source), f"{path}.limit", source),
        unit=str(raw.get("unit") or ""),
        fraction=_number(_require(raw, "fraction", f"{path}.fraction", source), f"{path}.fraction", source),
        threshold=_number(raw.get("threshold"), f"{path}.threshold", source),
        gpu=gpu,
        note=str(raw.get("note") or ""),
    )


def _gpu(raw: Any, i: int, source: str | None) -> PreflightGpu:
    path = f"gpus[{i}]"
    if not isinstance(raw, Mapping):
        raise GpuReportError(path, "must be an object", source=source)
    index = _require(raw, "index", f"{path}.index", source)
    if isinstance(index, bool) or not isinstance(index, int):
        raise GpuReportError(f"{path}.index", f"{index!r} is not a GPU index", source=source)
    mib = _number(raw.get("memory_total_mib"), f"{path}.memory_total_mib", source)
    ecc = _number(raw.get("ecc_uncorrected_volatile"), f"{path}.ecc_uncorrected_volatile", source)
    return PreflightGpu(
        index=index,
        name=str(raw.get("name") or "unknown"),
        memory_total_gib=None if mib is None else mib / 1024,
        hbm_copy_tbps=_number(raw.get("hbm_copy_tbps"), f"{path}.hbm_copy_tbps", source),
        bf16_matmul_tflops=_number(raw.get("bf16_matmul_tflops"), f"{path}.bf16_matmul_tflops", source),
        ecc_uncorrected=None if ecc is None else int(ecc),
        error=raw.get("error"),
    )


def parse_preflight(data: Mapping[str, Any] | str | bytes, *, source: str | None = None) -> PreflightRecord:
    """A preflight report (the dict, or its JSON text) as a :class:`PreflightRecord`.

    Raises :class:`GpuReportError` naming the field when the report is not one preflight wrote.
    """
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError as e:
            raise GpuReportError("json", f"is not valid JSON: {e}", source=source) from None
    if not isinstance(data, Mapping):
        raise GpuReportError("json", f"must be an object, got {type(data).__name__}", source=source)
    schema = _require(data, "schema", "schema", source)
    if not (isinstance(schema, str) and schema.startswith(SCHEMA_PREFIX)):
        raise GpuReportError("schema", f"{schema!r} is not a preflight report", source=source)
    decision = _require(data, "decision", "decision", source)
    if decision not in DECISIONS:
        raise GpuReportError("decision", f"{decision!r} is not one of {sorted(DECISIONS)}", source=source)
    raw_checks = _require(data, "checks", "checks", source)
    raw_gpus = _require(data, "gpus", "gpus", source)
    if not isinstance(raw_checks, list):
        raise GpuReportError("checks", "must be a list", source=source)
    if not isinstance(raw_gpus, list):
        raise GpuReportError("gpus", "must be a list", source=source)
    checks = tuple(_check(c, i, source) for i, c in enumerate(raw_checks))
    gpus = tuple(_gpu(g, i, source) for i, g in enumerate(raw_gpus))
    link = data.get("link") or {}
    allreduce = data.get("allreduce") or {}
    datasheet = data.get("datasheet") or {}
    names = sorted({g.name for g in gpus})
    return PreflightRecord(
        decision=decision,
        mode=str(data.get("mode", "")),
        seconds=_number(_require(data, "seconds", "seconds", source), "seconds", source, allow_none=False) or 0.0,
        host=str(data.get("host", "")),
        started_at=str(data.get("started_at", "")),
        replay=bool(data.get("replay", False)),
        gpu_count=len(gpus),
        gpu_model=", ".join(names),
        datasheet=datasheet.get("key"),
        versions=dict(data.get("versions") or {}),
        link_type=str(link.get("type", "unknown")),
        link_detail=str(link.get("detail", "")),
        allreduce_busbw_gbps=_number(allreduce.get("busbw_gbps"), "allreduce.busbw_gbps", source),
        reasons=tuple(str(r) for r in data.get("reasons", [])),
        checks=checks,
        gpus=gpus,
        source=source,
    )


def from_metadata(metadata: Mapping[str, Any] | str | Path, *, source: str | None = None) -> PreflightRecord | None:
    """The preflight stored in a run's ``metadata.json`` (a path or the loaded dict); None if absent.

    Absent is not an error: runs from before the preflight existed, or runs with it switched off.
    """
    if isinstance(metadata, (str, Path)):
        path = Path(metadata)
        source = source or str(path)
        try:
            metadata = json.loads(path.read_text())
        except ValueError as e:
            raise GpuReportError("json", f"metadata is not valid JSON: {e}", source=source) from None
    if not isinstance(metadata, Mapping):
        raise GpuReportError("json", "metadata must be an object", source=source)
    report = metadata.get("preflight")
    if report is None:
        return None
    return parse_preflight(report, source=source)


_CHECK_COLUMNS = ["check", "gpu", "status", "measured", "limit", "unit", "fraction", "threshold", "note"]


def checks_table(record: PreflightRecord, *, numeric_only: bool = False) -> pd.DataFrame:
    """One row per check. ``numeric_only`` keeps the measured checks, with float columns for plotting."""
    rows = []
    for c in record.checks:
        numeric = isinstance(c.measured, float) and isinstance(c.limit, float)
        if numeric_only and not numeric:
            continue
        rows.append({"check": c.name, "gpu": c.gpu, "status": c.status, "measured": c.measured, "limit": c.limit,
                     "unit": c.unit, "fraction": c.fraction, "threshold": c.threshold, "note": c.note})
    frame = pd.DataFrame(rows, columns=_CHECK_COLUMNS)
    frame["gpu"] = frame["gpu"].astype("Int64")
    if numeric_only:
        frame = frame.astype({"measured": float, "limit": float, "fraction": float, "threshold": float})
    return frame


def gpus_table(record: PreflightRecord) -> pd.DataFrame:
    """One row per GPU with its figures and their fractions of the datasheet."""
    limits = {c.name: c.limit for c in record.checks if isinstance(c.limit, float)}
    hbm_limit, mm_limit = limits.get("hbm_copy"), limits.get("bf16_matmul")
    rows = []
    for g in record.gpus:
        rows.append({
            "gpu": g.index,
            "name": g.name,
            "memory_GiB": g.memory_total_gib,
            "hbm_copy_TBps": g.hbm_copy_tbps,
            "hbm_fraction": None if g.hbm_copy_tbps is None or not hbm_limit else g.hbm_copy_tbps / hbm_limit,
            "bf16_matmul_TFLOPs": g.bf16_matmul_tflops,
            "matmul_fraction": (None if g.bf16_matmul_tflops is None or not mm_limit
                                else g.bf16_matmul_tflops / mm_limit),
            "ecc_uncorrected": g.ecc_uncorrected,
            "error": g.error,
        })
    return pd.DataFrame(rows, columns=["gpu", "name", "memory_GiB", "hbm_copy_TBps", "hbm_fraction",
                                       "bf16_matmul_TFLOPs", "matmul_fraction", "ecc_uncorrected", "error"])


def headline(record: PreflightRecord) -> dict[str, Any]:
    """The few figures to print beside a run's throughput: the slowest GPU decides each one."""

    def worst(name: str) -> float | None:
        values = [c.fraction for c in record.checks if c.name == name and c.fraction is not None]
        return min(values) if values else None

    return {
        "decision": record.decision,
        "gpus": f"{record.gpu_count} x {record.gpu_model}" if record.gpu_count else "none",
        "hbm_fraction_min": worst("hbm_copy"),
        "matmul_fraction_min": worst("bf16_matmul"),
        "allreduce_busbw_GBps": record.allreduce_busbw_gbps,
        "allreduce_fraction": worst("allreduce_busbw"),
        "link": record.link_type,
        "driver": record.versions.get("driver"),
        "cuda": record.versions.get("cuda_runtime"),
        "seconds": record.seconds,
    }


def runs_table(records: Mapping[str, PreflightRecord] | Sequence[tuple[str, PreflightRecord]]) -> pd.DataFrame:
    """One row per run (keyed by run or experiment id), for comparing nodes across runs."""
    items = records.items() if isinstance(records, Mapping) else records
    return pd.DataFrame([{"run": key, **headline(rec)} for key, rec in items]).set_index("run")
