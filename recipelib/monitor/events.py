"""Kubernetes events as one line each, in words a user can act on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from recipelib.cluster.client import Cluster, call


@dataclass(frozen=True)
class EventLine:
    time: datetime | None
    kind: str
    name: str
    reason: str
    text: str

    def __str__(self) -> str:
        when = self.time.strftime("%H:%M:%S") if self.time else "--:--:--"
        return f"{when} {self.kind}/{self.name}: {self.text}"


_EXPLAIN: dict[str, Callable[[str], str]] = {
    "FailedScheduling": lambda m: "not scheduled: " + (
        "no node has enough free nvidia.com/gpu; a node pool of a3-ultragpu-8g with 8 free GPUs is needed"
        if "nvidia.com/gpu" in m else
        "no node matches the pod's node selector (cloud.google.com/gke-accelerator)" if "selector" in m or
        "affinity" in m else m),
    "Scheduled": lambda m: f"scheduled: {m}",
    "Pulling": lambda m: f"pulling image: {m}",
    "Pulled": lambda m: f"image ready: {m}",
    "Failed": lambda m: (f"image pull failed (check ARTIFACT_REGISTRY, the tag, and that the node's service "
                         f"account can read the registry): {m}" if "pull" in m.lower() else f"failed: {m}"),
    "BackOff": lambda m: f"restarting after a failure: {m}",
    "ErrImagePull": lambda m: f"image pull failed: {m}",
    "Created": lambda m: f"container created: {m}",
    "Started": lambda m: f"container started: {m}",
    "Killing": lambda m: f"stopping container: {m}",
    "OOMKilling": lambda m: f"out of memory, the kernel killed a process: {m}",
    "Evicted": lambda m: f"evicted by the node (results already uploaded are kept): {m}",
    "Preempted": lambda m: f"preempted by a higher-priority workload: {m}",
    "NodeNotReady": lambda m: f"the node stopped reporting: {m}",
    "FailedMount": lambda m: (f"volume mount failed (for the results bucket: check GCS_BUCKET and the GCS FUSE CSI "
                              f"driver): {m}"),
    "SuccessfulCreate": lambda m: f"created: {m}",
    "SuccessfulDelete": lambda m: f"deleted: {m}",
    "Completed": lambda m: f"completed: {m}",
    "BackoffLimitExceeded": lambda m: f"gave up after the allowed retries (backoffLimit): {m}",
    "DeadlineExceeded": lambda m: f"ran past activeDeadlineSeconds and was stopped: {m}",
    "Suspended": lambda m: f"suspended (waiting for Kueue): {m}",
    "Resumed": lambda m: f"resumed (admitted): {m}",
}


def explain_event(event: Any) -> EventLine:
    """A core/v1 Event as one line: what happened, and what to do where there is something to do."""
    reason = event.reason or ""
    message = (event.message or "").strip().replace("\n", " ")
    text = _EXPLAIN.get(reason, lambda m: f"{reason}: {m}")(message)
    when = event.last_timestamp or event.event_time or event.first_timestamp
    if event.count and event.count > 1:
        text += f" (x{event.count})"
    obj = event.involved_object
    return EventLine(when, obj.kind, obj.name, reason, text)


def events_of(cluster: Cluster, uids: set[str], limit: int) -> list[EventLine]:
    """The newest ``limit`` events about the objects with these uids, oldest first.

    By uid, not by name: a release deployed again has a Job of the same name, and the events of the
    earlier one (kept an hour by the API server) must not read as this run's.
    """
    items = call(lambda: cluster.core.list_namespaced_event(cluster.namespace), "list events").items
    mine = [explain_event(e) for e in items if e.involved_object.uid in uids]
    return sorted(mine, key=lambda e: e.time.timestamp() if e.time else 0)[-limit:]
