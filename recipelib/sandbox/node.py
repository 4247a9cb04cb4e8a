"""The sandbox's node: one A3 Ultra-shaped GKE node, registered, kept Ready, reported.

:class:`NodeShape` is what GKE would make of an ``a3-ultragpu-8g`` node pool (labels, taints, capacity);
:class:`NodeMixin` is the part of :class:`recipelib.sandbox.nodeagent.NodeAgent` that owns the Node object:
registration, the Lease heartbeat, the node status, the node scenarios (NotReady, removed, restored) and the
events the kubelet records. :class:`Controls` are the scenario knobs a test turns at run time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from recipelib.sandbox.formats import utc_now, utc_now_micro

if TYPE_CHECKING:
    from recipelib.sandbox.kubelet import PodRun

log = logging.getLogger(__name__)

ANNOTATION = "sandbox.recipelib.io/node"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40

@dataclass(frozen=True)
class NodeShape:
    """A GKE ``a3-ultragpu-8g`` node: 8 x H200 141 GB, 224 vCPUs, 2952 GB of memory, 12 TiB local SSD."""

    name: str = "gke-sandbox-a3-ultragpu-8g-pool-5f2c9a1e-x7k2"
    nodepool: str = "a3-ultragpu-8g-pool"
    cluster: str = "sandbox"
    project: str = "sandbox-project"
    zone: str = "us-central1-b"
    accelerator: str = "nvidia-h200-141gb"
    instance_type: str = "a3-ultragpu-8g"
    gpus: int = 8
    capacity: tuple[tuple[str, str], ...] = (
        ("cpu", "224"), ("memory", "2952466124Ki"), ("ephemeral-storage", "12884901888Ki"), ("pods", "110"),
        ("hugepages-1Gi", "0"), ("hugepages-2Mi", "0"),
    )
    allocatable: tuple[tuple[str, str], ...] = (
        ("cpu", "223370m"), ("memory", "2890530764Ki"), ("ephemeral-storage", "11874191360Ki"), ("pods", "110"),
        ("hugepages-1Gi", "0"), ("hugepages-2Mi", "0"),
    )

    def labels(self) -> dict[str, str]:
        """What GKE puts on a node of an A3 Ultra node pool (the ones workloads select on, and a few more)."""
        region = self.zone.rsplit("-", 1)[0]
        return {
            "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/instance-type": self.instance_type,
            "cloud.google.com/gke-accelerator": self.accelerator,
            "cloud.google.com/gke-boot-disk": "hyperdisk-balanced",
            "cloud.google.com/gke-container-runtime": "containerd",
            "cloud.google.com/gke-cpu-scaling-level": "224",
            "cloud.google.com/gke-ephemeral-storage-local-ssd": "true",
            "cloud.google.com/gke-gpu": "true",
            "cloud.google.com/gke-gpu-driver-version": "latest",
            "cloud.google.com/gke-max-pods-per-node": "110",
            "cloud.google.com/gke-nodepool": self.nodepool,
            "cloud.google.com/gke-os-distribution": "cos",
            "cloud.google.com/gke-provisioning": "reservation",
            "cloud.google.com/gke-stack-type": "IPV4",
            "cloud.google.com/machine-family": "a3",
            "cloud.google.com/private-node": "false",
            "failure-domain.beta.kubernetes.io/region": region,
            "failure-domain.beta.kubernetes.io/zone": self.zone,
            "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
            "node.kubernetes.io/instance-type": self.instance_type,
            "topology.kubernetes.io/region": region, "topology.kubernetes.io/zone": self.zone,
        }

    def resources(self, which: str) -> dict[str, str]:
        return {**dict(getattr(self, which)), "nvidia.com/gpu": str(self.gpus)}


@dataclass
class Controls:
    """What a test or a scenario changes at run time; applies to containers started afterwards, except
    ``replay_speed``, which a running replay follows within a tenth of a second."""

    replay_speed: float = 360.0  # recorded seconds per real second: the hour-long recording in ten seconds
    fail: str = ""  # "build" or "benchmark": that step of the replay fails, and with it the launcher (exit 1)
    pull_seconds: float = 0.2  # how long an image "pull" takes (the image is never fetched)

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key not in {f for f in asdict(self)}:
                raise ValueError(f"unknown control {key!r}; known: {', '.join(asdict(self))}")
            if key == "fail" and value not in ("", "build", "benchmark"):
                raise ValueError("fail must be '', 'build' or 'benchmark'")
            if key != "fail" and (not isinstance(value, int | float) or isinstance(value, bool) or value < 0
                                  or (key == "replay_speed" and value <= 0)):
                raise ValueError(f"{key} must be a positive number, got {value!r}")
            setattr(self, key, value)



class NodeMixin:
    """The Node object: created Ready, a Lease every 4 s, the status every 20 s, and the scenarios."""

    core: kubernetes.client.CoreV1Api
    leases: kubernetes.client.CoordinationV1Api
    shape: NodeShape
    port: int
    runs: dict[str, PodRun]
    node_state: str
    node_uid: str
    _since: dict[str, tuple[str, str]]
    _lock: threading.RLock
    _stop: threading.Event
    _wake: threading.Event

    def _node_body(self) -> dict[str, Any]:
        s = self.shape
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": s.name, "labels": s.labels(), "annotations": {
                ANNOTATION: "recipelib's sandbox node agent: a local process replays recorded runs; no GPU",
                "container.googleapis.com/instance_id": str(int(hashlib.sha256(s.name.encode()).hexdigest()[:15], 16)),
                "node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            }},
            "spec": {"podCIDR": "10.8.0.0/24", "podCIDRs": ["10.8.0.0/24"],
                     "providerID": f"gce://{s.project}/{s.zone}/{s.name}",
                     "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        }

    def _node_status(self, ready: bool = True, message: str = "") -> dict[str, Any]:
        now = utc_now()

        def cond(kind: str, status: str, reason: str, msg: str) -> dict[str, Any]:
            if self._since.get(kind, ("", ""))[0] != status:
                self._since[kind] = (status, now)
            return {"type": kind, "status": status, "reason": reason, "message": msg, "lastHeartbeatTime": now,
                    "lastTransitionTime": self._since[kind][1]}

        ready_cond = cond("Ready", "True", "KubeletReady", "kubelet is posting ready status. AppArmor enabled") \
            if ready else cond("Ready", "False", "KubeletNotReady", message)
        return {
            "capacity": self.shape.resources("capacity"), "allocatable": self.shape.resources("allocatable"),
            "conditions": [
                cond("NetworkUnavailable", "False", "RouteCreated", "NodeController create implicit route"),
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
                     "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                ready_cond,
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": self.shape.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "nodeInfo": {
                "machineID": hashlib.md5(self.shape.name.encode()).hexdigest(),
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.shape.name)), "bootID": str(uuid.uuid4()),
                "kernelVersion": os.uname().release, "osImage": "Container-Optimized OS from Google",
                "containerRuntimeVersion": "containerd://1.7.24 (recipelib sandbox: local processes)",
                "kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2",
                "operatingSystem": "linux", "architecture": "amd64",
            },
            "images": [],
        }

    def register(self) -> None:
        """Create (or take over) the Node, post its status, start its Lease: Ready from the first look."""
        self._since = {}
        body = self._node_body()
        try:
            node = self.core.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
            node = self.core.patch_node(self.shape.name, body, _content_type="application/strategic-merge-patch+json")
        self.node_uid = node.metadata.uid
        self.node_state = "ready"
        self._post_status()
        try:
            self._renew_lease()
        except ApiException as e:  # kube-node-lease may not exist yet on a fresh server: the heartbeat retries
            log.info("lease not written yet: %s", e.reason)
        ref = {"kind": "Node", "name": self.shape.name, "uid": self.shape.name}
        self.event(ref, "default", "Starting", "Starting kubelet.")
        self.event(ref, "default", "NodeReady", f"Node {self.shape.name} status is now: NodeReady")
        self._wake.set()

    def _post_status(self, ready: bool = True, message: str = "") -> None:
        self.core.patch_node_status(self.shape.name, {"status": self._node_status(ready, message)},
                                    _content_type="application/merge-patch+json")

    def _renew_lease(self) -> None:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.shape.name, "namespace": LEASE_NAMESPACE, "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": self.shape.name, "uid": self.node_uid}]},
                "spec": {"holderIdentity": self.shape.name, "leaseDurationSeconds": LEASE_SECONDS,
                         "renewTime": utc_now_micro()}}
        try:
            self.leases.patch_namespaced_lease(self.shape.name, LEASE_NAMESPACE, {"spec": body["spec"]},
                                               _content_type="application/merge-patch+json")
        except ApiException as e:
            if e.status != 404:
                raise
            self.leases.create_namespaced_lease(LEASE_NAMESPACE, body)

    def _heartbeat(self) -> None:
        beats = 0
        while not self._stop.wait(4.0):
            if self.node_state != "ready":
                continue
            try:
                self._renew_lease()
                beats += 1
                if beats % 5 == 0:
                    self._post_status()
            except ApiException as e:
                log.warning("heartbeat failed: %s %s", e.status, e.reason)
            except Exception as e:  # the API server restarting: try again next beat
                log.warning("heartbeat failed: %s", e)

    def set_node(self, action: str) -> str:
        """``not-ready`` (the kubelet reports NotReady, stops heartbeating), ``remove`` (the VM is gone: its
        processes die, the Node object is deleted, nobody updates its pods) or ``restore``."""
        with self._lock:
            if action == "not-ready" and self.node_state == "ready":
                self.node_state = "not-ready"
                self._post_status(False, "container runtime is down (sandbox control: node not-ready)")
                self.event({"kind": "Node", "name": self.shape.name, "uid": self.shape.name}, "default",
                           "NodeNotReady", f"Node {self.shape.name} status is now: NodeNotReady")
            elif action == "remove" and self.node_state in ("ready", "not-ready"):
                self.node_state = "removed"
                for run in self.runs.values():
                    run.abandon()
                try:
                    self.core.delete_node(self.shape.name)
                except ApiException as e:
                    if e.status != 404:
                        raise
            elif action == "restore" and self.node_state != "ready":
                lost = [r for r in self.runs.values() if r.stopping == "Lost"]
                self.register()
                for run in lost:  # what a new kubelet finds of pods whose processes died with the old VM
                    run.phase, run.reason = "Failed", "NodeLost"
                    run.message = f"Node {self.shape.name} which was running pod {run.name} was lost"
                    run._safe_publish()
            elif action not in ("not-ready", "remove", "restore"):
                raise ValueError(f"unknown node action {action!r}: not-ready, remove or restore")
            return self.node_state

    # -- events and status writes

    def event(self, ref: dict[str, Any], namespace: str, reason: str, message: str, kind: str = "Normal",
              component: str = "kubelet") -> None:
        now = utc_now()
        body = {"metadata": {"name": f"{ref['name']}.{time.time_ns():x}", "namespace": namespace},
                "involvedObject": ref, "reason": reason, "message": message, "type": kind,
                "source": {"component": component, **({"host": self.shape.name} if component == "kubelet" else {})},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "reportingComponent": component, "reportingInstance": self.shape.name}
        try:
            self.core.create_namespaced_event(namespace, body)
        except ApiException as e:  # the namespace is being deleted, say: events are best effort
            log.debug("event %s not written: %s", reason, e.reason)

    def pod_event(self, pod: Any, reason: str, message: str, kind: str = "Normal", *, field_path: str | None = None,
                  component: str = "kubelet") -> None:
        ref = {"apiVersion": "v1", "kind": "Pod", "name": pod.metadata.name, "namespace": pod.metadata.namespace,
               "uid": pod.metadata.uid, **({"fieldPath": field_path} if field_path else {})}
        self.event(ref, pod.metadata.namespace, reason, message, kind, component)
