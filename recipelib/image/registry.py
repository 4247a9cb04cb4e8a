"""Artifact Registry: does ``LOCATION-docker.pkg.dev/PROJECT/REPO/IMAGE:TAG`` already exist?

An image build takes up to two hours on a 32-core machine; asking first is one HTTP request. We use
Artifact Registry's REST API (``projects.locations.repositories.packages.tags.get``) through
an ``AuthorizedSession`` from :mod:`recipelib.gcp`, so no extra client library and no gcloud or docker is
needed.
The endpoint is injectable: tests point it at a local server.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import recipelib.gcp as gcp
from recipelib.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://artifactregistry.googleapis.com"
REGISTRY_API = "artifactregistry.googleapis.com"

_IMAGE_REF = re.compile(
    r"^(?P<location>[a-z]+-[a-z]+[0-9]+|us|europe|asia)-docker\.pkg\.dev/"
    r"(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/(?P<repository>[a-z][a-z0-9-]{0,62})/"
    r"(?P<image>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$"
)


@dataclass(frozen=True)
class ImageRef:
    """An Artifact Registry Docker image reference, split into the parts its API names."""

    location: str
    project: str
    repository: str
    image: str
    tag: str

    @classmethod
    def parse(cls, ref: str, field: str = "image") -> ImageRef:
        m = _IMAGE_REF.match(ref)
        if not m:
            raise ConfigError(
                field,
                f"{ref!r} is not an Artifact Registry image: use "
                "LOCATION-docker.pkg.dev/PROJECT_ID/REPOSITORY/IMAGE:TAG",
            )
        return cls(**m.groupdict())

    @property
    def tag_path(self) -> str:
        """The tag's resource name; the image (package) is URL-encoded, as the API wants ``a%2Fb``."""
        return (
            f"projects/{self.project}/locations/{self.location}/repositories/{self.repository}/"
            f"packages/{quote(self.image, safe='')}/tags/{quote(self.tag, safe='')}"
        )

    def __str__(self) -> str:
        return f"{self.location}-docker.pkg.dev/{self.project}/{self.repository}/{self.image}:{self.tag}"


@dataclass(frozen=True)
class TagInfo:
    """An existing tag and the version (``.../versions/sha256:...``) it points at."""

    ref: ImageRef
    version: str

    @property
    def digest(self) -> str | None:
        tail = self.version.rsplit("/", 1)[-1]
        return tail if tail.startswith("sha256:") else None


class TagChecker(Protocol):
    """What the image build needs from a registry; tests may pass any object with this method."""

    def get_tag(self, ref: ImageRef) -> TagInfo | None: ...


class ArtifactRegistryTags:
    """``get_tag`` through Artifact Registry's REST API.

    ``credentials`` default to Application Default Credentials; a ``session`` (any object with
    ``requests.Session``'s ``get``) can be injected instead.
    """

    def __init__(
        self, *, credentials: Any = None, endpoint: str = DEFAULT_ENDPOINT, session: Any = None, timeout: float = 30
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.session = session if session is not None else gcp.authorized_session(credentials)

    def get_tag(self, ref: ImageRef) -> TagInfo | None:
        """The tag and the version it points at, or None when the repository has no such tag (a 404)."""
        url = f"{self.endpoint}/v1/{ref.tag_path}"
        doing = f"looking up image {ref} in Artifact Registry"
        try:
            resp = self.session.get(url, timeout=self.timeout)
        except gcp.api_errors() as e:
            raise gcp.translate(e, f"{doing} at {self.endpoint}") from None
        if resp.status_code == 200:
            body = resp.json()
            return TagInfo(ref, str(body.get("version", "")))
        if resp.status_code == 404:
            return None
        raise gcp.translate(
            resp, doing, role="roles/artifactregistry.reader",
            on=f"repository {ref.repository} (project {ref.project}, location {ref.location})", api=REGISTRY_API,
        )
