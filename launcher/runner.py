"""One run of a sweep: preflight, checkpoint, engine, then every experiment, each result kept.

The recipe ran ``exec`` inside its loop (only the first experiment ever ran), rebuilt the engine per
experiment and left raw stdout. Here:

- the checkpoint is downloaded once per node and the engine built once per node (``plan.py``);
- every experiment runs; a failed one is recorded and the rest still run;
- results are created, never overwritten, under ``<results>/<release>/<run_id>/<experiment_id>/``;
- a restarted pod (same run id) skips experiments already recorded and runs only what is missing.

What is written where, and when, is ``records.py``'s job. ``run.json`` closes the run: a later pod
with the same run id finds it and does nothing. A failure before any experiment ran (preflight,
download, build) does not close the run, so a Job retry can try again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bench
import checkpoint
import layout
import proc
import sysinfo
from config import Experiment, LauncherConfig
from engine import EngineCache, EngineSpec
from errors import (
    EXIT_CONFIG,
    EXIT_EXPERIMENTS_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PREFLIGHT,
    EXIT_SETUP,
    EXIT_STORE,
    BenchError,
    DownloadError,
    SetupError,
    StoreError,
)
from events import EventLog, Stopwatch, utc_now
from plan import CacheState, SetupPlan, plan_setup
from records import REPLAY_NOTE, ExperimentRecord, RunRecords, SetupInfo
from store import ResultStore

__all__ = [
    "EXIT_CONFIG", "EXIT_EXPERIMENTS_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PREFLIGHT", "EXIT_SETUP",
    "EXIT_STORE", "PREFLIGHT_ENV", "SECRET_VARS", "ExperimentRecord", "Runner", "SetupError", "SetupInfo",
    "StoreError",
]

PREFLIGHT_ENV = "RECIPE_PREFLIGHT"
# Steps after the download read the local checkpoint: they do not get the Hugging Face token.
SECRET_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class Runner:
    """Runs one config against one results store; ``execute()`` returns the process exit code."""

    def __init__(self, cfg: LauncherConfig, log: EventLog, store: ResultStore) -> None:
        self.cfg = cfg
        self.log = log
        self.store = store
        self.total = len(cfg.experiments)
        host = re.sub(r"[^a-z0-9-]+", "-", sysinfo.host().lower()).strip("-")[:40] or "host"
        self.attempt = f"{_stamp()}-{host}-{os.getpid()}"
        self.local = Path(cfg.workspace) / "runs" / cfg.release / cfg.run_id / self.attempt
        self.started = utc_now()
        self.setup = SetupInfo()
        self.records = RunRecords(cfg, log, store, self.attempt, self.started, self.setup)
        self.run_prefix = self.records.prefix
        self.exe = bench.bench_executable()
        self.dataset_script: Path | None = None

    # -- the run ---------------------------------------------------------------------------------

    def execute(self) -> int:
        """Run the sweep; on SIGTERM the attempt is recorded as interrupted and ``Interrupted`` re-raised."""
        try:
            return self._execute()
        except proc.Interrupted as e:
            self.log.info(f"interrupted ({e}): the experiment in progress is not recorded; a restart resumes it")
            self.records.finish_attempt("interrupted", EXIT_INTERRUPTED, f"interrupted: {e}")
            raise

    def _execute(self) -> int:
        cfg = self.cfg
        self.local.mkdir(parents=True, exist_ok=True)
        self.log.open_file(self.local / layout.LOG_FILE)
        if self.log.replay:
            self.log.info(f"REPLAY: {REPLAY_NOTE}")
        self.log.info(
            f"run {cfg.run_id} of release {cfg.release}: {cfg.model} ({cfg.backend}, TP{cfg.tp_size} PP{cfg.pp_size}, "
            f"{cfg.quantization or 'no quantization'}), {self.total} experiment(s) -> {self.store.url(self.run_prefix)}"
        )
        self.log.event("run", "started", total=self.total, run_id=cfg.run_id, release=cfg.release, attempt=self.attempt)

        status = self.records.closed_status()
        if status is not None:
            self.log.info(f"{layout.RUN_FILE} already exists (status {status}): this run is finished; "
                          "nothing is re-run or overwritten. Deploy with a new run id to measure again.")
            self.log.event("run", "skipped", total=self.total, status=status, reason=f"{layout.RUN_FILE} exists")
            return EXIT_OK if status == layout.SUCCEEDED else EXIT_EXPERIMENTS_FAILED

        self.records.start_attempt()
        self.setup.gpus = sysinfo.gpus()

        try:
            self._preflight()
            self.setup.version = bench.detect_version(self.exe).text
            self.log.info(f"TensorRT-LLM version: {self.setup.version} (trtllm-bench: {self.exe})")
            done = self.records.recorded()
            plan = plan_setup(cfg, bench.TrtllmVersion(self.setup.version), CacheState.scan(cfg, frozenset(done)))
            self.log.info("plan: " + json.dumps(plan.as_dict()))
            if plan.run:
                self._check_tools()
                self._download(plan)
                self._build(plan)
            else:
                for phase in ("download", "build"):
                    self.log.event(phase, "skipped", reason="every experiment is already reported")
        except SetupError as e:
            message = self.log.redact(str(e))
            self.log.info(f"{e.phase} failed: {message}")
            self.log.event("run", "failed", total=self.total, error=message, exit_code=e.exit_code)
            self.records.finish_attempt(layout.FAILED, e.exit_code, message)
            return e.exit_code

        records: list[ExperimentRecord] = []
        for index, exp in enumerate(cfg.experiments, start=1):
            if exp.id in done:
                record = done[exp.id]
                self.log.event("benchmark", "skipped", experiment=exp.id, index=index, total=self.total,
                               reason=f"already recorded ({record.status})")
                records.append(record)
                continue
            records.append(self._experiment(exp, index))

        ok = all(r.status == layout.SUCCEEDED for r in records)
        code = EXIT_OK if ok else EXIT_EXPERIMENTS_FAILED
        status = layout.SUCCEEDED if ok else layout.FAILED
        self.records.close_run(records, status, code)
        failed = [r.id for r in records if r.status != layout.SUCCEEDED]
        self.log.info(f"run {status}: {len(records) - len(failed)}/{len(records)} experiment(s) reported"
                      + (f"; failed: {', '.join(failed)}" if failed else ""))
        self.log.event("run", "finished" if ok else "failed", total=self.total, status=status, exit_code=code,
                       failed=failed or None)
        self.records.finish_attempt(status, code, None if ok else f"failed experiments: {', '.join(failed)}")
        return code

    # -- phases ----------------------------------------------------------------------------------

    def _preflight(self) -> None:
        pf = self.cfg.preflight
        if not pf.enabled:
            self.log.event("preflight", "skipped", reason="disabled")
            return
        script = Path(os.environ.get(PREFLIGHT_ENV) or Path(__file__).resolve().parent / "preflight.py")
        out = self.local / layout.ATTEMPT_PREFLIGHT
        argv = [sys.executable, str(script), "--json", str(out), "--mode", pf.mode]
        self.log.event("preflight", "started", mode=pf.mode)
        watch = Stopwatch()
        try:
            done = proc.run(argv, on_line=self.log.raw, env=proc.child_env(drop=SECRET_VARS))
            rc = done.returncode
        except OSError as e:
            rc, done = -1, None
            self.log.info(f"cannot run preflight {script}: {e}")
        try:
            result = json.loads(out.read_text())
        except (OSError, ValueError):
            result = {"error": f"preflight wrote no JSON to {out}"}
        self.setup.preflight = result
        self.setup.phases["preflight"] = {"seconds": watch.seconds, "exit_code": rc, "mode": pf.mode}
        if out.is_file():
            self.records.save_preflight(out)
        if rc == 0:
            self.log.event("preflight", "finished", seconds=watch.seconds, mode=pf.mode)
            return
        if rc == 2 and pf.mode == "enforce":
            error = ("preflight: a GPU health check is below its threshold (mode enforce); "
                     f"details in {layout.ATTEMPT_PREFLIGHT}")
        else:
            error = f"preflight.py exited with code {rc}" + (f": {' | '.join(done.tail[-3:])}" if done else "")
        if pf.mode == "warn":
            self.log.info(f"warning: {error}; continuing (mode warn)")
            self.log.event("preflight", "finished", seconds=watch.seconds, mode=pf.mode, warning=error)
            return
        self.log.event("preflight", "failed", seconds=watch.seconds, mode=pf.mode, error=error, exit_code=rc)
        raise SetupError("preflight", error, EXIT_PREFLIGHT)

    def _check_tools(self) -> None:
        """Refuse early what would fail every experiment the same way: a missing tool, a bad version."""
        try:
            self.dataset_script = bench.prepare_dataset_script()
        except BenchError as e:
            raise SetupError("dataset", str(e)) from None
        if bench.which(self.exe) is None:
            raise SetupError("build", f"{self.exe} not found (set ${bench.BENCH_ENV} to the trtllm-bench executable)")
        version = bench.TrtllmVersion(self.setup.version)
        if not version.known:
            self.log.info(f"warning: TensorRT-LLM version unknown; using the newest trtllm-bench flags "
                          f"(set ${bench.VERSION_ENV} to override)")
        if self.cfg.backend == "pytorch" and version.known and version.parts < (0, 19, 0):
            raise SetupError("build", f"the PyTorch flow of trtllm-bench needs TensorRT-LLM 0.19 or later; "
                                       f"this image has {version.text}: use backend tensorrt")

    def _download(self, plan: SetupPlan) -> None:
        dest = self.cfg.checkpoint_path
        if not plan.download:
            st = checkpoint.state(dest)
            self.setup.checkpoint = {"path": str(dest), "downloaded_now": False, "bytes": st.bytes, "files": st.files}
            self.log.event("download", "skipped", reason="checkpoint already complete", bytes=st.bytes)
            return
        self.log.event("download", "started", model=self.cfg.model)
        watch = Stopwatch()
        try:
            st = checkpoint.download(self.cfg.model, dest, on_line=self.log.raw)
        except DownloadError as e:
            message = self.log.redact(str(e))
            self.log.event("download", "failed", seconds=watch.seconds, error=message)
            raise SetupError("download", message) from None
        self.setup.checkpoint = {"path": str(dest), "downloaded_now": True, "bytes": st.bytes, "files": st.files,
                                 "seconds": watch.seconds}
        self.setup.phases["download"] = {"seconds": watch.seconds, "bytes": st.bytes}
        self.log.event("download", "finished", seconds=watch.seconds, bytes=st.bytes)

    def _build(self, plan: SetupPlan) -> None:
        spec = plan.engine
        if spec is None:
            self.log.event("build", "skipped", reason="pytorch backend: no engine")
            return
        cache = EngineCache(Path(self.cfg.engine_cache_dir))
        if cache.root.is_dir():
            for name in cache.sweep_stale():
                self.log.info(f"removed {cache.root / name}: left behind by a build that was killed")
        built_now, seconds = False, None
        if cache.has(spec):
            self.log.event("build", "skipped", reason="engine cached on this node", engine=spec.key)
        else:
            last_note = [-60.0]

            def waiting(elapsed: float) -> None:
                if elapsed - last_note[0] >= 60:
                    last_note[0] = elapsed
                    self.log.info(f"waiting for another pod building engine {spec.key} ({elapsed:.0f}s)")

            with cache.lock(spec, on_wait=waiting):
                if cache.has(spec):
                    self.log.event("build", "skipped", reason="engine built by another pod", engine=spec.key)
                else:
                    seconds = self._build_locked(cache, spec)
                    built_now = True
        path = cache.path(spec)
        limits = bench.engine_limits(path)
        self.setup.engine_dir = path
        self.setup.engine_max_num_tokens = limits.get("max_num_tokens")
        self.setup.engine = {"key": spec.key, "dir": str(path), "built_now": built_now, "build_seconds": seconds,
                             "spec": spec.as_dict(), "build_config": limits}

    def _build_locked(self, cache: EngineCache, spec: EngineSpec) -> float:
        tmp = cache.temp_dir(spec)
        argv = bench.build_command(self.exe, self.cfg, tmp, spec.tuning)
        self.setup.build_command = argv
        self.log.event("build", "started", engine=spec.key, max_seq_len=spec.tuning.max_seq_len)
        watch = Stopwatch()
        build_log = tmp / "build.log"
        try:
            with open(build_log, "w") as out:
                done = proc.run(argv, on_line=self.log.raw, output=out, env=proc.child_env(drop=SECRET_VARS))
            engine = bench.built_engine_dir(tmp, self.cfg)
            if done.returncode != 0:
                raise SetupError("build", f"trtllm-bench build exited with code {done.returncode}: "
                                           + " | ".join(done.tail[-3:]))
            if not (engine / "config.json").is_file():
                raise SetupError("build", f"trtllm-bench build exited 0 but saved no engine at {engine}")
            shutil.copy(build_log, engine / "build.log")
            cache.commit(spec, engine, {"built": utc_now(), "seconds": watch.seconds, "command": argv})
        except SetupError as e:
            self.log.event("build", "failed", engine=spec.key, seconds=watch.seconds, error=self.log.redact(str(e)))
            raise
        except OSError as e:
            self.log.event("build", "failed", engine=spec.key, seconds=watch.seconds, error=str(e))
            raise SetupError("build", f"cannot run trtllm-bench build: {e}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # the build's intermediate (quantized) checkpoint too
        self.setup.phases["build"] = {"seconds": watch.seconds}
        self.log.event("build", "finished", engine=spec.key, seconds=watch.seconds)
        return watch.seconds

    # -- one experiment --------------------------------------------------------------------------

    def _experiment(self, exp: Experiment, index: int) -> ExperimentRecord:
        record = ExperimentRecord.new(exp, index)
        record.attempt = self.attempt
        record.prefix = self.store.url(self.records.experiment_key(exp.id))
        where = {"experiment": exp.id, "index": index, "total": self.total}
        out = bench.BenchOutputs(self.local / exp.id)
        out.folder.mkdir(parents=True, exist_ok=True)
        started, watch = utc_now(), Stopwatch()
        phases: dict[str, dict[str, Any]] = {}
        commands: dict[str, Any] = {"build": self.setup.build_command}
        env = proc.child_env(drop=SECRET_VARS)
        error: str | None = None

        self.log.info(f"experiment {index}/{self.total}: {exp.id}")
        # 1. the synthetic dataset
        self.log.event("dataset", "started", **where)
        dw = Stopwatch()
        try:
            script = self.dataset_script or bench.prepare_dataset_script()
            argv = bench.dataset_command(sys.executable, script, self.cfg.checkpoint_path, exp)
            commands["dataset"] = argv
            partial = out.dataset.with_suffix(".partial")
            with open(partial, "wb") as data:
                done = proc.run(argv, on_line=self.log.raw, stdout_to=data, env=env)
            if done.returncode != 0:
                error = f"prepare_dataset.py exited with code {done.returncode}: {' | '.join(done.tail[-3:])}"
            elif partial.stat().st_size == 0:
                error = "prepare_dataset.py wrote an empty dataset"
            else:
                os.replace(partial, out.dataset)
        except (BenchError, OSError) as e:
            error = f"cannot prepare the dataset: {e}"
        phases["dataset"] = {"seconds": dw.seconds}
        if error:
            self.log.event("dataset", "failed", seconds=dw.seconds, error=self.log.redact(error), **where)
        else:
            size = out.dataset.stat().st_size
            phases["dataset"]["bytes"] = size
            self.log.event("dataset", "finished", seconds=dw.seconds, bytes=size, **where)

        # 2. the benchmark
        if error is None:
            argv = bench.throughput_command(self.exe, self.cfg, bench.TrtllmVersion(self.setup.version), exp, out,
                                            self.setup.engine_dir, self.setup.engine_max_num_tokens)
            commands["benchmark"] = argv
            self.log.event("benchmark", "started", **where)
            bw = Stopwatch()
            try:
                with open(out.report_txt, "w") as text:
                    done = proc.run(argv, on_line=self.log.raw, output=text, env=env)
                error = bench.check_report(out.report_json, out.report_txt, done.returncode, done.tail)
                phases["benchmark"] = {"seconds": bw.seconds, "exit_code": done.returncode}
            except OSError as e:
                error = f"cannot run {self.exe}: {e.strerror or e}"
                phases["benchmark"] = {"seconds": bw.seconds, "exit_code": None}
            if error:
                self.log.event("benchmark", "failed", seconds=bw.seconds, error=self.log.redact(error), **where)
            else:
                self.log.event("benchmark", "finished", seconds=bw.seconds, **where)

        record.status = layout.FAILED if error else layout.SUCCEEDED
        record.error = self.log.redact(error) if error else None
        record.seconds = watch.seconds
        self.records.upload(exp, index, out, record, phases, commands, started)
        return record
