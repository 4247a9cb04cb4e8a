"""What a run leaves in the results store: every path and key from ``layout``, every object created once.

The runner decides what to run; this module writes what happened, in the order a reader relies on:

- ``.attempts/<attempt>/started.json`` when a pod starts, ``.attempts/<attempt>/{result.json,
  launcher.log}`` when it stops (a dot folder, so readers that list experiment folders skip it);
- per experiment, its report (or ``benchmark.log`` for a failed one), ``requests.json``,
  ``launcher.log``, and ``metadata.json`` last, since it marks the experiment recorded;
- ``run.json`` once every experiment has a final record: it closes the run.

``metadata.json`` and ``run.json`` always carry ``layout.METADATA_KEYS`` / ``layout.RUN_KEYS``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bench
import layout
import sysinfo
from config import Experiment, LauncherConfig
from errors import StoreError
from events import EventLog, Stopwatch, utc_now
from store import ResultStore

REPLAY_NOTE = ("a replay of a recorded real run in the local sandbox (RECIPE_REPLAY=1): no GPU ran; "
               "the reports are the recording's")
JSON, TEXT = "application/json", "text/plain"


@dataclass
class ExperimentRecord:
    """The outcome of one experiment, as ``run.json`` lists it."""

    id: str
    index: int
    isl: int
    osl: int
    num_requests: int
    concurrency: int | None
    streaming: bool
    status: str = layout.NOT_RUN
    error: str | None = None
    seconds: float | None = None
    attempt: str | None = None
    prefix: str | None = None
    recovered: bool = False
    engine: str | None = None

    @classmethod
    def new(cls, exp: Experiment, index: int) -> ExperimentRecord:
        return cls(exp.id, index, exp.isl, exp.osl, exp.num_requests, exp.concurrency, exp.streaming)


@dataclass
class SetupInfo:
    """What the setup phases did and found; recorded in every metadata.json and in run.json."""

    version: str = "unknown"
    tools: dict[str, Any] | None = None
    checkpoint: dict[str, Any] = field(default_factory=dict)
    engine: dict[str, Any] | None = None
    preflight: dict[str, Any] | None = None
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    gpus: dict[str, Any] = field(default_factory=dict)


def to_json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, default=str) + "\n").encode()


REPLAY_SOURCE_PREFIX = "RECIPE_REPLAY_SOURCE "
"""A replaying tool (the sandbox's) names what it replays on such a line: a recording, or a published figure."""


def replay_source(output: Path, replaying: bool) -> dict[str, Any]:
    """``{"replay_source": {...}}`` from the tool's output when this is a replay; a measurement has none."""
    if not replaying or not output.is_file():
        return {}
    for line in output.read_text(errors="replace").splitlines():
        if line.startswith(REPLAY_SOURCE_PREFIX):
            try:
                return {"replay_source": json.loads(line[len(REPLAY_SOURCE_PREFIX):])}
            except ValueError:
                return {}
    return {}


class RunRecords:
    """One attempt's writes under ``<results>/<release>/<run_id>/``; ``setup`` is read when each is written."""

    def __init__(self, cfg: LauncherConfig, log: EventLog, store: ResultStore, attempt: str, started: str,
                 setup: SetupInfo) -> None:
        self.cfg = cfg
        self.log = log
        self.store = store
        self.attempt = attempt
        self.started = started
        self.setup = setup
        self.prefix = layout.run_prefix(cfg.release, cfg.run_id)
        self.total = len(cfg.experiments)

    def put(self, key: str, data: bytes, content_type: str) -> bool:
        """Create ``key`` unless it exists; secrets are scrubbed from what is written."""
        return self.store.create(key, self.log.redact.data(data), content_type)

    def experiment_key(self, experiment: str, name: str | None = None) -> str:
        """The experiment's folder, or the file ``name`` in it, relative to the results root."""
        if name is None:
            return layout.experiment_prefix(self.cfg.release, self.cfg.run_id, experiment)
        return layout.experiment_file(self.cfg.release, self.cfg.run_id, experiment, name)

    def attempt_key(self, name: str) -> str:
        return f"{self.prefix}/{layout.attempt_file(self.attempt, name)}"

    def log_copy(self) -> bytes:
        path = self.log.log_path
        return path.read_bytes() if path and path.is_file() else b""

    def common(self) -> dict[str, Any]:
        """The keys ``run.json`` and every ``metadata.json`` share: who ran what, where, with which versions."""
        c, setup = self.cfg, self.setup
        return {
            "schema": layout.SCHEMA, "release": c.release, "run_id": c.run_id, "attempt": self.attempt,
            "host": sysinfo.host(), "model": c.model, "checkpoint_repo": c.checkpoint,
            "flow": c.flow, "backend": c.backend, "engine_method": c.engine_method, "tp_size": c.tp_size,
            "pp_size": c.pp_size, "ep_size": c.ep_size, "quantization": c.quantization,
            "kv_cache_free_gpu_mem_fraction": c.kv_cache_free_gpu_mem_fraction,
            "max_batch_size": c.max_batch_size, "max_num_tokens": c.max_num_tokens,
            "config_hash": c.config_hash(), "config": c.to_dict(),
            "versions": sysinfo.versions(setup.version), "gpus": setup.gpus,
            "checkpoint": setup.checkpoint, "engine": setup.engine, "preflight": setup.preflight,
            "trtllm_bench": setup.tools,
            **({"replay": True, "replay_note": REPLAY_NOTE} if self.log.replay else {}),
        }

    # -- the attempt -----------------------------------------------------------------------------

    def closed_status(self) -> str | None:
        """The status in ``run.json`` if the run is already closed (``"unknown"`` if it has none)."""
        closed = self.store.read(layout.run_file(self.cfg.release, self.cfg.run_id))
        return None if closed is None else json.loads(closed).get("status", "unknown")

    def start_attempt(self) -> None:
        started = {"attempt": self.attempt, "started": self.started, "host": sysinfo.host(),
                   "config_hash": self.cfg.config_hash(), "experiments": [e.id for e in self.cfg.experiments]}
        self.put(self.attempt_key(layout.ATTEMPT_STARTED), to_json(started), JSON)

    def save_preflight(self, path: Path) -> None:
        self.put(self.attempt_key(layout.ATTEMPT_PREFLIGHT), path.read_bytes(), JSON)

    def finish_attempt(self, status: str, exit_code: int, error: str | None) -> None:
        """The attempt's result and log; a store failure here is logged, never raised (the run is over)."""
        result = {"attempt": self.attempt, "status": status, "exit_code": exit_code, "error": error,
                  "started": self.started, "finished": utc_now(), "host": sysinfo.host()}
        try:
            self.put(self.attempt_key(layout.ATTEMPT_RESULT), to_json(result), JSON)
            self.put(self.attempt_key(layout.LOG_FILE), self.log_copy(), TEXT)
        except StoreError as e:
            self.log.info(f"could not record the attempt's result: {e}")

    def close_run(self, records: list[ExperimentRecord], status: str, exit_code: int) -> None:
        run = self.common() | {
            "status": status, "exit_code": exit_code, "started": self.started, "finished": utc_now(),
            "results": self.store.url(self.prefix), "setup_phases": self.setup.phases,
            "experiments": [asdict(r) for r in records],
        }
        if not self.put(layout.run_file(self.cfg.release, self.cfg.run_id), to_json(run), JSON):
            self.log.info(f"{layout.RUN_FILE} already existed (another pod finished this run): kept as is")

    # -- experiments -----------------------------------------------------------------------------

    def _experiment(self, exp: Experiment, index: int) -> dict[str, Any]:
        return asdict(exp) | {"id": exp.id, "index": index, "total": self.total}

    def recorded(self) -> dict[str, ExperimentRecord]:
        """Experiments with a final record for this run id: a metadata.json, or a report alone.

        A report (report.json, or report.txt, which is uploaded only for a run that produced one) without
        metadata.json means the pod died while uploading: the benchmark did
        produce a report, so it is recorded (``recovered``) instead of being run a second time.
        """
        out: dict[str, ExperimentRecord] = {}
        for index, exp in enumerate(self.cfg.experiments, start=1):
            meta = self.store.read(self.experiment_key(exp.id, layout.METADATA_FILE))
            record = ExperimentRecord.new(exp, index)
            record.prefix = self.store.url(self.experiment_key(exp.id))
            if meta is not None:
                try:
                    data = json.loads(meta)
                except ValueError:
                    data = {"status": layout.FAILED, "error": f"{layout.METADATA_FILE} exists but is not valid JSON"}
                record.status = data.get("status", layout.FAILED)
                record.error = data.get("error")
                record.seconds = data.get("seconds")
                record.attempt = data.get("attempt")
                record.recovered = bool(data.get("recovered"))
                record.engine = (data.get("engine") or {}).get("key") if isinstance(data.get("engine"), dict) else None
                out[exp.id] = record
            elif any(self.store.exists(self.experiment_key(exp.id, name)) for name in layout.REPORT_FILES):
                record.status, record.recovered, record.attempt = layout.SUCCEEDED, True, self.attempt
                metadata = self.common() | {
                    "experiment": self._experiment(exp, index),
                    "status": layout.SUCCEEDED, "error": None, "recovered": True,
                    "note": "the report was uploaded by an earlier attempt that stopped before "
                            f"{layout.METADATA_FILE}",
                    "started": None,  # the attempt that ran it is gone, and with it when it started
                    "finished": utc_now(),
                }
                self.put(self.experiment_key(exp.id, layout.METADATA_FILE), to_json(metadata), JSON)
                out[exp.id] = record
        return out

    def upload(self, exp: Experiment, index: int, out: bench.BenchOutputs, record: ExperimentRecord,
               phases: dict[str, dict[str, Any]], commands: dict[str, Any], started: str,
               extra: dict[str, Any] | None = None) -> None:
        """Create the experiment's objects; metadata.json last, since it marks the experiment recorded.

        A store failure marks the experiment failed (``record`` is updated) rather than stopping the sweep.
        """
        where = {"experiment": exp.id, "index": index, "total": self.total}
        self.log.event("upload", "started", **where)
        uw = Stopwatch()
        written: list[str] = []
        kept: list[str] = []
        size = 0
        # A failed run's output holds no report: it is kept as benchmark.log, so that report.txt
        # always means "a report" to whoever reads the results.
        ok = record.status == layout.SUCCEEDED
        files = [(layout.REPORT_TXT if ok else layout.FAILED_OUTPUT, out.report_txt, TEXT),
                 (layout.REQUESTS_FILE, out.requests_json, JSON),
                 (out.extra_options.name, out.extra_options, TEXT)]
        if ok:
            files.append((layout.REPORT_JSON, out.report_json, JSON))
        try:
            for name, path, ctype in files:
                if path.is_file():
                    blob = path.read_bytes()
                    (written if self.put(self.experiment_key(exp.id, name), blob, ctype) else kept).append(name)
                    size += len(blob)
            log_blob = self.log_copy()
            log_key = self.experiment_key(exp.id, layout.LOG_FILE)
            (written if self.put(log_key, log_blob, TEXT) else kept).append(layout.LOG_FILE)
            size += len(log_blob)
            metadata = self.common() | replay_source(out.report_txt, self.log.replay) | {
                "experiment": self._experiment(exp, index),
                "status": record.status, "error": record.error, "seconds": record.seconds, "recovered": False,
                "started": started, "finished": utc_now(),
                "commands": commands,
                "phases": {**self.setup.phases, **phases, "upload": {"seconds": uw.seconds}},
                "artifacts": written + kept + [layout.METADATA_FILE], "kept_existing": kept,
            } | (extra or {})
            blob = to_json(metadata)
            if not self.put(self.experiment_key(exp.id, layout.METADATA_FILE), blob, JSON):
                kept.append(layout.METADATA_FILE)
                self.log.info(f"{exp.id}/{layout.METADATA_FILE} already existed: kept as is")
            size += len(blob)
        except StoreError as e:
            message = self.log.redact(str(e))
            record.status, record.error = layout.FAILED, f"upload failed: {message}"
            self.log.event("upload", "failed", seconds=uw.seconds, error=message, **where)
            return
        if kept:
            self.log.info(f"{exp.id}: kept existing object(s) {', '.join(kept)} (create-only)")
        self.log.event("upload", "finished", seconds=uw.seconds, bytes=size, objects=len(written), **where)
