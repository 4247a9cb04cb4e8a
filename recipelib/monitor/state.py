"""What is my run doing right now? The Job, Kueue admission, the pod, events, and the launcher's phase.

``status`` reads everything once; ``follow_logs`` streams the benchmark's log through one follow
request and, when the connection drops, resumes from the last line's timestamp without repeating a
line; ``wait`` follows until the Job completes or fails and says why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from queue import Empty, Queue
from typing import Any

from kubernetes.client import CustomObjectsApi, V1Job, V1Pod

from recipelib.cluster.client import Cluster, call
from recipelib.cluster.releases import INSTANCE, MODEL, RUN_ID, list_releases
from recipelib.errors import ClusterError, NotFoundError
from recipelib.monitor.progress import Progress, progress_from_lines

log = logging.getLogger(__name__)

CONTAINER = "benchmark"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


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
        out.append(f"  Launcher: {self.progress.describe()}")
        out.extend(f"  {e}" for e in self.events)
        return out


# --- events: one line each, in words a user can act on ---------------------------------------------

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


def _events(cluster: Cluster, names: set[str], limit: int) -> list[EventLine]:
    items = call(lambda: cluster.core.list_namespaced_event(cluster.namespace), "list events").items
    mine = [explain_event(e) for e in items if e.involved_object.name in names]
    return sorted(mine, key=lambda e: e.time.timestamp() if e.time else 0)[-limit:]


# --- objects ---------------------------------------------------------------------------------------


def _job(cluster: Cluster, release: str) -> V1Job:
    return call(lambda: cluster.batch.read_namespaced_job(release, cluster.namespace), f"read Job {release}")


def _pods(cluster: Cluster, release: str) -> list[V1Pod]:
    pods = call(
        lambda: cluster.core.list_namespaced_pod(cluster.namespace, label_selector=f"{INSTANCE}={release}"),
        f"list pods of {release}",
    ).items
    return sorted(pods, key=lambda p: p.metadata.creation_timestamp)


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
    """Read the Job, its newest pod, their events and (unless given) the launcher's events from the log."""
    job = _job(cluster, release)
    meta = job.metadata
    queue = (meta.labels or {}).get(QUEUE_LABEL)
    state, reason = _job_state(job, queue)
    pods = _pods(cluster, release)
    pod = pods[-1] if pods else None
    names = {release, *(p.metadata.name for p in pods)}
    containers: tuple[str, ...] = ()
    evicted_pods = [p for p in pods if p.status.reason == "Evicted"]
    lost_pods = [p for p in pods if _node_gone(cluster, p)]
    evicted, node_lost = bool(evicted_pods), bool(lost_pods)
    if pod is not None:
        st = pod.status
        containers = tuple(_container_line(c) for c in (st.init_container_statuses or []) +
                           (st.container_statuses or []))
        if state in ("Running", "Pending") and st.phase == "Pending":
            waiting = [c for c in containers if "waiting" in c]
            reason = ("pod not scheduled yet" if not pod.spec.node_name else
                      f"pod starting: {waiting[0]}" if waiting else "pod starting")
        if state == "Failed" and not evicted and not node_lost:
            failed = [c for c in containers if "exit code" in c and "exit code 0" not in c]
            if failed:
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
    if log_lines is None and pod is not None and pod.spec.node_name:
        log_lines = read_log(cluster, pod.metadata.name)
    annotations = meta.annotations or {}
    return RunStatus(
        release=release, namespace=cluster.namespace, state=state, reason=reason,
        run_id=annotations.get(RUN_ID), model=annotations.get(MODEL), queue=queue,
        admitted=_admitted(cluster, job) if queue else None,
        pod=pod.metadata.name if pod else None, pod_phase=pod.status.phase if pod else None,
        node=pod.spec.node_name if pod else None, containers=containers,
        events=tuple(_events(cluster, names, events)), progress=progress_from_lines(log_lines or []),
        evicted=evicted, node_lost=node_lost,
    )


def latest_release(cluster: Cluster) -> str:
    """The newest release in the namespace: what "my run" means when none is named."""
    releases = [r for r in list_releases(cluster) if any(o.startswith("Job/") for o in r.objects)]
    if not releases:
        raise NotFoundError(
            f"no benchmark release in namespace {cluster.namespace}: deploy one with deploy.ipynb first", status=404
        )
    return releases[0].name


# --- logs ------------------------------------------------------------------------------------------


def read_log(cluster: Cluster, pod: str, container: str = CONTAINER, tail: int | None = None) -> list[str]:
    """The container's log so far (empty while it has not started)."""
    try:
        text = call(
            lambda: cluster.core.read_namespaced_pod_log(pod, cluster.namespace, container=container,
                                                         tail_lines=tail),
            f"read the log of {pod}",
        )
    except ClusterError as e:
        if e.status in (400, 404):  # container not started yet, or pod gone
            return []
        raise
    return text.splitlines()


def _split_timestamp(line: str) -> tuple[tuple[str, int], str]:
    """``2026-11-27T03:10:00.1234Z text`` -> ((``2026-11-27T03:10:00``, 123400000), ``text``): comparable keys,
    since the kubelet trims trailing zeros from the nanoseconds (RFC 3339 nano)."""
    ts, _, rest = line.partition(" ")
    seconds, _, fraction = ts.rstrip("Z").partition(".")
    nanos = int(fraction.ljust(9, "0")[:9]) if fraction.isdigit() else 0
    return (seconds, nanos), rest


def _since_seconds(key: tuple[str, int], margin_s: int = 5) -> int:
    """How far back to ask on a resume: the last line's age plus a margin for clock skew; the timestamp
    filter drops what was already yielded, so asking a little too far back never repeats a line."""
    try:
        then = datetime.fromisoformat(key[0]).replace(tzinfo=timezone.utc)
    except ValueError:
        return 3600
    return max(int((datetime.now(timezone.utc) - then).total_seconds()) + margin_s, 1)


def follow_logs(
    cluster: Cluster,
    pod: str,
    container: str = CONTAINER,
    *,
    retries: int = 20,
    retry_delay_s: float = 1.0,
    stream: Callable[..., Any] | None = None,
) -> Iterator[str]:
    """Every log line once, as it comes, until the container ends.

    One streaming request (``follow=true``) at a time. Lines are asked for with their timestamps; after
    a dropped connection the next request asks only for the last few seconds (``sinceSeconds``: the
    Python client has no ``sinceTime``) and drops every line at or before the last one yielded (several
    lines sharing that timestamp are counted), so no line is ever repeated or lost.
    ``stream`` is the request function (``read_namespaced_pod_log``), replaceable in tests.
    """
    read = stream or cluster.core.read_namespaced_pod_log
    last_ts: tuple[str, int] | None = None
    seen_at_last: int = 0
    failures = 0
    while True:
        kwargs: dict[str, Any] = {"container": container, "follow": True, "timestamps": True,
                                  "_preload_content": False}
        if last_ts:
            kwargs["since_seconds"] = _since_seconds(last_ts)
        try:
            response = read(pod, cluster.namespace, **kwargs)
        except Exception as e:  # ApiException while the container starts, or a refused connection
            failures += 1
            if failures > retries:
                raise ClusterError(f"could not follow the log of {pod}: {e}") from None
            time.sleep(retry_delay_s)
            continue
        skip = seen_at_last
        ended_cleanly = False
        try:
            buffer = b""
            for chunk in _chunks(response):
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    ts, text = _split_timestamp(raw.decode("utf-8", "replace"))
                    if last_ts is not None and ts < last_ts:
                        continue  # yielded before the connection dropped
                    if ts == last_ts and skip > 0:
                        skip -= 1
                        continue
                    if ts != last_ts:
                        last_ts, seen_at_last = ts, 0
                    seen_at_last += 1
                    failures = 0
                    yield text
            ended_cleanly = True
        except Exception as e:  # a dropped connection mid-stream: resume
            log.info("log stream of %s dropped (%s); resuming from %s", pod, type(e).__name__, last_ts)
            failures += 1
            if failures > retries:
                raise ClusterError(f"the log stream of {pod} kept dropping: {e}") from None
            time.sleep(retry_delay_s)
        finally:
            response.release_conn()
        if ended_cleanly:
            # The stream ends when the container does; its status says so a moment later. Only a
            # container still running after that grace was cut off by the server (a timeout): go on.
            for _ in range(10):
                if _container_finished(cluster, pod, container):
                    return
                time.sleep(0.3)


def _chunks(response: Any) -> Iterator[bytes]:
    """Bytes as they arrive: ``read1`` returns what the socket has, where ``stream(n)`` would wait for n
    bytes and hold a slow run's lines back for minutes."""
    read1 = getattr(response, "read1", None)
    if read1 is None:
        yield from response.stream(4096, decode_content=True)
        return
    while chunk := read1(4096):
        yield chunk


def _container_finished(cluster: Cluster, pod: str, container: str) -> bool:
    try:
        p = call(lambda: cluster.core.read_namespaced_pod(pod, cluster.namespace), f"read pod {pod}")
    except NotFoundError:
        return True
    if p.status.phase in ("Succeeded", "Failed"):
        return True
    return any(cs.name == container and cs.state.terminated for cs in p.status.container_statuses or [])


# --- wait ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: RunStatus
    last_lines: tuple[str, ...]

    @property
    def succeeded(self) -> bool:
        return self.status.state == "Complete"


def wait(
    cluster: Cluster,
    release: str,
    *,
    timeout_s: float = 3600,
    poll_s: float = 2.0,
    on_line: Callable[[str], None] | None = None,
    on_status: Callable[[RunStatus], None] | None = None,
    keep_lines: int = 30,
) -> Outcome:
    """Follow the run until its Job completes or fails (or ``timeout_s``); the outcome says why.

    A background thread follows each pod's log (one streaming request per pod); this thread hands the
    lines to ``on_line`` as they come and re-reads the status every ``poll_s`` whether lines come or
    not (a 405B build prints nothing for half an hour), calling ``on_status`` when it changes.
    """
    deadline = time.monotonic() + timeout_s
    lines: list[str] = []
    followed: set[str] = set()
    queue: Queue[str] = Queue()
    followers: list[threading.Thread] = []
    failures: list[BaseException] = []
    last_seen: tuple[Any, ...] | None = None

    def follow(pod: str) -> None:
        try:
            for line in follow_logs(cluster, pod):
                queue.put(line)
        except BaseException as e:  # handed to the waiting thread, which raises it
            failures.append(e)

    def drain(seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                line = queue.get(timeout=left)
            except Empty:
                return
            lines.append(line)
            if on_line is not None:
                on_line(line)

    while True:
        st = status(cluster, release, log_lines=lines if followed else None)
        key = (st.state, st.reason, st.pod_phase, st.containers, st.progress.phase, st.progress.state,
               st.progress.experiment, st.progress.done)
        if key != last_seen and on_status is not None:
            on_status(st)
        last_seen = key
        if failures:
            raise failures[0]
        if st.finished and not any(t.is_alive() for t in followers) and queue.empty():
            return Outcome(st, tuple(lines[-keep_lines:]))
        if time.monotonic() > deadline:
            raise ClusterError(f"{release} still {st.state} after {timeout_s:.0f}s ({st.reason})")
        if st.pod and st.node and st.pod not in followed and st.pod_phase in ("Running", "Succeeded", "Failed"):
            followed.add(st.pod)
            thread = threading.Thread(target=follow, args=(st.pod,), name=f"follow-{st.pod}", daemon=True)
            followers.append(thread)
            thread.start()
        drain(poll_s)


# --- results already in the bucket -----------------------------------------------------------------


def kept_results(storage_client: Any, bucket: str, prefix: str, release: str, run_id: str) -> list[str]:
    """Experiments of this run whose results are in the bucket (their ``metadata.json`` is written last)."""
    base = f"{prefix.strip('/')}/{release}/{run_id}/"
    try:
        blobs = storage_client.list_blobs(bucket, prefix=base)
        return sorted(b.name[len(base):].split("/")[0] for b in blobs if b.name.endswith("/metadata.json"))
    except Exception as e:  # the monitor must still report the run if the bucket can't be read
        log.warning("could not list results in gs://%s/%s: %s", bucket, base, e)
        return []
