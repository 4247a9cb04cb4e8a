"""Shared fixtures: real servers on loopback, started once per session.

- ``gcs``: fake-gcs-server (``recipelib.localgcs.LocalGCS``); ``gcs_bucket`` makes a fresh bucket per test.
- ``kube``: a real kube-apiserver (``recipelib.localkube.LocalKube``); ``cluster`` is bound to a fresh namespace.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from recipelib.cluster import Cluster, from_kubeconfig
from recipelib.localgcs import LocalGCS
from recipelib.localkube import LocalKube

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


# --- Kubernetes -------------------------------------------------------------------------------------
# A real kube-apiserver + etcd + controller-manager on loopback (recipelib.localkube), started once per
# session; set RECIPELIB_TEST_CONTEXT (and KUBECONFIG) to run the same tests against a cluster of yours.


@dataclass(frozen=True)
class KubeTarget:
    kubeconfig: str | None
    context: str | None


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeTarget]:
    context = os.environ.get("RECIPELIB_TEST_CONTEXT")
    if context:
        yield KubeTarget(os.environ.get("KUBECONFIG"), context)
        return
    server = LocalKube(root=tmp_path_factory.mktemp("kube")).start()
    yield KubeTarget(str(server.kubeconfig), server.context)
    server.stop()


@pytest.fixture
def namespace(kube: KubeTarget) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    admin = from_kubeconfig(kube.kubeconfig, kube.context)
    name = f"t-{uuid.uuid4().hex[:10]}"
    admin.core.create_namespace({"metadata": {"name": name}})
    yield name
    admin.core.delete_namespace(name)


@pytest.fixture
def cluster(kube: KubeTarget, namespace: str) -> Cluster:
    return from_kubeconfig(kube.kubeconfig, kube.context, namespace)
