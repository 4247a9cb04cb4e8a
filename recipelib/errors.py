"""One exception hierarchy for everything recipelib raises.

Every message says what was wrong and what to do next; notebooks show the message alone, so a user
never has to read a traceback to know which field or object is at fault.
"""

from __future__ import annotations

from typing import Any

from recipelib.redaction import redact


class RecipelibError(Exception):
    """Root of every error recipelib raises on purpose.

    Its text never carries a Hugging Face token, whatever value the message quotes (a token typed as a
    release name, say): ``str()`` masks token-shaped strings.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))

    def __str__(self) -> str:
        return redact(super().__str__())


class ConfigError(RecipelibError, ValueError):
    """A value given by the user (setting, parameter, model, experiment) is not allowed.

    ``field`` names the offending input exactly as the user wrote it (``GCS_BUCKET``,
    ``experiments[1].isl``), so a notebook or CLI can point at it.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = redact(message)
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
    """A Google Cloud API (GKE, Cloud Build, Cloud Storage, Artifact Registry) refused or failed a request.

    ``doing`` says what recipelib was doing (``uploading the build context to gs://b/x``), ``hint`` what to
    do about it, ``status`` the HTTP status when known. :func:`recipelib.gcp.translate` builds these (and the
    subclasses below) from Google's errors, so the same status always gets the same advice.
    """

    def __init__(
        self, message: str, *, doing: str | None = None, hint: str | None = None, status: int | None = None
    ) -> None:
        self.doing = doing
        self.hint = hint
        self.status = status
        super().__init__(message)


class CredentialsError(CloudError):
    """No Google credentials were found, or Google refused them (HTTP 401).

    Run ``gcloud auth application-default login`` once on this machine (again if it expired), or run on a VM
    or Workbench instance whose service account has the roles the call needs.
    """


class PermissionDeniedError(CloudError):
    """Google refused the call for a missing IAM role, or because the API is not enabled (HTTP 403).

    ``role`` is the role to ask a project owner for; ``api`` is the service (``cloudbuild.googleapis.com``)
    to enable when ``api_disabled`` is set. A quota 403 is a :class:`QuotaError`, not this.
    """

    def __init__(
        self, message: str, *, role: str | None = None, api: str | None = None, api_disabled: bool = False,
        doing: str | None = None, hint: str | None = None, status: int | None = 403,
    ) -> None:
        self.role = role
        self.api = api
        self.api_disabled = api_disabled
        super().__init__(message, doing=doing, hint=hint, status=status)


class QuotaError(CloudError):
    """A quota or rate limit was reached (HTTP 429, or a 403 whose reason is a rate limit).

    No role will help: wait a minute and retry, or ask for a higher quota (console: IAM & Admin > Quotas).
    """


class CloudNotFoundError(CloudError):
    """The bucket, object, build or cluster does not exist (HTTP 404): check its name, project and location."""


class CloudConflictError(CloudError):
    """The object already exists or changed meanwhile (HTTP 409/412); nothing was overwritten: retry with a new name."""


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
        self.message = redact(message)
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
        self.message = redact(message)
        where = f"{source}: " if source else ""
        super().__init__(f"{where}preflight.{field}: {message}")


PreflightError = GpuReportError
"""The first round's name for :class:`GpuReportError`."""


class SandboxError(RecipelibError):
    """The local sandbox could not start, or a control could not be applied."""
