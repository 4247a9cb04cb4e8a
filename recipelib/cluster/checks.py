"""Preflight of the cluster: is it ready for a benchmark, before a 405B run spends an hour finding out?

Each check is one line a user can act on; none of them changes anything in the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiextensionsV1Api, StorageV1Api

from recipelib.cluster.client import Cluster, call
from recipelib.cluster.hf_secret import SECRET_KEY, SECRET_NAME
from recipelib.deploy.render import rdma_interfaces
from recipelib.errors import ClusterError, NotFoundError

GCSFUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
KUEUE_CRDS = ("localqueues.kueue.x-k8s.io", "clusterqueues.kueue.x-k8s.io", "workloads.kueue.x-k8s.io")
JOBSET_CRD = "jobsets.jobset.x-k8s.io"
NETWORK_GROUP, NETWORK_VERSION, NETWORK_PLURAL = "networking.gke.io", "v1", "networks"
NETWORK_CRD = f"{NETWORK_PLURAL}.{NETWORK_GROUP}"
NETWORK_SETUP = (
    "the recipe's setup creates them (Cluster Toolkit's gke-a3-ultragpu blueprint, gpu-recipes "
    "docs/configuring-environment-gke-a3-ultra.md); on another cluster apply a GKENetworkParamSet and a Network "
    "(spec.type Device) for each, on the cluster's gVNIC and RDMA VPC subnets, or deploy with "
    "overrides={'rdma': False}"
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True

    @property
    def symbol(self) -> str:
        return "ok" if self.ok else ("FAIL" if self.required else "warn")

    def __str__(self) -> str:
        return f"[{self.symbol:>4}] {self.name}: {self.detail}"


def _gpu_nodes(cluster: Cluster, accelerator: str) -> Check:
    nodes = call(lambda: cluster.core.list_node(), "list nodes").items
    matching = []
    for node in nodes:
        labels = node.metadata.labels or {}
        gpus = int((node.status.allocatable or {}).get("nvidia.com/gpu", "0"))
        if labels.get("cloud.google.com/gke-accelerator") == accelerator and gpus > 0:
            ready = any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
            matching.append(f"{node.metadata.name} ({gpus} GPUs{'' if ready else ', NOT Ready'})")
    if matching:
        return Check("GPU nodes", True, f"{len(matching)} {accelerator} node(s): {', '.join(matching)}")
    return Check(
        "GPU nodes", False,
        f"no node labelled cloud.google.com/gke-accelerator={accelerator} with allocatable nvidia.com/gpu among "
        f"{len(nodes)} node(s): create an a3-ultragpu-8g node pool, or set overrides.accelerator",
    )


def _csi_driver(cluster: Cluster) -> Check:
    try:
        call(lambda: StorageV1Api(cluster.api).read_csi_driver(GCSFUSE_DRIVER), "read the GCS FUSE CSI driver")
    except NotFoundError:
        return Check(
            "GCS FUSE CSI driver", False,
            f"{GCSFUSE_DRIVER} is not installed: enable the Cloud Storage FUSE CSI driver add-on on the cluster",
        )
    return Check("GCS FUSE CSI driver", True, f"{GCSFUSE_DRIVER} installed")


def _crds(cluster: Cluster, names: tuple[str, ...], what: str, required: bool) -> Check:
    api = ApiextensionsV1Api(cluster.api)
    missing = []
    for name in names:
        try:
            call(lambda name=name: api.read_custom_resource_definition(name), f"read CRD {name}")
        except NotFoundError:
            missing.append(name)
    if missing:
        return Check(what, False, f"missing CRDs {', '.join(missing)}: install {what}", required)
    return Check(what, True, f"{', '.join(names)} installed", required)


def _local_queue(cluster: Cluster, queue: str) -> Check:
    from kubernetes.client import CustomObjectsApi

    try:
        call(
            lambda: CustomObjectsApi(cluster.api).get_namespaced_custom_object(
                "kueue.x-k8s.io", "v1beta1", cluster.namespace, "localqueues", queue
            ),
            f"read LocalQueue {queue}",
        )
    except NotFoundError:
        return Check("Kueue queue", False, f"LocalQueue {queue!r} not found in namespace {cluster.namespace}")
    return Check("Kueue queue", True, f"LocalQueue {queue!r} exists in namespace {cluster.namespace}")


def job_networks() -> list[str]:
    """The GKE Networks the benchmark Job's ``networking.gke.io/interfaces`` annotation names (not ``default``)."""
    return [i["network"] for i in rdma_interfaces() if i["network"] != "default"]


def _ready(network: dict[str, Any]) -> str | None:
    """``None`` when the Network is Ready or reports no conditions; else what its Ready condition says."""
    for cond in (network.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") != "True":
            return f"{cond.get('reason') or 'not Ready'}: {cond.get('message') or ''}".rstrip(": ")
    return None


def _networks(cluster: Cluster) -> Check:
    """Every Network the Job attaches (gvnic-1, rdma-0..7) exists and is not reported unready.

    Without them GKE cannot give the pod its NICs, and the pod never starts; a multi-network cluster without
    them is what a cluster made by hand (not by the recipe's blueprint) usually lacks.
    """
    from kubernetes.client import CustomObjectsApi

    wanted = job_networks()
    api = ApiextensionsV1Api(cluster.api)
    try:
        call(lambda: api.read_custom_resource_definition(NETWORK_CRD), f"read CRD {NETWORK_CRD}")
    except NotFoundError:
        return Check("GKE networks", False, f"no {NETWORK_CRD} API: the cluster has no GKE multi-networking "
                                            f"(create it with --enable-multi-networking), so the Job cannot attach "
                                            f"{', '.join(wanted)}; {NETWORK_SETUP}")
    objects = CustomObjectsApi(cluster.api)
    missing, unready = [], []
    for name in wanted:
        try:
            network = call(lambda name=name: objects.get_cluster_custom_object(
                NETWORK_GROUP, NETWORK_VERSION, NETWORK_PLURAL, name), f"read Network {name}")
        except NotFoundError:
            missing.append(name)
            continue
        problem = _ready(network)
        if problem:
            unready.append(f"{name} ({problem})")
    if missing:
        return Check("GKE networks", False, f"Network {', '.join(missing)} not found ({NETWORK_GROUP}/"
                                            f"{NETWORK_VERSION}, named by the Job's networking.gke.io/interfaces); "
                                            f"{NETWORK_SETUP}")
    if unready:
        return Check("GKE networks", False, f"Network {', '.join(unready)} not Ready: check its GKENetworkParamSet "
                                            "(VPC and subnet names) and the node pool's additional networks")
    return Check("GKE networks", True, f"{', '.join(wanted)} exist")


def _secret(cluster: Cluster) -> Check:
    try:
        secret = call(lambda: cluster.core.read_namespaced_secret(SECRET_NAME, cluster.namespace), "read the HF secret")
    except NotFoundError:
        return Check(
            "Hugging Face secret", False, f"Secret {SECRET_NAME} not found: run the setup notebook's secret step"
        )
    if SECRET_KEY not in (secret.data or {}):
        return Check("Hugging Face secret", False, f"Secret {SECRET_NAME} has no key {SECRET_KEY}")
    return Check("Hugging Face secret", True, f"Secret {SECRET_NAME} holds {SECRET_KEY}")


def check_cluster(
    cluster: Cluster, *, accelerator: str = "nvidia-h200-141gb", queue: str | None = None, rdma: bool = True
) -> list[Check]:
    """Connection, namespace, GPU nodes, GCS FUSE driver, GKE networks (with ``rdma``, as the Job's default
    ``rdma: true`` needs), Kueue/JobSet (when a queue is set), HF secret."""
    checks: list[Check] = []
    try:
        version = cluster.version()
    except ClusterError as e:
        return [Check("API server", False, str(e))]
    checks.append(Check("API server", True, f"{cluster.source}, Kubernetes {version}"))
    try:
        call(lambda: cluster.core.read_namespace(cluster.namespace), f"read namespace {cluster.namespace}")
        checks.append(Check("namespace", True, f"{cluster.namespace} exists"))
    except NotFoundError:
        checks.append(
            Check("namespace", False, f"namespace {cluster.namespace!r} does not exist: create it or set NAMESPACE")
        )
    checks.append(_gpu_nodes(cluster, accelerator))
    checks.append(_csi_driver(cluster))
    if rdma:
        checks.append(_networks(cluster))
    if queue:
        checks.append(_crds(cluster, KUEUE_CRDS, "Kueue", required=True))
        checks.append(_crds(cluster, (JOBSET_CRD,), "JobSet", required=False))
        if checks[-2].ok:
            checks.append(_local_queue(cluster, queue))
    checks.append(_secret(cluster))
    return checks


def summary(checks: list[Check]) -> dict[str, Any]:
    failed = [c.name for c in checks if not c.ok and c.required]
    return {"ok": not failed, "failed": failed, "lines": [str(c) for c in checks]}
