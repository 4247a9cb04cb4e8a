"""Follow a build: poll its status and stream its log object until it ends, resumably.

Cloud Build writes the log to ``log-<id>.txt`` in the logs bucket as the build runs; reading it by byte
ranges from a saved offset means a notebook kernel that restarts, or a second notebook, goes on where the
first stopped without showing a line twice.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import recipelib.gcp as gcp
from recipelib.errors import CloudError, ConfigError
from recipelib.image.clients import BuildClients
from recipelib.image.outcome import BuildOutcome, BuildState, StepState
from recipelib.image.submit import CLOUDBUILD_API, STORAGE_API, SubmittedBuild

log = logging.getLogger(__name__)


class LogTail:
    """Read a growing Cloud Storage object line by line, by byte ranges, never repeating a line.

    ``offset`` is the byte just after the last complete line handed out: save it, and a new
    ``LogTail(..., offset=saved)`` goes on from there. A trailing line without its newline is held back
    until it is complete, or until ``flush`` at the end of the build.
    """

    def __init__(self, storage_client: Any, bucket: str, name: str, *, offset: int = 0) -> None:
        self.bucket, self.name = bucket, name
        self._storage = storage_client
        self.offset = offset
        self._pending = b""

    @classmethod
    def for_build(cls, storage_client: Any, logs_bucket: str, build_id: str, *, offset: int = 0) -> LogTail:
        """``logs_bucket`` as the Build says it (``gs://bucket`` or ``gs://bucket/dir``) -> ``log-<id>.txt``."""
        stripped = logs_bucket.removeprefix("gs://").rstrip("/")
        bucket, _, folder = stripped.partition("/")
        return cls(storage_client, bucket, f"{folder + '/' if folder else ''}log-{build_id}.txt", offset=offset)

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    def poll(self) -> list[str]:
        """New complete lines since the last call (empty when nothing new or no log yet)."""
        start = self.offset + len(self._pending)
        try:
            # a fresh Blob each time: one that has been read remembers that generation, and the log
            # object gets a new generation each time it grows
            blob = self._storage.bucket(self.bucket).blob(self.name)
            data = blob.download_as_bytes(start=start, checksum=None)
        except gcp.api_errors() as e:
            if gcp.status_of(e) in (404, 416):  # no log yet, or nothing new since the offset
                return []
            raise gcp.translate(
                e, f"reading the build log {self.uri}",
                role="roles/viewer (for Cloud Build's default logs bucket) or roles/storage.objectViewer",
                on=f"the project or bucket gs://{self.bucket}", api=STORAGE_API) from None
        buf = self._pending + data
        *complete, self._pending = buf.split(b"\n")
        lines = [c.decode("utf-8", errors="replace").rstrip("\r") for c in complete]
        self.offset += sum(len(c) + 1 for c in complete)
        return lines

    def flush(self) -> list[str]:
        """The held-back last line, if the log did not end with a newline (call once the build ended)."""
        lines = self.poll()
        if self._pending:
            lines.append(self._pending.decode("utf-8", errors="replace").rstrip("\r"))
            self.offset += len(self._pending)
            self._pending = b""
        return lines


def _seconds(timing: Any) -> float | None:
    start, end = getattr(timing, "start_time", None), getattr(timing, "end_time", None)
    if not start:
        return None
    end = end or datetime.now(timezone.utc)
    return max(0.0, (end - start).total_seconds())


def state_from(build: Any) -> BuildState:
    """A ``cloudbuild_v1.Build`` as a BuildState; running steps and builds get their time so far."""
    steps = tuple(
        StepState(i, s.id, s.name, s.status.name, _seconds(s.timing)) for i, s in enumerate(build.steps)
    )
    seconds = None
    if build.start_time:
        end = build.finish_time or datetime.now(timezone.utc)
        seconds = max(0.0, (end - build.start_time).total_seconds())
    return BuildState(
        build_id=build.id,
        status=build.status.name,
        steps=steps,
        status_detail=build.status_detail,
        failure=build.failure_info.detail if build.failure_info else "",
        logs_bucket=build.logs_bucket,
        log_url=build.log_url,
        images=tuple((i.name, i.digest) for i in build.results.images),
        seconds=seconds,
    )


def get_build_state(cloudbuild: Any, name: str) -> BuildState:
    """One ``builds.get`` as a BuildState; a refusal as a recipelib error (:func:`recipelib.gcp.translate`)."""
    try:
        build = cloudbuild.get_build(request={"name": name})
    except gcp.api_errors() as e:
        project = name.split("/")[1] if name.count("/") >= 1 else name
        raise gcp.translate(
            e, f"reading build {name}", role="roles/cloudbuild.builds.viewer (or roles/cloudbuild.builds.editor)",
            on=f"project {project}", api=CLOUDBUILD_API, not_found="check the build id and REGION") from None
    return state_from(build)


def follow_build(
    build: SubmittedBuild | str,
    clients: BuildClients | None = None,
    *,
    image: str | None = None,
    on_line: Callable[[str], None] | None = None,
    on_status: Callable[[BuildState], None] | None = None,
    poll_s: float = 5.0,
    timeout_s: float | None = None,
    log_offset: int = 0,
    keep_lines: int = 30,
    sleep: Callable[[float], None] = time.sleep,
) -> BuildOutcome:
    """Poll until the build ends (or ``timeout_s`` passes); stream its log to ``on_line`` as it grows.

    ``build`` is what ``submit_image_build`` returned, or a build's full name
    ``projects/P/locations/R/builds/ID``. ``log_offset`` resumes a log read earlier
    (``outcome.log_offset``): no line is shown twice. ``on_status`` gets each change of the status or of a
    step's status. The log is read from the logs bucket Cloud Build reports; when that read is refused,
    following goes on with the status alone and says so once.
    """
    if isinstance(build, SubmittedBuild):
        if build.skipped or not build.name:
            raise ConfigError("build", f"nothing to follow: {build.image} already existed and no build was created")
        name, image = build.name, image or build.image
    else:
        name = build
        if not re.fullmatch(r"projects/[^/]+/locations/[^/]+/builds/[^/]+", name):
            raise ConfigError("build", f"{name!r} is not a build name such as projects/P/locations/R/builds/ID")
    if clients is None:
        clients = BuildClients.create(name.split("/")[1])
    build_id = name.rsplit("/", 1)[-1]
    emit_line = on_line or (lambda line: log.info("%s", line))
    last: deque[str] = deque(maxlen=keep_lines)
    tail: LogTail | None = None
    log_refused = False
    lines_seen = 0
    previous: tuple[str, tuple[str, ...]] | None = None
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    state = get_build_state(clients.cloudbuild, name)

    def read_log(final: bool) -> None:
        nonlocal tail, log_refused, lines_seen
        if log_refused:
            return
        if tail is None:
            if not state.logs_bucket:
                return
            tail = LogTail.for_build(clients.storage, state.logs_bucket, build_id, offset=log_offset)
        try:
            lines = tail.flush() if final else tail.poll()
        except CloudError as e:
            log_refused = True
            emit_line(f"(log not readable, following the status only: {e})")
            return
        for line in lines:
            last.append(line)
            lines_seen += 1
            emit_line(line)

    while True:
        signature = (state.status, tuple(s.status for s in state.steps))
        if signature != previous:
            previous = signature
            if on_status:
                on_status(state)
            else:
                log.info("build %s: %s", build_id, state.describe())
        read_log(final=state.done)
        if state.done:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        sleep(poll_s)
        state = get_build_state(clients.cloudbuild, name)

    digest = None
    for img_name, img_digest in state.images:
        if image and img_name == image:
            digest = img_digest or None
    return BuildOutcome(
        build_id=build_id,
        image=image or (state.images[0][0] if state.images else ""),
        status=state.status,
        done=state.done,
        state=state,
        digest=digest,
        last_lines=tuple(last),
        log_offset=tail.offset if tail else log_offset,
        lines_seen=lines_seen,
    )
