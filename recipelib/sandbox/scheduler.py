"""The sandbox's scheduler: binds a pending pod to the node when it fits, else says why as kube-scheduler does.

The filters (:func:`unfit_reasons`: unschedulable node, pod count, resources, node selector and affinity,
taints) run in the default scheduler's order and speak its words, so ``FailedScheduling`` events and the
``PodScheduled`` condition read as on GKE. :class:`SchedulerMixin` is the part of
:class:`recipelib.sandbox.nodeagent.NodeAgent` that watches for pending pods and binds them.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from recipelib.sandbox.formats import quantity, utc_now

if TYPE_CHECKING:
    from recipelib.sandbox.kubelet import PodRun

log = logging.getLogger(__name__)

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



class SchedulerMixin:
    """Binds pending pods (``default-scheduler``), oldest first; notes each FailedScheduling message once."""

    core: kubernetes.client.CoreV1Api
    pods: dict[str, Any]
    runs: dict[str, PodRun]
    assumed: dict[str, dict[str, float]]
    scheduling_notes: dict[str, str]
    _lock: threading.RLock
    _stop: threading.Event
    _wake: threading.Event

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
                     "lastProbeTime": None, "lastTransitionTime": utc_now()}
        try:
            self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace,
                                                  {"status": {"conditions": [condition]}},  # merged by type
                                                  _content_type="application/strategic-merge-patch+json")
        except ApiException as e:
            log.debug("pod %s not marked unschedulable: %s", pod.metadata.name, e.reason)
            return
        self.pod_event(pod, "FailedScheduling", message, "Warning", component="default-scheduler")
