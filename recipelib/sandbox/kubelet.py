"""The sandbox's kubelet: runs the pods bound to the node, from volumes to the final phase.

:class:`PodRun` takes one pod through its life as the kubelet does (mount volumes, pull, run the init
containers then the containers, stop on deletion or eviction) and writes its whole status and the
kubelet's events at each step. :class:`KubeletMixin` is the part of
:class:`recipelib.sandbox.nodeagent.NodeAgent` that watches every pod, starts a run for each new pod bound
here, confirms deletions, and evicts on request.
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kubernetes
from kubernetes.client.exceptions import ApiException

import recipelib.sandbox.serving as serving
from recipelib.sandbox.containers import Container
from recipelib.sandbox.formats import utc_now
from recipelib.sandbox.node import Controls, NodeShape

if TYPE_CHECKING:
    from recipelib.sandbox.nodeagent import NodeAgent

log = logging.getLogger(__name__)

EVICTION_MESSAGE = ("The node was low on resource: ephemeral-storage. Container benchmark was using 1240Gi, "
                    "which exceeds its request of 0. ")

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
        self.started = utc_now()
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
        self.ports: dict[int, int] = {}  # containerPort -> the local port its process listens on
        self.port_names: dict[str, int] = {}  # a named containerPort -> its number
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
        now = utc_now()
        inits_done = all(c.done.is_set() and c.exit_code == 0 for c in self.inits)
        ready = all(c.ready for c in self.mains) and not self.stopping
        finished = self.phase in ("Succeeded", "Failed")
        scheduled = next((c for c in self.pod.status.conditions or [] if c.type == "PodScheduled"), None)
        pending_inits = [c.name for c in self.inits if not (c.done.is_set() and c.exit_code == 0)]
        unready = [c.name for c in self.mains if not c.ready]

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
        serving.start_probes(self, spec, c)
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



class KubeletMixin:
    """The pod watch, the pod sync (start, stop, finalise), image pulls, evictions, and what runs where."""

    core: kubernetes.client.CoreV1Api
    shape: NodeShape
    controls: Controls
    port: int
    node_state: str
    pods: dict[str, Any]
    runs: dict[str, PodRun]
    assumed: dict[str, dict[str, float]]
    scheduling_notes: dict[str, str]
    images: set[str]
    finalising: set[str]
    _ips: int
    _lock: threading.RLock
    _stop: threading.Event
    _wake: threading.Event

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

    # -- controls

    def evict(self, namespace: str, name: str, message: str = EVICTION_MESSAGE) -> bool:
        with self._lock:
            run = next((r for r in self.runs.values() if (r.ns, r.name) == (namespace, name)), None)
        if run is None or run.finished.is_set():
            return False
        run.stop("Evicted", message)
        run.finished.wait(30)
        return True

    def find_container(self, namespace: str, pod: str, container: str) -> tuple[PodRun, Container] | None:
        with self._lock:
            runs = [r for r in self.runs.values() if (r.ns, r.name) == (namespace, pod)]
        for run in runs:
            c = run.container(container)
            if c is not None:
                return run, c
        return None
