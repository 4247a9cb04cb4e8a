"""Build an engine once per node: find it in the cache, or build it under the cache's lock and commit it.

Used by the runner for the shared engine (before the experiments) and for each per-dataset engine
(after that experiment's dataset exists). A second pod on the node waiting for the same key finds the
engine the first one committed; a killed build's folder is swept before the next build.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import bench
import proc
from config import LauncherConfig
from engine import EngineCache, EngineSpec
from errors import SetupError
from events import EventLog, Stopwatch, utc_now
from tool_cli import Tools

SECRET_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


class EngineBuilder:
    """Engines for one run; ``ensure`` returns what metadata.json records about the engine it used."""

    def __init__(self, cfg: LauncherConfig, tools: Tools, log: EventLog) -> None:
        self.cfg = cfg
        self.tools = tools
        self.log = log
        self.cache = EngineCache(Path(cfg.engine_cache_dir))
        self.swept = False
        self.seen: dict[str, dict[str, Any]] = {}

    def child_env(self) -> dict[str, str]:
        """The build reads the local checkpoint; only a trtllm-bench without ``--model_path`` (0.16) loads
        the model by name from the hub itself, and so keeps the token."""
        local = self.tools.bench.has(None, "--model_path")
        return proc.child_env(drop=SECRET_VARS if local else ())

    def ensure(self, spec: EngineSpec, dataset: Path | None, where: dict[str, Any]) -> dict[str, Any]:
        """The engine for ``spec``, built now if the node does not have it; raises ``SetupError`` on failure."""
        if spec.key in self.seen:
            info = dict(self.seen[spec.key], built_now=False, build_seconds=None)
            self.log.event("build", "skipped", reason="engine built earlier in this run", engine=spec.key, **where)
            return info
        if not self.swept and self.cache.root.is_dir():
            for name in self.cache.sweep_stale():
                self.log.info(f"removed {self.cache.root / name}: left behind by a build that was killed")
            self.swept = True
        built_now, seconds, command = False, None, None
        if self.cache.has(spec):
            self.log.event("build", "skipped", reason="engine cached on this node", engine=spec.key, **where)
        else:
            last_note = [-60.0]

            def waiting(elapsed: float) -> None:
                if elapsed - last_note[0] >= 60:
                    last_note[0] = elapsed
                    self.log.info(f"waiting for another pod building engine {spec.key} ({elapsed:.0f}s)")

            with self.cache.lock(spec, on_wait=waiting):
                if self.cache.has(spec):
                    self.log.event("build", "skipped", reason="engine built by another pod", engine=spec.key, **where)
                else:
                    seconds, command = self._build_locked(spec, dataset, where)
                    built_now = True
        path = self.cache.path(spec)
        limits = bench.engine_limits(path)
        info = {"key": spec.key, "dir": str(path), "method": spec.method, "built_now": built_now,
                "build_seconds": seconds, "command": command, "spec": spec.as_dict(), "build_config": limits}
        self.seen[spec.key] = info
        return info

    def _build_locked(self, spec: EngineSpec, dataset: Path | None, where: dict[str, Any]) -> tuple[float, list[str]]:
        tmp = self.cache.temp_dir(spec)
        argv = spec.argv(self.tools.bench.executable, str(tmp), str(self.cfg.checkpoint_path),
                         str(dataset) if dataset else None)
        self.log.event("build", "started", engine=spec.key, method=spec.method, **where)
        watch = Stopwatch()
        build_log = tmp / "build.log"
        try:
            with open(build_log, "w") as out:
                done = proc.run(argv, on_line=self.log.raw, output=out, env=self.child_env())
            engine = bench.built_engine_dir(tmp, self.cfg)
            if done.returncode != 0:
                raise SetupError("build", f"trtllm-bench build exited with code {done.returncode}: "
                                          + " | ".join(done.tail[-3:]))
            if not (engine / "config.json").is_file():
                raise SetupError("build", f"trtllm-bench build exited 0 but saved no engine at {engine}")
            shutil.copy(build_log, engine / "build.log")
            self.cache.commit(spec, engine, {"built": utc_now(), "seconds": watch.seconds, "command": argv,
                                             "dataset": str(dataset) if dataset else None})
        except SetupError as e:
            self.log.event("build", "failed", engine=spec.key, seconds=watch.seconds,
                           error=self.log.redact(str(e)), **where)
            raise
        except OSError as e:
            self.log.event("build", "failed", engine=spec.key, seconds=watch.seconds, error=str(e), **where)
            raise SetupError("build", f"cannot run trtllm-bench build: {e}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # the build's intermediate (quantized) checkpoint too
        self.log.event("build", "finished", engine=spec.key, seconds=watch.seconds, **where)
        return watch.seconds, argv
