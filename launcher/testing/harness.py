"""A fake node for running the real launcher as a subprocess: local SSD folders, a fake Hugging Face hub,
and the stand-ins for trtllm-bench, prepare_dataset.py, the downloader, preflight.py and nvidia-smi.

Test-only (it lives under ``launcher/testing/`` so it is never shipped into a pod). Usage::

    node = Node(tmp_path)
    result = node.run(node.config(run_id="run-1"))
    assert result.returncode == 0 and len(node.calls("trtllm-bench", "build")) == 1
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTING = Path(__file__).resolve().parent
LAUNCHER = TESTING.parent
MODEL = "acme/tiny-llm"
TOKEN = "hf_TestTokenThatMustNeverLeak0123456789"
SWEEP = [
    {"isl": 128, "osl": 128, "num_requests": 30, "concurrency": None, "streaming": False},
    {"isl": 9000, "osl": 100, "num_requests": 5, "concurrency": 4, "streaming": True},
    {"isl": 500, "osl": 200, "num_requests": 10, "concurrency": None, "streaming": False},
]

if str(LAUNCHER) not in sys.path:
    sys.path.insert(0, str(LAUNCHER))

from events import parse_event  # noqa: E402


def _wrapper(path: Path, script: Path) -> Path:
    """An executable that runs ``script`` with this interpreter (no reliance on PATH or exec bits).

    ``-S`` (no site-packages: the stand-ins are stdlib only) keeps each start at ~20 ms.
    """
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{script}" "$@"\n')
    path.chmod(0o755)
    return path


def make_hub(root: Path, model: str = MODEL, shards: int = 2) -> Path:
    """A checkpoint as the hub serves it: config, safetensors index and shards, tokenizer."""
    repo = root / model
    repo.mkdir(parents=True, exist_ok=True)
    names = [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]
    (repo / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2}))
    (repo / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {f"layers.{i}.weight": n for i, n in enumerate(names)}})
    )
    for i, name in enumerate(names):
        (repo / name).write_bytes(bytes([i + 1]) * 1024)
    (repo / "tokenizer.json").write_text("{}")
    return root


@dataclass
class Result:
    returncode: int
    stdout: str

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for line in self.stdout.splitlines() if (e := parse_event(line)) is not None]

    def find(self, phase: str, state: str | None = None, experiment: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e["phase"] == phase and (state is None or e["state"] == state)
                and (experiment is None or e["experiment"] == experiment)]


@dataclass
class Node:
    """One node's local SSD (shared by every launcher started from it) and its tools."""

    root: Path
    version: str = "0.17.0.post1"
    env_extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bin = self.root / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.hub = make_hub(self.root / "hub")
        self.ssd = self.root / "ssd"
        self.results = self.root / "results"
        self.calls_file = self.root / "calls.jsonl"
        self.bench = _wrapper(self.bin / "trtllm-bench", TESTING / "trtllm_bench.py")
        self.downloader = _wrapper(self.bin / "download", TESTING / "fake_download.py")
        smi = self.bin / "nvidia-smi"
        smi.write_text("#!/bin/sh\n" + "".join(
            f'echo "{i}, NVIDIA H200, 143771 MiB, 550.90.07, GPU-0000000{i}-aaaa"\n' for i in range(8)))
        smi.chmod(0o755)

    def config(self, **overrides: Any) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "release": "bench-acme-tiny", "run_id": "run-1", "model": MODEL, "backend": "tensorrt",
            "tp_size": 8, "pp_size": 1, "ep_size": None, "quantization": "FP8",
            "kv_cache_free_gpu_mem_fraction": 0.95, "max_batch_size": None, "max_num_tokens": None,
            "checkpoint_dir": str(self.ssd / "models"), "workspace": str(self.ssd / "workspace"),
            "engine_cache_dir": str(self.ssd / "engines"), "results": str(self.results),
            "experiments": [dict(e) for e in SWEEP],
        }
        cfg.update(overrides)
        return cfg

    def write_config(self, cfg: dict[str, Any], name: str | None = None) -> Path:
        path = self.root / (name or f"config-{cfg.get('run_id', 'x')}.json")
        path.write_text(json.dumps(cfg, indent=2))
        return path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STANDIN_", "RECIPE_", "FAKE_"))}
        env.pop("STORAGE_EMULATOR_HOST", None)
        env.update({
            "PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}",
            "TRTLLM_BENCH": str(self.bench), "STANDIN_VERSION": self.version,
            "RECIPE_DOWNLOADER": str(self.downloader), "FAKE_HUB": str(self.hub), "HF_TOKEN": TOKEN,
            "RECIPE_PREPARE_DATASET": str(TESTING / "prepare_dataset.py"),
            "RECIPE_PREFLIGHT": str(TESTING / "preflight_standin.py"),
            "STANDIN_CALLS": str(self.calls_file), "PYTHONUNBUFFERED": "1",
        })
        env.update(self.env_extra)
        env.update(extra)
        return env

    def argv(self, config: Path, *more: str) -> list[str]:
        return [sys.executable, str(LAUNCHER / "launch.py"), "--config", str(config), *more]

    def run(self, cfg: dict[str, Any], *more: str, timeout: float = 60, **env: str) -> Result:
        out = subprocess.run(self.argv(self.write_config(cfg), *more), env=self.env(**env), capture_output=True,
                             text=True, timeout=timeout, check=False)
        return Result(out.returncode, out.stdout + out.stderr)

    def start(self, cfg: dict[str, Any], **env: str) -> subprocess.Popen[str]:
        """Start the launcher in its own process group (so a test can kill it and its children at once)."""
        return subprocess.Popen(self.argv(self.write_config(cfg)), env=self.env(**env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def calls(self, tool: str | None = None, subcommand: str | None = None) -> list[dict[str, Any]]:
        if not self.calls_file.is_file():
            return []
        rows = [json.loads(line) for line in self.calls_file.read_text().splitlines() if line.strip()]
        return [r for r in rows if (tool is None or r["tool"] == tool)
                and (subcommand is None or r.get("subcommand") == subcommand)]


def wait_for_event(process: subprocess.Popen[str], predicate: Any, timeout: float = 30) -> list[str]:
    """Read the launcher's output until an event satisfies ``predicate``; returns the lines read."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        event = parse_event(line)
        if event is not None and predicate(event):
            return lines
    raise AssertionError("event not seen; output:\n" + "".join(lines))


def wait_until(condition: Any, timeout: float = 30, poll: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(poll)


def kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL the launcher and its children, as a node loss would."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()
