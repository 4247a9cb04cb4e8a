"""Benchmark results in Cloud Storage: list runs, cache them locally, load them into one DataFrame.

The launcher writes, never overwriting, what :mod:`recipelib.results.layout` lays out::

    gs://BUCKET/<prefix>/<release>/<run_id>/run.json
    gs://BUCKET/<prefix>/<release>/<run_id>/<experiment_id>/{report.json, report.txt, metadata.json, launcher.log}

``report.json`` (trtllm-bench ``--report_json``) is preferred; ``report.txt`` is the fallback. Downloads
go to a local cache that mirrors the bucket. A run whose ``run.json`` exists has ended (the launcher writes
it last): it is marked complete in the cache, and from then on loading it makes no network call at all,
so the analyze notebook works offline. The storage client is passed in (tests inject one pointed at
fake-gcs-server). :func:`load_results` picks a local folder, the bucket or the shipped examples.

Example::

    store = ResultsStore(storage_client, "my-bucket", "trtllm-benchmarks")
    results = store.load("latest")
    results.frame[["run", "experiment", "output_throughput_tok_s"]]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import recipelib.gcp as gcp
import recipelib.results.layout as layout
from recipelib.errors import CloudError, RecipelibError, ResultsError
from recipelib.results.local import (
    list_local_runs,
    load_examples,
    load_local,
    load_run_dir,
    run_tokens,
    unique_run,
)
from recipelib.results.records import RunInfo, newest_first, read_run
from recipelib.results.table import Results, combine

log = logging.getLogger(__name__)

__all__ = ["COMPLETE_MARKER", "ResultsStore", "default_cache_dir", "load_results", "make_client"]

COMPLETE_MARKER = ".recipelib-complete.json"
"""Written in a cached run's folder once its ``run.json`` is cached: nothing of it is downloaded again."""


def make_client(*, endpoint: str | None = None, project: str | None = None) -> Any:  # -> storage.Client
    """A Cloud Storage client: the default credentials, or anonymous ones for a local ``endpoint``
    (a fake-gcs-server URL such as ``http://127.0.0.1:4443``; ``STORAGE_EMULATOR_HOST`` works too)."""
    try:
        return gcp.storage_client(project=project, endpoint=endpoint or None)
    except CloudError as e:
        raise CloudError(f"{e}; or analyse the local cache with offline=True") from e


def default_cache_dir(endpoint: str | None = None) -> Path:
    """``$RECIPELIB_CACHE/results`` or ``~/.cache/recipelib/results``; a local Cloud Storage server (an
    ``endpoint``, such as the sandbox's) gets a folder of its own there, named for its address.

    The cache trusts a finished run for good, and run ids repeat for the same inputs: a sandbox started
    again holds new results under the same names, which must never be answered from an older sandbox's copy.
    """
    base = Path(os.environ.get("RECIPELIB_CACHE") or Path.home() / ".cache" / "recipelib") / "results"
    if endpoint:
        return base / "local" / hashlib.sha256(endpoint.encode()).hexdigest()[:12]
    return base


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

    def _object(self, relative: str) -> str:
        """The object name of a path relative to the results root (a :mod:`layout` path)."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def run_uri(self, release: str, run_id: str) -> str:
        return f"{self.uri}/{layout.run_prefix(release, run_id)}"

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
                is_run_file = len(parts) == 3 and parts[2] == layout.RUN_FILE
                keys[(parts[0], parts[1])] = keys.get((parts[0], parts[1]), False) or is_run_file
        runs = [self._run_info(release, run_id, has_run_file) for (release, run_id), has_run_file in keys.items()]
        return newest_first(runs)

    def _run_info(self, release: str, run_id: str, has_run_file: bool) -> RunInfo:
        where = f"{self.run_uri(release, run_id)}/{layout.RUN_FILE}"
        local = self.run_dir(release, run_id)
        if (local / COMPLETE_MARKER).exists():
            return read_run(local, release, run_id, where=where)
        if not has_run_file:
            return RunInfo(release=release, run_id=run_id)
        name = self._object(layout.run_file(release, run_id))
        try:
            data = self._blob(name).download_as_bytes(**self._call)
        except Exception as e:
            raise _cloud_error(e, f"reading gs://{self.bucket}/{name}") from e
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise ResultsError(f"{where} is not valid JSON: {e}") from None
        return RunInfo.from_document(release, run_id, doc, where)

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
                f"{self.run_uri(release, run_id)} is not in the local cache {self.local_root}; "
                "load it once with network access, or pick a cached run"
            )
        prefix = self._object(layout.run_prefix(release, run_id)) + "/"
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
        info = read_run(local, release, run_id, where=f"{self.run_uri(release, run_id)}/{layout.RUN_FILE}")
        if info.ended:
            (local / COMPLETE_MARKER).write_text(json.dumps(
                {"uri": self.run_uri(release, run_id), "status": info.status, "objects": manifest,
                 "cached_at": datetime.now(timezone.utc).isoformat()}, indent=1))
        else:
            log.info("%s/%s has no %s yet (still running): it will be checked for new objects next time",
                     release, run_id, layout.RUN_FILE)
        return local

    def load(self, runs: str | Sequence[str] = "latest", *, offline: bool = False, strict: bool = True,
             include_logs: bool = True) -> Results:
        """Load the chosen runs (``"latest"``, ``"all"``, or run ids / ``release/run_id``) into a DataFrame.

        ``"latest"`` is the run that started last among those with a ``run.json`` (the launcher writes it
        when a run ends); a run still in progress sorts last and is loaded only when named. Runs named
        as ``release/run_id`` and already complete in the cache are loaded with no network call;
        ``"latest"`` and ``"all"`` must list the bucket unless ``offline``. ``strict=False`` lists an
        experiment whose report or ``metadata.json`` cannot be read as missing instead of raising.
        """
        chosen = self._resolve(runs, offline=offline)
        loaded = []
        for release, run_id in chosen:
            local = self.fetch_run(release, run_id, offline=offline, include_logs=include_logs)
            loaded.append(load_run_dir(local, release, run_id, named=self.run_uri(release, run_id), strict=strict))
        return combine(loaded, origin=self.uri)

    def _resolve(self, runs: str | Sequence[str], *, offline: bool) -> list[tuple[str, str]]:
        tokens = run_tokens(runs)
        if tokens in (["latest"], ["all"]):
            listed = [r for r in self.list_runs(offline=offline) if not r.serving]  # load points: results.serving
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
            out.append(unique_run(token, cached))
        return out


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
    store = ResultsStore(client, bucket, prefix, cache_dir or default_cache_dir(endpoint or None))
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
    if isinstance(e, CloudError):
        return e
    if isinstance(e, RecipelibError):
        return CloudError(str(e))
    return gcp.translate(e, doing, role="roles/storage.objectViewer", api="storage.googleapis.com",
                         not_found="check GCS_BUCKET and RESULTS_PREFIX, or use offline=True to analyse the cache")
