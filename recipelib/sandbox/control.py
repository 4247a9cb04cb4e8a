"""The local sandbox: a cluster, a node and a bucket on loopback, so every notebook runs on a laptop.

``Sandbox.start()`` starts (or finds running) a real kube-apiserver + etcd + kube-controller-manager
(:mod:`recipelib.sandbox.kube`, built once and cached), a Cloud Storage server (fake-gcs-server), and a
node agent (:mod:`recipelib.sandbox.nodeagent`) that registers one A3 Ultra-shaped node and plays its kubelet.
It creates the results bucket and the Cloud Storage FUSE CSIDriver (as GKE's add-on does).

It presents itself as any cluster does, so the product has no special case for it: a kubeconfig with its
context and a settings file marked ``SANDBOX: true`` (``<root>/settings.yaml``), which it offers as the
settings overlay while it runs (:mod:`recipelib.settings`; a ``PID`` mark makes a crashed sandbox's overlay
stale); ``stop()`` removes the overlay if it is still this sandbox's. The user's settings file is never
written. A benchmark deployed there replays a recorded real run, and everything it produces says so.

The servers run detached: the sandbox outlives the process that started it (the CLI, a notebook) until
``stop()``. State lives in ``$RECIPELIB_SANDBOX`` or ``~/.cache/recipelib/sandbox``; a restart wipes the
cluster and the node (a fresh cluster), and keeps the bucket's contents, the certificates and the ports.

Example::

    sandbox = Sandbox().start()            # ~5 s once built; reuses a running one
    settings = sandbox.settings()          # what the notebooks get
    sandbox.set_controls(replay_speed=60)  # scenarios: slow replay, fail=..., evict(), remove_node()
    sandbox.stop()

CLI: ``python -m recipelib.sandbox start|stop|status`` (:mod:`recipelib.sandbox.cli`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

import recipelib.sandbox.gke_objects as gke_objects
from recipelib.errors import RecipelibError, SandboxError
from recipelib.paths import ROOT
from recipelib.sandbox.gcs import LocalGCS, free_port
from recipelib.sandbox.kube import LocalKube, ensure_binaries
from recipelib.sandbox.nodeagent import READY_EXCLUDES, Controls, NodeShape
from recipelib.sandbox.processes import alive, kill_orphans, ours, port_free
from recipelib.sandbox.remote import RemoteControls
from recipelib.settings import Settings, load_settings, overlay_path, save_settings

log = logging.getLogger(__name__)

SANDBOX_ENV = "RECIPELIB_SANDBOX"  # the sandbox's folder; default ~/.cache/recipelib/sandbox
CONTEXT = "recipelib-sandbox"  # the kubeconfig context it writes

BUCKET = "sandbox-results"
PROJECT = "sandbox-project"
REGISTRY = f"us-central1-docker.pkg.dev/{PROJECT}/sandbox"
GCSFUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
# TaintNodesByCondition taints every new node not-ready until the node lifecycle controller, a second or
# two after it starts, sees it Ready; the agent registers its node Ready from the first look.
DISABLED_ADMISSION = ("ServiceAccount", "TaintNodesByCondition")
_ORDER = ("nodeagent", "kube-controller-manager", "kube-apiserver", "etcd", "fake-gcs-server")


def sandbox_root() -> Path:
    return Path(os.environ.get(SANDBOX_ENV) or Path.home() / ".cache" / "recipelib" / "sandbox")


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
    overlay: Path | None = None

    def lines(self) -> list[str]:
        if not self.running:
            return [f"Sandbox in {self.root}: not running (start it: python -m recipelib.sandbox start)"]
        return [
            f"Sandbox in {self.root}: running since {self.started} (ready in {self.ready_seconds or 0:.1f} s)",
            f"  kube-apiserver  {self.api} (context {CONTEXT})",
            f"  Cloud Storage   {self.gcs} (bucket {BUCKET})",
            f"  node            {self.node}: {self.node_state}"
            + (f"; pods: {', '.join(self.pods)}" if self.pods else ""),
            f"  settings        {self.settings}" + (f" (offered as {self.overlay})" if self.overlay else ""),
            "  Benchmarks here replay a recorded real run (Llama 3.1 405B, 8 x H200): labelled replay, never measured.",
        ]


@dataclass
class Sandbox(RemoteControls):
    """The sandbox in ``root``; ``start()`` is idempotent, ``stop()`` ends every process it started.

    ``overlay``: where it offers its settings while it runs (None: nowhere; tests use a folder of theirs).
    """

    root: Path = field(default_factory=sandbox_root)
    replay_speed: float = Controls.replay_speed
    build: bool = True
    overlay: Path | None = field(default_factory=overlay_path)
    _handles: list[Any] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser().resolve()
        self.overlay = Path(self.overlay).expanduser().absolute() if self.overlay else None

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
        state = self.state()
        pids = [int(p) for p in state.get("pids", {}).values()]
        if not pids or not all(alive(p) for p in pids):
            return False
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
                self._offer()
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
        ports = {name: port if isinstance(port, int) and port_free(port) else free_port()
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
            kube = LocalKube(self.kube_dir, port=ports["kube"], context_name=CONTEXT, detach=True,
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
        self._offer()
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
                "--context", CONTEXT, "--root", str(self.node_dir),
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
        """What GKE and the recipe's prerequisites provide: the bucket, the CSI driver, the networks; settings."""
        from google.api_core.exceptions import Conflict

        with contextlib.suppress(Conflict):
            gcs.client(project=PROJECT).create_bucket(BUCKET)
        gke_objects.install(self.cluster().api)
        save_settings(Settings(
            project_id=PROJECT, region="us-central1", gcs_bucket=BUCKET, artifact_registry=REGISTRY,
            namespace="default", kubeconfig=str(self.kubeconfig), kube_context=CONTEXT, gcs_endpoint=gcs.url,
            sandbox=True, note=f"sandbox in {self.root}; stop it: python -m recipelib.sandbox stop --root {self.root}",
        ), self.settings_file, comment=f"The local sandbox's settings (its folder: {self.root}).")

    def _offer(self) -> None:
        """Offer this sandbox's settings as the overlay, valid while its API server runs."""
        if self.overlay is None:
            return
        pid = self.state().get("pids", {}).get("kube-apiserver")
        save_settings(self.settings(), self.overlay, pid=pid, comment=(
            f"Offered by the local sandbox in {self.root} while it runs (python -m recipelib.sandbox start);\n"
            "`stop` removes this file. recipelib uses it only when no cluster is configured; your own\n"
            "settings file is never written by the sandbox."))

    def _withdraw(self) -> None:
        """Remove the overlay if it is still this sandbox's (another one may have been started since)."""
        if self.overlay is None:
            return
        with contextlib.suppress(OSError, yaml.YAMLError, AttributeError):
            if (yaml.safe_load(self.overlay.read_text()) or {}).get("KUBECONFIG") == str(self.kubeconfig):
                self.overlay.unlink()

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
        self._withdraw()
        pids = {k: int(v) for k, v in self.state().get("pids", {}).items()}
        mine = {name: pid for name, pid in pids.items() if ours(pid, self.root)}
        for name in sorted(mine, key=lambda n: _ORDER.index(n) if n in _ORDER else 0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(mine[name], signal.SIGTERM)
            # one at a time, clients first: the agent stops its containers while the API is still there,
            # and an API server whose etcd is already gone takes 10 s to give up
            self._wait_gone([mine[name]], 10)
        for pid in mine.values():
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        kill_orphans(self.node_dir / "run", self.root)
        for handle in self._handles:  # reap the children of this process (already stopped above)
            with contextlib.suppress(Exception):
                if isinstance(handle, subprocess.Popen):
                    handle.wait(5)
                else:
                    handle.stop()
        self._handles.clear()
        self.state_file.unlink(missing_ok=True)
        return bool(mine)

    def _wait_gone(self, pids: list[int], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            for handle in self._handles:  # our own children turn into zombies until reaped
                if isinstance(handle, subprocess.Popen):
                    handle.poll()
            time.sleep(0.05)

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
                             state.get("ready_seconds"), self.overlay)

    # -- what the notebooks and tests use

    def settings(self, **explicit: Any) -> Settings:
        return load_settings(path=self.settings_file, environ={}, **explicit)

    def cluster(self, namespace: str = "default"):  # -> recipelib.cluster.Cluster
        from recipelib.cluster.client import from_kubeconfig

        return from_kubeconfig(self.kubeconfig, CONTEXT, namespace)

    def storage_client(self):  # -> google.cloud.storage.Client
        from recipelib.results.store import make_client

        return make_client(endpoint=self.state()["gcs"], project=PROJECT)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
