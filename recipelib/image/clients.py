"""The three clients an image build uses (Cloud Storage, Cloud Build, Artifact Registry), made in one call.

They come from :mod:`recipelib.gcp` with one set of credentials; each endpoint can point at a local server
instead of Google's, which is how the tests and the build-image notebook's test run without a project.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import recipelib.gcp as gcp
from recipelib.image.registry import ArtifactRegistryTags, TagChecker

CLOUDBUILD_ENDPOINT_ENV = "RECIPELIB_CLOUDBUILD_ENDPOINT"
"""A Cloud Build API server to use instead of Google's (tests: a local fake); ``http://`` means anonymous."""
REGISTRY_ENDPOINT_ENV = "RECIPELIB_ARTIFACTREGISTRY_ENDPOINT"
"""An Artifact Registry API server to use instead of Google's, as above."""


@dataclass
class BuildClients:
    """The three clients an image build uses. Build one with ``create``, or pass your own (tests)."""

    storage: Any
    cloudbuild: Any
    registry: TagChecker

    @classmethod
    def create(
        cls,
        project: str,
        *,
        credentials: Any = None,
        cloudbuild_endpoint: str | None = None,
        storage_endpoint: str | None = None,
        registry_endpoint: str | None = None,
    ) -> BuildClients:
        """Real clients with Application Default Credentials, or local servers where an endpoint is given.

        Endpoints default to ``$RECIPELIB_CLOUDBUILD_ENDPOINT`` / ``$RECIPELIB_ARTIFACTREGISTRY_ENDPOINT``
        (Cloud Storage: ``STORAGE_EMULATOR_HOST`` or the GCS_ENDPOINT setting, passed as
        ``storage_endpoint``). An ``http://`` endpoint is a local fake and gets anonymous credentials; the
        default credentials are looked up once, and only when a client needs them.
        """
        cloudbuild_endpoint = cloudbuild_endpoint or os.environ.get(CLOUDBUILD_ENDPOINT_ENV) or None
        registry_endpoint = registry_endpoint or os.environ.get(REGISTRY_ENDPOINT_ENV) or None
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        storage_endpoint = storage_endpoint or (emulator if emulator and "://" in emulator else None)
        resolved: list[Any] = [credentials]

        def creds_for(endpoint: str | None) -> Any:
            if credentials is None and gcp.is_local(endpoint):
                return gcp.anonymous_credentials()
            if resolved[0] is None:
                resolved[0] = gcp.default_credentials()
            return resolved[0]

        return cls(
            storage=gcp.storage_client(project, storage_endpoint, creds_for(storage_endpoint)),
            cloudbuild=gcp.cloudbuild_client(creds_for(cloudbuild_endpoint), cloudbuild_endpoint),
            registry=ArtifactRegistryTags(
                credentials=creds_for(registry_endpoint),
                **({"endpoint": registry_endpoint} if registry_endpoint else {}),
            ),
        )
