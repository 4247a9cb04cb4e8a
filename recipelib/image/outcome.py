"""What a build is doing and how it ended: one poll of ``builds.get``, and the outcome of following it.

A failure message names the failing step, how long it ran, a hint for the failures users meet most
(a push refused, a base image tag that does not exist, a TensorRT-LLM tag that does not exist) and the
log's last lines, so the user need not open the Cloud Build console.
"""

from __future__ import annotations

from dataclasses import dataclass

from recipelib.errors import ImageBuildError

MESSAGE_LINES = 20
"""How many of the log's last lines a failure message shows."""
TERMINAL = frozenset({"SUCCESS", "FAILURE", "INTERNAL_ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"})


@dataclass(frozen=True)
class StepState:
    """One step of a build as ``builds.get`` reports it; ``index`` is its place in the config's ``steps``."""

    index: int
    id: str
    name: str
    status: str
    seconds: float | None = None

    @property
    def label(self) -> str:
        return f"step #{self.index} {self.id!r}" if self.id else f"step #{self.index} ({self.name})"


@dataclass(frozen=True)
class BuildState:
    """One poll of ``builds.get``: the status, each step's status and time, and what was pushed."""

    build_id: str
    status: str
    steps: tuple[StepState, ...] = ()
    status_detail: str = ""
    failure: str = ""
    logs_bucket: str = ""
    log_url: str = ""
    images: tuple[tuple[str, str], ...] = ()
    seconds: float | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def failed_step(self) -> StepState | None:
        for step in self.steps:
            if step.status in ("FAILURE", "TIMEOUT", "CANCELLED", "INTERNAL_ERROR"):
                return step
        return None

    def describe(self) -> str:
        running = [s for s in self.steps if s.status == "WORKING"]
        done = sum(1 for s in self.steps if s.status == "SUCCESS")
        parts = [self.status]
        if self.steps:
            parts.append(f"{done}/{len(self.steps)} steps done")
        if running:
            parts.append("running " + ", ".join(s.label for s in running))
        if self.seconds is not None:
            parts.append(format_seconds(self.seconds))
        return ", ".join(parts)


@dataclass(frozen=True)
class BuildOutcome:
    """How following a build ended. ``done`` is False when following stopped first (``timeout_s``)."""

    build_id: str
    image: str
    status: str
    done: bool
    state: BuildState | None = None
    digest: str | None = None
    last_lines: tuple[str, ...] = ()
    log_offset: int = 0
    lines_seen: int = 0

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"

    @property
    def failed_step(self) -> StepState | None:
        return self.state.failed_step if self.state else None

    @property
    def message(self) -> str:
        if self.success:
            return f"build {self.build_id} succeeded: {self.image}" + (f"@{self.digest}" if self.digest else "")
        if not self.done:
            return (f"build {self.build_id} is still {self.status}; stopped following at log offset "
                    f"{self.log_offset} (follow again with log_offset={self.log_offset} to resume)")
        parts = [f"build {self.build_id} ended {self.status}"]
        step = self.failed_step
        if step:
            took = f" after {format_seconds(step.seconds)}" if step.seconds is not None else ""
            parts.append(f"at {step.label}{took}")
        msg = " ".join(parts)
        if self.state and (self.state.failure or self.state.status_detail):
            msg += f": {self.state.failure or self.state.status_detail}"
        hint = failure_hint(self.last_lines)
        if hint:
            msg += f". {hint}"
        if self.last_lines:
            msg += "\nLast log lines:\n  " + "\n  ".join(self.last_lines[-MESSAGE_LINES:])
        return msg

    def raise_for_status(self) -> BuildOutcome:
        """Raise ImageBuildError unless the build succeeded; return self so calls chain."""
        if not self.success:
            raise ImageBuildError(self.message, self)
        return self


def format_seconds(seconds: float) -> str:
    """``42s``, ``41m 0s``, ``2h 3m``: build times read at a glance."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    return f"{s // 3600}h {s % 3600 // 60}m"


def failure_hint(lines: tuple[str, ...]) -> str:
    """The next step for a failure recognised in the log's last lines, or "" when none is recognised."""
    text = "\n".join(lines).lower()
    if "denied" in text and ("permission" in text or "artifactregistry" in text or "unauthorized" in text):
        return ("The push was refused: the build's service account needs roles/artifactregistry.writer on the "
                "repository")
    if "manifest unknown" in text or "not found: manifest" in text:
        return ("A base image tag was not found: check TRITON_SERVER_VERSION (0.1x builds, "
                "nvcr.io/nvidia/tritonserver:<TRITON_SERVER_VERSION>) or TRTLLM_VERSION (1.x builds, "
                "nvcr.io/nvidia/tensorrt-llm/release:<version>)")
    if ("remote branch" in text and "not found" in text) or "no tensorrtllm_backend tag" in text:
        return "The tensorrtllm_backend checkout failed: check TRTLLM_VERSION (a tag such as v0.17.0)"
    if "has tensorrt-llm" in text and "error:" in text:
        return ("The base image holds another TensorRT-LLM than TRTLLM_VERSION: pick a version listed in "
                "recipelib/image/trtllm_versions.py")
    return ""
