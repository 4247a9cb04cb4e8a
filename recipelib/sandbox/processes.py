"""The sandbox's processes as ``/proc`` shows them: alive or not, whose they are, which ports are free.

The sandbox's servers run detached (they outlive the process that started them), so stopping one means
finding it again by its pid, and making sure that pid is still ours: a pid names this sandbox's process
only if its command line names the sandbox's folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path


def alive(pid: int) -> bool:
    """Running (a zombie is not: it waits only for its parent to read its exit status)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def ours(pid: int, root: Path) -> bool:
    """Alive, and started for the sandbox in ``root`` (a reused pid is someone else's)."""
    return alive(pid) and str(root) in cmdline(pid)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def kill_orphans(run_dir: Path, root: Path) -> None:
    """Container processes an agent killed hard could not stop (it notes each one's pid in ``run_dir``)."""
    for note in run_dir.glob("*"):
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            pid = int(note.name)
            if ours(pid, root):
                os.killpg(pid, signal.SIGKILL)
        note.unlink(missing_ok=True)
