"""Run a child process from an argument list, streaming its output to the log and to a file.

Values are never spliced into a shell: every command is a list handed to ``subprocess`` as is. The
output is shown live (``kubectl logs`` is how people watch a 405B build) and kept, so a report can be
checked and uploaded afterwards. If the launcher is interrupted (SIGTERM from Kubernetes), the child is
terminated too instead of being left running without a parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO


class Interrupted(BaseException):
    """The launcher received SIGTERM/SIGINT: stop now, record nothing as finished."""


def install_signal_handlers() -> None:
    """Turn SIGTERM into ``Interrupted`` so the current child is stopped and no result is written."""

    def handler(signum: int, _frame: object) -> None:
        raise Interrupted(f"received signal {signum}")

    signal.signal(signal.SIGTERM, handler)


@dataclass(frozen=True)
class Completed:
    """How a child ended: its exit code and the last lines it printed (for error messages)."""

    argv: tuple[str, ...]
    returncode: int
    tail: tuple[str, ...]
    seconds: float


def run(
    argv: Sequence[str],
    *,
    on_line: Callable[[str], None],
    output: IO[str] | None = None,
    stdout_to: IO[bytes] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    tail_lines: int = 40,
) -> Completed:
    """Run ``argv``; each output line goes to ``on_line`` and to ``output``.

    With ``stdout_to``, the child's stdout is written there byte for byte (a dataset on stdout) and
    only its stderr is streamed. Raises ``FileNotFoundError``/``PermissionError`` when the program
    cannot be started.
    """
    start = time.monotonic()
    tail: deque[str] = deque(maxlen=tail_lines)
    proc = subprocess.Popen(
        list(argv),
        stdout=stdout_to if stdout_to is not None else subprocess.PIPE,
        stderr=subprocess.PIPE if stdout_to is not None else subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )
    stream = proc.stderr if stdout_to is not None else proc.stdout
    assert stream is not None
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            tail.append(line)
            on_line(line)
            if output is not None:
                output.write(line + "\n")
        returncode = proc.wait()
    except BaseException:
        _stop(proc)
        raise
    finally:
        stream.close()
    if output is not None:
        output.flush()
    return Completed(tuple(argv), returncode, tuple(tail), round(time.monotonic() - start, 3))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def child_env(drop: Sequence[str] = (), **extra: str) -> dict[str, str]:
    """The launcher's environment without ``drop`` (secrets a step does not need), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env
