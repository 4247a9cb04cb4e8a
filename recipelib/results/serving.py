"""Online serving results: load sweeps (aiperf against trtllm-serve) as one DataFrame, one row per load point.

Where they are (:mod:`recipelib.results.layout`, the launcher's contract)::

    <results>/<release>/<run_id>/<load point id>/load_summary.json             our summary (the rows)
    <results>/<release>/<run_id>/<load point id>/profile_export_aiperf.{json,csv}  aiperf's exports, as written

Only our summaries are read (and, from the bucket, only they are downloaded: aiperf's per-request exports
can be large and say nothing the summary does not). A point folder that holds aiperf's exports but no
summary, or a summary with a missing or non-numeric figure, is a :class:`~recipelib.errors.ResultsError`
naming the file and the field; ``strict=False`` skips that point with a warning and lists it in
``missing``. Throughput runs in the same tree are left to :func:`recipelib.results.load_results`.

The tables that answer the serving questions are in :mod:`recipelib.results.serving_analysis`, the
figures in :mod:`recipelib.results.serving_plots`.

Example::

    serving = load_serving(local_dir="results/")          # or bucket=..., or the shipped examples
    serving.frame[["run", "point", "output_throughput_tok_s", "ttft_p99_ms"]]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

import recipelib.results.layout as layout
from recipelib.errors import ResultsError
from recipelib.results.records import RunInfo, normalise_gpu, read_json, read_run
from recipelib.results.table import MissingReport

log = logging.getLogger(__name__)

__all__ = ["SERVING_COLUMNS", "ServingResults", "load_serving", "load_serving_local", "load_serving_store",
           "read_summary"]

SERVING_COLUMNS = (
    "release", "run_id", "run", "point", "model", "tp_size", "gpu", "gpu_count", "trtllm_version",
    "aiperf_version", "mode", "load", "concurrency", "request_rate", "isl", "osl", "requests", "errors",
    "output_throughput_tok_s", "request_throughput_req_s", "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms",
    "itl_p99_ms", "e2e_p50_ms", "e2e_p99_ms", "goodput_req_s", "good_fraction", "slos", "standin", "replay",
    "started", "server", "source",
)
"""One row per load point; units in the names (``_ms``, ``_tok_s``, ``_req_s``); ``load`` is the concurrency
or the requests/s asked for (``mode`` says which)."""

_MODES = ("concurrency", "request_rate")
# LoadPoint field -> (column, required); latencies and goodput may be null (no streaming, no SLOs)
_NUMBERS = {
    "value": ("load", True), "requests": ("requests", True), "errors": ("errors", True),
    "output_tokens_per_s": ("output_throughput_tok_s", True), "requests_per_s": ("request_throughput_req_s", True),
    "e2e_p50_ms": ("e2e_p50_ms", True), "e2e_p99_ms": ("e2e_p99_ms", True),
    "ttft_p50_ms": ("ttft_p50_ms", False), "ttft_p99_ms": ("ttft_p99_ms", False),
    "itl_p50_ms": ("itl_p50_ms", False), "itl_p99_ms": ("itl_p99_ms", False),
    "goodput_rps": ("goodput_req_s", False), "good_fraction": ("good_fraction", False),
    "isl": ("isl", True), "osl": ("osl", True),
}


@dataclass(frozen=True)
class ServingResults:
    """Loaded load sweeps: ``frame`` has one row per load point (:data:`SERVING_COLUMNS`)."""

    frame: pd.DataFrame
    runs: tuple[str, ...]  # release/run_id, in the frame's order
    missing: tuple[MissingReport, ...] = ()  # points skipped with strict=False, and why
    origin: str = ""

    @property
    def standin(self) -> bool:
        """Whether any point was measured against the stand-in server (no model, no GPU)."""
        return bool(self.frame["standin"].any()) if not self.frame.empty else False

    @property
    def replay(self) -> bool:
        return bool(self.frame["replay"].any()) if not self.frame.empty else False


# -- reading one summary -----------------------------------------------------------------------------


def _number(value: Any, where: str, name: str, *, required: bool) -> float | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ResultsError(f"{where}: {name} is {value!r}, not a number"
                           + ("" if required else " (or null)") + "; the load step writes numbers only")
    return float(value)


def _optional(doc: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = doc.get(key)
    if value is None:
        return None
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ResultsError(f"{where}: {key} is {value!r}, not a whole number (or null)")
    if kind is bool and not isinstance(value, bool):
        raise ResultsError(f"{where}: {key} is {value!r}, not true or false")
    if kind is str and not isinstance(value, str):
        raise ResultsError(f"{where}: {key} is {value!r}, not a string (or null)")
    return value


def read_summary(path: Path, *, where: str | None = None) -> list[dict[str, Any]]:
    """One ``load_summary.json`` -> rows (without the run's columns); ``where`` names it in errors."""
    where = where or str(path)
    doc = read_json(path)
    if doc is None:
        raise ResultsError(f"{where}: no such file: the load point has no summary (the load step writes it "
                           "beside aiperf's exports); load with strict=False to skip it")
    if not isinstance(doc, Mapping):
        raise ResultsError(f"{where}: must be a JSON object, got {type(doc).__name__}")
    if doc.get("schema") != 1:
        raise ResultsError(f"{where}: schema {doc.get('schema')!r} is not one this reader knows (1)")
    missing = [k for k in layout.LOAD_SUMMARY_KEYS if k not in doc]
    if missing or not isinstance(doc["points"], list) or not doc["points"]:
        raise ResultsError(f"{where}: points: {'missing' if missing else 'must be a non-empty list'} "
                           "(one record per load point)")
    about = {"model": _optional(doc, "model", str, where), "tp_size": _optional(doc, "tp_size", int, where),
             "gpu": normalise_gpu(_optional(doc, "gpu", str, where)),
             "gpu_count": _optional(doc, "gpu_count", int, where),
             "trtllm_version": _optional(doc, "trtllm_version", str, where),
             "standin": bool(_optional(doc, "standin", bool, where)),
             "replay": bool(_optional(doc, "replay", bool, where)), "server": _optional(doc, "server", str, where),
             "started": _time(doc.get("started"), where)}
    return [_point_row(p, where, f"points[{i}]", about) for i, p in enumerate(doc["points"])]


def _point_row(point: Any, where: str, at: str, about: Mapping[str, Any]) -> dict[str, Any]:
    """One LoadPoint record (``at`` is its place in the file, ``points[0]``) as a row, every figure checked."""
    if not isinstance(point, Mapping):
        raise ResultsError(f"{where}: {at}: must be a JSON object (a LoadPoint record)")
    mode = point.get("mode")
    if mode not in _MODES:
        raise ResultsError(f"{where}: {at}.mode: {mode!r} is not one of {', '.join(_MODES)}")
    row: dict[str, Any] = dict(about)
    for name, (column, required) in _NUMBERS.items():
        if required and name not in point:
            raise ResultsError(f"{where}: {at}.{name}: missing (required in every load point)")
        row[column] = _number(point.get(name), where, f"{at}.{name}", required=required)
    if row["load"] <= 0:
        raise ResultsError(f"{where}: {at}.value: {row['load']!r} is not a positive concurrency or rate")
    slos = point.get("slos") or {}
    if not isinstance(slos, Mapping):
        raise ResultsError(f"{where}: {at}.slos: must be a mapping of aiperf metric to milliseconds")
    row["slos"] = ", ".join(f"{k} <= {_number(v, where, f'{at}.slos.{k}', required=True):g} ms"
                            for k, v in slos.items()) or None
    row["mode"] = mode
    row["concurrency"] = int(row["load"]) if mode == "concurrency" else None
    row["request_rate"] = row["load"] if mode == "request_rate" else None
    row["aiperf_version"] = str(point.get("aiperf_version") or "unknown")
    return row


def _time(value: Any, where: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ResultsError(f"{where}: started {value!r} is not an ISO 8601 time") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


# -- a run's folder, a results root --------------------------------------------------------------------


def _is_point_folder(path: Path) -> bool:
    """A load point's folder: our summary, aiperf's export (a point whose summary is missing) or the load
    step's account of a failed point in it."""
    return any((path / name).is_file() for name in (layout.LOAD_SUMMARY, layout.LOAD_EXPORT, layout.LOAD_ERROR))


def _run_rows(run_dir: Path, release: str, run_id: str, named: str, strict: bool,
              missing: list[MissingReport]) -> list[dict[str, Any]]:
    info = read_run(run_dir, release, run_id, where=f"{named}/{layout.RUN_FILE}")
    rows: list[dict[str, Any]] = []
    for point_dir in sorted(p for p in run_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not _is_point_folder(point_dir):
            continue
        where = f"{named}/{point_dir.name}/{layout.LOAD_SUMMARY}"
        failed = point_dir / layout.LOAD_ERROR
        if failed.is_file() and not (point_dir / layout.LOAD_SUMMARY).is_file():  # the load step said why
            reason = failed.read_text(encoding="utf-8", errors="replace").strip() or "failed (no reason written)"
            log.warning("load point %s/%s failed: %s", info.key, point_dir.name, reason)
            missing.append(MissingReport(info.key, point_dir.name, reason))
            continue
        try:
            point_rows = read_summary(point_dir / layout.LOAD_SUMMARY, where=where)
        except ResultsError as e:
            if strict:
                raise
            log.warning("skipping load point %s/%s: %s", info.key, point_dir.name, e)
            missing.append(MissingReport(info.key, point_dir.name, str(e)))
            continue
        for row in point_rows:
            rows.append(_with_run(row, info, point_dir.name, where))
    return rows


def _with_run(row: dict[str, Any], info: RunInfo, point: str, source: str) -> dict[str, Any]:
    row.update(release=info.release, run_id=info.run_id, run=info.key, point=point, source=source)
    row["model"] = row["model"] or info.model
    row["gpu"] = row["gpu"] or info.gpu
    row["gpu_count"] = row["gpu_count"] or info.gpu_count
    row["replay"] = bool(row["replay"] or info.replay)
    if row["started"] is None and info.started is not None:
        row["started"] = pd.Timestamp(info.started)
    return row


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(SERVING_COLUMNS))
    for column in ("tp_size", "gpu_count", "concurrency", "requests", "errors"):
        frame[column] = frame[column].astype("Int64")
    for column in ("standin", "replay"):
        frame[column] = frame[column].astype(bool)
    frame["started"] = pd.to_datetime(frame["started"], utc=True)
    return frame.sort_values(["started", "run", "mode", "load"], na_position="last",
                             kind="stable").reset_index(drop=True)


def _serving_runs(root: Path) -> list[tuple[str, str, Path]]:
    """``(release, run_id, folder)`` of every run under a results root that holds a load point."""
    found = []
    for release in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for run in sorted(p for p in release.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if any(_is_point_folder(p) for p in run.iterdir() if p.is_dir()):
                found.append((release.name, run.name, run))
    return found


def _choose(found: list[tuple[str, str, Path]], runs: str | Sequence[str], where: str,
            started: Mapping[str, Any], required: bool = True) -> list[tuple[str, str, Path]]:
    items = runs.split(",") if isinstance(runs, str) else list(runs)
    tokens = [t.strip() for t in items if t and t.strip()]
    if not tokens:
        raise ResultsError("serving runs is empty: give 'latest', 'all', or run ids (release/run_id)")
    if not found and not required:
        return []
    if not found:
        raise ResultsError(f"no serving runs (folders with {layout.LOAD_SUMMARY} or aiperf exports) under {where}")
    if tokens == ["all"]:
        return found
    if tokens == ["latest"]:
        epoch = pd.Timestamp.min.tz_localize("UTC")
        return [max(found, key=lambda f: (started.get(f"{f[0]}/{f[1]}") or epoch, f[1]))]
    chosen = []
    for token in tokens:
        match = [f for f in found if token in (f"{f[0]}/{f[1]}", f[1])]
        if len(match) != 1:
            listed = ", ".join(f"{f[0]}/{f[1]}" for f in found)
            why = "is in several releases: write release/run_id" if match else "is not one"
            raise ResultsError(f"serving run {token!r} {why}; the serving runs under {where}: {listed}")
        chosen.append(match[0])
    return chosen


def _started(found: list[tuple[str, str, Path]]) -> dict[str, Any]:
    """When each run started, for "latest": from run.json, else from any point's summary (lenient)."""
    out: dict[str, Any] = {}
    for release, run_id, folder in found:
        value = None
        for doc_path in [folder / layout.RUN_FILE, *sorted(folder.glob(f"*/{layout.LOAD_SUMMARY}"))]:
            try:
                doc = read_json(doc_path)
                value = _time(doc.get("started"), str(doc_path)) if isinstance(doc, Mapping) else None
            except ResultsError:  # a bad file is reported when the run is read, not here
                value = None
            if value is not None:
                break
        out[f"{release}/{run_id}"] = value
    return out


def load_serving_local(path: str | Path, runs: str | Sequence[str] = "all", *, strict: bool = True,
                       origin: str | None = None, required: bool = True) -> ServingResults:
    """Serving runs in a local folder: a results root (``release/run_id/<point>/``) or one run's folder.

    ``required=False`` returns an empty table where there are none (a results tree of throughput runs only)
    instead of raising; a serving run that is there is read as strictly either way.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ResultsError(f"{root} is not a folder")
    if any(_is_point_folder(p) for p in root.iterdir() if p.is_dir()):  # one run's folder
        found = [(root.parent.name, root.name, root)]
    else:
        found = _serving_runs(root)
        latest = isinstance(runs, str) and runs.strip() == "latest"
        found = _choose(found, runs, str(root), _started(found) if latest else {}, required)
    missing: list[MissingReport] = []
    rows = [row for release, run_id, folder in found
            for row in _run_rows(folder, release, run_id, str(folder), strict, missing)]
    frame = _frame(rows)
    return ServingResults(frame, tuple(dict.fromkeys(frame["run"])), tuple(missing), origin or str(root))


def load_serving_store(store: Any, runs: str | Sequence[str] = "all", *, offline: bool = False,
                       strict: bool = True, required: bool = True) -> ServingResults:
    """Serving runs of a :class:`~recipelib.results.ResultsStore`, through its cache: one listing of the
    bucket, then only ``run.json`` and the summaries are downloaded (what is cached at its size is not)."""
    if not offline and store.client is not None:
        base = f"{store.prefix}/" if store.prefix else ""
        for blob in store._list(base):  # the store's own listing, with its error translation
            relative = blob.name[len(base):]
            parts = PurePosixPath(relative).parts
            wanted = (len(parts) == 4 and parts[3] == layout.LOAD_SUMMARY) or (
                len(parts) == 3 and parts[2] == layout.RUN_FILE)
            if not wanted or any(p in ("", ".", "..") for p in parts):
                continue
            target = store.run_dir(parts[0], parts[1]).joinpath(*parts[2:])
            if target.is_file() and blob.size is not None and target.stat().st_size == blob.size:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            blob.download_to_filename(str(tmp), **store._call)
            tmp.replace(target)
    root = store.local_root
    if not root.is_dir() and required:
        raise ResultsError(f"no serving runs under {store.uri} (nothing cached in {root})")
    if not root.is_dir():
        return ServingResults(_frame([]), (), (), store.uri)
    return load_serving_local(root, runs, strict=strict, origin=store.uri, required=required)


def load_serving(*, bucket: str = "", prefix: str = "", runs: str | Sequence[str] = "all", local_dir: str = "",
                 cache_dir: str = "", offline: bool = False, endpoint: str = "", client: Any = None,
                 strict: bool = True, required: bool = True) -> ServingResults:
    """What the analyze notebook loads for serving, chosen as :func:`recipelib.results.load_results` chooses:
    a local folder, else the bucket (the settings' if none is given), else the shipped example."""
    from recipelib.results import store as store_module
    from recipelib.results.local import examples_dir

    if local_dir:
        return load_serving_local(local_dir, runs, strict=strict, required=required)
    bucket, prefix = store_module._location(bucket, prefix)
    if not bucket:
        return load_serving_local(examples_dir(), runs, strict=strict, origin="recipelib examples", required=required)
    if client is None and not offline:
        client = store_module.make_client(endpoint=endpoint or None)
    store = store_module.ResultsStore(client, bucket, prefix,
                                      cache_dir or store_module.default_cache_dir(endpoint or None))
    return load_serving_store(store, runs, offline=offline, strict=strict, required=required)
