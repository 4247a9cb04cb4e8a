"""A container on the sandbox's node: a local process group, and what it runs there.

:class:`Container` is one container as the runtime sees it: a process group whose output goes to a CRI log
file, and its state (waiting, running, terminated) as ``containerStatuses`` reports it. :class:`RuntimeMixin`
is the part of :class:`recipelib.sandbox.nodeagent.NodeAgent` that prepares a container: its volumes, its
environment, its paths, and its command: a recipelib benchmark container (``launch.py --config ...``) runs
the real launcher with ``trtllm-bench`` replaced by the replay of a recorded run
(``launcher/testing/replay_bench.py``) and ``RECIPE_REPLAY=1``; a serving container (``trtllm-serve``, or
``serving_pod.py fetch|load``) runs as :mod:`recipelib.sandbox.serving` maps it; any other container prints
that it is not run here, and completes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kubernetes
from kubernetes.client.exceptions import ApiException

import recipelib.sandbox.serving as serving
from recipelib.paths import ROOT
from recipelib.sandbox.formats import rfc3339_nano, utc_now
from recipelib.sandbox.node import Controls, NodeShape

if TYPE_CHECKING:
    from recipelib.sandbox.kubelet import PodRun

TESTING = ROOT / "launcher" / "testing"
_LAUNCH = re.compile(r"(\S*/launch\.py)\s+--config\s+(\S+)")

def _played_version(image: str) -> dict[str, str]:
    """The TensorRT-LLM version the image's tag names (``...trtllm:v0.17.0@sha256:...`` -> ``v0.17.0``), for the
    replay (``RECIPE_REPLAY_VERSION``) and the dataset stand-in (``STANDIN_VERSION``); none for another tag."""
    tag = image.split("@", 1)[0].rpartition("/")[2].partition(":")[2]
    if not re.match(r"^v?\d+\.\d+", tag):
        return {}
    return {"RECIPE_REPLAY_VERSION": tag, "STANDIN_VERSION": tag.lstrip("v")}


class Container:
    """One container of a pod as a local process group; its output goes to a CRI-format log file."""

    def __init__(self, name: str, image: str, log_path: Path) -> None:
        self.name = name
        self.image = image
        self.log_path = log_path
        self.id = uuid.uuid4().hex
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at: str | None = None
        self.finished_at: str | None = None
        self.exit_code: int | None = None
        self.waiting_reason = "ContainerCreating"
        self.waiting_message: str | None = None
        self.done = threading.Event()
        self._pump: threading.Thread | None = None
        self.probe_started: bool | None = None  # None: no probes (recipelib.sandbox.serving runs them)
        self.probe_ready: bool | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and not self.done.is_set()

    @property
    def started(self) -> bool:
        """Running, and past its startup probe if it has one."""
        return self.running and self.probe_started is not False

    @property
    def ready(self) -> bool:
        """Running, and its readiness (or startup) probe passes if it has one: what the pod's Ready follows."""
        return self.started and self.probe_ready is not False

    def start(self, argv: list[str], env: dict[str, str], cwd: Path, pid_dir: Path) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        self.process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self._pid_file = pid_dir / str(self.process.pid)
        self._pid_file.write_text(self.id)  # the sandbox kills what an agent killed hard left behind
        self.started_at = utc_now()
        self._pump = threading.Thread(target=self._copy_output, name=f"log-{self.name}", daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with open(self.log_path, "ab") as out:
            for raw in iter(self.process.stdout.readline, b""):
                text = raw.rstrip(b"\n").decode("utf-8", "replace")
                out.write(f"{rfc3339_nano(time.time_ns())} stdout F {text}\n".encode())
                out.flush()
        self.exit_code = self.process.wait()
        self.finished_at = utc_now()
        self._pid_file.unlink(missing_ok=True)
        self.done.set()

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM, then SIGKILL after the grace period (as the kubelet does)."""
        self.signal(signal.SIGTERM)
        if not self.done.wait(grace_seconds):
            self.signal(signal.SIGKILL)
            self.done.wait(10)

    def status(self) -> dict[str, Any]:
        """This container's entry in ``containerStatuses``, as the kubelet reports it from the runtime."""
        base = {"name": self.name, "image": self.image, "restartCount": 0,
                "imageID": f"{self.image.split(':')[0]}@sha256:{hashlib.sha256(self.image.encode()).hexdigest()}"}
        if self.done.is_set():
            code = self.exit_code if self.exit_code is not None else 137
            code = 128 - code if code < 0 else code  # a signal: 143 for SIGTERM, 137 for SIGKILL
            reason = "Completed" if code == 0 else "Error"
            state = {"terminated": {"exitCode": code, "reason": reason, "startedAt": self.started_at,
                                    "finishedAt": self.finished_at, "containerID": f"containerd://{self.id}"}}
            return {**base, "state": state, "ready": False, "started": False, "containerID": f"containerd://{self.id}",
                    "lastState": {}}
        if self.process is not None:
            return {**base, "state": {"running": {"startedAt": self.started_at}}, "ready": self.ready,
                    "started": self.started,
                    "containerID": f"containerd://{self.id}", "lastState": {}}
        waiting = {"reason": self.waiting_reason, **({"message": self.waiting_message} if self.waiting_message else {})}
        return {**base, "imageID": "", "state": {"waiting": waiting}, "ready": False, "started": False,
                "lastState": {}}



class RuntimeMixin:
    """Volumes, environment, paths and command of a container on this node; the node's tools ("image")."""

    core: kubernetes.client.CoreV1Api
    shape: NodeShape
    controls: Controls
    node_root: Path
    bin: Path
    python: str
    gcs_endpoint: str

    def _write_tools(self) -> None:
        """The node's "image": trtllm-bench (the replay), the downloader, nvidia-smi, as tiny wrappers."""
        def wrapper(name: str, script: Path) -> None:
            path = self.bin / name
            path.write_text(f'#!/bin/sh\nexec "{self.python}" -S "{script}" "$@"\n')
            path.chmod(0o755)

        wrapper("trtllm-bench", TESTING / "replay_bench.py")
        wrapper("download", TESTING / "fake_download.py")
        smi = self.bin / "nvidia-smi"
        smi.write_text("#!/bin/sh\n" + "".join(
            f'echo "{i}, NVIDIA H200, 143771 MiB, 550.90.07, GPU-5a4d{i:04d}-0000-0000-0000-sandbox00000"\n'
            for i in range(self.shape.gpus)))
        smi.chmod(0o755)
        (self.node_root / "replay-speed").write_text(f"{self.controls.replay_speed:g}\n")



    def volume(self, run: PodRun, vol: Any) -> Path | str:
        """Where volume ``vol`` lives on this node; ``gs://BUCKET`` for the Cloud Storage FUSE CSI volume."""
        base = run.dir / "volumes" / vol.name
        if vol.config_map is not None or vol.secret is not None:
            if vol.config_map is not None:
                try:
                    data = self.core.read_namespaced_config_map(vol.config_map.name, run.ns).data or {}
                except ApiException as e:
                    raise LookupError(f'configmap "{vol.config_map.name}" not found') from e
                items = vol.config_map.items
            else:
                try:
                    secret = self.core.read_namespaced_secret(vol.secret.secret_name, run.ns).data or {}
                except ApiException as e:
                    raise LookupError(f'secret "{vol.secret.secret_name}" not found') from e
                data = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in secret.items()}
                items = vol.secret.items
            base.mkdir(parents=True, exist_ok=True)
            for key, value in data.items():
                paths = [i.path for i in items or [] if i.key == key] if items else [key]
                for rel in paths:
                    (base / rel).parent.mkdir(parents=True, exist_ok=True)
                    (base / rel).write_text(value)
            return base
        if vol.host_path is not None:
            path = self.node_root / "host" / vol.host_path.path.lstrip("/")
            path.mkdir(parents=True, exist_ok=True)
            return path
        if vol.csi is not None and vol.csi.driver == "gcsfuse.csi.storage.gke.io":
            bucket = (vol.csi.volume_attributes or {}).get("bucketName", "")
            if not bucket:
                raise LookupError("the gcsfuse volume has no volumeAttributes.bucketName")
            return f"gs://{bucket}"
        base.mkdir(parents=True, exist_ok=True)  # emptyDir, and anything else: an empty folder
        return base



    def _env(self, run: PodRun, spec: Any) -> dict[str, str]:
        env: dict[str, str] = {}
        for e in spec.env or []:
            if e.value_from is None:
                env[e.name] = e.value or ""
            elif e.value_from.secret_key_ref is not None:
                ref = e.value_from.secret_key_ref
                try:
                    data = self.core.read_namespaced_secret(ref.name, run.ns).data or {}
                except ApiException:
                    if ref.optional:
                        continue
                    raise LookupError(f'secret "{ref.name}" not found') from None
                if ref.key not in data:
                    raise LookupError(f"couldn't find key {ref.key} in Secret {run.ns}/{ref.name}")
                env[e.name] = base64.b64decode(data[ref.key]).decode()
            elif e.value_from.config_map_key_ref is not None:
                ref = e.value_from.config_map_key_ref
                try:
                    data = self.core.read_namespaced_config_map(ref.name, run.ns).data or {}
                except ApiException:
                    raise LookupError(f'configmap "{ref.name}" not found') from None
                if ref.key not in data:
                    raise LookupError(f"couldn't find key {ref.key} in ConfigMap {run.ns}/{ref.name}")
                env[e.name] = data[ref.key]
            elif e.value_from.field_ref is not None:
                env[e.name] = {"metadata.name": run.name, "metadata.namespace": run.ns, "spec.nodeName":
                               self.shape.name, "status.podIP": run.ip, "status.hostIP": "127.0.0.1"}.get(
                                   e.value_from.field_ref.field_path, "")
        return env

    def _mapper(self, run: PodRun, spec: Any) -> Callable[[str], str]:
        """Container path -> node path, through the container's volume mounts (longest mount first)."""
        mounts = sorted(((m.mount_path.rstrip("/") or "/", run.volumes.get(m.name), m.sub_path or "")
                         for m in spec.volume_mounts or []), key=lambda m: -len(m[0]))
        rootfs = run.dir / "rootfs"

        def to_node(path: str) -> str:
            for mount, where, sub in mounts:
                if where is not None and (path == mount or path.startswith(mount + "/")):
                    rest = "/".join(p for p in (sub, path[len(mount):].strip("/")) if p)
                    if isinstance(where, str):  # gs://BUCKET: the FUSE mount is the bucket itself
                        return f"{where}/{rest}" if rest else where
                    return str(where / rest) if rest else str(where)
            return str(rootfs / path.lstrip("/"))

        return to_node

    def command(self, run: PodRun, spec: Any, c: Container) -> tuple[list[str], dict[str, str], Path]:
        """What runs for this container here: the launcher with the replay, or a line saying it is skipped."""
        env = self._env(run, spec)
        to_node = self._mapper(run, spec)
        where = to_node(spec.working_dir or "/")
        cwd = Path(where) if where.startswith(str(run.dir)) else run.dir / "rootfs"
        cwd.mkdir(parents=True, exist_ok=True)
        (run.dir / "rootfs" / "root").mkdir(parents=True, exist_ok=True)
        base_env = {"PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(run.dir / "rootfs" / "root"),
                    "HOSTNAME": run.name, "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
                    "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
        served = serving.command(self, run, spec, c, to_node, {**base_env, **env}, cwd)
        if served is not None:  # the trtllm-serve stand-in, or serving_pod.py fetch/load
            return served
        text = " ".join([*(spec.command or []), *(spec.args or [])])
        call = _LAUNCH.search(text)
        if call is None:
            would_run = " ".join(shlex.join([*(spec.command or []), *(spec.args or [])]).split())
            lines = [f"[sandbox] container {c.name} ({c.image}) is not run in the local sandbox: its command "
                     f"would be {would_run or '(the image default)'}",
                     f"[sandbox] {c.name}: nothing to do here (no GPUs, no RDMA); completed"]
            program = "import sys\nfor line in sys.argv[1:]:\n    print(line)\n"
            return [self.python, "-S", "-c", program, *lines], {**base_env, **env}, cwd
        launch, config = to_node(call.group(1)), to_node(call.group(2))
        rewritten = run.dir / "sandbox-config.json"
        rewritten.write_text(json.dumps(self._rewrite(json.loads(Path(config).read_text()), to_node), indent=2))
        model = json.loads(rewritten.read_text()).get("model", "")
        if isinstance(model, str) and "/" in model:
            self._fake_checkpoint(model)
        replay_env = {
            "TRTLLM_BENCH": str(self.bin / "trtllm-bench"), "RECIPE_DOWNLOADER": str(self.bin / "download"),
            "FAKE_HUB": str(self.node_root / "hub"), "RECIPE_PREPARE_DATASET": str(TESTING / "prepare_dataset.py"),
            "RECIPE_REPLAY": "1", "RECIPE_REPLAY_SPEED": f"{self.controls.replay_speed:g}",
            "RECIPE_REPLAY_GPU": self.shape.accelerator,  # the replay plays this GPU's published figures
            **_played_version(spec.image or ""),
            "RECIPE_REPLAY_SPEED_FILE": str(self.node_root / "replay-speed"),
            **({"RECIPE_REPLAY_FAIL": self.controls.fail} if self.controls.fail else {}),
            **({"STORAGE_EMULATOR_HOST": self.gcs_endpoint} if self.gcs_endpoint else {}),
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }
        return [self.python, launch, "--config", str(rewritten)], {**base_env, **env, **replay_env}, cwd

    @staticmethod
    def _rewrite(value: Any, to_node: Callable[[str], str]) -> Any:
        """Every absolute path in the launcher's config, as the mounts make it appear on this node."""
        if isinstance(value, dict):
            return {k: RuntimeMixin._rewrite(v, to_node) for k, v in value.items()}
        if isinstance(value, list):
            return [RuntimeMixin._rewrite(v, to_node) for v in value]
        if isinstance(value, str) and value.startswith("/"):
            return to_node(value)
        return value


    def _fake_checkpoint(self, model: str) -> None:
        """A tiny stand-in of ``model`` on the fake hub the downloader copies from (no weights are real; the
        tokenizer is the tiny real one, so that a serving load's aiperf can tokenize with it)."""
        serving.fake_checkpoint(self.node_root / "hub" / model)

    def pull(self, run: PodRun, spec: Any, c: Container) -> None:
        image = spec.image or ""
        if image in self.images and spec.image_pull_policy != "Always":
            run._event("Pulled", f'Container image "{image}" already present on machine', container=c.name)
            return
        run._event("Pulling", f'Pulling image "{image}"', container=c.name)
        time.sleep(self.controls.pull_seconds)
        self.images.add(image)
        run._event("Pulled", f'Successfully pulled image "{image}" in {self.controls.pull_seconds * 1000:.0f}ms',
                   container=c.name)
