"""The local sandbox: a cluster, a node and a bucket on loopback, so every notebook runs on a laptop.

``Sandbox.start()`` starts (or finds running) a real kube-apiserver + etcd + kube-controller-manager
(:mod:`recipelib.sandbox.kube`, built once and cached), a Cloud Storage server (fake-gcs-server), and a
node agent (:mod:`recipelib.sandbox.nodeagent`) that registers one A3 Ultra-shaped node and plays its kubelet.
It creates the results bucket and the Cloud Storage FUSE CSIDriver (as GKE's add-on does), and writes a
kubeconfig and a settings file (``<root>/settings.yaml``) that :func:`recipelib.settings.load_settings`
falls back to when no cluster is configured. A benchmark deployed there replays a recorded real run,
and everything it produces says so.

The servers run detached: the sandbox outlives the process that started it (the CLI, a notebook) until
``stop()``. State lives in ``$RECIPELIB_SANDBOX`` or ``~/.cache/recipelib/sandbox``; a restart wipes the
cluster and the node (a fresh cluster), and keeps the bucket's contents, the certificates and the ports.

Example::

    sandbox = Sandbox().start()            # ~5 s once built; reuses a running one
    settings = sandbox.settings()          # what the notebooks get
    sandbox.set_controls(replay_speed=60)  # scenarios: slow replay, fail=..., evict(), remove_node()
    sandbox.stop()

CLI: ``python -m recipelib.sandbox start|stop|status``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from recipelib.errors import RecipelibError, SandboxError
from recipelib.paths import ROOT
from recipelib.sandbox.gcs import LocalGCS, free_port
from recipelib.sandbox.kube import LocalKube, ensure_binaries
from recipelib.sandbox.nodeagent import EVICTION_MESSAGE, READY_EXCLUDES, Controls, NodeShape
from recipelib.settings import (
    SANDBOX_CONTEXT,
    Settings,
    load_settings,
    running_sandbox_settings,
    sandbox_root,
    save_settings,
)

log = logging.getLogger(__name__)

BUCKET = "sandbox-results"
PROJECT = "sandbox-project"
REGISTRY = f"us-central1-docker.pkg.dev/{PROJECT}/sandbox"
GCSFUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
# TaintNodesByCondition taints every new node not-ready until the node lifecycle controller, a second or
# two after it starts, sees it Ready; the agent registers its node Ready from the first look.
DISABLED_ADMISSION = ("ServiceAccount", "TaintNodesByCondition")
_ORDER = ("nodeagent", "kube-controller-manager", "kube-apiserver", "etcd", "fake-gcs-server")


@dataclass(frozen=True)
class SandboxStatus:
    """What ``status`` shows: whether it runs, where its servers are, and its node's state."""

    root: Path
    running: bool
    api: str | None = None
    gcs: str | None = None
    node: str | None = None
    node_state: str | None = None
    pods: tuple[str, ...] = ()
    settings: Path | None = None
    started: str | None = None
    ready_seconds: float | None = None

    def lines(self) -> list[str]:
        if not self.running:
            return [f"Sandbox in {self.root}: not running (start it: python -m recipelib.sandbox start)"]
        return [
            f"Sandbox in {self.root}: running since {self.started} (ready in {self.ready_seconds or 0:.1f} s)",
            f"  kube-apiserver  {self.api} (context {SANDBOX_CONTEXT})",
            f"  Cloud Storage   {self.gcs} (bucket {BUCKET})",
            f"  node            {self.node}: {self.node_state}"
            + (f"; pods: {', '.join(self.pods)}" if self.pods else ""),
            f"  settings        {self.settings}",
            "  Benchmarks here replay a recorded real run (Llama 3.1 405B, 8 x H200): labelled replay, never measured.",
        ]


def _alive(pid: int) -> bool:
    """Running (a zombie is not: it waits only for its parent to read its exit status)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Sandbox:
    """The sandbox in ``root``; ``start()`` is idempotent, ``stop()`` ends every process it started."""

    root: Path = field(default_factory=sandbox_root)
    replay_speed: float = Controls.replay_speed
    build: bool = True
    _handles: list[Any] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser().resolve()

    # -- where things are

    @property
    def kube_dir(self) -> Path:
        return self.root / "kube"

    @property
    def kubeconfig(self) -> Path:
        return self.kube_dir / "kubeconfig"

    @property
    def settings_file(self) -> Path:
        return self.root / "settings.yaml"

    @property
    def node_dir(self) -> Path:
        return self.root / "node"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    # -- start, stop, status

    def is_running(self) -> bool:
        """Every process alive and the API server answering."""
        if running_sandbox_settings(self.root) is None:
            return False
        state = self.state()
        query = "&".join(f"exclude={name}" for name in READY_EXCLUDES)
        try:
            self._request("GET", f"{state['api']}/readyz?{query}", timeout=2)
            return True
        except (SandboxError, KeyError):
            return False

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One start or stop at a time per folder (two notebooks starting the sandbox at once, say)."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def start(self, timeout: float = 60.0) -> Sandbox:
        """Start the sandbox, or reuse the one running in ``root``; returns when its node is Ready."""
        with self._exclusive():
            if self.is_running():
                log.info("reusing the sandbox running in %s", self.root)
                return self
            try:
                return self._start(timeout)
            except SandboxError as e:  # a port taken meanwhile, a machine too busy: once more, on new ports
                log.warning("%s; trying once more", e)
                (self.root / "ports.json").unlink(missing_ok=True)
                return self._start(timeout)

    def _start(self, timeout: float) -> Sandbox:
        began = time.monotonic()
        previous = self._saved_ports()  # the same ports again: saved settings stay valid
        self._stop()  # whatever a crash left behind, so the restart is clean
        ensure_binaries(build=self.build)
        ports = {name: port if isinstance(port, int) and _port_free(port) else free_port()
                 for name, port in ((n, previous.get(n)) for n in ("kube", "gcs", "node"))}
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in (self.kube_dir / "etcd", self.node_dir, self.kubeconfig):
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink(missing_ok=True)
        (self.root / "ports.json").write_text(json.dumps(ports))
        pids: dict[str, int] = {}
        try:
            gcs = LocalGCS(self.root / "gcs", port=ports["gcs"]).start()
            self._handles.append(gcs)
            pids["fake-gcs-server"] = gcs._process.pid  # type: ignore[union-attr]
            agent = self._start_agent(ports["node"], gcs.url)
            pids["nodeagent"] = agent.pid
            kube = LocalKube(self.kube_dir, port=ports["kube"], context_name=SANDBOX_CONTEXT, detach=True,
                             ready_excludes=READY_EXCLUDES, disabled_admission=DISABLED_ADMISSION)
            self._handles.append(kube)
            log.debug("%.2f s: GCS up, node agent starting", time.monotonic() - began)
            kube.start(timeout)
            pids.update(kube.pids)
            log.debug("%.2f s: API server ready", time.monotonic() - began)
            self._write_state(pids, ports, kube.url, gcs.url, None)
            self._prepare(gcs)
            log.debug("%.2f s: bucket, CSI driver, settings", time.monotonic() - began)
            self._wait_node_ready(deadline=began + timeout)
        except BaseException as e:
            self._write_state(pids, ports, "", "", None)
            self._stop()
            if isinstance(e, RecipelibError | subprocess.CalledProcessError | OSError):
                raise SandboxError(f"the sandbox did not start: {e}; logs in {self.root}") from e
            raise
        ready = round(time.monotonic() - began, 2)
        self._write_state(pids, ports, kube.url, gcs.url, ready)
        log.info("sandbox ready in %.1f s: API %s, GCS %s", ready, kube.url, gcs.url)
        return self

    def _saved_ports(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.root / "ports.json").read_text()))
        except (OSError, ValueError, TypeError):
            return {}

    def _start_agent(self, port: int, gcs_url: str) -> subprocess.Popen[bytes]:
        # rfc3987_syntax (an optional jsonschema format checker, pulled in by `import kubernetes`) compiles a
        # grammar for 2.5 s at import; the agent never checks IRIs, and starts in a third of the time without it
        boot = ("import sys; sys.modules['rfc3987_syntax'] = None; "
                "from recipelib.sandbox.nodeagent import main; sys.exit(main())")
        argv = [sys.executable, "-c", boot, "--kubeconfig", str(self.kubeconfig),
                "--context", SANDBOX_CONTEXT, "--root", str(self.node_dir),
                "--tls-cert", str(self.kube_dir / "server.crt"), "--tls-key", str(self.kube_dir / "server.key"),
                "--port", str(port), "--gcs-endpoint", gcs_url, "--replay-speed", f"{self.replay_speed:g}"]
        self.node_dir.mkdir(parents=True, exist_ok=True)
        logfile = open(self.root / "nodeagent.log", "ab")  # noqa: SIM115 - handed to the child
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT, cwd=self.root, env=env,
                                start_new_session=True)
        logfile.close()
        self._handles.append(proc)
        return proc

    def _prepare(self, gcs: LocalGCS) -> None:
        """What GKE and the recipe's prerequisites provide: the bucket, the GCS FUSE CSI driver; the settings."""
        from google.api_core.exceptions import Conflict
        from kubernetes.client import StorageV1Api
        from kubernetes.client.exceptions import ApiException

        with contextlib.suppress(Conflict):
            gcs.client(project=PROJECT).create_bucket(BUCKET)
        driver = {"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {
            "name": GCSFUSE_DRIVER, "labels": {"addonmanager.kubernetes.io/mode": "Reconcile"}},
            "spec": {"attachRequired": False, "podInfoOnMount": True,
                     "volumeLifecycleModes": ["Persistent", "Ephemeral"]}}
        try:
            StorageV1Api(self.cluster().api).create_csi_driver(driver)
        except ApiException as e:
            if e.status != 409:
                raise
        save_settings(Settings(
            project_id=PROJECT, region="us-central1", gcs_bucket=BUCKET, artifact_registry=REGISTRY,
            namespace="default", kubeconfig=str(self.kubeconfig), kube_context=SANDBOX_CONTEXT, gcs_endpoint=gcs.url,
        ), self.settings_file)

    def _wait_node_ready(self, deadline: float) -> None:
        from kubernetes.client.exceptions import ApiException

        core = self.cluster().core
        while time.monotonic() < deadline:
            agent = next((h for h in self._handles if isinstance(h, subprocess.Popen)), None)
            if agent is not None and agent.poll() is not None:
                raise SandboxError(f"the node agent exited with {agent.returncode}; see {self.root / 'nodeagent.log'}")
            try:  # Ready, and schedulable (no not-ready taint: see DISABLED_ADMISSION)
                node = core.read_node(NodeShape.name)
                if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []) and not any(
                        t.key == "node.kubernetes.io/not-ready" for t in node.spec.taints or []):
                    return
            except ApiException:
                pass
            time.sleep(0.1)
        raise SandboxError(f"the node was not Ready in time; see {self.root / 'nodeagent.log'}")

    def _write_state(self, pids: dict[str, int], ports: dict[str, int], api: str, gcs: str,
                     ready: float | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        state = {"pids": pids, "ports": ports, "api": api, "gcs": gcs, "settings": str(self.settings_file),
                 "kubeconfig": str(self.kubeconfig), "node": NodeShape.name, "ready_seconds": ready,
                 "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def stop(self) -> bool:
        """Stop every process of this sandbox (only those whose command line names its folder)."""
        with self._exclusive():
            return self._stop()

    def _stop(self) -> bool:
        pids = {k: int(v) for k, v in self.state().get("pids", {}).items()}
        ours = {name: pid for name, pid in pids.items() if _alive(pid) and str(self.root) in _cmdline(pid)}
        for name in sorted(ours, key=lambda n: _ORDER.index(n) if n in _ORDER else 0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(ours[name], signal.SIGTERM)
            # one at a time, clients first: the agent stops its containers while the API is still there,
            # and an API server whose etcd is already gone takes 10 s to give up
            self._wait_gone([ours[name]], 10)
        for pid in ours.values():
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._kill_orphans()
        for handle in self._handles:  # reap the children of this process (already stopped above)
            with contextlib.suppress(Exception):
                if isinstance(handle, subprocess.Popen):
                    handle.wait(5)
                else:
                    handle.stop()
        self._handles.clear()
        self.state_file.unlink(missing_ok=True)
        return bool(ours)

    def _wait_gone(self, pids: list[int], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            for handle in self._handles:  # our own children turn into zombies until reaped
                if isinstance(handle, subprocess.Popen):
                    handle.poll()
            time.sleep(0.05)

    def _kill_orphans(self) -> None:
        """Container processes an agent killed hard could not stop (it notes each one's pid)."""
        for note in (self.node_dir / "run").glob("*"):
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                pid = int(note.name)
                if _alive(pid) and str(self.root) in _cmdline(pid):
                    os.killpg(pid, signal.SIGKILL)
            note.unlink(missing_ok=True)

    def status(self) -> SandboxStatus:
        state = self.state()
        if not self.is_running():
            return SandboxStatus(self.root, False)
        try:
            agent = self._control("GET", "/sandbox/status")
        except SandboxError:
            agent = {}
        pods = tuple(f"{p['namespace']}/{p['name']} {p['phase']}" for p in agent.get("pods", []))
        return SandboxStatus(self.root, True, state.get("api"), state.get("gcs"), state.get("node"),
                             agent.get("state", "unknown"), pods, self.settings_file, state.get("started"),
                             state.get("ready_seconds"))

    # -- what the notebooks and tests use

    def settings(self, **explicit: Any) -> Settings:
        return load_settings(path=self.settings_file, environ={}, **explicit)

    def cluster(self, namespace: str = "default"):  # -> recipelib.cluster.Cluster
        from recipelib.cluster.client import from_kubeconfig

        return from_kubeconfig(self.kubeconfig, SANDBOX_CONTEXT, namespace)

    def storage_client(self):  # -> google.cloud.storage.Client
        from recipelib.results.store import make_client

        return make_client(endpoint=self.state()["gcs"], project=PROJECT)

    # -- scenario controls (applied by the node agent)

    def set_controls(self, **values: Any) -> dict[str, Any]:
        """``replay_speed`` (recorded seconds per second; a running replay follows it), ``fail`` (``"build"``,
        ``"benchmark"`` or ``""``: the next benchmark pods fail there, exit code 1), ``pull_seconds``."""
        return self._control("POST", "/sandbox/controls", values)

    def evict(self, pod: str, namespace: str = "default", message: str = EVICTION_MESSAGE) -> None:
        """Evict a running pod as the kubelet's eviction manager does: killed, Failed, reason Evicted, an event."""
        self._control("POST", "/sandbox/evict", {"namespace": namespace, "pod": pod, "message": message})

    def node_not_ready(self) -> None:
        """The kubelet reports NotReady and stops heartbeating; the node lifecycle controller takes it from there."""
        self._control("POST", "/sandbox/node", {"action": "not-ready"})

    def remove_node(self) -> None:
        """The VM is gone: its containers die, the Node object is deleted, nobody updates its pods."""
        self._control("POST", "/sandbox/node", {"action": "remove"})

    def clear_local_ssd(self) -> None:
        """Empty the node's local SSD (checkpoints, engines, workspaces), as on a new node: the next run
        downloads and builds again instead of finding them cached. Call it while no benchmark pod runs."""
        shutil.rmtree(self.node_dir / "host", ignore_errors=True)

    def restore_node(self) -> None:
        """Register the node again (Ready); pods that died with it are marked Failed (reason NodeLost)."""
        self._control("POST", "/sandbox/node", {"action": "restore"})

    # -- plumbing

    def _token(self) -> str:
        try:
            users = yaml.safe_load(self.kubeconfig.read_text())["users"]
            return str(users[0]["user"]["token"])
        except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError) as e:
            raise SandboxError(f"no sandbox kubeconfig at {self.kubeconfig}: is it started?") from e

    def _request(self, method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 60) -> Any:
        context = ssl.create_default_context(cafile=str(self.kube_dir / "ca.crt"))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self._token()}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=context, timeout=timeout) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as e:
            raise SandboxError(f"{method} {url}: HTTP {e.code} {e.read().decode(errors='replace')[:300]}") from None
        except (urllib.error.URLError, OSError, ssl.SSLError) as e:
            raise SandboxError(f"{method} {url}: {e}") from None
        try:
            return json.loads(text)
        except ValueError:
            return text

    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        port = self.state().get("ports", {}).get("node")
        if not port:
            raise SandboxError(f"the sandbox in {self.root} is not running")
        return self._request(method, f"https://127.0.0.1:{port}{path}", body)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipelib.sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--root", default=None, help=f"the sandbox's folder (default {sandbox_root()})")
    parser.add_argument("--replay-speed", type=float, default=Controls.replay_speed,
                        help="recorded seconds per real second (default %(default)g: an hour in ten seconds)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sandbox = Sandbox(Path(args.root) if args.root else sandbox_root(), replay_speed=args.replay_speed)
    try:
        if args.command == "start":
            sandbox.start()
        elif args.command == "stop":
            print("Stopped." if sandbox.stop() else f"No sandbox was running in {sandbox.root}.")
            return 0
    except RecipelibError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\n".join(sandbox.status().lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
