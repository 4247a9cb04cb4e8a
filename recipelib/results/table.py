"""The results table: one row per report, with what was asked beside what was measured (:data:`COLUMNS`).

:class:`Results` is what every loader returns (the bucket, a local folder, the shipped examples): the
DataFrame, the runs it came from and the experiments that produced no usable report, with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from recipelib.results.records import ExperimentMetadata, ExperimentSpec, RunInfo, normalise_gpu
from recipelib.results.reports import BenchReport, flatten

__all__ = ["COLUMNS", "ID_COLUMNS", "MissingReport", "Results", "RunRows", "combine", "report_row"]

ID_COLUMNS = (
    "release", "run_id", "run", "experiment", "report_index", "isl", "osl", "num_requests", "concurrency",
    "streaming", "started", "replay", "gpu", "gpu_count",
)
_REPORT_KEYS = tuple(flatten(BenchReport()))
COLUMNS: tuple[str, ...] = (*ID_COLUMNS, "model", *(k for k in _REPORT_KEYS if k != "model"))
"""The DataFrame's columns, in order. Units are in the names: ``_ms``, ``_req_s``, ``_tok_s``, ``_tokens``."""
_INT_COLUMNS = ("report_index", "isl", "osl", "num_requests", "concurrency", "gpu_count", "tp_size", "pp_size",
                "ep_size", "max_batch_size", "max_num_tokens", "report_num_requests")


@dataclass(frozen=True)
class MissingReport:
    """An experiment that produced no usable report; ``reason`` says why, for the notebook to show."""

    run: str
    experiment: str
    reason: str


@dataclass(frozen=True)
class Results:
    """Loaded runs: ``frame`` has one row per report (see :data:`COLUMNS`)."""

    frame: pd.DataFrame
    runs: tuple[RunInfo, ...]
    missing: tuple[MissingReport, ...]
    origin: str

    def runs_table(self) -> pd.DataFrame:
        """One row per run: what a person scans first."""
        return pd.DataFrame(
            [
                {
                    "run": r.key, "model": r.model, "status": r.status,
                    "started": r.started.isoformat() if r.started else None,
                    "finished": r.finished.isoformat() if r.finished else None,
                    "experiments": len(r.experiments), "gpu": r.gpu, "replay": r.replay,
                }
                for r in self.runs
            ],
            columns=["run", "model", "status", "started", "finished", "experiments", "gpu", "replay"],
        )

    def missing_table(self) -> pd.DataFrame:
        """Experiments that produced no usable report, and why (empty when every experiment did)."""
        return pd.DataFrame([m.__dict__ for m in self.missing], columns=["run", "experiment", "reason"])


@dataclass
class RunRows:
    """One run's rows and missing reports, before all chosen runs become one table."""

    info: RunInfo
    rows: list[dict[str, Any]] = field(default_factory=list)
    missing: list[MissingReport] = field(default_factory=list)


def report_row(report: BenchReport, info: RunInfo, experiment: str, index: int,
               metadata: ExperimentMetadata | None) -> dict[str, Any]:
    """One DataFrame row. ISL/OSL are what was asked (``metadata.json``'s ``experiment`` record, else the
    experiment id), the ``avg_*_tokens`` columns what the report measured."""
    spec = metadata.spec if metadata else ExperimentSpec.from_id(experiment)
    isl = spec.isl if spec else (round(report.avg_isl) if report.avg_isl is not None else None)
    osl = spec.osl if spec else (round(report.avg_osl) if report.avg_osl is not None else None)
    if report.tp_size:
        gpu_count = report.tp_size * (report.pp_size or 1)
    else:
        gpu_count = (metadata.gpu_count if metadata else None) or info.gpu_count
    row = flatten(report)
    row.update(
        release=info.release,
        run_id=info.run_id,
        run=info.key,
        experiment=experiment,
        report_index=index,
        isl=isl,
        osl=osl,
        num_requests=report.num_requests if report.num_requests is not None else (spec.num_requests if spec else None),
        concurrency=spec.concurrency if spec else None,
        streaming=spec.streaming if spec else False,
        started=info.started,
        replay=info.replay or bool(metadata and metadata.replay),
        gpu=normalise_gpu(report.gpu) or (metadata.gpu if metadata else None) or info.gpu,
        gpu_count=gpu_count,
        model=report.model or (metadata.model if metadata else None) or info.model,
    )
    return row


def combine(loaded: Sequence[RunRows], *, origin: str) -> Results:
    """All runs' rows as one typed, sorted table (oldest run first, then ISL, OSL, experiment)."""
    rows = [row for item in loaded for row in item.rows]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in _INT_COLUMNS:
        frame[column] = frame[column].astype("Int64")
    frame["replay"] = frame["replay"].astype(bool)
    frame["streaming"] = frame["streaming"].astype(bool)
    frame["started"] = pd.to_datetime(frame["started"], utc=True)
    frame = frame.sort_values(["started", "run", "isl", "osl", "experiment", "report_index"],
                              na_position="last", kind="stable").reset_index(drop=True)
    return Results(
        frame=frame,
        runs=tuple(item.info for item in loaded),
        missing=tuple(m for item in loaded for m in item.missing),
        origin=origin,
    )
