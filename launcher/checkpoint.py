"""The Hugging Face checkpoint on local SSD: downloaded once, verified, then marked complete.

A 405B checkpoint is ~800 GB; a pod that finds it already on the node's SSD must not fetch it again.
The marker file is written only after the downloader succeeded *and* the files check out (a
``config.json``, and every shard named by a safetensors index, or at least one weight file), so an
interrupted download is resumed, never trusted.

The downloader is pluggable: ``$RECIPE_DOWNLOADER`` names an executable called as ``EXE MODEL DEST``
(tests use a local fake hub); otherwise ``huggingface_hub.snapshot_download``. The token comes only
from ``$HF_TOKEN`` and is handed over through the environment, never on a command line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import proc
from errors import DownloadError

DOWNLOADER_ENV = "RECIPE_DOWNLOADER"
MARKER = ".recipe-download-complete.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class CheckpointState:
    complete: bool
    files: int = 0
    bytes: int = 0


def state(dest: Path) -> CheckpointState:
    """What the marker says; ``complete`` only when the marker exists and still matches the files."""
    try:
        info = json.loads((dest / MARKER).read_text())
    except (OSError, ValueError):
        return CheckpointState(False)
    if verify(dest) is not None:
        return CheckpointState(False)
    return CheckpointState(True, int(info.get("files", 0)), int(info.get("bytes", 0)))


def verify(dest: Path) -> str | None:
    """``None`` when ``dest`` looks like a complete checkpoint, else what is missing."""
    if not (dest / "config.json").is_file():
        return f"{dest}/config.json is missing"
    index = dest / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError) as e:
            return f"{index} is unreadable: {e}"
        missing = sorted(s for s in shards if not (dest / s).is_file() or (dest / s).stat().st_size == 0)
        if missing:
            return f"{len(missing)} of {len(shards)} shards missing or empty, e.g. {missing[0]}"
        return None
    if not any(p.suffix in WEIGHT_SUFFIXES and p.stat().st_size > 0 for p in dest.rglob("*") if p.is_file()):
        return f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) under {dest}"
    return None


def _size(dest: Path) -> tuple[int, int]:
    files = [p for p in dest.rglob("*") if p.is_file() and p.name != MARKER and ".cache" not in p.parts]
    return len(files), sum(p.stat().st_size for p in files)


def _snapshot_download(model: str, dest: Path) -> None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise DownloadError(
            f"huggingface_hub is not installed and ${DOWNLOADER_ENV} is not set: nothing can download {model}"
        ) from e
    try:
        snapshot_download(repo_id=model, local_dir=str(dest), token=os.environ.get("HF_TOKEN") or None)
    except Exception as e:  # the hub's errors vary by version; the message is redacted by the caller
        raise DownloadError(f"snapshot_download({model}) failed: {type(e).__name__}: {e}") from e


def download(model: str, dest: Path, on_line: Callable[[str], None]) -> CheckpointState:
    """Fetch ``model`` into ``dest`` (resuming a partial download), verify it, write the marker."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MARKER).unlink(missing_ok=True)
    exe = os.environ.get(DOWNLOADER_ENV)
    if exe:
        try:
            done = proc.run([exe, model, str(dest)], on_line=on_line, env=proc.child_env())
        except OSError as e:
            raise DownloadError(f"cannot start ${DOWNLOADER_ENV} ({exe}): {e.strerror or e}") from e
        if done.returncode != 0:
            raise DownloadError(f"downloader exited with code {done.returncode}: {' | '.join(done.tail[-3:])}")
    else:
        _snapshot_download(model, dest)
    problem = verify(dest)
    if problem:
        raise DownloadError(f"download of {model} is incomplete: {problem}")
    files, size = _size(dest)
    (dest / MARKER).write_text(json.dumps({"model": model, "files": files, "bytes": size}, indent=2))
    return CheckpointState(True, files, size)
