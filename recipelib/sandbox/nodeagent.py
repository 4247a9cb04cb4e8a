"""The local sandbox's node: one A3 Ultra-shaped GKE node, with the scheduler and the kubelet it needs.

The sandbox's control plane (:mod:`recipelib.sandbox.kube`) has no scheduler and no kubelet, so without
this agent every pod stays Pending. The agent plays both, against the real API server, as closely as
the notebooks and the monitor can tell:

- **the node**: registers a Node labelled, tainted and sized like GKE's ``a3-ultragpu-8g`` (8
  ``nvidia.com/gpu``), keeps it Ready (a Lease every few seconds, node status less often), and serves
  the kubelet's HTTPS port (``status.daemonEndpoints``) for ``/containerLogs`` (follow, sinceTime,
  sinceSeconds, tailLines, timestamps, limitBytes), which the API server proxies for
  ``read_namespaced_pod_log``;
- **the scheduler**: binds a pending pod when the node fits it (nodeSelector/affinity, taints,
  resource requests against what running pods hold), else sets ``PodScheduled=False/Unschedulable``
  and a ``FailedScheduling`` event worded as the real scheduler words them;
- **the kubelet**: materialises the pod's ConfigMap/Secret/emptyDir/hostPath volumes, runs the init
  containers then the containers as local processes, reflects every state in the pod's status and emits
  the kubelet's events (Scheduled, Pulling, Pulled, Created, Started, Killing, Evicted, Failed);
  deletes a terminating pod once its containers stopped.

What a container *runs*: a recipelib benchmark container (``launch.py --config ...``) runs the real
launcher shipped in the pod's ConfigMap, with paths mapped the way the mounts map them (``/ssd`` to a
node folder, the Cloud Storage FUSE volume ``/gcs/PREFIX`` to ``gs://BUCKET/PREFIX`` on the sandbox's
GCS server) and ``trtllm-bench`` replaced by the replay of a recorded real run
(``launcher/testing/replay_bench.py``); ``RECIPE_REPLAY=1`` makes the launcher label everything it
writes. Any other container (the gIB NCCL plugin installer, for instance) prints a line saying it is
not run here, and completes.

Controls for tests and scenarios (:class:`Controls`, and methods reachable over the HTTPS port with the
kubeconfig's bearer token, see :mod:`recipelib.sandbox`): replay speed (live), a failing build or
benchmark, evicting a pod, a node that goes NotReady or away.

Run it as ``python -m recipelib.sandbox.nodeagent --kubeconfig K --root DIR --tls-cert C --tls-key K``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import kubernetes
from kubernetes.client.exceptions import ApiException

from recipelib.paths import ROOT

log = logging.getLogger(__name__)

TESTING = ROOT / "launcher" / "testing"
ANNOTATION = "sandbox.recipelib.io/node"
FIELD_MANAGER = "recipelib-nodeagent"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
EVICTION_MESSAGE = ("The node was low on resource: ephemeral-storage. Container benchmark was using 1240Gi, "
                    "which exceeds its request of 0. ")
# Every sandbox client is in system:masters (allowed before RBAC is consulted): the default roles and
# priority classes may still be being written when the API server is ready for the sandbox.
READY_EXCLUDES = ("poststarthook/rbac/bootstrap-roles", "poststarthook/scheduling/bootstrap-system-priority-classes")
_LAUNCH = re.compile(r"(\S*/launch\.py)\s+--config\s+(\S+)")


# --- time, quantities ------------------------------------------------------------------------------


def _now() -> str:
    """``metav1.Time``: RFC 3339, seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _micro_now() -> str:
    """``metav1.MicroTime``: RFC 3339, microseconds (leases)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def rfc3339_nano(ns: int) -> str:
    """The kubelet's log timestamps (Go's ``time.RFC3339Nano``: trailing zeros of the fraction dropped)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    digits = f"{fraction:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (f".{digits}" if digits else "") + "Z"


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 UTC time such as ``2026-11-27T03:10:00.25Z``."""
    import calendar

    base, _, fraction = text.strip().rstrip("Z").partition(".")
    base = base.replace("+00:00", "")
    seconds = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int((fraction or "0").ljust(9, "0")[:9])


_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "n": 1e-9, "u": 1e-6,
             "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def quantity(value: object) -> float:
    """A Kubernetes quantity (``500m``, ``16Gi``, ``8``) as a number."""
    match = re.fullmatch(r"([0-9.]+(?:[eE][-+]?[0-9]+)?)([A-Za-z]*)", str(value).strip())
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


# --- the node ---------------------------------------------------------------------------------------


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


# --- scheduling: the default scheduler's filters, for one pod against the nodes ---------------------


def pod_requests(pod: Any) -> dict[str, float]:
    """Effective requests: the containers' sum, or the largest init container's where that is more."""

    def of(container: Any) -> dict[str, float]:
        res = container.resources
        values = dict((res.limits or {}) if res else {})
        values.update((res.requests or {}) if res else {})  # extended resources: requests default to limits
        return {k: quantity(v) for k, v in values.items()}

    total: dict[str, float] = {}
    for c in pod.spec.containers:
        for k, v in of(c).items():
            total[k] = total.get(k, 0.0) + v
    for c in pod.spec.init_containers or []:
        for k, v in of(c).items():
            total[k] = max(total.get(k, 0.0), v)
    return total


def _tolerates(pod: Any, taint: Any) -> bool:
    for t in pod.spec.tolerations or []:
        if t.effect and t.effect != taint.effect:
            continue
        if t.operator == "Exists" and (not t.key or t.key == taint.key):
            return True
        if t.key == taint.key and (t.value or "") == (taint.value or ""):
            return True
    return False


def _matches_affinity(pod: Any, labels: dict[str, str]) -> bool:
    selector = pod.spec.node_selector or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    required = getattr(getattr(getattr(pod.spec, "affinity", None), "node_affinity", None),
                       "required_during_scheduling_ignored_during_execution", None)
    if required is None:
        return True

    def term_ok(term: Any) -> bool:
        for e in term.match_expressions or []:
            value = labels.get(e.key)
            ok = {"In": value in (e.values or []), "NotIn": value not in (e.values or []),
                  "Exists": e.key in labels, "DoesNotExist": e.key not in labels}.get(e.operator, False)
            if not ok:
                return False
        return True

    return any(term_ok(t) for t in required.node_selector_terms or [])


def unfit_reasons(pod: Any, node: Any, used: dict[str, float], pods_on_node: int) -> list[str]:
    """Why ``pod`` cannot go to ``node`` (empty: it fits), in the scheduler's words and filter order."""
    if node.spec.unschedulable and not any(
            t.key == "node.kubernetes.io/unschedulable" for t in pod.spec.tolerations or []):
        return ["node(s) were unschedulable"]
    allocatable = {k: quantity(v) for k, v in (node.status.allocatable or {}).items()}
    reasons = []
    if pods_on_node + 1 > allocatable.get("pods", 110):
        reasons.append("Too many pods")
    for resource, amount in sorted(pod_requests(pod).items()):
        if amount > 0 and used.get(resource, 0.0) + amount > allocatable.get(resource, 0.0):
            reasons.append(f"Insufficient {resource}")
    if reasons:
        return reasons
    if not _matches_affinity(pod, node.metadata.labels or {}):
        return ["node(s) didn't match node selector"]
    for taint in node.spec.taints or []:
        if taint.effect in ("NoSchedule", "NoExecute") and not _tolerates(pod, taint):
            return [f"node(s) had taint {{{taint.key}: {taint.value or ''}}}, that the pod didn't tolerate"]
    return []


def unschedulable_message(reasons_by_node: list[list[str]]) -> str:
    """``0/1 nodes are available: 1 Insufficient nvidia.com/gpu.`` (counts per reason, sorted)."""
    if not reasons_by_node:
        return "no nodes available to schedule pods"
    counts: dict[str, int] = {}
    for reasons in reasons_by_node:
        for r in reasons:
            counts[r] = counts.get(r, 0) + 1
    parts = sorted(f"{n} {r}" for r, n in counts.items())
    return f"0/{len(reasons_by_node)} nodes are available: {', '.join(parts)}."


# --- container logs: CRI log files, read as the kubelet reads them -----------------------------------


@dataclass
class LogRecord:
    time_ns: int
    stamp: str
    text: str


def read_records(path: Path, offset: int = 0) -> tuple[list[LogRecord], int]:
    """Complete CRI log lines (``<RFC3339Nano> stdout F <text>``) from ``offset``; returns the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    records = []
    for raw in data[:end].splitlines():
        stamp, _, rest = raw.decode("utf-8", "replace").partition(" ")
        _stream, _, rest = rest.partition(" ")
        _tag, _, text = rest.partition(" ")
        records.append(LogRecord(parse_rfc3339(stamp), stamp, text))
    return records, offset + end


@dataclass
class LogQuery:
    """The kubelet's ``/containerLogs`` options (``PodLogOptions`` as query parameters)."""

    follow: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since_ns: int | None = None
    limit_bytes: int | None = None

    @classmethod
    def parse(cls, query: dict[str, list[str]]) -> LogQuery:
        def one(name: str) -> str | None:
            return query.get(name, [None])[-1]

        q = cls(follow=one("follow") == "true", timestamps=one("timestamps") == "true")
        if one("tailLines") is not None:
            q.tail_lines = max(0, int(one("tailLines") or 0))
        if one("limitBytes") is not None:
            q.limit_bytes = max(1, int(one("limitBytes") or 1))
        if one("sinceTime"):
            q.since_ns = parse_rfc3339(one("sinceTime") or "")
        elif one("sinceSeconds"):
            q.since_ns = time.time_ns() - int(one("sinceSeconds") or 0) * 1_000_000_000
        return q

    def render(self, record: LogRecord) -> bytes:
        return ((record.stamp + " " if self.timestamps else "") + record.text + "\n").encode()


# --- containers ---------------------------------------------------------------------------------------


class Container:
    """One container of a pod as a local process group; its output goes to a CRI-format log file."""

    def __init__(self, name: str, image: str, log_path: Path) -> None:
        self.name = name
        self.image = image
        self.log_path = log_path
        self.id = uuid.uuid4().hex
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at: str | None = None
        self.finished_at: str | None = None
        self.exit_code: int | None = None
        self.waiting_reason = "ContainerCreating"
        self.waiting_message: str | None = None
        self.done = threading.Event()
        self._pump: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and not self.done.is_set()

    def start(self, argv: list[str], env: dict[str, str], cwd: Path, pid_dir: Path) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        self.process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self._pid_file = pid_dir / str(self.process.pid)
        self._pid_file.write_text(self.id)  # the sandbox kills what an agent killed hard left behind
        self.started_at = _now()
        self._pump = threading.Thread(target=self._copy_output, name=f"log-{self.name}", daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with open(self.log_path, "ab") as out:
            for raw in iter(self.process.stdout.readline, b""):
                text = raw.rstrip(b"\n").decode("utf-8", "replace")
                out.write(f"{rfc3339_nano(time.time_ns())} stdout F {text}\n".encode())
                out.flush()
        self.exit_code = self.process.wait()
        self.finished_at = _now()
        self._pid_file.unlink(missing_ok=True)
        self.done.set()

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM, then SIGKILL after the grace period (as the kubelet does)."""
        self.signal(signal.SIGTERM)
        if not self.done.wait(grace_seconds):
            self.signal(signal.SIGKILL)
            self.done.wait(10)

    def status(self) -> dict[str, Any]:
        """This container's entry in ``containerStatuses``, as the kubelet reports it from the runtime."""
        base = {"name": self.name, "image": self.image, "restartCount": 0,
                "imageID": f"{self.image.split(':')[0]}@sha256:{hashlib.sha256(self.image.encode()).hexdigest()}"}
        if self.done.is_set():
            code = self.exit_code if self.exit_code is not None else 137
            code = 128 - code if code < 0 else code  # a signal: 143 for SIGTERM, 137 for SIGKILL
            reason = "Completed" if code == 0 else "Error"
            state = {"terminated": {"exitCode": code, "reason": reason, "startedAt": self.started_at,
                                    "finishedAt": self.finished_at, "containerID": f"containerd://{self.id}"}}
            return {**base, "state": state, "ready": False, "started": False, "containerID": f"containerd://{self.id}",
                    "lastState": {}}
        if self.process is not None:
            return {**base, "state": {"running": {"startedAt": self.started_at}}, "ready": True, "started": True,
                    "containerID": f"containerd://{self.id}", "lastState": {}}
        waiting = {"reason": self.waiting_reason, **({"message": self.waiting_message} if self.waiting_message else {})}
        return {**base, "imageID": "", "state": {"waiting": waiting}, "ready": False, "started": False,
                "lastState": {}}


# --- one pod ------------------------------------------------------------------------------------------


class PodRun(threading.Thread):
    """Runs one pod bound to this node from start to end, writing its status and events as the kubelet."""

    def __init__(self, agent: NodeAgent, pod: Any) -> None:
        super().__init__(name=f"pod-{pod.metadata.name}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.uid = pod.metadata.uid
        self.ns = pod.metadata.namespace
        self.name = pod.metadata.name
        self.dir = agent.node_root / "pods" / f"{self.ns}_{self.name}_{self.uid}"
        self.ip = agent.next_pod_ip()
        self.started = _now()
        self.inits = [Container(c.name, c.image or "", self.dir / "logs" / c.name / "0.log")
                      for c in pod.spec.init_containers or []]
        self.mains = [Container(c.name, c.image or "", self.dir / "logs" / c.name / "0.log")
                      for c in pod.spec.containers]
        for c in self.mains:
            c.waiting_reason = "PodInitializing" if self.inits else "ContainerCreating"
        self.stopping: str | None = None  # "Killing" (deleted) or "Evicted"
        self.stop_message = ""
        self.grace = float(pod.spec.termination_grace_period_seconds or 30)
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self.phase = "Pending"
        self.reason: str | None = None
        self.message: str | None = None
        self.volumes: dict[str, Path | str] = {}
        self._said: set[tuple[str, str]] = set()
        self._since: dict[str, tuple[str, str]] = {}  # condition type -> (status, when it became so)

    # -- bookkeeping

    def container(self, name: str) -> Container | None:
        return next((c for c in self.inits + self.mains if c.name == name), None)

    def _event(self, reason: str, message: str, kind: str = "Normal", container: str | None = None) -> None:
        if kind == "Warning" and reason in ("FailedMount", "Failed"):  # retried every 2 s: said once
            if (reason, message) in self._said:
                return
            self._said.add((reason, message))
        spec = "initContainers" if container and any(c.name == container for c in self.inits) else "containers"
        self.agent.pod_event(self.pod, reason, message, kind,
                             field_path=f"spec.{spec}{{{container}}}" if container else None)

    def _conditions(self) -> list[dict[str, Any]]:
        now = _now()
        inits_done = all(c.done.is_set() and c.exit_code == 0 for c in self.inits)
        ready = all(c.running for c in self.mains) and not self.stopping
        finished = self.phase in ("Succeeded", "Failed")
        scheduled = next((c for c in self.pod.status.conditions or [] if c.type == "PodScheduled"), None)
        pending_inits = [c.name for c in self.inits if not (c.done.is_set() and c.exit_code == 0)]
        unready = [c.name for c in self.mains if not c.running]

        def cond(kind: str, ok: bool, reason: str | None, message: str | None) -> dict[str, Any]:
            status = "True" if ok else "False"
            if self._since.get(kind, ("", ""))[0] != status:
                self._since[kind] = (status, now)
            out: dict[str, Any] = {"type": kind, "status": status, "lastProbeTime": None,
                                   "lastTransitionTime": self._since[kind][1]}
            if not ok and reason:
                out.update(reason=reason, message=message)
            return out

        not_ready = ("PodCompleted", None) if finished and self.phase == "Succeeded" else (
            "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]")
        return [
            cond("Initialized", inits_done or finished, "ContainersNotInitialized",
                 f"containers with incomplete status: [{' '.join(pending_inits)}]"),
            cond("Ready", ready, *not_ready),
            cond("ContainersReady", ready, *not_ready),
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
             "lastTransitionTime": scheduled.last_transition_time.strftime("%Y-%m-%dT%H:%M:%SZ")
             if scheduled and scheduled.last_transition_time else now},
        ]

    def publish(self) -> None:
        """Write the pod's whole status (merge patch: every list is replaced, so it is always complete)."""
        with self._lock:
            status: dict[str, Any] = {
                "phase": self.phase, "conditions": self._conditions(), "hostIP": "127.0.0.1", "podIP": self.ip,
                "podIPs": [{"ip": self.ip}], "startTime": self.started,
                "containerStatuses": [c.status() for c in self.mains],
                "reason": self.reason, "message": self.message,
            }
            if self.inits:
                status["initContainerStatuses"] = [c.status() for c in self.inits]
        self.agent.patch_pod_status(self.ns, self.name, status)

    # -- the lifecycle

    def run(self) -> None:
        try:
            self._run()
        except Exception:  # a bug here must not leave the pod Pending forever without a word
            log.exception("pod %s/%s: the node agent failed", self.ns, self.name)
            self.phase, self.reason, self.message = "Failed", "NodeAgentError", "the sandbox's node agent failed"
            self._safe_publish()
        finally:
            self.finished.set()
            self.agent.pod_finished(self)

    def _safe_publish(self) -> None:
        try:
            self.publish()
        except ApiException as e:
            if e.status != 404:
                log.warning("pod %s/%s: status not written: %s", self.ns, self.name, e.reason)

    def _run(self) -> None:
        self._safe_publish()
        if not self._mount_volumes():
            self._end()
            return
        for spec, c in zip(self.pod.spec.init_containers or [], self.inits, strict=True):
            if not self._start(spec, c):
                self._end()
                return
            self._safe_publish()
            c.done.wait()
            self._safe_publish()
            if c.exit_code != 0 or self.stopping:
                self._end()
                return
        for spec, c in zip(self.pod.spec.containers, self.mains, strict=True):
            if not self._start(spec, c):
                for started in self.mains:
                    started.stop(0.0)
                self._end()
                return
        self.phase = "Running"
        self._safe_publish()
        for c in self.mains:
            c.done.wait()
        self._end()

    def _end(self) -> None:
        """The pod's final phase; nothing is reported for a node that went away (nobody is left to)."""
        if self.stopping == "Lost":
            return
        ok = all(c.done.is_set() and c.exit_code == 0 for c in self.inits + self.mains)
        self.phase = "Succeeded" if ok and not self.stopping else "Failed"
        if self.stopping == "Evicted":
            self.reason, self.message = "Evicted", self.stop_message
        self._safe_publish()

    def _mount_volumes(self) -> bool:
        """ConfigMaps and Secrets as files, emptyDir and hostPath as folders; retried like the kubelet."""
        while not self.stopping:
            missing = None
            for vol in self.pod.spec.volumes or []:
                try:
                    self.volumes[vol.name] = self.agent.volume(self, vol)
                except LookupError as e:
                    missing = (vol.name, str(e))
                    break
            if missing is None:
                return True
            self._event("FailedMount", f'MountVolume.SetUp failed for volume "{missing[0]}" : {missing[1]}',
                        "Warning")
            if self.finished.wait(2.0):
                return False
        return False

    def _start(self, spec: Any, c: Container) -> bool:
        if self.stopping:
            return False
        self.agent.pull(self, spec, c)
        while not self.stopping:
            try:
                argv, env, cwd = self.agent.command(self, spec, c)
                break
            except LookupError as e:  # a Secret or ConfigMap key the env refers to is missing
                c.waiting_reason, c.waiting_message = "CreateContainerConfigError", str(e)
                self._safe_publish()
                self._event("Failed", f"Error: {e}", "Warning", c.name)
                if self.finished.wait(2.0):
                    return False
        if self.stopping:
            return False
        c.waiting_message = None
        self._event("Created", f"Created container {c.name}", container=c.name)
        c.start(argv, env, cwd, self.agent.pid_dir)
        self._event("Started", f"Started container {c.name}", container=c.name)
        if self.stopping:  # stopped while this container was being started: it goes too
            c.stop(2.0)
        return True

    def stop(self, why: str, message: str = "") -> None:
        """``Killing`` (the pod is deleted) or ``Evicted``: SIGTERM, a grace period, SIGKILL."""
        if self.stopping:
            return
        self.stopping, self.stop_message = why, message
        running = [c for c in self.inits + self.mains if c.running]
        if why == "Evicted":
            self._event("Evicted", message, "Warning")
        for c in running:
            self._event("Killing", f"Stopping container {c.name}", container=c.name)
        # a hard eviction gets the kubelet's minimum grace period (2 s), a deletion the pod's own (<= 30 s here)
        grace = 2.0 if why == "Evicted" else min(self.grace, 30.0)
        threads = [threading.Thread(target=c.stop, args=(grace,), daemon=True) for c in running]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def abandon(self) -> None:
        """The node went away: its processes die with it and nobody reports anything."""
        self.stopping = "Lost"
        for c in self.inits + self.mains:
            c.signal(signal.SIGKILL)


# --- the agent ---------------------------------------------------------------------------------------


class NodeAgent:
    """The node, its scheduler and its kubelet; ``start()`` registers the node and returns."""

    def __init__(self, api: kubernetes.client.ApiClient, root: Path, *, tls_cert: Path, tls_key: Path,
                 token: str, port: int = 0, gcs_endpoint: str = "", shape: NodeShape | None = None,
                 controls: Controls | None = None, python: str = sys.executable) -> None:
        self.api = api
        self.core = kubernetes.client.CoreV1Api(api)
        self.leases = kubernetes.client.CoordinationV1Api(api)
        self.node_root = root
        self.shape = shape or NodeShape()
        self.controls = controls or Controls()
        self.gcs_endpoint = gcs_endpoint
        self.python = python
        self.token = token
        self.tls = (tls_cert, tls_key)
        self.port = port
        self.pid_dir = root / "run"
        self.bin = root / "bin"
        self.pods: dict[str, Any] = {}  # uid -> V1Pod, as the watch last saw it
        self.runs: dict[str, PodRun] = {}  # uid -> the pod's run on this node
        self.assumed: dict[str, dict[str, float]] = {}  # bound by us, not yet seen bound by the watch
        self.scheduling_notes: dict[str, str] = {}  # uid -> last FailedScheduling message
        self.images: set[str] = set()
        self.finalising: set[str] = set()  # uids whose deletion this node is confirming
        self.node_state = "absent"  # absent | ready | not-ready | removed
        self.node_uid = ""
        self._since: dict[str, tuple[str, str]] = {}  # condition type -> (status, since when)
        self._ips = 1
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- start and stop

    def start(self) -> NodeAgent:
        for d in (self.pid_dir, self.bin, self.node_root / "pods", self.node_root / "hub"):
            d.mkdir(parents=True, exist_ok=True)
        self._write_tools()
        self._serve()
        self.register()
        for target in (self._heartbeat, self._watch_pods, self._schedule_loop):
            t = threading.Thread(target=target, name=target.__name__, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("node %s registered; kubelet port %d", self.shape.name, self.port)
        return self

    def stop(self) -> None:
        """Stop every container (their processes must not outlive the node), the server, the threads."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            runs = list(self.runs.values())
        for run in runs:
            run.abandon()
        for run in runs:
            run.join(5)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _write_tools(self) -> None:
        """The node's "image": trtllm-bench (the replay), the downloader, nvidia-smi, as tiny wrappers."""
        def wrapper(name: str, script: Path) -> None:
            path = self.bin / name
            path.write_text(f'#!/bin/sh\nexec "{self.python}" -S "{script}" "$@"\n')
            path.chmod(0o755)

        wrapper("trtllm-bench", TESTING / "replay_bench.py")
        wrapper("download", TESTING / "fake_download.py")
        smi = self.bin / "nvidia-smi"
        smi.write_text("#!/bin/sh\n" + "".join(
            f'echo "{i}, NVIDIA H200, 143771 MiB, 550.90.07, GPU-5a4d{i:04d}-0000-0000-0000-sandbox00000"\n'
            for i in range(self.shape.gpus)))
        smi.chmod(0o755)
        (self.node_root / "replay-speed").write_text(f"{self.controls.replay_speed:g}\n")

    def set_controls(self, values: dict[str, Any]) -> Controls:
        self.controls.update(values)
        (self.node_root / "replay-speed").write_text(f"{self.controls.replay_speed:g}\n")
        return self.controls

    # -- the Node object

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
        now = _now()

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
                         "renewTime": _micro_now()}}
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
        now = _now()
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

    def patch_pod_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.core.patch_namespaced_pod_status(name, namespace, {"status": status},
                                              _content_type="application/merge-patch+json")

    def next_pod_ip(self) -> str:
        with self._lock:
            self._ips = self._ips % 250 + 1
            return f"10.8.0.{self._ips + 1}"

    # -- the watch: the agent's view of every pod

    def _watch_pods(self) -> None:
        while not self._stop.is_set():
            try:
                listed = self.core.list_pod_for_all_namespaces()
                with self._lock:
                    seen = {p.metadata.uid for p in listed.items}
                    for uid in [u for u in self.pods if u not in seen]:
                        self._on_pod("DELETED", self.pods[uid])
                    for pod in listed.items:
                        self._on_pod("MODIFIED", pod)
                stream = kubernetes.watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces, resource_version=listed.metadata.resource_version,
                    timeout_seconds=10)
                for event in stream:
                    if self._stop.is_set():
                        return
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        with self._lock:
                            self._on_pod(event["type"], event["object"])
            except Exception as e:  # a 410 Gone, the server restarting: list again
                if not self._stop.is_set():
                    log.debug("pod watch restarts: %s", e)
                    self._stop.wait(0.5)

    def _on_pod(self, kind: str, pod: Any) -> None:
        uid = pod.metadata.uid
        if kind == "DELETED":
            self.pods.pop(uid, None)
            self.assumed.pop(uid, None)
            self.scheduling_notes.pop(uid, None)
            run = self.runs.get(uid)
            if run is not None and not run.stopping:
                threading.Thread(target=self._forget, args=(run,), daemon=True).start()
            return
        self.pods[uid] = pod
        if pod.spec.node_name:
            self.assumed.pop(uid, None)
        if pod.spec.node_name == self.shape.name:
            self._sync(pod)
        elif not pod.spec.node_name:
            self._wake.set()

    def _sync(self, pod: Any) -> None:
        """The kubelet's pod sync: start what is new, stop and finalise what is being deleted."""
        uid = pod.metadata.uid
        run = self.runs.get(uid)
        if pod.metadata.deletion_timestamp is not None:
            if uid in self.finalising:
                return
            self.finalising.add(uid)
            if run is not None and not run.finished.is_set():
                threading.Thread(target=self._stop_then_delete, args=(run,), daemon=True).start()
            else:
                threading.Thread(target=self._finalise, args=(pod,), daemon=True).start()
            return
        if run is None and self.node_state == "ready" and pod.status.phase == "Pending":
            run = PodRun(self, pod)
            self.runs[uid] = run
            run.start()

    def _forget(self, run: PodRun) -> None:
        """The pod was deleted at once (grace period 0): stop what still runs, drop its files."""
        run.stop("Killing")
        run.finished.wait(60)
        with self._lock:
            self.runs.pop(run.uid, None)
        shutil.rmtree(run.dir, ignore_errors=True)

    def _stop_then_delete(self, run: PodRun) -> None:
        run.stop("Killing")
        run.finished.wait(60)
        self._finalise(run.pod)

    def _finalise(self, pod: Any) -> None:
        """Confirm a graceful deletion (grace period 0, this pod's uid only), then forget the pod."""
        try:
            self.core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0,
                                            body={"preconditions": {"uid": pod.metadata.uid}, "gracePeriodSeconds": 0})
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("pod %s/%s not deleted: %s", pod.metadata.namespace, pod.metadata.name, e.reason)
        with self._lock:
            run = self.runs.pop(pod.metadata.uid, None)
            self.finalising.discard(pod.metadata.uid)
        if run is not None:
            shutil.rmtree(run.dir, ignore_errors=True)

    def pod_finished(self, run: PodRun) -> None:
        self._wake.set()  # its resources are free: pending pods may fit now

    # -- the scheduler

    def _schedule_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                self.schedule_pending()
            except Exception as e:  # the server restarting: next round
                log.warning("scheduling round failed: %s", e)

    def schedule_pending(self) -> None:
        with self._lock:
            pending = sorted(
                (p for p in self.pods.values() if not p.spec.node_name and p.metadata.uid not in self.assumed
                 and p.metadata.deletion_timestamp is None and p.status.phase == "Pending"
                 and (p.spec.scheduler_name or "default-scheduler") == "default-scheduler"),
                key=lambda p: p.metadata.creation_timestamp)
        if not pending:
            return
        nodes = self.core.list_node().items
        for pod in pending:
            verdicts = []
            chosen = None
            for node in nodes:
                used, count = self._usage(node.metadata.name)
                reasons = unfit_reasons(pod, node, used, count)
                verdicts.append(reasons)
                if not reasons:
                    chosen = node.metadata.name
                    break
            if chosen:
                self._bind(pod, chosen)
            else:
                self._unschedulable(pod, unschedulable_message(verdicts))

    def _usage(self, node: str) -> tuple[dict[str, float], int]:
        used: dict[str, float] = {}
        count = 0
        with self._lock:
            holders = [pod_requests(p) for p in self.pods.values()
                       if p.spec.node_name == node and p.status.phase not in ("Succeeded", "Failed")
                       and not (p.metadata.uid in self.runs and self.runs[p.metadata.uid].finished.is_set())]
            holders += list(self.assumed.values())
        for requests in holders:
            count += 1
            for k, v in requests.items():
                used[k] = used.get(k, 0.0) + v
        return used, count

    def _bind(self, pod: Any, node: str) -> None:
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod.metadata.name, "uid": pod.metadata.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        with self._lock:  # assumed before the call: the watch may report the binding before it returns
            self.assumed[pod.metadata.uid] = pod_requests(pod)
        try:
            # _preload_content=False: the client cannot read the Status a binding returns
            self.core.create_namespaced_pod_binding(pod.metadata.name, pod.metadata.namespace, body,
                                                    _preload_content=False)
        except ApiException as e:
            log.info("binding %s/%s failed: %s", pod.metadata.namespace, pod.metadata.name, e.reason)
            with self._lock:
                self.assumed.pop(pod.metadata.uid, None)
            return
        with self._lock:
            self.scheduling_notes.pop(pod.metadata.uid, None)
        where = f"{pod.metadata.namespace}/{pod.metadata.name}"
        self.pod_event(pod, "Scheduled", f"Successfully assigned {where} to {node}", component="default-scheduler")

    def _unschedulable(self, pod: Any, message: str) -> None:
        uid = pod.metadata.uid
        if self.scheduling_notes.get(uid) == message:
            return
        self.scheduling_notes[uid] = message
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                     "lastProbeTime": None, "lastTransitionTime": _now()}
        try:
            self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace,
                                                  {"status": {"conditions": [condition]}},  # merged by type
                                                  _content_type="application/strategic-merge-patch+json")
        except ApiException as e:
            log.debug("pod %s not marked unschedulable: %s", pod.metadata.name, e.reason)
            return
        self.pod_event(pod, "FailedScheduling", message, "Warning", component="default-scheduler")

    # -- the kubelet's side of running a pod

    def volume(self, run: PodRun, vol: Any) -> Path | str:
        """Where volume ``vol`` lives on this node; ``gs://BUCKET`` for the Cloud Storage FUSE CSI volume."""
        base = run.dir / "volumes" / vol.name
        if vol.config_map is not None or vol.secret is not None:
            if vol.config_map is not None:
                try:
                    data = self.core.read_namespaced_config_map(vol.config_map.name, run.ns).data or {}
                except ApiException as e:
                    raise LookupError(f'configmap "{vol.config_map.name}" not found') from e
                items = vol.config_map.items
            else:
                try:
                    secret = self.core.read_namespaced_secret(vol.secret.secret_name, run.ns).data or {}
                except ApiException as e:
                    raise LookupError(f'secret "{vol.secret.secret_name}" not found') from e
                data = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in secret.items()}
                items = vol.secret.items
            base.mkdir(parents=True, exist_ok=True)
            for key, value in data.items():
                paths = [i.path for i in items or [] if i.key == key] if items else [key]
                for rel in paths:
                    (base / rel).parent.mkdir(parents=True, exist_ok=True)
                    (base / rel).write_text(value)
            return base
        if vol.host_path is not None:
            path = self.node_root / "host" / vol.host_path.path.lstrip("/")
            path.mkdir(parents=True, exist_ok=True)
            return path
        if vol.csi is not None and vol.csi.driver == "gcsfuse.csi.storage.gke.io":
            bucket = (vol.csi.volume_attributes or {}).get("bucketName", "")
            if not bucket:
                raise LookupError("the gcsfuse volume has no volumeAttributes.bucketName")
            return f"gs://{bucket}"
        base.mkdir(parents=True, exist_ok=True)  # emptyDir, and anything else: an empty folder
        return base

    def pull(self, run: PodRun, spec: Any, c: Container) -> None:
        image = spec.image or ""
        if image in self.images and spec.image_pull_policy != "Always":
            run._event("Pulled", f'Container image "{image}" already present on machine', container=c.name)
            return
        run._event("Pulling", f'Pulling image "{image}"', container=c.name)
        time.sleep(self.controls.pull_seconds)
        self.images.add(image)
        run._event("Pulled", f'Successfully pulled image "{image}" in {self.controls.pull_seconds * 1000:.0f}ms',
                   container=c.name)

    def _env(self, run: PodRun, spec: Any) -> dict[str, str]:
        env: dict[str, str] = {}
        for e in spec.env or []:
            if e.value_from is None:
                env[e.name] = e.value or ""
            elif e.value_from.secret_key_ref is not None:
                ref = e.value_from.secret_key_ref
                try:
                    data = self.core.read_namespaced_secret(ref.name, run.ns).data or {}
                except ApiException:
                    if ref.optional:
                        continue
                    raise LookupError(f'secret "{ref.name}" not found') from None
                if ref.key not in data:
                    raise LookupError(f"couldn't find key {ref.key} in Secret {run.ns}/{ref.name}")
                env[e.name] = base64.b64decode(data[ref.key]).decode()
            elif e.value_from.config_map_key_ref is not None:
                ref = e.value_from.config_map_key_ref
                try:
                    data = self.core.read_namespaced_config_map(ref.name, run.ns).data or {}
                except ApiException:
                    raise LookupError(f'configmap "{ref.name}" not found') from None
                if ref.key not in data:
                    raise LookupError(f"couldn't find key {ref.key} in ConfigMap {run.ns}/{ref.name}")
                env[e.name] = data[ref.key]
            elif e.value_from.field_ref is not None:
                env[e.name] = {"metadata.name": run.name, "metadata.namespace": run.ns, "spec.nodeName":
                               self.shape.name, "status.podIP": run.ip, "status.hostIP": "127.0.0.1"}.get(
                                   e.value_from.field_ref.field_path, "")
        return env

    def _mapper(self, run: PodRun, spec: Any) -> Callable[[str], str]:
        """Container path -> node path, through the container's volume mounts (longest mount first)."""
        mounts = sorted(((m.mount_path.rstrip("/") or "/", run.volumes.get(m.name), m.sub_path or "")
                         for m in spec.volume_mounts or []), key=lambda m: -len(m[0]))
        rootfs = run.dir / "rootfs"

        def to_node(path: str) -> str:
            for mount, where, sub in mounts:
                if where is not None and (path == mount or path.startswith(mount + "/")):
                    rest = "/".join(p for p in (sub, path[len(mount):].strip("/")) if p)
                    if isinstance(where, str):  # gs://BUCKET: the FUSE mount is the bucket itself
                        return f"{where}/{rest}" if rest else where
                    return str(where / rest) if rest else str(where)
            return str(rootfs / path.lstrip("/"))

        return to_node

    def command(self, run: PodRun, spec: Any, c: Container) -> tuple[list[str], dict[str, str], Path]:
        """What runs for this container here: the launcher with the replay, or a line saying it is skipped."""
        env = self._env(run, spec)
        to_node = self._mapper(run, spec)
        where = to_node(spec.working_dir or "/")
        cwd = Path(where) if where.startswith(str(run.dir)) else run.dir / "rootfs"
        cwd.mkdir(parents=True, exist_ok=True)
        (run.dir / "rootfs" / "root").mkdir(parents=True, exist_ok=True)
        base_env = {"PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(run.dir / "rootfs" / "root"),
                    "HOSTNAME": run.name, "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
                    "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
        text = " ".join([*(spec.command or []), *(spec.args or [])])
        call = _LAUNCH.search(text)
        if call is None:
            would_run = " ".join(shlex.join([*(spec.command or []), *(spec.args or [])]).split())
            lines = [f"[sandbox] container {c.name} ({c.image}) is not run in the local sandbox: its command "
                     f"would be {would_run or '(the image default)'}",
                     f"[sandbox] {c.name}: nothing to do here (no GPUs, no RDMA); completed"]
            program = "import sys\nfor line in sys.argv[1:]:\n    print(line)\n"
            return [self.python, "-S", "-c", program, *lines], {**base_env, **env}, cwd
        launch, config = to_node(call.group(1)), to_node(call.group(2))
        rewritten = run.dir / "sandbox-config.json"
        rewritten.write_text(json.dumps(self._rewrite(json.loads(Path(config).read_text()), to_node), indent=2))
        model = json.loads(rewritten.read_text()).get("model", "")
        if isinstance(model, str) and "/" in model:
            self._fake_checkpoint(model)
        replay_env = {
            "TRTLLM_BENCH": str(self.bin / "trtllm-bench"), "RECIPE_DOWNLOADER": str(self.bin / "download"),
            "FAKE_HUB": str(self.node_root / "hub"), "RECIPE_PREPARE_DATASET": str(TESTING / "prepare_dataset.py"),
            "RECIPE_REPLAY": "1", "RECIPE_REPLAY_SPEED": f"{self.controls.replay_speed:g}",
            "RECIPE_REPLAY_SPEED_FILE": str(self.node_root / "replay-speed"),
            **({"RECIPE_REPLAY_FAIL": self.controls.fail} if self.controls.fail else {}),
            **({"STORAGE_EMULATOR_HOST": self.gcs_endpoint} if self.gcs_endpoint else {}),
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }
        return [self.python, launch, "--config", str(rewritten)], {**base_env, **env, **replay_env}, cwd

    @staticmethod
    def _rewrite(value: Any, to_node: Callable[[str], str]) -> Any:
        """Every absolute path in the launcher's config, as the mounts make it appear on this node."""
        if isinstance(value, dict):
            return {k: NodeAgent._rewrite(v, to_node) for k, v in value.items()}
        if isinstance(value, list):
            return [NodeAgent._rewrite(v, to_node) for v in value]
        if isinstance(value, str) and value.startswith("/"):
            return to_node(value)
        return value

    def _fake_checkpoint(self, model: str) -> None:
        """A tiny stand-in of ``model`` on the fake hub the downloader copies from (no weights are real)."""
        repo = self.node_root / "hub" / model
        if (repo / "config.json").exists():
            return
        repo.mkdir(parents=True, exist_ok=True)
        shards = [f"model-{i:05d}-of-00002.safetensors" for i in (1, 2)]
        weight_map = {f"layers.{i}.weight": shard for i, shard in enumerate(shards)}
        (repo / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"note": "sandbox stand-in"}, "weight_map": weight_map}))
        for i, shard in enumerate(shards):
            (repo / shard).write_bytes(bytes([i + 1]) * 1024)
        (repo / "tokenizer.json").write_text("{}")
        (repo / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "sandbox": True}))

    # -- controls

    def evict(self, namespace: str, name: str, message: str = EVICTION_MESSAGE) -> bool:
        with self._lock:
            run = next((r for r in self.runs.values() if (r.ns, r.name) == (namespace, name)), None)
        if run is None or run.finished.is_set():
            return False
        run.stop("Evicted", message)
        run.finished.wait(30)
        return True

    def status(self) -> dict[str, Any]:
        with self._lock:
            pods = [{"namespace": r.ns, "name": r.name, "phase": r.phase, "stopping": r.stopping}
                    for r in self.runs.values()]
        return {"node": self.shape.name, "state": self.node_state, "port": self.port, "pods": pods,
                "controls": asdict(self.controls)}

    def find_container(self, namespace: str, pod: str, container: str) -> tuple[PodRun, Container] | None:
        with self._lock:
            runs = [r for r in self.runs.values() if (r.ns, r.name) == (namespace, pod)]
        for run in runs:
            c = run.container(container)
            if c is not None:
                return run, c
        return None

    # -- the HTTPS port: /containerLogs for the API server, /sandbox/* for the sandbox's controls

    def _serve(self) -> None:
        agent = self

        class Handler(_KubeletHandler):
            pass

        Handler.agent = agent
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="kubelet-https", daemon=True).start()


class _KubeletHandler(BaseHTTPRequestHandler):
    agent: NodeAgent
    server_version = "recipelib-sandbox-kubelet"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kubelet http: " + format, *args)

    def _reply(self, code: int, body: str | dict[str, Any], content_type: str = "text/plain") -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json" if isinstance(body, dict) else content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if url.path == "/healthz":
            self._reply(200, "ok")
        elif len(parts) == 4 and parts[0] == "containerLogs":
            self._logs(parts[1], parts[2], parts[3], parse_qs(url.query))
        elif url.path == "/sandbox/status":
            if self._authorised():
                self._reply(200, self.agent.status())
        else:
            self._reply(404, "404 page not found")

    def do_POST(self) -> None:
        url = urlparse(self.path)
        if not url.path.startswith("/sandbox/"):
            self._reply(404, "404 page not found")
            return
        if not self._authorised():
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if url.path == "/sandbox/controls":
                self._reply(200, asdict(self.agent.set_controls(body)))
            elif url.path == "/sandbox/evict":
                ok = self.agent.evict(body["namespace"], body["pod"], body.get("message") or EVICTION_MESSAGE)
                self._reply(200 if ok else 404, {"evicted": ok})
            elif url.path == "/sandbox/node":
                self._reply(200, {"state": self.agent.set_node(body["action"])})
            else:
                self._reply(404, {"error": f"no control {url.path}"})
        except (ValueError, KeyError, TypeError) as e:
            self._reply(400, {"error": str(e)})

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.agent.token}":
            return True
        self._reply(401, {"error": "Unauthorized: use the sandbox kubeconfig's token"})
        return False

    def _logs(self, namespace: str, pod: str, container: str, query: dict[str, list[str]]) -> None:
        found = self.agent.find_container(namespace, pod, container)
        if query.get("previous", ["false"])[-1] == "true":
            self._reply(400, f'previous terminated container "{container}" in pod "{pod}" not found')
            return
        if found is None:
            self._reply(404, f'pod "{pod}" (container "{container}") not found on node {self.agent.shape.name}')
            return
        _run, c = found
        if c.process is None:
            self._reply(400, f'container "{container}" in pod "{pod}" is waiting to start: {c.waiting_reason}')
            return
        try:
            q = LogQuery.parse(query)
        except ValueError as e:
            self._reply(400, str(e))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for chunk in _log_chunks(c, q):
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return  # the reader went away


def _log_chunks(c: Container, q: LogQuery) -> Iterator[bytes]:
    """What the kubelet sends: the selected lines, then (with follow) new lines until the container ends."""
    records, offset = read_records(c.log_path)
    if q.since_ns is not None:
        records = [r for r in records if r.time_ns >= q.since_ns]
    if q.tail_lines is not None:
        records = records[len(records) - q.tail_lines:] if q.tail_lines else []
    budget = q.limit_bytes
    while True:
        for record in records:
            data = q.render(record)
            if budget is not None:
                data = data[:budget]
                budget -= len(data)
            yield data
            if budget is not None and budget <= 0:
                return
        if not q.follow:
            return
        finished = c.done.is_set()
        records, offset = read_records(c.log_path, offset)
        if not records:
            if finished:
                return
            c.done.wait(0.1)


# --- the command line: what the sandbox starts ------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recipelib.sandbox.nodeagent", description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--context", default=None)
    p.add_argument("--root", required=True, help="the node's folder: pods, logs, the local SSD, the tools")
    p.add_argument("--tls-cert", required=True)
    p.add_argument("--tls-key", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--gcs-endpoint", default="")
    p.add_argument("--replay-speed", type=float, default=Controls.replay_speed)
    p.add_argument("--node-name", default=NodeShape.name)
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the API server")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(threadName)s %(levelname)s %(message)s")
    for noisy in ("kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log.info("connecting to the API server in %s", args.kubeconfig)
    api, token = _connect(Path(args.kubeconfig), args.context, args.wait)
    log.info("connected")
    agent = NodeAgent(api, Path(args.root), tls_cert=Path(args.tls_cert), tls_key=Path(args.tls_key), token=token,
                      port=args.port, gcs_endpoint=args.gcs_endpoint, shape=NodeShape(name=args.node_name),
                      controls=Controls(replay_speed=args.replay_speed))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    agent.start()
    stopped.wait()
    log.info("stopping: containers are killed with the node")
    agent.stop()
    return 0


def _connect(kubeconfig: Path, context: str | None, wait: float) -> tuple[kubernetes.client.ApiClient, str]:
    """An API client once the kubeconfig exists and the server answers (the sandbox starts us first)."""
    import urllib.request

    deadline = time.monotonic() + wait
    while True:
        try:
            config = kubernetes.client.Configuration()
            kubernetes.config.load_kube_config(str(kubeconfig), context=context, client_configuration=config)
            token = str(next(iter(config.api_key.values()), "")).removeprefix("Bearer ").strip()
            # /readyz with a short timeout and no retries: while the server starts, requests can hang for seconds
            query = "&".join(f"exclude={name}" for name in READY_EXCLUDES)
            request = urllib.request.Request(f"{config.host}/readyz?{query}",
                                             headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=config.ssl_ca_cert),
                                        timeout=1) as resp:
                resp.read()
            config.connection_pool_maxsize = 32
            api = kubernetes.client.ApiClient(config)
            kubernetes.client.CoreV1Api(api).read_namespace("default")
            return api, token
        except Exception as e:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API server in {kubeconfig} did not answer within {wait:.0f}s: {e}") from e
            time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
