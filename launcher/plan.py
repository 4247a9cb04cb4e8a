"""What a run will do before it does it: the download, the engine builds and the experiments.

The launcher follows this plan, and the same function answers "what would this sweep cost here?" for
``launch.py --plan``/``--dry-run`` and for ``benchmarks/launcher_setup_time.py``. In the engine flow each
experiment gets an :class:`EngineSpec`:

- ``per-dataset`` (the default; NVIDIA's method): ``trtllm-bench build --dataset`` on the experiment's own
  dataset, so trtllm-bench tunes the engine's limits to it, as for NVIDIA's published figures. With
  ``max_batch_size`` and ``max_num_tokens`` pinned, the build takes those and the experiment's length
  instead (trtllm-bench takes one build mode at a time);
- ``shared``: one engine for the sweep, at its longest sequence (tuned for its shortest experiment).

Specs are content-addressed (``engine.py``), so identical builds are one engine and a repeat builds none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import bench
import checkpoint
from config import Experiment, LauncherConfig
from engine import CHECKPOINT, DATASET, WORKSPACE, EngineCache, EngineSpec, engine_label
from tool_cli import Tools


@dataclass(frozen=True)
class CacheState:
    """What the node (and the results store) already holds."""

    checkpoint_complete: bool = False
    engines: frozenset[str] = frozenset()
    done_experiments: frozenset[str] = frozenset()

    @classmethod
    def scan(cls, cfg: LauncherConfig, done_experiments: frozenset[str] = frozenset()) -> CacheState:
        return cls(
            checkpoint_complete=checkpoint.state(cfg.checkpoint_path).complete,
            engines=EngineCache(Path(cfg.engine_cache_dir)).keys(),
            done_experiments=done_experiments,
        )


def dataset_identity(tools: Tools, cfg: LauncherConfig, exp: Experiment) -> tuple[str, ...]:
    """The command that makes ``exp``'s dataset, with the node's paths as placeholders."""
    argv, _ = bench.dataset_command(tools.dataset, tools.bench, cfg, "python", exp, CHECKPOINT, DATASET, WORKSPACE)
    head = ["trtllm-bench"] if tools.dataset.kind == "subcommand" else ["prepare_dataset.py", "--tokenizer"]
    skip = 1 if tools.dataset.kind == "subcommand" else 3
    return tuple([*head, *argv[skip:]])


def engine_specs(cfg: LauncherConfig, tools: Tools) -> dict[str, EngineSpec]:
    """Experiment id -> the engine it runs on (empty in the PyTorch flow)."""
    if cfg.flow != "engine":
        return {}
    cli, version = tools.bench, tools.bench.version
    if "build" not in cli.subcommands:
        raise bench.BenchError(f"trtllm-bench (TensorRT-LLM {version}) lists no build subcommand in its --help: "
                               "this image has no engine flow; use backend pytorch")

    def spec(command: list[str], dataset: tuple[str, ...] | None, shape: str) -> EngineSpec:
        label = engine_label(cfg.checkpoint, cfg.tp_size, cfg.pp_size, cfg.quantization, version, shape)
        return EngineSpec(cfg.checkpoint, version, str(cfg.engine_method), tuple(command[1:]), dataset, label)

    if cfg.engine_method == "shared":
        tuning = bench.BuildTuning.for_config(cfg)
        shared = spec(bench.build_command(cli, cfg, workspace=WORKSPACE, checkpoint=CHECKPOINT, tuning=tuning),
                      None, f"s{tuning.max_seq_len}")
        return {e.id: shared for e in cfg.experiments}
    out: dict[str, EngineSpec] = {}
    for exp in cfg.experiments:
        if cfg.max_batch_size and cfg.max_num_tokens:
            tuning = bench.BuildTuning.for_config(cfg, (exp,))
            command = bench.build_command(cli, cfg, workspace=WORKSPACE, checkpoint=CHECKPOINT, tuning=tuning)
            out[exp.id] = spec(command, None, f"s{tuning.max_seq_len}")
        else:
            command = bench.build_command(cli, cfg, workspace=WORKSPACE, checkpoint=CHECKPOINT, dataset=DATASET)
            out[exp.id] = spec(command, dataset_identity(tools, cfg, exp),
                               f"isl{exp.isl}-osl{exp.osl}-n{exp.num_requests}")
    return out


@dataclass(frozen=True)
class SetupPlan:
    download: bool
    flow: str
    engine_method: str | None
    engines: dict[str, EngineSpec]
    builds: tuple[EngineSpec, ...]
    run: tuple[str, ...]
    skip: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def shared_engine(self) -> EngineSpec | None:
        """The one engine of a ``shared`` sweep (built before the experiments)."""
        return next(iter(self.engines.values())) if self.engine_method == "shared" and self.engines else None

    def as_dict(self) -> dict[str, object]:
        return {
            "download": self.download, "flow": self.flow, "engine_method": self.engine_method,
            "builds": [{"key": s.key, **s.as_dict()} for s in self.builds],
            "engines": {exp: s.key for exp, s in self.engines.items()},
            "run": list(self.run), "skip": list(self.skip), "notes": list(self.notes),
        }


def plan_setup(cfg: LauncherConfig, tools: Tools, cache: CacheState) -> SetupPlan:
    """Which downloads and builds happen for ``cfg`` given ``cache``.

    Experiments already reported for this run id are skipped; when none is left, nothing is
    downloaded or built. The PyTorch flow builds no engine.
    """
    ids = [e.id for e in cfg.experiments]
    run = tuple(i for i in ids if i not in cache.done_experiments)
    skip = tuple(i for i in ids if i in cache.done_experiments)
    if not run:
        return SetupPlan(False, cfg.flow, cfg.engine_method, {}, (), run, skip,
                         ("every experiment is already reported",))
    notes: list[str] = []
    engines = {i: s for i, s in engine_specs(cfg, tools).items() if i in run}
    builds: dict[str, EngineSpec] = {}
    for exp_id, spec in engines.items():
        if spec.key in cache.engines:
            notes.append(f"{exp_id}: engine {spec.key} is cached on this node")
        else:
            builds.setdefault(spec.key, spec)
    if cfg.flow != "engine":
        notes.append("pytorch flow: no engine build")
    download = not cache.checkpoint_complete
    if not download:
        notes.append("checkpoint already complete on this node")
    return SetupPlan(download, cfg.flow, cfg.engine_method, engines, tuple(builds.values()), run, skip, tuple(notes))
