"""Benchmark results: list runs in Cloud Storage, cache them locally, load them into one DataFrame.

The launcher writes, never overwriting::

    gs://BUCKET/<prefix>/<release>/<run_id>/run.json
    gs://BUCKET/<prefix>/<release>/<run_id>/<experiment_id>/{report.json, report.txt, metadata.json, launcher.log}

``report.json`` (trtllm-bench ``--report_json``) is preferred; ``report.txt`` is the fallback. Downloads
go to a local cache that mirrors the bucket. A run whose ``run.json`` says it has ended is marked
complete in the cache, and from then on loading it makes no network call at all: the analyze notebook
works offline. The storage client is passed in (tests inject one pointed at fake-gcs-server).

Example::

    store = ResultsStore(storage_client, "my-bucket", "trtllm-benchmarks")
    results = store.load("latest")
    results.frame[["run", "experiment", "output_throughput_tok_s"]]
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

import pandas as pd

from recipelib.errors import CloudError, RecipelibError, ResultsError
from recipelib.results.reports import BenchReport, ReportError, flatten, parse_json, parse_text

log = logging.getLogger(__name__)

__all__ = [
    "COLUMNS",
    "MissingReport",
    "Results",
    "ResultsError",
    "ResultsStore",
    "RunInfo",
    "default_cache_dir",
    "examples_dir",
    "load_examples",
    "load_local",
    "load_results",
    "make_client",
]

RUN_FILE = "run.json"
REPORT_FILES = ("report.json", "report.txt")
METADATA_FILE = "metadata.json"
COMPLETE_MARKER = ".recipelib-complete.json"
TERMINAL_STATUSES = frozenset(
    {"succeeded", "success", "complete", "completed", "finished", "done", "failed", "error", "partial",
     "cancelled", "canceled"}
)
"""A run in one of these states gets no new objects: its cached copy is final."""

_EXPERIMENT_ID = re.compile(r"^isl(?P<isl>\d+)-osl(?P<osl>\d+)(?:-n(?P<n>\d+))?(?:-c(?P<c>\d+))?(?P<stream>-stream)?$")
_MACHINE_TYPE_GPU = {"a3-ultragpu": "H200", "a3-megagpu": "H100", "a3-highgpu": "H100", "a3-edgegpu": "H100"}

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
class RunInfo:
    """One benchmark run, as its ``run.json`` describes it (missing keys are ``None``)."""

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
        return f"{self.release}/{self.run_id}"

    @property
    def ended(self) -> bool:
        return (self.status or "").lower() in TERMINAL_STATUSES

    @classmethod
    def from_document(cls, release: str, run_id: str, doc: Mapping[str, Any] | None) -> RunInfo:
        doc = doc or {}
        for key, expected in (("release", release), ("run_id", run_id)):
            if doc.get(key) not in (None, expected):
                log.warning("run.json of %s/%s says %s=%r; the path wins", release, run_id, key, doc[key])
        return cls(
            release=release,
            run_id=run_id,
            model=_first_str(doc, "model", "model_id"),
            status=_first_str(doc, "status", "state"),
            started=_time(_first(doc, "started", "started_at", "start_time", "created")),
            finished=_time(_first(doc, "finished", "finished_at", "end_time", "completed")),
            experiments=tuple(_experiment_ids(doc.get("experiments"))),
            gpu=_infer_gpu(doc),
            gpu_count=_gpu_count(doc),
            replay=_truthy(_deep_get(doc, "replay")),
            document=MappingProxyType(dict(doc)),
        )


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


# ---------------------------------------------------------------------------------------------------
# Cloud Storage
# ---------------------------------------------------------------------------------------------------


def make_client(*, endpoint: str | None = None, project: str | None = None):  # -> storage.Client
    """A Cloud Storage client: the default credentials, or anonymous ones for a local ``endpoint``.

    ``endpoint`` is a fake-gcs-server URL such as ``http://127.0.0.1:4443``; ``STORAGE_EMULATOR_HOST``
    in the environment works too, as google-cloud-storage reads it itself.
    """
    from google.cloud import storage

    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=project or "local-sandbox",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
    try:
        return storage.Client(project=project)
    except Exception as e:  # google.auth.exceptions.DefaultCredentialsError and friends
        raise CloudError(
            f"cannot create a Cloud Storage client: {e}. Run 'gcloud auth application-default login', "
            "or analyse the local cache with offline=True"
        ) from e


def default_cache_dir() -> Path:
    """``$RECIPELIB_CACHE/results`` or ``~/.cache/recipelib/results``."""
    base = os.environ.get("RECIPELIB_CACHE") or Path.home() / ".cache" / "recipelib"
    return Path(base) / "results"


class ResultsStore:
    """The results under ``gs://bucket/prefix``, with a local cache that makes repeated loads free.

    ``client`` is a ``google.cloud.storage.Client`` (or ``None`` for offline use of the cache only).
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "trtllm-benchmarks",
                 cache_dir: str | Path | None = None, *, timeout_s: float = 60.0, retry_s: float = 30.0) -> None:
        if not bucket:
            raise ResultsError("no bucket given: set GCS_BUCKET, or load the example reports instead")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.timeout_s = timeout_s
        self.retry_s = retry_s  # total time spent retrying a failing request (the library's default is 120 s)

    @property
    def _call(self) -> dict[str, Any]:
        from google.cloud.storage.retry import DEFAULT_RETRY

        return {"timeout": self.timeout_s, "retry": DEFAULT_RETRY.with_timeout(self.retry_s)}

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}" if self.prefix else f"gs://{self.bucket}"

    @property
    def local_root(self) -> Path:
        """Where this bucket and prefix are mirrored."""
        return self.cache_dir / self.bucket / PurePosixPath(self.prefix or "_root")

    def _run_prefix(self, release: str, run_id: str) -> str:
        return "/".join(p for p in (self.prefix, release, run_id) if p) + "/"

    def run_dir(self, release: str, run_id: str) -> Path:
        return self.local_root / _safe_part(release) / _safe_part(run_id)

    # -- listing ----------------------------------------------------------------------------------

    def list_runs(self, *, offline: bool = False) -> list[RunInfo]:
        """Every run under the prefix, newest first. ``offline`` lists the local cache instead."""
        if offline:
            return list_local_runs(self.local_root)
        base = f"{self.prefix}/" if self.prefix else ""
        keys: dict[tuple[str, str], bool] = {}
        for blob in self._list(base):
            parts = blob.name[len(base):].split("/")
            if len(parts) >= 3 and parts[0] and parts[1]:
                is_run_file = len(parts) == 3 and parts[2] == RUN_FILE
                keys[(parts[0], parts[1])] = keys.get((parts[0], parts[1]), False) or is_run_file
        runs = [self._run_info(release, run_id, has_run_file) for (release, run_id), has_run_file in keys.items()]
        return _newest_first(runs)

    def _run_info(self, release: str, run_id: str, has_run_file: bool) -> RunInfo:
        local = self.run_dir(release, run_id)
        if (local / COMPLETE_MARKER).exists():
            return RunInfo.from_document(release, run_id, _read_json(local / RUN_FILE))
        if not has_run_file:
            return RunInfo(release=release, run_id=run_id)
        name = self._run_prefix(release, run_id) + RUN_FILE
        try:
            doc = json.loads(self._blob(name).download_as_bytes(**self._call))
        except ValueError as e:
            raise ResultsError(f"{self.uri}/{release}/{run_id}/{RUN_FILE} is not valid JSON: {e}") from None
        except Exception as e:
            raise _cloud_error(e, f"reading gs://{self.bucket}/{name}") from e
        return RunInfo.from_document(release, run_id, doc if isinstance(doc, dict) else None)

    def _list(self, prefix: str) -> list[Any]:
        try:
            return list(self.client.list_blobs(self.bucket, prefix=prefix, **self._call))
        except Exception as e:
            raise _cloud_error(e, f"listing {self.uri}") from e

    def _blob(self, name: str) -> Any:
        if self.client is None:
            raise ResultsError(f"gs://{self.bucket}/{name} is not cached and no storage client was given")
        return self.client.bucket(self.bucket).blob(name)

    # -- downloading --------------------------------------------------------------------------------

    def fetch_run(self, release: str, run_id: str, *, offline: bool = False, include_logs: bool = True) -> Path:
        """The run's local directory, downloading what the cache lacks.

        A run marked complete is returned at once, without any network call. ``offline`` never touches
        the network: it returns whatever the cache holds, and fails if it holds nothing.
        """
        local = self.run_dir(release, run_id)
        if (local / COMPLETE_MARKER).exists():
            return local
        if offline or self.client is None:
            if local.is_dir() and any(local.iterdir()):
                log.warning("%s/%s is only partly cached (the run had not ended when it was downloaded)",
                            release, run_id)
                return local
            raise ResultsError(
                f"{self.uri}/{release}/{run_id} is not in the local cache {self.local_root}; "
                "load it once with network access, or pick a cached run"
            )
        prefix = self._run_prefix(release, run_id)
        blobs = self._list(prefix)
        if not blobs:
            raise ResultsError(f"no run {release}/{run_id} under {self.uri}")
        manifest: dict[str, Any] = {}
        for blob in blobs:
            relative = blob.name[len(prefix):]
            if not include_logs and relative.endswith(".log"):
                continue
            target = local / _safe_relative(relative, blob.name)
            manifest[relative] = {"size": blob.size, "md5": blob.md5_hash, "generation": blob.generation}
            if target.is_file() and blob.size is not None and target.stat().st_size == blob.size:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            try:
                blob.download_to_filename(str(tmp), **self._call)
            except Exception as e:
                tmp.unlink(missing_ok=True)
                raise _cloud_error(e, f"downloading gs://{self.bucket}/{blob.name}") from e
            tmp.replace(target)
        info = RunInfo.from_document(release, run_id, _read_json(local / RUN_FILE))
        if info.ended:
            (local / COMPLETE_MARKER).write_text(json.dumps(
                {"uri": f"{self.uri}/{release}/{run_id}", "status": info.status, "objects": manifest,
                 "cached_at": datetime.now(timezone.utc).isoformat()}, indent=1))
        else:
            log.info("%s/%s has status %r: it will be checked for new objects next time",
                     release, run_id, info.status)
        return local

    def load(self, runs: str | Sequence[str] = "latest", *, offline: bool = False, strict: bool = True,
             include_logs: bool = True) -> Results:
        """Load the chosen runs (``"latest"``, ``"all"``, or run ids / ``release/run_id``) into a DataFrame.

        ``"latest"`` is the run that started last among those with a ``run.json`` (the launcher writes it
        when a run ends); a run still in progress sorts last and is loaded only when named. Runs named
        as ``release/run_id`` and already complete in the cache are loaded with no network call;
        ``"latest"`` and ``"all"`` must list the bucket unless ``offline``.
        """
        chosen = self._resolve(runs, offline=offline)
        loaded = []
        for release, run_id in chosen:
            local = self.fetch_run(release, run_id, offline=offline, include_logs=include_logs)
            loaded.append(_load_run_dir(local, release, run_id, origin=self.uri, strict=strict))
        return _combine(loaded, origin=self.uri)

    def _resolve(self, runs: str | Sequence[str], *, offline: bool) -> list[tuple[str, str]]:
        tokens = _tokens(runs)
        if tokens in (["latest"], ["all"]):
            listed = self.list_runs(offline=offline)
            if not listed:
                where = f"the local cache {self.local_root}" if offline else self.uri
                raise ResultsError(f"no runs under {where}")
            picked = listed[:1] if tokens == ["latest"] else listed
            return [(r.release, r.run_id) for r in picked]
        out: list[tuple[str, str]] = []
        listed_cache: list[RunInfo] | None = None
        for token in tokens:
            if "/" in token:
                release, _, run_id = token.partition("/")
                out.append((release, run_id))
                continue
            cached = [r for r in list_local_runs(self.local_root) if r.run_id == token]
            if not cached and not offline:
                listed_cache = listed_cache if listed_cache is not None else self.list_runs()
                cached = [r for r in listed_cache if r.run_id == token]
            out.append(_unique(token, cached))
        return out


# ---------------------------------------------------------------------------------------------------
# Local folders
# ---------------------------------------------------------------------------------------------------


def examples_dir() -> Path:
    """The example results shipped with recipelib, laid out like the bucket (release/run_id/experiment)."""
    return Path(__file__).resolve().parents[1] / "data" / "examples"


def list_local_runs(root: str | Path) -> list[RunInfo]:
    """Runs under a local results root (``release/run_id/run.json``), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = []
    for release_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for run_dir in sorted(p for p in release_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            runs.append(RunInfo.from_document(release_dir.name, run_dir.name, _read_json(run_dir / RUN_FILE)))
    return _newest_first(runs)


def load_local(path: str | Path, runs: str | Sequence[str] = "all", *, strict: bool = True) -> Results:
    """Load a local folder of reports.

    ``path`` may be a results root laid out like the bucket (``release/run_id/experiment/report.*``),
    one run's folder (it holds ``run.json``), or any folder of loose ``report.json``/``*.txt`` reports
    (each file is an experiment of one run named after the folder).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ResultsError(f"{path} does not exist")
    origin = str(path)
    if path.is_file():
        return _combine([_load_loose([path], "local", path.parent.name, origin, strict)], origin=origin)
    if (path / RUN_FILE).exists():
        return _combine([_load_run_dir(path, path.parent.name, path.name, origin=origin, strict=strict)],
                        origin=origin)
    listed = list_local_runs(path)
    listed = [r for r in listed if (path / r.release / r.run_id / RUN_FILE).exists()
              or any((path / r.release / r.run_id).glob("*/report.*"))]
    if listed:
        tokens = _tokens(runs)
        if tokens == ["latest"]:
            listed = listed[:1]
        elif tokens != ["all"]:
            listed = [_find_local(t, listed) for t in tokens]
        return _combine([_load_run_dir(path / r.release / r.run_id, r.release, r.run_id, origin=origin,
                                       strict=strict) for r in listed], origin=origin)
    files = sorted(p for p in path.rglob("*") if p.is_file() and _is_report_file(p))
    if not files:
        raise ResultsError(f"no trtllm-bench reports (report.json, *.txt) under {path}")
    return _combine([_load_loose(files, "local", path.name, origin, strict)], origin=origin)


def load_examples(runs: str | Sequence[str] = "all", *, strict: bool = True) -> Results:
    """The example reports shipped with recipelib (real, published runs; see ``data/examples/README.md``)."""
    results = load_local(examples_dir(), runs, strict=strict)
    return Results(results.frame, results.runs, results.missing, origin="recipelib examples")


def load_results(
    *,
    bucket: str = "",
    prefix: str = "",
    runs: str | Sequence[str] = "latest",
    local_dir: str = "",
    cache_dir: str = "",
    offline: bool = False,
    endpoint: str = "",
    client: Any = None,
    strict: bool = True,
) -> Results:
    """What the analyze notebook loads: a local folder if given, else the bucket, else the examples.

    ``bucket``/``prefix`` left empty fall back to the settings (``GCS_BUCKET``, ``RESULTS_PREFIX``);
    with no bucket anywhere, the shipped example reports are loaded and no cloud API is touched.
    """
    if local_dir:
        return load_local(local_dir, runs, strict=strict)
    bucket, prefix = _location(bucket, prefix)
    if not bucket:
        log.info("no bucket configured: loading the example reports shipped with recipelib")
        return load_examples(runs, strict=strict)
    if client is None and not offline:
        client = make_client(endpoint=endpoint or None)
    store = ResultsStore(client, bucket, prefix, cache_dir or None)
    return store.load(runs, offline=offline, strict=strict)


def _location(bucket: str, prefix: str) -> tuple[str, str]:
    """Explicit values first, then the settings; the settings module may not exist in old checkouts."""
    if bucket and prefix:
        return bucket, prefix
    try:
        from recipelib.settings import load_settings
    except ImportError:
        return bucket, prefix or "trtllm-benchmarks"
    settings = load_settings()
    return bucket or (settings.gcs_bucket or ""), prefix or settings.results_prefix


# ---------------------------------------------------------------------------------------------------
# Turning a run folder into rows
# ---------------------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    info: RunInfo
    rows: list[dict[str, Any]]
    missing: list[MissingReport]


def _load_run_dir(run_dir: Path, release: str, run_id: str, *, origin: str, strict: bool) -> _Loaded:
    info = RunInfo.from_document(release, run_id, _read_json(run_dir / RUN_FILE))
    experiments = sorted(p.name for p in run_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    for expected in info.experiments:
        if expected not in experiments:
            experiments.append(expected)
    rows: list[dict[str, Any]] = []
    missing: list[MissingReport] = []
    for experiment in experiments:
        exp_dir = run_dir / experiment
        metadata = _read_json(exp_dir / METADATA_FILE) or {}
        report_path = next((exp_dir / f for f in REPORT_FILES if (exp_dir / f).is_file()), None)
        if report_path is None:
            reason = str(metadata.get("error") or metadata.get("status") or "no report.json or report.txt")
            missing.append(MissingReport(info.key, experiment, reason))
            log.warning("%s/%s: no report (%s)", info.key, experiment, reason)
            continue
        source = f"{origin}/{release}/{run_id}/{experiment}/{report_path.name}"
        try:
            reports = _parse_file(report_path, source)
        except ReportError as e:
            if strict:
                raise
            missing.append(MissingReport(info.key, experiment, str(e)))
            log.warning("%s", e)
            continue
        for index, report in enumerate(reports):
            rows.append(_row(report, info, experiment, index, metadata))
    return _Loaded(info, rows, missing)


def _load_loose(files: Iterable[Path], release: str, run_id: str, origin: str, strict: bool) -> _Loaded:
    info = RunInfo(release=release, run_id=run_id)
    rows: list[dict[str, Any]] = []
    missing: list[MissingReport] = []
    for path in files:
        experiment = path.parent.name if path.name in REPORT_FILES else path.stem
        try:
            reports = _parse_file(path, str(path))
        except ReportError as e:
            if strict:
                raise
            missing.append(MissingReport(info.key, experiment, str(e)))
            continue
        metadata = _read_json(path.parent / METADATA_FILE) or {}
        for index, report in enumerate(reports):
            rows.append(_row(report, info, experiment, index, metadata))
    return _Loaded(info, rows, missing)


def _parse_file(path: Path, source: str) -> list[BenchReport]:
    data = path.read_bytes()
    if path.suffix == ".json":
        return [parse_json(data, source=source)]
    return parse_text(data.decode("utf-8", errors="replace"), source=source)


def _is_report_file(path: Path) -> bool:
    if path.name.startswith("."):
        return False
    return path.name == "report.json" or path.suffix == ".txt"


def _row(report: BenchReport, info: RunInfo, experiment: str, index: int, metadata: Mapping[str, Any]
         ) -> dict[str, Any]:
    """One DataFrame row. ISL/OSL are what was asked (the launcher's ``metadata.json`` ``experiment``
    record, else the experiment id), the ``avg_*_tokens`` columns what the report measured."""
    spec = _EXPERIMENT_ID.match(experiment)
    asked = metadata.get("experiment") if isinstance(metadata.get("experiment"), Mapping) else {}
    asked = {**metadata, **asked}
    isl = _as_int(asked.get("isl")) or (int(spec["isl"]) if spec else None)
    osl = _as_int(asked.get("osl")) or (int(spec["osl"]) if spec else None)
    if isl is None and report.avg_isl is not None:
        isl = round(report.avg_isl)
    if osl is None and report.avg_osl is not None:
        osl = round(report.avg_osl)
    requested_n = _as_int(asked.get("num_requests")) or (int(spec["n"]) if spec and spec["n"] else None)
    row = flatten(report)
    gpu_count = (report.tp_size * (report.pp_size or 1)) if report.tp_size else (
        _gpu_count(metadata) or info.gpu_count)
    row.update(
        release=info.release,
        run_id=info.run_id,
        run=info.key,
        experiment=experiment,
        report_index=index,
        isl=isl,
        osl=osl,
        num_requests=report.num_requests if report.num_requests is not None else requested_n,
        concurrency=_as_int(asked.get("concurrency")) or (int(spec["c"]) if spec and spec["c"] else None),
        streaming=_truthy(asked.get("streaming")) or bool(spec and spec["stream"]),
        started=info.started,
        replay=info.replay or _truthy(metadata.get("replay")),
        gpu=_normalise_gpu(report.gpu) or _infer_gpu(metadata) or info.gpu,
        gpu_count=gpu_count,
        model=report.model or _first_str(metadata, "model") or info.model,
    )
    return row


def _combine(loaded: Sequence[_Loaded], *, origin: str) -> Results:
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


# ---------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------


def _tokens(runs: str | Sequence[str]) -> list[str]:
    items = runs.split(",") if isinstance(runs, str) else list(runs)
    tokens = [t.strip() for t in items if t and t.strip()]
    if not tokens:
        raise ResultsError("runs is empty: give 'latest', 'all', or run ids (release/run_id)")
    return tokens


def _unique(token: str, found: Sequence[RunInfo]) -> tuple[str, str]:
    if not found:
        raise ResultsError(f"no run with id {token!r}; list them with ResultsStore.list_runs()")
    if len({r.key for r in found}) > 1:
        raise ResultsError(f"run id {token!r} is in several releases ({', '.join(r.key for r in found)}): "
                           "write release/run_id")
    return found[0].release, found[0].run_id


def _find_local(token: str, listed: Sequence[RunInfo]) -> RunInfo:
    found = [r for r in listed if token in (r.key, r.run_id)]
    release, run_id = _unique(token, found)
    return next(r for r in found if (r.release, r.run_id) == (release, run_id))


def _newest_first(runs: list[RunInfo]) -> list[RunInfo]:
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(runs, key=lambda r: (r.started or epoch, r.key), reverse=True)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except ValueError as e:
        raise ResultsError(f"{path} is not valid JSON: {e}") from None
    return doc if isinstance(doc, dict) else None


def _safe_part(part: str) -> str:
    if not part or part in (".", "..") or "/" in part or "\\" in part:
        raise ResultsError(f"{part!r} is not a valid release or run id")
    return part


def _safe_relative(relative: str, name: str) -> Path:
    parts = PurePosixPath(relative).parts
    if not parts or any(p in ("..", ".", "") for p in parts) or relative.startswith("/"):
        raise ResultsError(f"refusing to cache object {name!r}: its name leaves the run's folder")
    return Path(*parts)


def _cloud_error(e: Exception, doing: str) -> CloudError:
    if isinstance(e, RecipelibError):
        return CloudError(str(e))
    return CloudError(f"{doing} failed: {type(e).__name__}: {e}. Check the bucket name and your credentials, "
                      "or use offline=True to analyse what is already cached")


def _first(doc: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if doc.get(key) is not None:
            return doc[key]
    return None


def _first_str(doc: Mapping[str, Any], *keys: str) -> str | None:
    value = _first(doc, *keys)
    return str(value) if value is not None else None


def _deep_get(doc: Any, *keys: str, depth: int = 3) -> Any:
    """The first value under any of ``keys`` in ``doc`` or its nested mappings (run.json is not fixed yet)."""
    if not isinstance(doc, Mapping) or depth < 0:
        return None
    for key in keys:
        if doc.get(key) is not None:
            return doc[key]
    for value in doc.values():
        found = _deep_get(value, *keys, depth=depth - 1)
        if found is not None:
            return found
    return None


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        log.warning("ignoring a time that is not ISO 8601: %r", value)
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _experiment_ids(value: Any) -> Iterable[str]:
    for item in value or ():
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            if item.get("id") or item.get("experiment_id"):
                yield str(item.get("id") or item.get("experiment_id"))
            elif {"isl", "osl"} <= item.keys():
                n = f"-n{item['num_requests']}" if item.get("num_requests") else ""
                yield f"isl{item['isl']}-osl{item['osl']}{n}"


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _normalise_gpu(name: Any) -> str | None:
    """``NVIDIA H200``, ``nvidia-h200-141gb``, ``H100 80GB HBM3`` -> ``H200``/``H100``; others kept as given."""
    if not name:
        return None
    text = str(name)
    for machine, gpu in _MACHINE_TYPE_GPU.items():
        if text.lower().startswith(machine):
            return gpu
    m = re.search(r"\b(?:nvidia[- ])?([abhgl]\d{2,3})\b", text, re.IGNORECASE) or re.search(
        r"(?:^|[-_ ])([abhgl]\d{2,3})(?:$|[-_ ])", text, re.IGNORECASE)
    return m.group(1).upper() if m else text


def _smi_gpus(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The launcher's ``gpus`` record: ``{"available": true, "count": 8, "gpus": [{"name": ...}, ...]}``."""
    record = doc.get("gpus")
    rows = record.get("gpus") if isinstance(record, Mapping) else None
    return [g for g in rows if isinstance(g, Mapping)] if isinstance(rows, list) else []


def _infer_gpu(doc: Mapping[str, Any]) -> str | None:
    smi = _smi_gpus(doc)
    if smi and smi[0].get("name"):
        return _normalise_gpu(smi[0]["name"])
    return _normalise_gpu(_deep_get(doc, "gpu", "gpu_type", "accelerator", "accelerator_type", "machine_type"))


def _gpu_count(doc: Mapping[str, Any]) -> int | None:
    smi = _smi_gpus(doc)
    if smi:
        return len(smi)
    return _as_int(_deep_get(doc, "gpu_count", "num_gpus"))
