"""Check every rendered object against the Kubernetes OpenAPI schema before any API call.

``kubernetes-validate`` in strict mode refuses unknown fields (a misspelled ``tolerations`` would
otherwise be dropped silently by the server, as the recipe's ``tp-size`` was by its launcher).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import kubernetes_validate

from recipelib.errors import ConfigError, ManifestError

log = logging.getLogger(__name__)

DEFAULT_VERSION = "1.31"


def check_version(version: str) -> str:
    """``"1.31"`` (or ``"1.31.7-gke.1265000"``, reduced to its minor version) if schemas exist for it."""
    match = re.match(r"^v?(\d+)\.(\d+)", str(version))
    if not match:
        raise ConfigError("kubernetes_version", f"{version!r} is not a version such as '1.31'")
    minor = f"{match.group(1)}.{match.group(2)}"
    try:
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}, minor)
    except Exception:  # SchemaNotFoundError, VersionNotSupportedError, or an IndexError for old minors
        raise ConfigError(
            "kubernetes_version",
            f"no schemas for Kubernetes {minor}; kubernetes-validate {kubernetes_validate.version.__version__} "
            f"knows {kubernetes_validate.latest_version()} and earlier minors down to 1.25",
        ) from None
    return minor


def validate_objects(objects: list[dict[str, Any]], version: str = DEFAULT_VERSION) -> None:
    """Raise ManifestError for the first object that is not valid for ``version`` (strict)."""
    minor = check_version(version)
    for obj in objects:
        kind = obj.get("kind", "?")
        name = obj.get("metadata", {}).get("name", "?")
        try:
            kubernetes_validate.validate(obj, minor, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(top level)"
            raise ManifestError(kind, name, f"invalid for Kubernetes {minor} at {path}: {e.message}") from None
        except kubernetes_validate.SchemaNotFoundError:
            raise ManifestError(
                kind, name, f"no {obj.get('apiVersion')}/{kind} schema for Kubernetes {minor}"
            ) from None
        log.debug("%s/%s valid for Kubernetes %s", kind, name, minor)
