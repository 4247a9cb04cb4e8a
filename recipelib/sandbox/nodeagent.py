"""The local sandbox's node agent: one A3 Ultra-shaped GKE node, with the scheduler and the kubelet it needs.

The sandbox's control plane (:mod:`recipelib.sandbox.kube`) has no scheduler and no kubelet, so without
this agent every pod stays Pending. The agent plays both, against the real API server, as closely as
the notebooks and the monitor can tell. It is put together from one module per role:

- :mod:`recipelib.sandbox.node`: registers a Node labelled, tainted and sized like GKE's ``a3-ultragpu-8g``
  (8 ``nvidia.com/gpu``), keeps it Ready (a Lease every few seconds, node status less often), and plays
  the node scenarios (NotReady, removed, restored);
- :mod:`recipelib.sandbox.scheduler`: binds a pending pod when the node fits it (nodeSelector/affinity,
  taints, resource requests against what running pods hold), else sets ``PodScheduled=False/Unschedulable``
  and a ``FailedScheduling`` event worded as the real scheduler words them;
- :mod:`recipelib.sandbox.kubelet` and :mod:`recipelib.sandbox.containers`: materialise the pod's volumes,
  run the init containers then the containers as local processes (a benchmark container runs the real
  launcher with ``trtllm-bench`` replaced by the replay of a recorded run), reflect every state in the
  pod's status, emit the kubelet's events, evict, and delete a terminating pod once its containers stopped;
- :mod:`recipelib.sandbox.logserver`: the kubelet's HTTPS port (``/containerLogs``, which the API server
  proxies for ``read_namespaced_pod_log``, and the ``/sandbox/*`` controls).

Controls for tests and scenarios (:class:`Controls`, reachable over the HTTPS port with the kubeconfig's
bearer token, see :mod:`recipelib.sandbox`): replay speed (live), a failing build or benchmark, evicting a
pod, a node that goes NotReady or away.

Run it as ``python -m recipelib.sandbox.nodeagent --kubeconfig K --root DIR --tls-cert C --tls-key K``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
import threading
import time
from dataclasses import asdict
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes

from recipelib.sandbox.containers import Container, RuntimeMixin
from recipelib.sandbox.formats import parse_rfc3339, quantity, rfc3339_nano
from recipelib.sandbox.kubelet import EVICTION_MESSAGE, KubeletMixin, PodRun
from recipelib.sandbox.logserver import LogQuery, LogRecord, log_chunks, read_records, serve
from recipelib.sandbox.node import LEASE_NAMESPACE, Controls, NodeMixin, NodeShape
from recipelib.sandbox.scheduler import SchedulerMixin, pod_requests, unfit_reasons, unschedulable_message

__all__ = [
    "EVICTION_MESSAGE",
    "LEASE_NAMESPACE",
    "READY_EXCLUDES",
    "Container",
    "Controls",
    "LogQuery",
    "LogRecord",
    "NodeAgent",
    "NodeShape",
    "PodRun",
    "_log_chunks",
    "log_chunks",
    "main",
    "parse_rfc3339",
    "pod_requests",
    "quantity",
    "read_records",
    "rfc3339_nano",
    "unfit_reasons",
    "unschedulable_message",
]

log = logging.getLogger(__name__)

# Every sandbox client is in system:masters (allowed before RBAC is consulted): the default roles and
# priority classes may still be being written when the API server is ready for the sandbox.
READY_EXCLUDES = ("poststarthook/rbac/bootstrap-roles", "poststarthook/scheduling/bootstrap-system-priority-classes")
_log_chunks = log_chunks  # its name before the split


class NodeAgent(NodeMixin, SchedulerMixin, KubeletMixin, RuntimeMixin):
    """The node, its scheduler and its kubelet; ``start()`` registers the node and returns."""

    def __init__(self, api: kubernetes.client.ApiClient, root: Path, *, tls_cert: Path, tls_key: Path,
                 token: str, port: int = 0, gcs_endpoint: str = "", shape: NodeShape | None = None,
                 controls: Controls | None = None, python: str = sys.executable) -> None:
        self.api = api
        self.core = kubernetes.client.CoreV1Api(api)
        self.leases = kubernetes.client.CoordinationV1Api(api)
        self.node_root = root
        self.shape = shape or NodeShape()
        self.controls = controls or Controls()
        self.gcs_endpoint = gcs_endpoint
        self.python = python
        self.token = token
        self.tls = (tls_cert, tls_key)
        self.port = port
        self.pid_dir = root / "run"
        self.bin = root / "bin"
        self.pods: dict[str, Any] = {}  # uid -> V1Pod, as the watch last saw it
        self.runs: dict[str, PodRun] = {}  # uid -> the pod's run on this node
        self.assumed: dict[str, dict[str, float]] = {}  # bound by us, not yet seen bound by the watch
        self.scheduling_notes: dict[str, str] = {}  # uid -> last FailedScheduling message
        self.images: set[str] = set()
        self.finalising: set[str] = set()  # uids whose deletion this node is confirming
        self.node_state = "absent"  # absent | ready | not-ready | removed
        self.node_uid = ""
        self._since: dict[str, tuple[str, str]] = {}  # condition type -> (status, since when)
        self._ips = 1
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- start and stop

    def start(self) -> NodeAgent:
        for d in (self.pid_dir, self.bin, self.node_root / "pods", self.node_root / "hub"):
            d.mkdir(parents=True, exist_ok=True)
        self._write_tools()
        self._server = serve(self)
        self.register()
        for target in (self._heartbeat, self._watch_pods, self._schedule_loop):
            t = threading.Thread(target=target, name=target.__name__, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("node %s registered; kubelet port %d", self.shape.name, self.port)
        return self

    def stop(self) -> None:
        """Stop every container (their processes must not outlive the node), the server, the threads."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            runs = list(self.runs.values())
        for run in runs:
            run.abandon()
        for run in runs:
            run.join(5)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def set_controls(self, values: dict[str, Any]) -> Controls:
        self.controls.update(values)
        (self.node_root / "replay-speed").write_text(f"{self.controls.replay_speed:g}\n")
        return self.controls

    def status(self) -> dict[str, Any]:
        with self._lock:
            pods = [{"namespace": r.ns, "name": r.name, "phase": r.phase, "stopping": r.stopping}
                    for r in self.runs.values()]
        return {"node": self.shape.name, "state": self.node_state, "port": self.port, "pods": pods,
                "controls": asdict(self.controls)}



# --- the command line: what the sandbox starts ------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recipelib.sandbox.nodeagent", description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--context", default=None)
    p.add_argument("--root", required=True, help="the node's folder: pods, logs, the local SSD, the tools")
    p.add_argument("--tls-cert", required=True)
    p.add_argument("--tls-key", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--gcs-endpoint", default="")
    p.add_argument("--replay-speed", type=float, default=Controls.replay_speed)
    p.add_argument("--node-name", default=NodeShape.name)
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the API server")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(threadName)s %(levelname)s %(message)s")
    for noisy in ("kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log.info("connecting to the API server in %s", args.kubeconfig)
    api, token = _connect(Path(args.kubeconfig), args.context, args.wait)
    log.info("connected")
    agent = NodeAgent(api, Path(args.root), tls_cert=Path(args.tls_cert), tls_key=Path(args.tls_key), token=token,
                      port=args.port, gcs_endpoint=args.gcs_endpoint, shape=NodeShape(name=args.node_name),
                      controls=Controls(replay_speed=args.replay_speed))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    agent.start()
    stopped.wait()
    log.info("stopping: containers are killed with the node")
    agent.stop()
    return 0


def _connect(kubeconfig: Path, context: str | None, wait: float) -> tuple[kubernetes.client.ApiClient, str]:
    """An API client once the kubeconfig exists and the server answers (the sandbox starts us first)."""
    import urllib.request

    deadline = time.monotonic() + wait
    while True:
        try:
            config = kubernetes.client.Configuration()
            kubernetes.config.load_kube_config(str(kubeconfig), context=context, client_configuration=config)
            token = str(next(iter(config.api_key.values()), "")).removeprefix("Bearer ").strip()
            # /readyz with a short timeout and no retries: while the server starts, requests can hang for seconds
            query = "&".join(f"exclude={name}" for name in READY_EXCLUDES)
            request = urllib.request.Request(f"{config.host}/readyz?{query}",
                                             headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=config.ssl_ca_cert),
                                        timeout=1) as resp:
                resp.read()
            config.connection_pool_maxsize = 32
            api = kubernetes.client.ApiClient(config)
            kubernetes.client.CoreV1Api(api).read_namespace("default")
            return api, token
        except Exception as e:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API server in {kubeconfig} did not answer within {wait:.0f}s: {e}") from e
            time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
