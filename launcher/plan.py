"""What a run will do before it does it: downloads, engine builds and experiments, from the node's state.

The launcher follows this plan, and the same function answers "what would this sweep cost here?" for
``launch.py --plan`` and for ``benchmarks/launcher_setup_time.py``: the recipe built one engine per
experiment; this plan builds at most one per sweep, and none when the node already has it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import checkpoint
from bench import TrtllmVersion
from config import LauncherConfig
from engine import EngineCache, EngineSpec


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


@dataclass(frozen=True)
class SetupPlan:
    download: bool
    builds: tuple[EngineSpec, ...]
    engine: EngineSpec | None
    run: tuple[str, ...]
    skip: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        return {
            "download": self.download,
            "builds": [{"key": s.key, **s.as_dict()} for s in self.builds],
            "engine": self.engine.key if self.engine else None,
            "run": list(self.run),
            "skip": list(self.skip),
            "notes": list(self.notes),
        }


def plan_setup(cfg: LauncherConfig, version: TrtllmVersion, cache: CacheState) -> SetupPlan:
    """Which downloads and builds happen for ``cfg`` given ``cache``.

    Experiments already reported for this run id are skipped; when none is left, nothing is
    downloaded or built. The PyTorch backend needs no engine.
    """
    ids = [e.id for e in cfg.experiments]
    run = tuple(i for i in ids if i not in cache.done_experiments)
    skip = tuple(i for i in ids if i in cache.done_experiments)
    notes: list[str] = []
    if not run:
        return SetupPlan(False, (), None, run, skip, ("every experiment is already reported",))
    spec = EngineSpec.for_config(cfg, version) if cfg.backend == "tensorrt" else None
    builds: tuple[EngineSpec, ...] = ()
    if spec is None:
        notes.append("pytorch backend: no engine build")
    elif spec.key in cache.engines:
        notes.append(f"engine {spec.key} is cached on this node")
    else:
        builds = (spec,)
    download = not cache.checkpoint_complete
    if not download:
        notes.append("checkpoint already complete on this node")
    return SetupPlan(download, builds, spec, run, skip, tuple(notes))
