"""Phase events and the human-readable log, both scrubbed of secrets.

A monitor tails ``kubectl logs`` and needs to know where a run is without parsing prose, so every
phase change is one line ``RECIPE_EVENT {json}`` (format documented in ``launch.py``). Readable lines
go to the same stream, and everything is copied into a log file that is uploaded with the results.

Every line passes through a ``Redactor`` first: the Hugging Face token must never reach a log, an
event, an uploaded object or an exception message, even if a child process prints it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

EVENT_PREFIX = "RECIPE_EVENT "
PHASES = ("preflight", "download", "build", "dataset", "benchmark", "upload", "run")
STATES = ("started", "finished", "skipped", "failed")
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
REDACTED = "[REDACTED]"
REPLAY_ENV = "RECIPE_REPLAY"
REPLAY_PREFIX = "[replay] "


def replaying(env: dict[str, str] | None = None) -> bool:
    """``RECIPE_REPLAY=1``: the tools replay a recorded run (the local sandbox), and everything says so."""
    env = os.environ if env is None else env
    return env.get(REPLAY_ENV, "").strip().lower() in ("1", "true", "yes")


def utc_now() -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2025-05-28T23:24:31.123Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Redactor:
    """Replaces known secret values with ``[REDACTED]``; values shorter than 8 characters are ignored."""

    secrets: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Redactor:
        env = os.environ if env is None else env
        return cls(tuple(v for k in SECRET_ENV if len(v := env.get(k, "")) >= 8))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def data(self, blob: bytes) -> bytes:
        for secret in self.secrets:
            blob = blob.replace(secret.encode(), REDACTED.encode())
        return blob


@dataclass
class EventLog:
    """Writes readable lines and ``RECIPE_EVENT`` lines to ``stream`` and to an optional log file."""

    stream: IO[str] = field(default_factory=lambda: sys.stdout)
    redact: Redactor = field(default_factory=Redactor.from_env)
    log_path: Path | None = None
    replay: bool = field(default_factory=replaying)
    _file: IO[str] | None = None

    def open_file(self, path: Path) -> None:
        """Start copying output to ``path`` (appended to; parents made as needed)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.close()
        self.log_path = path
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the run

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, line: str) -> None:
        line = self.redact(line)
        if self.replay and not line.startswith(EVENT_PREFIX):
            line = REPLAY_PREFIX + line  # a replayed run must never pass for a measurement
        if not line.endswith("\n"):
            line += "\n"
        self.stream.write(line)
        self.stream.flush()
        if self._file is not None:
            self._file.write(line)
            self._file.flush()

    def info(self, message: str) -> None:
        """A readable line, stamped so it can be told apart from the tools' own output."""
        for part in message.splitlines() or [""]:
            self._write(f"[launcher {utc_now()}] {part}")

    def raw(self, line: str) -> None:
        """A line of a child process's output, passed through unchanged (but redacted)."""
        self._write(line)

    def event(
        self,
        phase: str,
        state: str,
        *,
        experiment: str | None = None,
        index: int | None = None,
        total: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Emit one ``RECIPE_EVENT`` line; keys with a ``None`` value (other than ``experiment``) are left out."""
        if phase not in PHASES or state not in STATES:
            raise ValueError(f"unknown event {phase}/{state}")
        payload: dict[str, Any] = {"phase": phase, "state": state, "experiment": experiment, "time": utc_now()}
        if index is not None:
            payload["index"] = index
        if total is not None:
            payload["total"] = total
        if self.replay:
            payload["replay"] = True
        for key, value in extra.items():
            if value is not None:
                payload[key] = round(value, 3) if isinstance(value, float) else value
        self._write(EVENT_PREFIX + json.dumps(payload, sort_keys=False, default=str))
        return payload


class Stopwatch:
    """Monotonic seconds since construction; phase timings go into metadata and events."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    @property
    def seconds(self) -> float:
        return round(time.monotonic() - self.start, 3)


def parse_event(line: str) -> dict[str, Any] | None:
    """The monitor's side of the contract: the event in a log line, or ``None`` for any other line."""
    at = line.find(EVENT_PREFIX)
    if at < 0:
        return None
    try:
        value = json.loads(line[at + len(EVENT_PREFIX):])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
