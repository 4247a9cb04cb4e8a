"""The benchmark container's log: read once, or followed through one streaming request that resumes
without repeating or losing a line when the connection drops."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from recipelib.cluster.client import Cluster, call
from recipelib.errors import ClusterError, NotFoundError

log = logging.getLogger(__name__)

CONTAINER = "benchmark"


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
