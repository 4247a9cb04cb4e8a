"""Facts about the machine and the software, recorded with every result.

A throughput number means little without the GPUs (as ``nvidia-smi`` names them), the driver and the
TensorRT-LLM version that produced it. ``nvidia-smi`` may be absent (a CPU test box): that is recorded,
not fatal.
"""

from __future__ import annotations

import hashlib
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

_GPU_FIELDS = ("index", "name", "memory.total", "driver_version", "uuid")


def gpus(timeout: float = 30) -> dict[str, Any]:
    """``{"available": True, "gpus": [...]}`` from ``nvidia-smi``, or ``{"available": False, "error": ...}``."""
    argv = ["nvidia-smi", f"--query-gpu={','.join(_GPU_FIELDS)}", "--format=csv,noheader"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                             stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return {"available": False, "error": "nvidia-smi not found"}
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"available": False, "error": f"nvidia-smi failed: {e}"}
    if out.returncode != 0:
        return {"available": False, "error": f"nvidia-smi exited {out.returncode}: {out.stderr.strip()[:200]}"}
    rows = []
    for line in out.stdout.splitlines():
        values = [v.strip() for v in line.split(",")]
        if len(values) == len(_GPU_FIELDS):
            rows.append(dict(zip(_GPU_FIELDS, values, strict=True)))
    return {"available": bool(rows), "count": len(rows), "gpus": rows}


def launcher_digest() -> str:
    """A digest of the launcher's own modules: which launcher code produced a result."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def host() -> str:
    return socket.gethostname()


def versions(trtllm: str) -> dict[str, str]:
    return {"tensorrt_llm": trtllm, "launcher": launcher_digest(), "python": platform.python_version()}
