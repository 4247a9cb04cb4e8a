"""Waiting for a run to end while its log streams in, and the experiments already kept in the bucket."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from queue import Empty, Queue
from typing import Any

import recipelib.results.layout as layout
from recipelib.cluster.client import Cluster
from recipelib.errors import ClusterError
from recipelib.monitor.logs import follow_logs
from recipelib.monitor.state import RunStatus, status

log = logging.getLogger(__name__)


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


def kept_results(storage_client: Any, bucket: str, prefix: str, release: str, run_id: str) -> list[str]:
    """Experiments of this run whose results are in the bucket (their metadata file is written last)."""
    base = f"{prefix.strip('/')}/{layout.run_prefix(release, run_id)}/"
    try:
        blobs = storage_client.list_blobs(bucket, prefix=base)
        return sorted(b.name[len(base):].split("/")[0] for b in blobs
                      if b.name.endswith(f"/{layout.METADATA_FILE}"))
    except Exception as e:  # the monitor must still report the run if the bucket can't be read
        log.warning("could not list results in gs://%s/%s: %s", bucket, base, e)
        return []
