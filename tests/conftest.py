"""Shared fixtures: real servers on loopback, started once per session.

- ``gcs``: fake-gcs-server (``recipelib.localgcs.LocalGCS``); ``gcs_bucket`` makes a fresh bucket per test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from recipelib.localgcs import LocalGCS

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGCS]:
    server = LocalGCS(root=tmp_path_factory.mktemp("gcs")).start()
    yield server
    server.stop()


@pytest.fixture
def gcs_client(gcs: LocalGCS):
    return gcs.client()


@pytest.fixture
def gcs_bucket(gcs_client):
    """A new, empty bucket on the local GCS server; its name is unique to the test."""
    return gcs_client.create_bucket(f"test-{uuid.uuid4().hex[:12]}")
