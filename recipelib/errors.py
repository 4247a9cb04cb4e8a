"""One exception hierarchy for everything recipelib raises.

Every message says what was wrong and what to do next; notebooks show the message alone, so a user
never has to read a traceback to know which field or object is at fault.
"""

from __future__ import annotations

from typing import Any


class RecipelibError(Exception):
    """Root of every error recipelib raises on purpose."""


class ConfigError(RecipelibError, ValueError):
    """A value given by the user (setting, parameter, model, experiment) is not allowed.

    ``field`` names the offending input exactly as the user wrote it (``GCS_BUCKET``,
    ``experiments[1].isl``), so a notebook or CLI can point at it.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ManifestError(RecipelibError):
    """A rendered manifest is not a valid Kubernetes object for the target cluster version."""

    def __init__(self, kind: str, name: str, message: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind}/{name}: {message}")


class ClusterError(RecipelibError):
    """The Kubernetes API refused or failed a request; ``status`` is the HTTP status when known."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ConflictError(ClusterError):
    """Server-side apply found fields owned by another manager (HTTP 409)."""


class NotFoundError(ClusterError):
    """The object or release does not exist (HTTP 404)."""


class CloudError(RecipelibError):
    """A Google Cloud API (GKE, Cloud Build, Cloud Storage) refused or failed a request."""


class SecretError(RecipelibError):
    """The Hugging Face token is missing or cannot be stored; never carries the token itself."""


class ImageBuildError(CloudError):
    """The build ended in a state other than SUCCESS; the message names the failing step and shows the log's end.

    ``outcome`` is the build's :class:`~recipelib.image.build.BuildOutcome`.
    """

    def __init__(self, message: str, outcome: Any) -> None:
        self.outcome = outcome
        super().__init__(message)


class ReportError(RecipelibError, ValueError):
    """A trtllm-bench report is missing a value, or a value is not a finite number.

    ``field`` is the :class:`~recipelib.results.reports.BenchReport` attribute at fault (``output_throughput``,
    ``ttft_percentiles_ms.p99``); ``source`` names the file when known.
    """

    def __init__(self, field: str, message: str, *, source: str | None = None) -> None:
        self.field = field
        self.source = source
        self.message = message
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {message}")


class ResultsError(RecipelibError):
    """Results cannot be found or read: no such run, nothing cached for an offline load, a bad path or file."""


class AnalysisError(RecipelibError, ValueError):
    """The question cannot be answered from these results (no rows, an unknown metric or run)."""


class SpeedOfLightError(RecipelibError, ValueError):
    """No bound can be computed: unknown GPU or model, or the model does not fit the GPUs' memory."""


class GpuReportError(RecipelibError, ValueError):
    """A GPU preflight record (``metadata.json``'s ``preflight``) is malformed: ``field`` is the JSON path."""

    def __init__(self, field: str, message: str, *, source: str | None = None) -> None:
        self.field = field
        self.source = source
        self.message = message
        where = f"{source}: " if source else ""
        super().__init__(f"{where}preflight.{field}: {message}")


PreflightError = GpuReportError
"""The first round's name for :class:`GpuReportError`."""


class SandboxError(RecipelibError):
    """The local sandbox could not start, or a control could not be applied."""
