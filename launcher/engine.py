"""The engine cache: one TensorRT engine per exact build command, built once per node and reused.

The recipe rebuilt the 405B engine for every experiment (~37 minutes each) and deleted it. Here an
engine lives in ``<engine_cache_dir>/<key>``, where ``key`` is content-addressed: a digest of the exact
``trtllm-bench build`` command (node paths replaced by placeholders; a per-dataset build's ``--dataset``
by the exact command that makes that dataset), the TensorRT-LLM version and the checkpoint. Two
experiments whose builds are identical share one engine; a repeated sweep, a restarted pod or another
pod on the same node (the cache is on the node's local SSD) finds it and builds nothing.

A build writes into a temporary folder and is renamed into place only when complete, so a half-built
engine is never used; an exclusive ``flock`` on ``<key>.lock`` makes a second pod wait for the first
instead of building the same engine at the same time.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

MARKER = "recipe-engine.json"
WORKSPACE, CHECKPOINT, DATASET = "{workspace}", "{checkpoint}", "{dataset}"
"""Placeholders in a stored build command, filled in by :meth:`EngineSpec.argv`."""


@dataclass(frozen=True)
class EngineSpec:
    """Everything that determines a built engine; its digest names the cache folder.

    ``command`` is the build command after the executable, with placeholders for the node's paths;
    ``dataset_command`` (per-dataset builds) is the command that makes the dataset it is tuned on.
    """

    checkpoint: str
    trtllm_version: str
    method: str
    command: tuple[str, ...]
    dataset_command: tuple[str, ...] | None
    label: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def key(self) -> str:
        """Readable and content-addressed, e.g. ``llama-3-1-405b-tp8-pp1-fp8-trt0-17-0-post1-s22000-1a2b3c4d5e6f``."""
        identity = {"checkpoint": self.checkpoint, "trtllm_version": self.trtllm_version,
                    "command": list(self.command), "dataset_command": self.dataset_command}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.label}-{digest}"

    def argv(self, executable: str, workspace: str, checkpoint: str, dataset: str | None) -> list[str]:
        """The build command for this node: placeholders replaced by real paths."""
        values = {WORKSPACE: workspace, CHECKPOINT: checkpoint, DATASET: dataset or DATASET}
        return [executable, *(values.get(a, a) for a in self.command)]


def engine_label(checkpoint: str, tp: int, pp: int, quantization: str | None, version: str, shape: str) -> str:
    """``<model>-tp<T>-pp<P>-<quant>-trt<version>-<shape>``: what a person needs to recognise an engine."""
    name = re.sub(r"[^a-z0-9]+", "-", checkpoint.split("/")[-1].lower()).strip("-")[:40]
    ver = re.sub(r"[^a-z0-9]+", "-", version.lower()).strip("-")[:24]
    return f"{name}-tp{tp}-pp{pp}-{(quantization or 'none').lower()}-trt{ver}-{shape}"


@dataclass(frozen=True)
class EngineCache:
    """``<root>/<key>/`` holds a complete engine (with ``recipe-engine.json``); nothing else is trusted."""

    root: Path

    def path(self, spec: EngineSpec) -> Path:
        return self.root / spec.key

    def has(self, spec: EngineSpec) -> bool:
        return (self.path(spec) / MARKER).is_file()

    def keys(self) -> frozenset[str]:
        """The keys of every complete engine in the cache (the planner's view of the node)."""
        if not self.root.is_dir():
            return frozenset()
        return frozenset(p.parent.name for p in self.root.glob(f"*/{MARKER}"))

    @contextmanager
    def lock(self, spec: EngineSpec, on_wait: Callable[[float], None], poll: float = 0.5) -> Iterator[None]:
        """Hold an exclusive lock for ``spec``; ``on_wait(seconds)`` is called while another pod holds it.

        ``flock`` is released by the kernel when its holder dies, so a killed pod never leaves the
        cache locked.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / f"{spec.key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        start = time.monotonic()
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    on_wait(time.monotonic() - start)
                    time.sleep(poll)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def sweep_stale(self) -> list[str]:
        """Remove build folders that no running build owns (their key's lock is free).

        A killed build leaves its folder behind, and for a 405B model it holds the quantized checkpoint
        (hundreds of GB of local SSD); it must not wait for the same engine to be built again.
        """
        removed = []
        for folder in self.root.glob(".tmp-*"):
            key = folder.name[len(".tmp-"):].rsplit("-", 2)[0]
            fd = os.open(self.root / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a build of that engine is running
            finally:
                os.close(fd)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
        return removed

    def temp_dir(self, spec: EngineSpec) -> Path:
        """A fresh build folder; call only while holding the lock (stale ones are removed first)."""
        for stale in self.root.glob(f".tmp-{spec.key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        path = self.root / f".tmp-{spec.key}-{os.getpid()}-{time.time_ns()}"
        path.mkdir(parents=True)
        return path

    def commit(self, spec: EngineSpec, built: Path, info: dict[str, object]) -> Path:
        """Move a finished engine into place atomically; ``built`` must be on the cache's filesystem."""
        (built / MARKER).write_text(json.dumps({"spec": spec.as_dict(), "key": spec.key, **info}, indent=2))
        final = self.path(spec)
        if final.exists():  # an incomplete leftover (no marker): never trusted, replaced
            shutil.rmtree(final)
        os.rename(built, final)
        return final
