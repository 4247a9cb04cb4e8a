"""One run of a sweep: preflight, the tools' --help, checkpoint, engines, then every experiment, each result kept.

The recipe ran ``exec`` inside its loop (only the first experiment ever ran), rebuilt the engine per
experiment and left raw stdout. Here:

- the tools are asked what they accept (``tool_cli.py``) and only listed options are used (``bench.py``);
- the checkpoint is downloaded once per node (without ``original/``); engines follow ``plan.py``: per
  dataset (built after the experiment's dataset, NVIDIA's method) or one shared engine (built first),
  each cached by its exact build command (``engine.py``, ``builder.py``);
- every experiment runs; a failed one is recorded and the rest still run;
- results are created, never overwritten, under ``<results>/<release>/<run_id>/<experiment_id>/``;
- a restarted pod (same run id) skips experiments already recorded and runs only what is missing.

What is written where, and when, is ``records.py``'s job. ``run.json`` closes the run: a later pod
with the same run id finds it and does nothing. A failure of the setup (preflight, tools, download, an
engine build) does not close the run, so a Job retry can try again.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bench
import checkpoint
import layout
import proc
import sysinfo
from builder import EngineBuilder
from config import Experiment, LauncherConfig, shape_problems
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
from tool_cli import Tools, read_tools

__all__ = [
    "EXIT_CONFIG", "EXIT_EXPERIMENTS_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PREFLIGHT", "EXIT_SETUP",
    "EXIT_STORE", "PREFLIGHT_ENV", "SECRET_VARS", "ExperimentRecord", "Runner", "SetupError", "SetupInfo",
    "StoreError",
]

PREFLIGHT_ENV = "RECIPE_PREFLIGHT"
# Steps after the download read the local checkpoint: they do not get the Hugging Face token.
SECRET_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def preflight_command(cfg: LauncherConfig, out: Path) -> list[str]:
    """The GPU preflight: ``$RECIPE_PREFLIGHT`` or ``preflight.py`` beside this file, writing ``out``."""
    script = Path(os.environ.get(PREFLIGHT_ENV) or Path(__file__).resolve().parent / "preflight.py")
    return [sys.executable, str(script), "--json", str(out), "--mode", cfg.preflight.mode]


def attempt_dir(cfg: LauncherConfig, attempt: str) -> Path:
    """Where an attempt keeps its datasets, reports and logs on the node."""
    return Path(cfg.workspace) / "runs" / cfg.release / cfg.run_id / attempt


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
        self.local = attempt_dir(cfg, self.attempt)
        self.started = utc_now()
        self.setup = SetupInfo()
        self.records = RunRecords(cfg, log, store, self.attempt, self.started, self.setup)
        self.run_prefix = self.records.prefix
        self.exe = bench.bench_executable()
        self.tools: Tools
        self.builder: EngineBuilder
        self.plan: SetupPlan
        self.shared_engine: dict[str, Any] | None = None

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
            done = self.records.recorded()
            todo = [e for e in cfg.experiments if e.id not in done]
            if todo:
                self._read_tools()
                plan = self._plan(CacheState.scan(cfg, frozenset(done)))
                self._download(plan)
                if plan.shared_engine is not None:
                    self.shared_engine = self.builder.ensure(plan.shared_engine, None, {})
                    self.setup.engine = self.shared_engine
            else:
                for phase in ("download", "build"):
                    self.log.event(phase, "skipped", reason="every experiment is already reported")
        except SetupError as e:
            self._fail_setup(e)
            return e.exit_code

        records: list[ExperimentRecord] = []
        for index, exp in enumerate(cfg.experiments, start=1):
            if exp.id in done:
                record = done[exp.id]
                self.log.event("benchmark", "skipped", experiment=exp.id, index=index, total=self.total,
                               reason=f"already recorded ({record.status})")
                records.append(record)
                continue
            try:
                records.append(self._experiment(exp, index))
            except SetupError as e:  # a per-dataset engine failed to build: the run is not closed, a retry may
                self._fail_setup(e)
                return e.exit_code

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
        out = self.local / layout.ATTEMPT_PREFLIGHT
        argv = preflight_command(self.cfg, out)
        script = argv[1]
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

    def _read_tools(self) -> None:
        """Ask the tools what they accept (``--help``); refuse early what would fail every experiment alike."""
        if bench.which(self.exe) is None:
            raise SetupError("build", f"{self.exe} not found (set ${bench.BENCH_ENV} to the trtllm-bench executable)")
        try:
            script = bench.prepare_dataset_script(required=False)
            self.tools = read_tools(self.exe, self.cfg.checkpoint, sys.executable, script)
        except BenchError as e:
            raise SetupError("build", str(e)) from None
        self.setup.version = self.tools.bench.version
        self.setup.tools = self.tools.as_dict()
        self.builder = EngineBuilder(self.cfg, self.tools, self.log)
        self.log.info(f"TensorRT-LLM version: {self.setup.version} (trtllm-bench: {self.exe}); datasets from "
                      + ("trtllm-bench prepare-dataset" if self.tools.dataset.kind == "subcommand"
                         else str(self.tools.dataset.script)))

    def _plan(self, cache: CacheState) -> SetupPlan:
        try:
            plan = plan_setup(self.cfg, self.tools, cache)
            # what every experiment would fail alike (no PyTorch backend, no --engine_dir): once, before the download
            bench.throughput_command(self.tools.bench, self.cfg, self.cfg.experiments[0],
                                     bench.BenchOutputs(self.local), workspace="", checkpoint="", engine_dir="")
        except bench.UnsupportedOptionError:
            pass
        except BenchError as e:
            raise SetupError("build", str(e)) from None
        self.plan = plan
        self.log.info("plan: " + json.dumps(plan.as_dict()))
        return plan

    def _fail_setup(self, e: SetupError) -> None:
        message = self.log.redact(str(e))
        self.log.info(f"{e.phase} failed: {message}")
        self.log.event("run", "failed", total=self.total, error=message, exit_code=e.exit_code)
        self.records.finish_attempt(layout.FAILED, e.exit_code, message)

    def _download(self, plan: SetupPlan) -> None:
        dest = self.cfg.checkpoint_path
        if not plan.download:
            st = checkpoint.state(dest)
            self.setup.checkpoint = {"repo": self.cfg.checkpoint, "path": str(dest), "downloaded_now": False,
                                     "bytes": st.bytes, "files": st.files}
            self.log.event("download", "skipped", reason="checkpoint already complete", bytes=st.bytes)
            self._check_shape(dest)
            return
        self.log.event("download", "started", model=self.cfg.checkpoint)
        watch = Stopwatch()
        try:
            st = checkpoint.download(self.cfg.checkpoint, dest, on_line=self.log.raw)
        except DownloadError as e:
            message = self.log.redact(str(e))
            self.log.event("download", "failed", seconds=watch.seconds, error=message)
            raise SetupError("download", message) from None
        self.setup.checkpoint = {"repo": self.cfg.checkpoint, "path": str(dest), "downloaded_now": True,
                                 "bytes": st.bytes, "files": st.files, "seconds": watch.seconds,
                                 "excluded": list(checkpoint.EXCLUDE)}
        self.setup.phases["download"] = {"seconds": watch.seconds, "bytes": st.bytes}
        self.log.event("download", "finished", seconds=watch.seconds, bytes=st.bytes)
        self._check_shape(dest)

    def _check_shape(self, dest: Path) -> None:
        """The checkpoint's own config.json decides, before any build: a size it cannot split fails at once."""
        shape = checkpoint.model_shape(dest)
        problems = shape_problems(shape, self.cfg.tp_size, self.cfg.pp_size)
        if problems:
            message = "; ".join(f"{field}: {text}" for field, text in problems) + f" (from {dest}/config.json)"
            self.log.event("download", "failed", error=message)
            raise SetupError("download", message, exit_code=EXIT_CONFIG)

    # -- one experiment --------------------------------------------------------------------------

    def _dataset(self, exp: Experiment, out: bench.BenchOutputs, commands: dict[str, Any],
                 where: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """Make the experiment's dataset; returns ``(error, phase timing)``."""
        self.log.event("dataset", "started", **where)
        dw, error = Stopwatch(), None
        try:
            partial = out.dataset.with_suffix(".partial")
            argv, to_stdout = bench.dataset_command(
                self.tools.dataset, self.tools.bench, self.cfg, sys.executable, exp, str(self.cfg.checkpoint_path),
                str(partial), str(self.local))
            commands["dataset"] = argv
            env = proc.child_env(drop=SECRET_VARS)
            if to_stdout:
                with open(partial, "wb") as data:
                    done = proc.run(argv, on_line=self.log.raw, stdout_to=data, env=env)
            else:
                done = proc.run(argv, on_line=self.log.raw, env=env)
            if done.returncode != 0:
                error = f"the dataset command exited with code {done.returncode}: {' | '.join(done.tail[-3:])}"
            elif not partial.is_file() or partial.stat().st_size == 0:
                error = "the dataset command wrote an empty dataset"
            else:
                os.replace(partial, out.dataset)
        except (BenchError, OSError) as e:
            error = f"cannot prepare the dataset: {e}"
        phase: dict[str, Any] = {"seconds": dw.seconds}
        if error:
            self.log.event("dataset", "failed", seconds=dw.seconds, error=self.log.redact(error), **where)
        else:
            phase["bytes"] = out.dataset.stat().st_size
            self.log.event("dataset", "finished", seconds=dw.seconds, bytes=phase["bytes"], **where)
        return error, phase

    def _experiment(self, exp: Experiment, index: int) -> ExperimentRecord:
        record = ExperimentRecord.new(exp, index)
        record.attempt = self.attempt
        record.prefix = self.store.url(self.records.experiment_key(exp.id))
        where = {"experiment": exp.id, "index": index, "total": self.total}
        out = bench.BenchOutputs(self.local / exp.id)
        out.folder.mkdir(parents=True, exist_ok=True)
        started, watch = utc_now(), Stopwatch()
        phases: dict[str, dict[str, Any]] = {}
        commands: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        self.log.info(f"experiment {index}/{self.total}: {exp.id}")

        error, phases["dataset"] = self._dataset(exp, out, commands, where)
        engine = self.shared_engine
        spec = self.plan.engines.get(exp.id)
        if error is None and spec is not None and engine is None:
            engine = self.builder.ensure(spec, out.dataset, where)  # SetupError stops the run
            if engine["build_seconds"] is not None:
                phases["build"] = {"seconds": engine["build_seconds"]}
        if engine is not None:
            extra["engine"] = engine
            record.engine = engine["key"]
            commands["build"] = engine["command"]
        if error is None:
            error = self._benchmark(exp, out, engine, commands, phases, extra, where)
        record.status = layout.FAILED if error else layout.SUCCEEDED
        record.error = self.log.redact(error) if error else None
        record.seconds = watch.seconds
        self.records.upload(exp, index, out, record, phases, commands, started, extra)
        return record

    def _benchmark(self, exp: Experiment, out: bench.BenchOutputs, engine: dict[str, Any] | None,
                   commands: dict[str, Any], phases: dict[str, dict[str, Any]], extra: dict[str, Any],
                   where: dict[str, Any]) -> str | None:
        cfg, cli = self.cfg, self.tools.bench
        try:
            argv = bench.throughput_command(
                cli, cfg, exp, out, workspace=str(self.local), checkpoint=str(cfg.checkpoint_path),
                engine_dir=engine["dir"] if engine else None,
                engine_max_num_tokens=(engine or {}).get("build_config", {}).get("max_num_tokens"))
        except BenchError as e:  # UnsupportedOptionError: this experiment cannot be expressed; the others still run
            self.log.event("benchmark", "failed", error=str(e), **where)
            phases["benchmark"] = {"seconds": 0.0, "exit_code": None, "not_run": True}
            return str(e)
        if "--extra_llm_api_options" in argv:
            options = bench.extra_llm_api_options(cfg, exp)
            out.extra_options.write_text(bench.options_yaml(options))
            extra["extra_llm_api_options"] = options
        report_json = out.report_json if "--report_json" in argv else None
        extra["report_source"] = layout.REPORT_JSON if report_json else layout.REPORT_TXT
        commands["benchmark"] = argv
        self.log.event("benchmark", "started", **where)
        bw = Stopwatch()
        try:
            with open(out.report_txt, "w") as text:
                done = proc.run(argv, on_line=self.log.raw, output=text, env=proc.child_env(drop=SECRET_VARS))
            error = bench.check_report(report_json, out.report_txt, done.returncode, done.tail)
            phases["benchmark"] = {"seconds": bw.seconds, "exit_code": done.returncode}
        except OSError as e:
            error = f"cannot run {self.exe}: {e.strerror or e}"
            phases["benchmark"] = {"seconds": bw.seconds, "exit_code": None}
        if error:
            self.log.event("benchmark", "failed", seconds=bw.seconds, error=self.log.redact(error), **where)
        else:
            self.log.event("benchmark", "finished", seconds=bw.seconds, **where)
        return error
