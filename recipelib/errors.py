"""One exception hierarchy for everything recipelib raises.

Every message says what was wrong and what to do next; notebooks show the message alone, so a user
never has to read a traceback to know which field or object is at fault.
"""

from __future__ import annotations


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
