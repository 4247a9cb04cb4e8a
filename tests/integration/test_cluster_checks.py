"""Cluster preflight against a real API server, with the cluster-scoped objects GKE would have."""

import uuid

import pytest
from pydantic import SecretStr

from recipelib.cluster.checks import check_cluster, summary
from recipelib.cluster.hf_secret import ensure_hf_secret


def by_name(checks):
    return {c.name: c for c in checks}


@pytest.fixture
def gke_like(cluster):
    """An A3 Ultra node, the GCS FUSE CSI driver and Kueue's CRDs, removed afterwards."""
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
    assert not checks["JobSet"].ok and not checks["JobSet"].required  # a warning, not a failure
    assert summary(list(checks.values()))["ok"], summary(list(checks.values()))["lines"]


def test_a_queue_that_does_not_exist_fails(cluster, gke_like):
    checks = by_name(check_cluster(cluster, queue="missing-queue"))
    assert not checks["Kueue queue"].ok and "missing-queue" in checks["Kueue queue"].detail
