"""A serving release as a user asks about it: is the server up, and where is the load sweep?

Why its own module: a server has no end, so the benchmark's "Job phase + launcher events" view does not
fit. The server's state is one of ``absent``, ``pending`` (not scheduled, waiting for Kueue, pulling),
``loading`` (fetching the checkpoint, or trtllm-serve loading the model: the startup probe has not
passed yet, within its budget), ``ready`` (the readiness probe passes: the Service sends it requests) or
``failing`` (crashed, restarting, probes failing after start, an image or config error), each with the
sentence that explains it and the pod's recent events (probe failures in words). A load sweep's
progress (point k of n, ETA) comes from the ``RECIPE_EVENT`` lines its pod prints
(``recipelib/deploy/serving_pod.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import kubernetes

from recipelib.cluster.client import Cluster, call
from recipelib.errors import NotFoundError
from recipelib.monitor.events import EventLine, events_of
from recipelib.monitor.logs import read_log
from recipelib.monitor.progress import parse_event

log = logging.getLogger(__name__)

INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
STATES = ("absent", "pending", "loading", "ready", "failing")
_BROKEN = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
           "CreateContainerError", "InvalidImageName", "RunContainerError")
_INIT_WORK = {"fetch-checkpoint": "fetching the checkpoint to the node's SSD (skipped when already complete)",
              "nccl-plugin-installer": "installing the gIB NCCL plugin"}


def server_name(release: str) -> str:
    return f"{release}-serve"


def explain_probe(message: str) -> str:
    """A kubelet ``Unhealthy`` message in words: what it means for trtllm-serve."""
    kind = message.split(" probe", 1)[0]
    if "connection refused" in message:
        return (f"{kind} probe: nothing listens on the port yet (trtllm-serve opens it only after the model is "
                f"loaded): {message}")
    if "statuscode: 503" in message:
        return f"{kind} probe: the server answers 503 (not ready: loading, or its engine is unavailable): {message}"
    if "timeout" in message.lower() or "deadline" in message.lower():
        return f"{kind} probe: /health did not answer in time (server overloaded or hung): {message}"
    return f"{kind} probe failed: {message}"


@dataclass(frozen=True)
class ServerState:
    """The server of one release, as the pod and its probes say."""

    release: str
    state: str
    detail: str
    pod: str | None = None
    node: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    events: tuple[EventLine, ...] = ()

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def lines(self) -> list[str]:
        head = f"Server {server_name(self.release)}: {self.state.upper()} - {self.detail}"
        where = [f"  pod {self.pod}" + (f" on node {self.node}" if self.node else "")] if self.pod else []
        return [head, *where, *(f"  {e}" for e in self.events)]


def _pods(cluster: Cluster, release: str) -> list[Any]:
    selector = f"{INSTANCE}={release},{COMPONENT}=server"
    pods = call(lambda: cluster.core.list_namespaced_pod(cluster.namespace, label_selector=selector),
                f"list the server pods of {release}").items
    live = [p for p in pods if p.metadata.deletion_timestamp is None]
    return sorted(live, key=lambda p: p.metadata.creation_timestamp or datetime.min.replace(tzinfo=timezone.utc))


def _condition(pod: Any, kind: str) -> Any:
    return next((c for c in pod.status.conditions or [] if c.type == kind), None)


def _classify(pod: Any, budget_s: int) -> tuple[str, str]:
    """(state, sentence) of one server pod."""
    if pod.status.phase in ("Failed", "Succeeded"):
        said = f": {pod.status.message}" if pod.status.message else ""
        return "failing", f"the pod ended {pod.status.phase}{said}"
    if getattr(pod.spec, "scheduling_gates", None):
        return "pending", "waiting for Kueue to admit it (scheduling gates)"
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.status == "False":
        return "pending", f"not scheduled: {scheduled.message or scheduled.reason}"
    if not pod.spec.node_name:
        return "pending", "waiting to be scheduled"
    statuses = [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]
    for cs in statuses:
        waiting = cs.state.waiting if cs.state else None
        if waiting is not None and waiting.reason in _BROKEN:
            return "failing", f"{cs.name}: {waiting.reason}" + (f" - {waiting.message}" if waiting.message else "")
        last = cs.last_state.terminated if cs.last_state else None
        if cs.restart_count and last is not None:
            return "failing", (f"{cs.name} exited with code {last.exit_code} ({last.reason or 'error'}) and was "
                               f"restarted {cs.restart_count} time(s)")
    for cs in pod.status.init_container_statuses or []:
        term = cs.state.terminated if cs.state else None
        if term is not None and term.exit_code != 0:
            return "failing", f"{cs.name} failed with exit code {term.exit_code}: see its log"
        if cs.state and cs.state.running:
            return "loading", _INIT_WORK.get(cs.name, f"init container {cs.name} running")
    main = next((cs for cs in pod.status.container_statuses or [] if cs.name == "serve"), None)
    if main is None or main.state is None or main.state.waiting is not None:
        reason = main.state.waiting.reason if main and main.state and main.state.waiting else "ContainerCreating"
        return "pending", f"the server container is not running yet ({reason})"
    if main.state.terminated is not None:
        t = main.state.terminated
        return "failing", f"trtllm-serve exited with code {t.exit_code} ({t.reason or 'error'})"
    ready = _condition(pod, "Ready")
    if ready is not None and ready.status == "True":
        return "ready", "trtllm-serve answers /health; the Service sends it requests"
    if main.started is False or main.started is None:
        since = main.state.running.started_at if main.state.running else None
        spent = (datetime.now(timezone.utc) - since).total_seconds() if since else 0.0
        return "loading", (f"trtllm-serve is loading the model ({spent / 60:.0f} of {budget_s / 60:.0f} min of the "
                           "startup probe's budget spent)")
    return "failing", "trtllm-serve started but its readiness probe fails: the Service sends it nothing"


def _budget(deployment: Any) -> int:
    for c in deployment.spec.template.spec.containers:
        probe = c.startup_probe
        if c.name == "serve" and probe is not None:
            return int((probe.period_seconds or 10) * (probe.failure_threshold or 3))
    return 0


def server_state(cluster: Cluster, release: str, *, events: int = 8) -> ServerState:
    """The state of ``release``'s server, with the sentence that explains it and recent events."""
    apps = kubernetes.client.AppsV1Api(cluster.api)
    name = server_name(release)
    try:
        dep = call(lambda: apps.read_namespaced_deployment(name, cluster.namespace), f"read Deployment {name}")
    except NotFoundError:
        return ServerState(release, "absent", f"release {release} has no server (no Deployment {name} in namespace "
                                              f"{cluster.namespace}): deploy it with mode='serving'")
    notes = dict(dep.metadata.annotations or {})
    pods = _pods(cluster, release)
    if not pods:
        cond = next((c for c in dep.status.conditions or [] if c.type == "ReplicaFailure"), None)
        detail = f"no pod yet: {cond.message}" if cond is not None else "no pod created yet"
        return ServerState(release, "pending", detail, annotations=notes)
    pod = pods[-1]
    state, detail = _classify(pod, _budget(dep))
    said = events_of(cluster, {pod.metadata.uid}, events) if events else []
    explained = tuple(EventLine(e.time, e.kind, e.name, e.reason,
                                explain_probe(e.text.split(": ", 1)[-1]) if e.reason == "Unhealthy" else e.text)
                      for e in said)
    return ServerState(release, state, detail, pod.metadata.name, pod.spec.node_name, notes, explained)


def wait_ready(cluster: Cluster, release: str, *, timeout_s: float, poll_s: float = 2.0,
               on_state: Callable[[ServerState], None] | None = None) -> ServerState:
    """Poll the server until it is ready, failing or ``timeout_s`` passed; each new state goes to ``on_state``
    (default: logged). Returns the last state (ready or not: the load step says what to do)."""
    deadline = time.monotonic() + timeout_s
    last: tuple[str, str] | None = None
    while True:
        state = server_state(cluster, release, events=0)
        if (state.state, state.detail[:40]) != last:
            last = (state.state, state.detail[:40])
            (on_state or (lambda s: log.info("%s", s.lines()[0])))(state)
        if state.ready or state.state == "failing" or time.monotonic() >= deadline:
            return state
        time.sleep(poll_s)


# -- a load sweep's progress -----------------------------------------------------------------------


@dataclass(frozen=True)
class LoadProgress:
    """Where a load Job is: point k of n, its pace, what remains; ``status`` is the Job's."""

    job: str
    status: str
    done: int = 0
    total: int | None = None
    current: str | None = None
    failed: tuple[str, ...] = ()
    eta_s: float | None = None
    results: str | None = None

    def describe(self) -> str:
        if self.total is None:
            return f"Load {self.job}: {self.status}, no point started yet"
        text = f"Load {self.job}: {self.status}, {self.done} of {self.total} points done"
        if self.current:
            text += f"; now point {self.done + 1} of {self.total} ({self.current})"
        if self.eta_s is not None and self.done < self.total:
            text += f"; about {self.eta_s / 60:.1f} min left"
        if self.failed:
            text += f"; failed: {', '.join(self.failed)}"
        return text + (f"; results in {self.results}" if self.results else "")


def progress_from_lines(job: str, status: str, lines: list[str]) -> LoadProgress:
    """Fold the load pod's ``RECIPE_EVENT`` lines (phase ``load``) into a :class:`LoadProgress`."""
    total: int | None = None
    done, seconds, failed = 0, [], []
    current: str | None = None
    results = None
    for line in lines:
        event = parse_event(line)
        if event is None or event.get("phase") != "load":
            continue
        total = event.get("total", total)
        point, state = event.get("experiment"), event.get("state")
        if point is None:
            results = event.get("results", results)
            continue
        if state == "started":
            current = point
        elif state in ("finished", "skipped", "failed"):
            done += 1
            current = None
            if state == "failed":
                failed.append(point)
            if state != "skipped" and isinstance(event.get("seconds"), (int, float)):
                seconds.append(float(event["seconds"]))
    eta = sum(seconds) / len(seconds) * (total - done) if seconds and total is not None else None
    return LoadProgress(job, status, done, total, current, tuple(failed), eta, results)


def _job_status(job: Any) -> str:
    for c in job.status.conditions or []:
        if c.status == "True" and c.type in ("Complete", "Failed"):
            return c.type
    return "Active" if job.status.active else "Pending"


def load_progress(cluster: Cluster, job_name: str) -> LoadProgress:
    """The progress of load Job ``job_name`` from its pods' logs (every attempt, oldest first)."""
    job = call(lambda: cluster.batch.read_namespaced_job(job_name, cluster.namespace), f"read Job {job_name}")
    pods = call(lambda: cluster.core.list_namespaced_pod(cluster.namespace, label_selector=f"job-name={job_name}"),
                f"list pods of {job_name}").items
    lines: list[str] = []
    for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp):
        if pod.spec.node_name and pod.status.phase != "Pending":
            lines.extend(read_log(cluster, pod.metadata.name, container="load"))
    return progress_from_lines(job_name, _job_status(job), lines)


def load_jobs(cluster: Cluster, release: str) -> list[str]:
    """The load Jobs of ``release``, oldest first."""
    jobs = call(lambda: cluster.batch.list_namespaced_job(
        cluster.namespace, label_selector=f"{INSTANCE}={release},{COMPONENT}=load"), f"list load Jobs of {release}")
    return [j.metadata.name for j in sorted(jobs.items, key=lambda j: j.metadata.creation_timestamp)]


def serving_status(cluster: Cluster, release: str) -> list[str]:
    """Everything a monitor shows about a serving release: the server, then each load sweep."""
    lines = server_state(cluster, release).lines()
    return lines + [f"  {load_progress(cluster, job).describe()}" for job in load_jobs(cluster, release)]
