"""What the benchmark pod would run, shown before anything is sent: ``launch.py --dry-run`` run here.

The launcher decides its commands from the tools' ``--help`` in the image. Here there is no image, so the
stand-ins generated from the version tables (``manifests/trtllm/bench-<version>.yaml``, each fact with
where it was read) answer ``--help`` as that TensorRT-LLM version's CLI does. The commands are therefore
those the launcher would build against that recorded CLI: a real image's own ``--help`` decides in the pod.
Node paths (``/ssd``, ``/gcs``) are the pod's; nothing is downloaded, built or run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from recipelib.deploy.render import BenchmarkPlan, launcher_config
from recipelib.errors import ConfigError
from recipelib.paths import launcher_dir


@dataclass(frozen=True)
class PodCommands:
    version: str
    commands: tuple[str, ...]
    notes: tuple[str, ...]

    def lines(self) -> list[str]:
        head = (f"Commands the pod would run (launch.py --dry-run against TensorRT-LLM {self.version}'s CLI "
                "as recorded in manifests/trtllm/):")
        return [head, *(f"  {c}" for c in self.commands), *(f"  note: {n}" for n in self.notes)]


def _wrapper(folder: Path, name: str, script: Path) -> Path:
    path = folder / name
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    path.chmod(0o755)
    return path


def _podside(line: str, local: dict[str, str]) -> str:
    """This machine's stand-in paths as the pod names its tools (the image's own paths are found at run time)."""
    for here, there in local.items():
        line = line.replace(here, there)
    return line


def pod_commands(plan: BenchmarkPlan, trtllm_version: str, *, timeout_s: float = 60) -> PodCommands:
    """Run the launcher's dry run for ``plan`` against the recorded CLI of ``trtllm_version``."""
    launcher = launcher_dir()
    testing = launcher / "testing"
    with tempfile.TemporaryDirectory(prefix="recipelib-dry-run-") as tmp:
        folder = Path(tmp)
        config = folder / "config.json"
        config.write_text(json.dumps(launcher_config(plan), indent=2))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STANDIN_", "RECIPE_", "HF_TOKEN"))}
        env.update({
            "TRTLLM_BENCH": str(_wrapper(folder, "trtllm-bench", testing / "trtllm_bench.py")),
            "RECIPE_PREPARE_DATASET": str(testing / "prepare_dataset.py"),
            "STANDIN_VERSION": trtllm_version.lstrip("v"),
            "PYTHONUNBUFFERED": "1",
        })
        proc = subprocess.run([sys.executable, str(launcher / "launch.py"), "--config", str(config), "--dry-run"],
                              capture_output=True, text=True, env=env, timeout=timeout_s, cwd=folder)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise ConfigError("TRTLLM_VERSION", f"the launcher's dry run against TensorRT-LLM {trtllm_version}'s CLI "
                          f"failed (exit {proc.returncode}): {tail}")
    local = {str(folder / "trtllm-bench"): "trtllm-bench", str(testing / "prepare_dataset.py"): "prepare_dataset.py",
             sys.executable: "python3"}
    commands = tuple(_podside(line, local) for line in proc.stdout.splitlines() if line.strip())
    notes = tuple(line.strip() for line in proc.stderr.splitlines() if line.strip())
    return PodCommands(trtllm_version, commands, notes)
