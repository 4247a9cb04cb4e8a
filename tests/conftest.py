"""Shared fixtures: real servers on loopback, started once per session.

- ``gcs``: fake-gcs-server (``recipelib.sandbox.gcs.LocalGCS``); ``gcs_bucket`` makes a fresh bucket per test.
- ``kube``: a real kube-apiserver (``recipelib.sandbox.kube.LocalKube``); ``cluster`` is bound to a fresh namespace.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import REPO

from recipelib.cluster import Cluster, from_kubeconfig
from recipelib.sandbox import Sandbox
from recipelib.sandbox.gcs import LocalGCS
from recipelib.sandbox.kube import LocalKube

SHARED = REPO.parent / "shared"


# Marks by folder: `pytest -m "not integration"` runs what needs no local servers.
_FOLDER_MARKS = {
    "integration": ("integration",),
    "notebooks": ("notebook", "integration"),
    "browser": ("browser", "integration"),
    "launcher": ("launcher",),
    "unit": ("unit",),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Path(__file__).resolve().parent
    for item in items:
        folder = Path(item.fspath).resolve().relative_to(tests).parts[0]
        for mark in _FOLDER_MARKS.get(folder, ()):
            item.add_marker(mark)


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
# A real kube-apiserver + etcd + controller-manager on loopback (recipelib.sandbox.kube), started once per
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


# --- the local sandbox ------------------------------------------------------------------------------
# One sandbox (API server + node agent + fake-gcs-server) for the whole session, replaying fast.

SANDBOX_FAST = 20000.0  # recorded seconds per second: the hour-long recording in a fifth of a second


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """Its settings overlay in a folder of the session's: the user's ``~/.config/recipelib`` stays untouched."""
    root = tmp_path_factory.mktemp("sandbox")
    box = Sandbox(root, replay_speed=SANDBOX_FAST, overlay=root / "overlay.yaml").start()
    yield box
    box.stop()


@pytest.fixture
def ns(sandbox: Sandbox) -> Iterator[Cluster]:
    """A fresh namespace on the sandbox with the hf-secret, deleted afterwards; the controls are reset."""
    from pydantic import SecretStr

    from recipelib.cluster.hf_secret import ensure_hf_secret

    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster = sandbox.cluster(name)
    cluster.core.create_namespace({"metadata": {"name": name}})
    ensure_hf_secret(cluster, SecretStr("hf_sandboxTestPlaceholder0123456789"))
    yield cluster
    sandbox.set_controls(replay_speed=SANDBOX_FAST, fail="")
    cluster.core.delete_namespace(name)


# --- Google Cloud APIs that cannot run here (Cloud Build, Artifact Registry): tests/fakes/google_apis.py


@pytest.fixture
def apis(gcs, gcs_client):
    """The Cloud Build / Artifact Registry REST fake, its build logs in a fresh bucket of the local GCS."""
    from fakes.google_apis import FakeGoogleAPIs

    logs = gcs_client.create_bucket(f"logs-{uuid.uuid4().hex[:10]}")
    server = FakeGoogleAPIs(gcs.client(), logs.name).start()
    yield server
    server.stop()
