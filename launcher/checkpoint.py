"""The Hugging Face checkpoint on local SSD: downloaded once, verified, then marked complete.

A 405B checkpoint is ~800 GB; a pod that finds it already on the node's SSD must not fetch it again.
The marker file is written only after the downloader succeeded *and* the files check out (a
``config.json``, and every shard named by a safetensors index, or at least one weight file), so an
interrupted download is resumed, never trusted.

The download is one command (so ``launch.py --dry-run`` prints exactly what runs, and SIGTERM stops it):
``$RECIPE_DOWNLOADER`` names an executable called as ``EXE MODEL DEST --exclude PATTERN...`` (tests use a
local fake hub; the flag is spelled as ``huggingface-cli download``'s), otherwise this Python runs
``huggingface_hub.snapshot_download(..., ignore_patterns=[...])``. Either way ``original/`` is skipped:
the recipe downloads with ``--exclude "*original*"``, and Meta's repositories keep a second, consolidated
copy of the weights there (roughly double the bytes for 405B) that TensorRT-LLM does not read. The token
comes only from ``$HF_TOKEN`` and is handed over through the environment, never on a command line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import proc
from errors import DownloadError

DOWNLOADER_ENV = "RECIPE_DOWNLOADER"
MARKER = ".recipe-download-complete.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
EXCLUDE = ("*original*",)
"""What the recipe's ``huggingface-cli download`` skips; ``snapshot_download`` matches it with fnmatch."""
_SNAPSHOT = (  # one line, so that a dry run prints each command on one line
    "import sys; from huggingface_hub import snapshot_download; "
    "snapshot_download(repo_id=sys.argv[1], local_dir=sys.argv[2], ignore_patterns=sys.argv[3:] or None)"
)


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


def download_command(model: str, dest: Path) -> list[str]:
    """The one command that fetches ``model`` into ``dest`` without ``original/`` (token from the environment)."""
    exe = os.environ.get(DOWNLOADER_ENV)
    if exe:
        return [exe, model, str(dest), *(a for p in EXCLUDE for a in ("--exclude", p))]
    return [sys.executable, "-c", _SNAPSHOT, model, str(dest), *EXCLUDE]


def download(model: str, dest: Path, on_line: Callable[[str], None]) -> CheckpointState:
    """Fetch ``model`` into ``dest`` (resuming a partial download), verify it, write the marker."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MARKER).unlink(missing_ok=True)
    argv = download_command(model, dest)
    try:
        done = proc.run(argv, on_line=on_line, env=proc.child_env())
    except OSError as e:
        raise DownloadError(f"cannot start the downloader {argv[0]}: {e.strerror or e}") from e
    if done.returncode != 0:
        hint = ("" if os.environ.get(DOWNLOADER_ENV) or not any("huggingface_hub" in t for t in done.tail)
                else f" (is huggingface_hub installed? or set ${DOWNLOADER_ENV})")
        raise DownloadError(f"downloader exited with code {done.returncode}{hint}: {' | '.join(done.tail[-3:])}")
    problem = verify(dest)
    if problem:
        raise DownloadError(f"download of {model} is incomplete: {problem}")
    files, size = _size(dest)
    (dest / MARKER).write_text(json.dumps({"model": model, "files": files, "bytes": size}, indent=2))
    return CheckpointState(True, files, size)


def model_shape(dest: Path) -> dict[str, int]:
    """Attention heads and layers from the checkpoint's ``config.json`` (Hugging Face's key names); ``{}`` if absent."""
    try:
        config = json.loads((dest / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(config, dict):
        return {}
    shape = {"attention_heads": config.get("num_attention_heads"), "layers": config.get("num_hidden_layers")}
    return {k: v for k, v in shape.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0}
