"""What is my run doing right now? The Job, Kueue admission, the pod, events, and the launcher's phase.

``status`` reads everything once; the log (``recipelib.monitor.logs``) and waiting for the end
(``recipelib.monitor.waiting``) build on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import CustomObjectsApi, V1Job, V1Pod

from recipelib.cluster.client import Cluster, call
from recipelib.cluster.releases import INSTANCE, MODEL, RUN_ID, list_releases
from recipelib.errors import ClusterError, NotFoundError
from recipelib.monitor.events import EventLine, events_of
from recipelib.monitor.logs import read_log
from recipelib.monitor.progress import Progress, progress_from_lines

log = logging.getLogger(__name__)

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


@dataclass(frozen=True)
class RunStatus:
    """One look at a release. ``state`` is what a user asks first: Pending, Queued, Running, Complete, Failed."""

    release: str
    namespace: str
    state: str
    reason: str
    run_id: str | None = None
    model: str | None = None
    queue: str | None = None
    admitted: bool | None = None
    pod: str | None = None
    pod_phase: str | None = None
    node: str | None = None
    containers: tuple[str, ...] = ()
    events: tuple[EventLine, ...] = ()
    progress: Progress = field(default_factory=Progress)
    evicted: bool = False
    node_lost: bool = False
    job_condition: str | None = None  # the Job's own Failed condition, beside the launcher's reason

    @property
    def finished(self) -> bool:
        return self.state in ("Complete", "Failed")

    def lines(self) -> list[str]:
        out = [f"Release {self.release} (run {self.run_id or '?'}, {self.model or '?'}): {self.state} - {self.reason}"]
        if self.queue:
            admitted = {True: "admitted", False: "waiting for admission", None: "admission unknown"}[self.admitted]
            out.append(f"  Kueue queue {self.queue}: {admitted}")
        if self.pod:
            out.append(f"  Pod {self.pod}: {self.pod_phase}" + (f" on {self.node}" if self.node else ""))
            out.extend(f"    {c}" for c in self.containers)
        if self.job_condition and self.job_condition not in self.reason:
            out.append(f"  Job: {self.job_condition}")
        out.append(f"  Launcher: {self.progress.describe()}")
        out.extend(f"  {e}" for e in self.events)
        return out


def _job(cluster: Cluster, release: str) -> V1Job:
    return call(lambda: cluster.batch.read_namespaced_job(release, cluster.namespace), f"read Job {release}")


def _pods(cluster: Cluster, job: V1Job) -> list[V1Pod]:
    """The pods of this Job, oldest first: not those of an earlier Job of the same release (same name)."""
    release = job.metadata.name
    pods = call(
        lambda: cluster.core.list_namespaced_pod(cluster.namespace, label_selector=f"{INSTANCE}={release}"),
        f"list pods of {release}",
    ).items
    mine = [p for p in pods if any(o.uid == job.metadata.uid for o in p.metadata.owner_references or [])]
    return sorted(mine, key=lambda p: p.metadata.creation_timestamp)


def _launcher_lines(cluster: Cluster, pods: list[V1Pod]) -> list[str]:
    """Every attempt's log, oldest pod first: a retry's pod may only say that an earlier one finished the run."""
    lines: list[str] = []
    for pod in pods:
        if pod.spec.node_name:
            lines.extend(read_log(cluster, pod.metadata.name))
    return lines


def _container_line(cs: Any) -> str:
    st = cs.state
    if st.running:
        return f"{cs.name}: running since {st.running.started_at:%H:%M:%S}"
    if st.terminated:
        t = st.terminated
        what = "out of memory (OOMKilled)" if t.reason == "OOMKilled" else (t.reason or "terminated")
        return f"{cs.name}: {what}, exit code {t.exit_code}" + (f" - {t.message.strip()}" if t.message else "")
    if st.waiting:
        return f"{cs.name}: waiting ({st.waiting.reason})" + (f" - {st.waiting.message}" if st.waiting.message else "")
    return f"{cs.name}: unknown"


def _node_gone(cluster: Cluster, pod: V1Pod) -> bool:
    """The pod's node no longer exists, or the pod died with it (reason NodeLost)."""
    if pod.status.reason == "NodeLost":
        return True
    if not pod.spec.node_name or pod.status.phase in ("Succeeded", "Failed"):
        return False
    try:
        call(lambda: cluster.core.read_node(pod.spec.node_name), f"read node {pod.spec.node_name}")
    except NotFoundError:
        return True
    except ClusterError:
        pass  # reading nodes may be forbidden to a namespace user; say nothing rather than guess
    return False


def _admitted(cluster: Cluster, job: V1Job) -> bool | None:
    """Kueue's Workload for the Job if Kueue runs; otherwise what ``suspend`` says."""
    try:
        workloads = CustomObjectsApi(cluster.api).list_namespaced_custom_object(
            "kueue.x-k8s.io", "v1beta1", cluster.namespace, "workloads",
            label_selector=f"kueue.x-k8s.io/job-uid={job.metadata.uid}",
        )["items"]
    except Exception:  # no Kueue CRDs, or no permission: fall back to the Job's own flag
        workloads = []
    for wl in workloads:
        conditions = {c["type"]: c["status"] for c in wl.get("status", {}).get("conditions", [])}
        return conditions.get("Admitted") == "True"
    return not job.spec.suspend


# The Job's Failed reasons that only say the pods failed on their own: the launcher's events say why.
_POD_FAILED = ("BackoffLimitExceeded", "PodFailurePolicy")


def _job_state(job: V1Job, queue: str | None) -> tuple[str, str]:
    conditions = {c.type: c for c in (job.status.conditions or []) if c.status == "True"}
    if "Complete" in conditions:
        return "Complete", "every experiment reported (the launcher exited 0)"
    if "Failed" in conditions:
        c = conditions["Failed"]
        return "Failed", f"{c.reason}: {c.message}" if c.message else str(c.reason)
    if job.spec.suspend:
        return "Queued", f"suspended until Kueue admits it in queue {queue}" if queue else "suspended"
    if job.status.active:
        return "Running", f"{job.status.active} pod(s) active"
    return "Pending", "waiting for the Job controller to create a pod"


def status(cluster: Cluster, release: str, *, log_lines: list[str] | None = None, events: int = 12) -> RunStatus:
    """Read the Job, its pods, their events and the launcher's events; ``log_lines`` (what a follower has
    read so far) saves reading the logs while the run goes on. A failed run is headlined with the
    launcher's own reason, read from every attempt's log, not with the Job's condition."""
    job = _job(cluster, release)
    meta = job.metadata
    queue = (meta.labels or {}).get(QUEUE_LABEL)
    state, reason = _job_state(job, queue)
    condition = reason if state == "Failed" else None
    pods = _pods(cluster, job)
    pod = pods[-1] if pods else None
    uids = {meta.uid, *(p.metadata.uid for p in pods)}
    containers: tuple[str, ...] = ()
    evicted_pods = [p for p in pods if p.status.reason == "Evicted"]
    lost_pods = [p for p in pods if _node_gone(cluster, p)]
    evicted, node_lost = bool(evicted_pods), bool(lost_pods)
    if log_lines is None or state in ("Complete", "Failed"):
        log_lines = _launcher_lines(cluster, pods)
    progress = progress_from_lines(log_lines)
    if pod is not None:
        st = pod.status
        containers = tuple(_container_line(c) for c in (st.init_container_statuses or []) +
                           (st.container_statuses or []))
        if state in ("Running", "Pending") and st.phase == "Pending":
            state = "Pending"  # the Job counts a pod as active before it is scheduled; the user asks what runs
            waiting = [c for c in containers if "waiting" in c]
            reason = ("pod not scheduled yet" if not pod.spec.node_name else
                      f"pod starting: {waiting[0]}" if waiting else "pod starting")
        if state == "Failed" and not evicted and not node_lost:
            failed = [c for c in containers if "exit code" in c and "exit code 0" not in c]
            own = progress.failure if reason.split(":")[0] in _POD_FAILED else None
            if own:
                reason = own + (f" (launcher exit code {progress.exit_code})" if progress.exit_code else "")
            elif failed:
                reason += f"; {failed[-1]}"
    for gone, what in ((evicted_pods, "evicted"), (lost_pods, "lost with its node")):
        if gone:
            p = gone[-1]
            detail = p.status.message or p.spec.node_name or ""
            note = f"pod {p.metadata.name} was {what}" + (f" ({detail.strip()})" if detail else "")
            if state == "Failed":
                reason = f"{note}; {reason}"
            elif state != "Complete":
                reason = f"{reason}; {note}, and the Job retries it: finished experiments are kept and skipped"
    annotations = meta.annotations or {}
    return RunStatus(
        release=release, namespace=cluster.namespace, state=state, reason=reason,
        run_id=annotations.get(RUN_ID), model=annotations.get(MODEL), queue=queue,
        admitted=_admitted(cluster, job) if queue else None,
        pod=pod.metadata.name if pod else None, pod_phase=pod.status.phase if pod else None,
        node=pod.spec.node_name if pod else None, containers=containers,
        events=tuple(events_of(cluster, uids, events)), progress=progress,
        evicted=evicted, node_lost=node_lost, job_condition=condition,
    )


def latest_release(cluster: Cluster) -> str:
    """The newest release in the namespace: what "my run" means when none is named."""
    releases = [r for r in list_releases(cluster) if any(o.startswith("Job/") for o in r.objects)]
    if not releases:
        raise NotFoundError(
            f"no benchmark release in namespace {cluster.namespace}: deploy one with deploy.ipynb first", status=404
        )
    return releases[0].name
