"""The launcher's records, read strictly: a run's ``run.json`` and an experiment's ``metadata.json``.

Both follow schema 1 of :mod:`recipelib.results.layout` (``launcher/layout.py``, the module the launcher
writes through). A file that lacks a required key, or carries a schema this reader does not know, is a
:class:`~recipelib.errors.ResultsError` naming the file and the key: nothing is guessed from other
spellings. Beyond the required keys, two that the launcher writes into both records are read, each under
its one name: ``gpus`` (its ``nvidia-smi`` record, ``{"available": true, "count": 8, "gpus": [{"name": ...},
...]}``) and ``replay`` (``true`` when the local sandbox replayed a recorded run: no GPU ran).

A run folder without ``run.json`` is a run in progress (the launcher writes it last): :class:`RunInfo`
then knows only the run's release and id.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import recipelib.results.layout as layout
from recipelib.errors import ResultsError
from recipelib.results.bench_report import shown

log = logging.getLogger(__name__)

__all__ = ["ExperimentMetadata", "ExperimentSpec", "RunInfo", "newest_first", "read_json", "read_metadata",
           "read_run"]


@dataclass(frozen=True)
class RunInfo:
    """One benchmark run, as its ``run.json`` describes it; only ``release``/``run_id`` while it runs."""

    release: str
    run_id: str
    model: str | None = None
    status: str | None = None
    started: datetime | None = None
    finished: datetime | None = None
    experiments: tuple[str, ...] = ()
    gpu: str | None = None
    gpu_count: int | None = None
    replay: bool = False
    document: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    @property
    def key(self) -> str:
        return layout.run_prefix(self.release, self.run_id)

    @property
    def serving(self) -> bool:
        """A load sweep against a server (``"mode": "serving"``): its points are read by results.serving."""
        return self.document.get("mode") == "serving"

    @property
    def ended(self) -> bool:
        """Whether ``run.json`` exists: the launcher writes it once, when the run is over."""
        return self.status in layout.RUN_STATUSES

    @classmethod
    def from_document(cls, release: str, run_id: str, doc: Any, where: str = layout.RUN_FILE) -> RunInfo:
        """The run described by a schema-1 ``run.json`` document; ``where`` names the file in errors."""
        run = _checked(layout.check_run, doc, where)
        for key, expected in (("release", release), ("run_id", run_id)):
            if run[key] != expected:
                log.warning("%s says %s=%r; the path (%s/%s) wins", where, key, run[key], release, run_id)
        return cls(
            release=release,
            run_id=run_id,
            model=_text(run, "model", where),
            status=run["status"],
            started=_time(run, "started", where),
            finished=_time(run, "finished", where),
            experiments=tuple(str(e["id"]) for e in run["experiments"]),
            gpu=_gpu_name(run),
            gpu_count=_gpu_count(run),
            replay=_bool(run, "replay", where),
            document=MappingProxyType(dict(run)),
        )


@dataclass(frozen=True)
class ExperimentSpec:
    """What an experiment asked for (the benchmark's measured lengths are in the report)."""

    isl: int
    osl: int
    num_requests: int
    concurrency: int | None = None
    streaming: bool = False

    @classmethod
    def from_id(cls, experiment_id: str) -> ExperimentSpec | None:
        """Read from a folder name such as ``isl128-osl128-n3000-c64-stream``; ``None`` if it is not one."""
        parsed = layout.parse_experiment_id(experiment_id)
        return cls(**parsed) if parsed else None


@dataclass(frozen=True)
class ExperimentMetadata:
    """An experiment's ``metadata.json``: what was asked, how it ended, on which GPUs."""

    spec: ExperimentSpec
    status: str
    error: str | None
    model: str | None
    gpu: str | None = None
    gpu_count: int | None = None
    replay: bool = False


def read_json(path: Path) -> Any:
    """The parsed file, ``None`` if there is no such file, or a ResultsError naming it if it is not JSON."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except RecursionError:
        raise ResultsError(f"{path} nests arrays or objects too deeply to be a launcher record") from None
    except ValueError as e:  # bad JSON, not UTF-8, an integer past Python's digit limit
        raise ResultsError(f"{path} is not valid JSON: {str(e)[:200]}") from None


def read_run(run_dir: Path, release: str, run_id: str, *, where: str | None = None) -> RunInfo:
    """The run in ``run_dir`` (its ``run.json``, named ``where`` in errors), or a bare RunInfo while it runs."""
    doc = read_json(run_dir / layout.RUN_FILE)
    if doc is None:
        return RunInfo(release=release, run_id=run_id)
    return RunInfo.from_document(release, run_id, doc, where or str(run_dir / layout.RUN_FILE))


def read_metadata(path: Path, *, where: str | None = None) -> ExperimentMetadata | None:
    """An experiment's ``metadata.json`` checked against schema 1; ``None`` where there is none."""
    doc = read_json(path)
    if doc is None:
        return None
    where = where or str(path)
    meta = _checked(layout.check_metadata, doc, where)
    exp = meta["experiment"]
    spec = ExperimentSpec(
        isl=_int(exp, "isl", f"{where}: experiment"),
        osl=_int(exp, "osl", f"{where}: experiment"),
        num_requests=_int(exp, "num_requests", f"{where}: experiment"),
        concurrency=_int(exp, "concurrency", f"{where}: experiment") if exp.get("concurrency") is not None
        else None,
        streaming=_bool(exp, "streaming", f"{where}: experiment"),
    )
    return ExperimentMetadata(spec=spec, status=meta["status"], error=_text(meta, "error", where),
                              model=_text(meta, "model", where), gpu=_gpu_name(meta), gpu_count=_gpu_count(meta),
                              replay=_bool(meta, "replay", where))


def newest_first(runs: Sequence[RunInfo]) -> list[RunInfo]:
    """Latest start first; runs without a start time (in progress, or not recorded) last."""
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(runs, key=lambda r: (r.started or epoch, r.key), reverse=True)


def normalise_gpu(name: Any) -> str | None:
    """``NVIDIA H200``, ``nvidia-h200-141gb``, ``H100 80GB HBM3`` -> ``H200``/``H100``; others kept as given."""
    if not name:
        return None
    text = str(name)
    m = re.search(r"\b(?:nvidia[- ])?([abhgl]\d{2,3})\b", text, re.IGNORECASE) or re.search(
        r"(?:^|[-_ ])([abhgl]\d{2,3})(?:$|[-_ ])", text, re.IGNORECASE)
    return m.group(1).upper() if m else text


def _checked(check: Callable[[Any, str], Mapping[str, Any]], doc: Any, where: str) -> Mapping[str, Any]:
    try:
        return check(doc, where)
    except layout.LayoutError as e:
        raise ResultsError(str(e)) from None


def _text(doc: Mapping[str, Any], key: str, where: str) -> str | None:
    value = doc[key]
    if value is not None and not isinstance(value, str):
        raise ResultsError(f"{where}: {key!r} must be a string or null, got {shown(value)}")
    return value


_MAX_INT = 2**53
"""Larger counts are no real experiment's, and would overflow the table's 64-bit integer columns."""


def _int(doc: Mapping[str, Any], key: str, where: str) -> int:
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
        raise ResultsError(f"{where}: {key!r} must be a whole number from 0 to {_MAX_INT}, got {shown(value)}")
    return value


def _bool(doc: Mapping[str, Any], key: str, where: str) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        raise ResultsError(f"{where}: {key!r} must be true or false, got {shown(value)}")
    return value


def _time(doc: Mapping[str, Any], key: str, where: str) -> datetime | None:
    """An RFC 3339 time (the launcher writes ``2025-05-28T23:24:31.123Z``) as an aware datetime, or ``None``."""
    value = doc[key]
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ResultsError(f"{where}: {key!r} is not an ISO 8601 time: {shown(value)}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _smi_rows(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    record = doc.get("gpus")
    rows = record.get("gpus") if isinstance(record, Mapping) else None
    return [g for g in rows if isinstance(g, Mapping)] if isinstance(rows, list) else []


def _gpu_name(doc: Mapping[str, Any]) -> str | None:
    rows = _smi_rows(doc)
    return normalise_gpu(rows[0].get("name")) if rows else None


def _gpu_count(doc: Mapping[str, Any]) -> int | None:
    return len(_smi_rows(doc)) or None
