"""The kubelet's HTTPS port on the sandbox's node: ``/containerLogs`` for the API server, ``/sandbox/*`` controls.

The API server proxies ``read_namespaced_pod_log`` here (``status.daemonEndpoints``); the options are the
kubelet's (follow, sinceTime, sinceSeconds, tailLines, timestamps, limitBytes), read from CRI log files the
way the kubelet reads them. The ``/sandbox/*`` paths (status, controls, evict, node scenarios) need the
sandbox kubeconfig's bearer token; :class:`recipelib.sandbox.Sandbox` calls them.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlparse

from recipelib.sandbox.containers import Container
from recipelib.sandbox.formats import parse_rfc3339
from recipelib.sandbox.kubelet import EVICTION_MESSAGE

if TYPE_CHECKING:
    from recipelib.sandbox.nodeagent import NodeAgent

log = logging.getLogger(__name__)

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



def serve(agent: NodeAgent) -> ThreadingHTTPServer:
    """Serve the agent's port (0: any free port, then written back to ``agent.port``) on a daemon thread."""

    class Handler(_KubeletHandler):
        pass

    Handler.agent = agent
    server = ThreadingHTTPServer(("127.0.0.1", agent.port), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(agent.tls[0]), str(agent.tls[1]))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    agent.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, name="kubelet-https", daemon=True).start()
    return server

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
            for chunk in log_chunks(c, q):
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return  # the reader went away


def log_chunks(c: Container, q: LogQuery) -> Iterator[bytes]:
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
