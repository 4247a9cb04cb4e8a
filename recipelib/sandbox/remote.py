"""The sandbox's scenario controls, applied by its node agent over the kubelet's HTTPS port.

A test or a notebook changes the replay speed, makes the next benchmark fail, evicts a pod, or takes the
node away; the node agent (:mod:`recipelib.sandbox.nodeagent`) does it, as the real component would. The
calls carry the sandbox kubeconfig's bearer token and trust the sandbox's CA.
"""

from __future__ import annotations

import json
import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from recipelib.errors import SandboxError
from recipelib.sandbox.kubelet import EVICTION_MESSAGE


class RemoteControls:
    """The part of :class:`recipelib.sandbox.Sandbox` that talks to its servers over HTTPS."""

    root: Path
    kube_dir: Path
    kubeconfig: Path
    node_dir: Path
    state: Callable[[], dict[str, Any]]

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
