"""The launcher's errors and the exit codes they end a pod with, in one place.

Every error the launcher raises on purpose is a :class:`LauncherError`; its ``exit_code`` is what
``launch.py`` returns when it stops the run, so a Job's exit code says which phase gave up without
reading the log. ``proc.Interrupted`` is not here: a SIGTERM is a signal to stop, not an error.

Stdlib only, like every module shipped into the pod. (recipelib has errors of similar names with other
meanings; this one is the launcher's own, so its config error is :class:`LauncherConfigError`.)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_EXPERIMENTS_FAILED = 1
EXIT_CONFIG = 2
EXIT_PREFLIGHT = 3
EXIT_SETUP = 4
EXIT_STORE = 5
EXIT_INTERRUPTED = 143


class LauncherError(Exception):
    """Something the launcher detected and can explain; ``exit_code`` ends the pod when it stops the run."""

    exit_code: int = 1


class LauncherConfigError(LauncherError):
    """One or more invalid config fields; ``problems`` holds ``(field, message)`` pairs in file order.

    Fix every field it names (all are reported at once) and deploy again.
    """

    exit_code = EXIT_CONFIG

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{name}: {message}" for name, message in problems))


class BenchError(LauncherError):
    """The benchmark tooling (trtllm-bench, prepare_dataset.py) is missing or misbehaved: check the image."""

    exit_code = EXIT_SETUP


class DownloadError(LauncherError):
    """The checkpoint could not be fetched or is incomplete: check the model id, the token and the disk."""

    exit_code = EXIT_SETUP


class StoreError(LauncherError):
    """Writing or reading results failed for a reason other than "already exists": check the bucket's access."""

    exit_code = EXIT_STORE


class SetupError(LauncherError):
    """Preflight, download or build failed: no experiment can run in this attempt (a Job retry may)."""

    def __init__(self, phase: str, message: str, exit_code: int = EXIT_SETUP) -> None:
        super().__init__(message)
        self.phase = phase
        self.exit_code = exit_code
