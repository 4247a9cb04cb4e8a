"""``launch.py --dry-run``: every command a run would execute, in order, without executing any of them.

The tools' ``--help`` is read as a real run reads it (so the commands are the ones this image's
trtllm-bench accepts), the node's caches are looked at (a complete checkpoint is not downloaded again,
a cached engine is not rebuilt), and the commands are built by the same functions the runner calls.
Nothing is downloaded, built, written or run. Paths that exist only during a run are placeholders:
``<attempt>`` (the attempt's folder name) and ``<pid>`` (a build's temporary folder).

Not shown: ``--enable_chunked_context``, which a run adds once it has read the built engine's
``max_num_tokens`` (a cached engine's is read here), and experiments already recorded in the results
store (a dry run does not read the store).
"""

from __future__ import annotations

import sys
from pathlib import Path

import bench
import checkpoint
import layout
from config import LauncherConfig
from engine import EngineCache, EngineSpec
from plan import CacheState, SetupPlan
from runner import attempt_dir, preflight_command
from tool_cli import Tools


def dry_run_commands(cfg: LauncherConfig, tools: Tools, plan: SetupPlan, cache: CacheState,
                     notes: list[str] | None = None) -> list[list[str]]:
    """The run's commands, in the order the runner executes them; ``notes`` collects what is not a command."""
    notes = notes if notes is not None else []
    local = attempt_dir(cfg, "<attempt>")
    engines = EngineCache(Path(cfg.engine_cache_dir))
    ckpt = str(cfg.checkpoint_path)
    exe = tools.bench.executable
    out: list[list[str]] = []
    if cfg.preflight.enabled:
        out.append(preflight_command(cfg, local / layout.ATTEMPT_PREFLIGHT))
    if plan.download:
        out.append(checkpoint.download_command(cfg.checkpoint, cfg.checkpoint_path))
    built: set[str] = set(cache.engines)

    def build(spec: EngineSpec, dataset: Path | None) -> None:
        if spec.key not in built:
            built.add(spec.key)
            tmp = engines.root / f".tmp-{spec.key}-<pid>"
            out.append(spec.argv(exe, str(tmp), ckpt, str(dataset) if dataset else None))

    if plan.shared_engine is not None:
        build(plan.shared_engine, None)
    for exp in cfg.experiments:
        if exp.id not in plan.run:
            continue
        result = bench.BenchOutputs(local / exp.id)
        argv, to_stdout = bench.dataset_command(tools.dataset, tools.bench, cfg, sys.executable, exp, ckpt,
                                                str(result.dataset), str(local))
        out.append(argv)
        if to_stdout:
            notes.append(f"{exp.id}: the dataset command's stdout is written to {result.dataset}")
        spec = plan.engines.get(exp.id)
        if spec is not None and plan.shared_engine is None:
            build(spec, result.dataset)
        limits = bench.engine_limits(engines.path(spec)) if spec is not None else {}
        try:
            out.append(bench.throughput_command(
                tools.bench, cfg, exp, result, workspace=str(local), checkpoint=ckpt,
                engine_dir=str(engines.path(spec)) if spec is not None else None,
                engine_max_num_tokens=limits.get("max_num_tokens")))
        except bench.UnsupportedOptionError as e:
            notes.append(f"{exp.id}: not run, the experiment would fail: {e}")
    return out
