"""Cluster preflight against a real API server, with the cluster-scoped objects GKE would have."""

import uuid

import pytest
from helpers import until
from pydantic import SecretStr

from recipelib.cluster.checks import NETWORK_CRD, check_cluster, job_networks, summary
from recipelib.cluster.hf_secret import ensure_hf_secret
from recipelib.deploy.render import rdma_interfaces


def served(create, what: str) -> None:
    """Retry ``create`` while a CRD made a moment ago is not served yet."""
    import time

    from kubernetes.client.exceptions import ApiException

    for _ in range(50):
        try:
            create()
            return
        except ApiException as e:
            if e.status != 404:
                raise
            time.sleep(0.2)
    raise AssertionError(f"{what} was never served")


def by_name(checks):
    return {c.name: c for c in checks}


def network(name: str, ready: str | None = None) -> dict:
    """A GKE Network as the recipe's setup (and Google's A3 Ultra RDMA guide) applies it; ``ready`` adds a Ready
    condition as GKE's controller reports it (the reason and message here are illustrative)."""
    body: dict = {"apiVersion": "networking.gke.io/v1", "kind": "Network", "metadata": {"name": name},
                  "spec": {"type": "Device", "parametersRef": {"group": "networking.gke.io",
                                                               "kind": "GKENetworkParamSet", "name": name}}}
    if ready:
        body["status"] = {"conditions": [{"type": "Ready", "status": ready, "reason": "GNPParamsNotReady",
                                          "message": "subnet rdma-sub-3 not found"}]}
    return body


@pytest.fixture
def gke_networks(cluster):
    """GKE's Network API (cluster-scoped networks.networking.gke.io) with gvnic-1 and rdma-0..7, removed after."""
    from kubernetes.client import ApiextensionsV1Api, CustomObjectsApi

    ext = ApiextensionsV1Api(cluster.api)
    ext.create_custom_resource_definition({
        "metadata": {"name": NETWORK_CRD},
        "spec": {"group": "networking.gke.io", "scope": "Cluster",
                 "names": {"plural": "networks", "singular": "network", "kind": "Network"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]},
    })
    objects = CustomObjectsApi(cluster.api)
    names = [i["network"] for i in rdma_interfaces() if i["network"] != "default"]  # what the Job names
    for name in names:
        served(lambda name=name: objects.create_cluster_custom_object(
            "networking.gke.io", "v1", "networks", network(name)), f"Network {name}")
    yield objects
    ext.delete_custom_resource_definition(NETWORK_CRD)
    until(f"CRD {NETWORK_CRD} to be gone", lambda: NETWORK_CRD not in {
        c.metadata.name for c in ext.list_custom_resource_definition().items})  # its objects go first


@pytest.fixture
def gke_like(cluster, gke_networks):
    """An A3 Ultra node, the GCS FUSE CSI driver, the GKE Networks and Kueue's CRDs, removed afterwards."""
    from kubernetes.client import ApiextensionsV1Api, StorageV1Api

    node = f"gke-a3u-{uuid.uuid4().hex[:6]}"
    cluster.core.create_node({
        "metadata": {"name": node, "labels": {"cloud.google.com/gke-accelerator": "nvidia-h200-141gb"}},
        "status": {"capacity": {"nvidia.com/gpu": "8"}, "allocatable": {"nvidia.com/gpu": "8"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    })
    storage = StorageV1Api(cluster.api)
    storage.create_csi_driver({"metadata": {"name": "gcsfuse.csi.storage.gke.io"}, "spec": {"attachRequired": False}})
    ext = ApiextensionsV1Api(cluster.api)
    crds = []
    for plural, kind, group in (("localqueues", "LocalQueue", "kueue.x-k8s.io"),
                                ("clusterqueues", "ClusterQueue", "kueue.x-k8s.io"),
                                ("workloads", "Workload", "kueue.x-k8s.io")):
        name = f"{plural}.{group}"
        ext.create_custom_resource_definition({
            "metadata": {"name": name},
            "spec": {"group": group, "scope": "Namespaced" if kind != "ClusterQueue" else "Cluster",
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                     "versions": [{"name": "v1beta1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]},
        })
        crds.append(name)
    yield node
    cluster.core.delete_node(node)
    storage.delete_csi_driver("gcsfuse.csi.storage.gke.io")
    for name in crds:
        ext.delete_custom_resource_definition(name)


def test_an_empty_cluster_fails_with_reasons_a_user_can_act_on(cluster):
    checks = by_name(check_cluster(cluster))
    assert checks["API server"].ok and checks["namespace"].ok
    assert not checks["GPU nodes"].ok and "a3-ultragpu-8g" in checks["GPU nodes"].detail
    assert not checks["GCS FUSE CSI driver"].ok and "add-on" in checks["GCS FUSE CSI driver"].detail
    assert not checks["Hugging Face secret"].ok
    networks = checks["GKE networks"]
    assert not networks.ok and networks.required and NETWORK_CRD in networks.detail
    assert "gvnic-1" in networks.detail and "rdma-7" in networks.detail
    assert "overrides={'rdma': False}" in networks.detail
    assert "GKE networks" not in by_name(check_cluster(cluster, rdma=False))
    assert "Kueue" not in checks  # no queue configured, nothing to check
    result = summary(list(checks.values()))
    assert not result["ok"] and "GPU nodes" in result["failed"]


def test_a_ready_cluster_passes(cluster, gke_like):
    import time

    from kubernetes.client import CustomObjectsApi

    ensure_hf_secret(cluster, SecretStr("hf_abcdefghijklmnopqrstuvwxyz"))
    for _ in range(50):  # a new CRD is served a moment after it is created
        try:
            CustomObjectsApi(cluster.api).create_namespaced_custom_object(
                "kueue.x-k8s.io", "v1beta1", cluster.namespace, "localqueues",
                {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "LocalQueue", "metadata": {"name": "a3ultra"}},
            )
            break
        except Exception:
            time.sleep(0.2)
    checks = by_name(check_cluster(cluster, queue="a3ultra"))
    assert gke_like in checks["GPU nodes"].detail and "8 GPUs" in checks["GPU nodes"].detail
    assert checks["GCS FUSE CSI driver"].ok and checks["Kueue"].ok and checks["Kueue queue"].ok
    assert checks["GKE networks"].ok and "gvnic-1, rdma-0" in checks["GKE networks"].detail
    assert not checks["JobSet"].ok and not checks["JobSet"].required  # a warning, not a failure
    assert summary(list(checks.values()))["ok"], summary(list(checks.values()))["lines"]


def test_a_queue_that_does_not_exist_fails(cluster, gke_like):
    checks = by_name(check_cluster(cluster, queue="missing-queue"))
    assert not checks["Kueue queue"].ok and "missing-queue" in checks["Kueue queue"].detail


def test_the_networks_checked_are_the_ones_the_job_attaches():
    assert job_networks() == ["gvnic-1", *(f"rdma-{i}" for i in range(8))]


def test_a_missing_network_is_named_with_what_to_do(cluster, gke_networks):
    gke_networks.delete_cluster_custom_object("networking.gke.io", "v1", "networks", "rdma-5")
    gke_networks.delete_cluster_custom_object("networking.gke.io", "v1", "networks", "gvnic-1")
    check = by_name(check_cluster(cluster))["GKE networks"]
    assert not check.ok and check.required
    assert check.detail.startswith("Network gvnic-1, rdma-5 not found")
    assert "gke-a3-ultragpu" in check.detail and "GKENetworkParamSet" in check.detail


def test_a_network_gke_reports_unready_fails(cluster, gke_networks):
    from kubernetes.client import ApiextensionsV1Api

    gke_networks.delete_cluster_custom_object("networking.gke.io", "v1", "networks", "rdma-3")
    gke_networks.create_cluster_custom_object("networking.gke.io", "v1", "networks", network("rdma-3", "False"))
    assert ApiextensionsV1Api(cluster.api).read_custom_resource_definition(NETWORK_CRD).spec.versions[0].subresources \
        is None  # no status subresource: the status given at creation is kept, as GKE's controller would set it
    check = by_name(check_cluster(cluster))["GKE networks"]
    assert not check.ok and "rdma-3 (GNPParamsNotReady: subnet rdma-sub-3 not found) not Ready" in check.detail
