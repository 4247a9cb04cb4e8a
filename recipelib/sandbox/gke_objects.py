"""What a GKE A3 Ultra cluster has before the recipe runs, installed into the sandbox's API server.

The GCS FUSE CSI driver (a GKE add-on) and the multi-networking ``Network`` objects the benchmark Job's
interfaces annotation names (``gvnic-1``, ``rdma-0``..``rdma-7``; the recipe creates them with its cluster
blueprint). With them the cluster checks pass on the sandbox as on a real node pool, for the same reasons.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes.client import ApiextensionsV1Api, CustomObjectsApi, StorageV1Api
from kubernetes.client.exceptions import ApiException

from recipelib.cluster.checks import GCSFUSE_DRIVER, NETWORK_CRD, NETWORK_GROUP, NETWORK_PLURAL, job_networks


def _created(create: Any, *args: Any) -> None:
    try:
        create(*args)
    except ApiException as e:
        if e.status != 409:
            raise


def install(api: Any, timeout_s: float = 20.0) -> None:
    """Create (or keep) the CSI driver, the Network CRD and one Ready Network per interface of the Job."""
    _created(StorageV1Api(api).create_csi_driver, {
        "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
        "metadata": {"name": GCSFUSE_DRIVER, "labels": {"addonmanager.kubernetes.io/mode": "Reconcile"}},
        "spec": {"attachRequired": False, "podInfoOnMount": True, "volumeLifecycleModes": ["Persistent", "Ephemeral"]},
    })
    _created(ApiextensionsV1Api(api).create_custom_resource_definition, {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": NETWORK_CRD},
        "spec": {"group": NETWORK_GROUP, "scope": "Cluster",
                 "names": {"plural": NETWORK_PLURAL, "singular": "network", "kind": "Network"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]},
    })
    objects = CustomObjectsApi(api)
    deadline = time.monotonic() + timeout_s
    for name in job_networks():
        body = {"apiVersion": f"{NETWORK_GROUP}/v1", "kind": "Network", "metadata": {"name": name},
                "spec": {"type": "Device", "parametersRef": {"group": NETWORK_GROUP, "kind": "GKENetworkParamSet",
                                                             "name": name}}}
        while True:  # a new CRD is served a moment after it is created
            try:
                _created(objects.create_cluster_custom_object, NETWORK_GROUP, "v1", NETWORK_PLURAL, body)
                break
            except ApiException as e:
                if e.status != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        status = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "GNPParamsReady",
                                             "message": "sandbox: a stand-in for GKE's network controller",
                                             "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
        objects.patch_cluster_custom_object_status(NETWORK_GROUP, "v1", NETWORK_PLURAL, name, status)
