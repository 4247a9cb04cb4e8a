"""Serving on the sandbox's node: the server pod runs the trtllm-serve stand-in, the load pod the real aiperf.

What maps to what, and why:

- The server container's argv holds ``trtllm-serve MODEL --host 0.0.0.0 --port 8000 ...`` (after the gIB
  wrapper's ``exec "$@"``). Here it runs ``launcher/testing/trtllm_serve.py`` (the stand-in, whose click
  command line is the version table's, so a flag the version lacks fails as the real tool would) with
  ``STANDIN_VERSION`` from the image tag, ``--host 127.0.0.1`` (loopback only) and ``--port`` a free local
  port; paths go through the pod's mounts. It loads for ``SERVE_LOAD_S`` and refuses connections meanwhile,
  as the real server does (its port opens after the model is loaded).
- ``serving_pod.py fetch`` gets the launcher's fake downloader and a fake hub holding a stand-in checkpoint
  whose tokenizer is the tiny one (``launcher/testing/tokenizer``); ``serving_pod.py load`` runs with the
  sandbox's Python and the real aiperf of ``.venv-aiperf`` (``RECIPE_AIPERF``), its results to the local GCS.
- **No cluster DNS here**: the load's ``http://<release>-serve:8000`` is resolved as kube-proxy would route
  it (Service -> selector -> a ready pod on this node -> its container port), to ``127.0.0.1:<local port>``
  of the server process, and written so into the load process's config; the pod's log says so.
- Probes: ``startupProbe`` then ``readinessProbe`` (httpGet) against the local port, on their
  periodSeconds/failureThreshold; failures are the kubelet's ``Unhealthy`` events in its words, and the
  container's ``started``/``ready`` and the pod's ``Ready`` follow them. A startup probe out of budget
  stops the container (this node does not restart containers: the pod ends Failed).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException

from recipelib.paths import ROOT

if TYPE_CHECKING:
    from recipelib.sandbox.containers import Container, RuntimeMixin
    from recipelib.sandbox.kubelet import PodRun

TESTING = ROOT / "launcher" / "testing"
TOKENIZER = TESTING / "tokenizer"
AIPERF = ROOT / ".venv-aiperf" / "bin" / "aiperf"
SERVE_LOAD_S = 2.0
_POD_PROGRAM = re.compile(r"(\S*/serving_pod\.py)\s+(fetch|load)\s+--config\s+(\S+)")
_PATH_FLAGS = ("--extra_llm_api_options", "--tokenizer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def standin_version(image: str) -> str:
    """The TensorRT-LLM version the image plays: its tag (``.../trtllm:v0.17.0`` -> ``0.17.0``)."""
    tag = image.rsplit("@", 1)[0].rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    m = re.match(r"v?(\d+\.\d+(?:\.\d+)?\S*)", tag)
    return m[1] if m else "0.17.0"


def command(agent: RuntimeMixin, run: PodRun, spec: Any, c: Container, to_node: Callable[[str], str],
            env: dict[str, str], cwd: Path) -> tuple[list[str], dict[str, str], Path] | None:
    """The local process of a serving container, or None for any other container."""
    argv = [*(spec.command or []), *(spec.args or [])]
    at = next((i for i, a in enumerate(argv) if a == "trtllm-serve" or a.endswith("/trtllm-serve")), None)
    if at is not None:
        return _serve(run, spec, c, argv[at + 1:], to_node, env, cwd, agent.python)
    call = _POD_PROGRAM.search(" ".join(argv))
    if call is None:
        return None
    script, step, config = to_node(call[1]), call[2], to_node(call[3])
    data = agent._rewrite(json.loads(Path(config).read_text()), to_node)
    extra: dict[str, str] = {}
    if step == "fetch":
        fake_checkpoint(agent.node_root / "hub" / str(data["checkpoint"]))
        _upgrade_ssd_tokenizer(Path(data["dest"]))
        extra = {"RECIPE_DOWNLOADER": str(agent.bin / "download"), "FAKE_HUB": str(agent.node_root / "hub")}
    else:
        targets = {data["url"], *(s["url"] for s in data.get("sweeps", []))}
        routes = {url: _route(agent, run, url) for url in targets}
        data["url"] = routes[data["url"]]
        for s in data.get("sweeps", []):
            s["url"] = routes[s["url"]]
        print_lines = [f"[sandbox] no cluster DNS: {u} -> {r} (the Service's ready pod on this node)"
                       for u, r in routes.items()]
        extra = {"RECIPE_AIPERF": str(AIPERF), "RECIPE_SANDBOX_ROUTES": " | ".join(print_lines),
                 "HF_ENDPOINT": "http://127.0.0.1:9",  # a stray hub lookup fails on loopback, never leaves the machine
                 **({"STORAGE_EMULATOR_HOST": agent.gcs_endpoint} if agent.gcs_endpoint else {}),
                 "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    rewritten = run.dir / f"sandbox-{c.name}.json"
    rewritten.write_text(json.dumps(data, indent=2))
    banner = extra.get("RECIPE_SANDBOX_ROUTES", "")
    program = [agent.python, script, step, "--config", str(rewritten)]
    if banner:  # said in the pod's own log, where a user looks for what reached the server
        program = [agent.python, "-c", "import os,runpy,sys; print(os.environ['RECIPE_SANDBOX_ROUTES'], flush=True); "
                   "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
                   script, step, "--config", str(rewritten)]
    return program, {**env, **extra}, cwd


def _serve(run: PodRun, spec: Any, c: Container, args: list[str], to_node: Callable[[str], str],
           env: dict[str, str], cwd: Path, python: str) -> tuple[list[str], dict[str, str], Path]:
    """The stand-in with the pod's arguments: paths through the mounts, host and port local."""
    out: list[str] = []
    port = 8000
    i = 0
    while i < len(args):
        a = args[i]
        value = args[i + 1] if i + 1 < len(args) else None
        if a == "--port" and value is not None:
            port = int(value)
            local = free_port()
            run.ports[port] = local
            out += [a, str(local)]
            i += 2
        elif a == "--host" and value is not None:
            out += [a, "127.0.0.1"]
            i += 2
        elif a in _PATH_FLAGS and value is not None:
            out += [a, to_node(value) if value.startswith("/") else value]
            i += 2
        else:
            out.append(to_node(a) if a.startswith("/") else a)
            i += 1
    if port not in run.ports:  # no --port: trtllm-serve's default, 8000
        run.ports[port] = free_port()
        out += ["--port", str(run.ports[port])]
    for p in spec.ports or []:
        if p.container_port == port and p.name:
            run.port_names[p.name] = port
    extra = {"STANDIN_VERSION": standin_version(spec.image or ""), "STANDIN_SERVE_LOAD_S": f"{SERVE_LOAD_S:g}",
             "STANDIN_SERVE_LOADING": "refuse"}
    return [python, str(TESTING / "trtllm_serve.py"), *out], {**env, **extra}, cwd


def fake_checkpoint(repo: Path) -> None:
    """A stand-in checkpoint on the fake hub: a config, two tiny shards, and the tiny tokenizer (real files)."""
    repo.mkdir(parents=True, exist_ok=True)
    shards = [f"model-{i:05d}-of-00002.safetensors" for i in (1, 2)]
    if not (repo / "config.json").exists():
        index = {"metadata": {"note": "sandbox stand-in"}, "weight_map": {f"layers.{i}.weight": s
                                                                           for i, s in enumerate(shards)}}
        (repo / "model.safetensors.index.json").write_text(json.dumps(index))
        for i, shard in enumerate(shards):
            (repo / shard).write_bytes(bytes([i + 1]) * 1024)
        (repo / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "sandbox": True}))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        target = repo / name
        if not target.exists() or target.read_text().strip() == "{}":
            target.write_bytes((TOKENIZER / name).read_bytes())


def _upgrade_ssd_tokenizer(dest: Path) -> None:
    """A checkpoint an older sandbox left complete on this node's SSD has a placeholder ``tokenizer.json``
    (``{}``): replaced by the tiny real one, as the fake hub now serves it (sandbox data only)."""
    for name in ("tokenizer.json", "tokenizer_config.json"):
        target = dest / name
        if target.is_file() and target.read_text().strip() == "{}":
            target.write_bytes((TOKENIZER / name).read_bytes())


def _route(agent: RuntimeMixin, run: PodRun, url: str) -> str:
    """``http://svc[.ns[.svc...]]:port/...`` -> ``http://127.0.0.1:<local port>/...``, as kube-proxy would route."""
    m = re.match(r"^(https?)://([^/:]+)(?::(\d+))?(.*)$", url)
    if m is None:
        raise LookupError(f"cannot route {url!r}")
    scheme, host, port, rest = m[1], m[2], int(m[3] or 80), m[4]
    name, _, tail = host.partition(".")
    namespace = tail.split(".", 1)[0] if tail else run.ns
    try:
        svc = agent.core.read_namespaced_service(name, namespace)
    except ApiException as e:
        raise LookupError(f'service "{name}" not found in {namespace} (the sandbox has no DNS: it resolves '
                          f"Services itself)") from e
    entry = next((p for p in svc.spec.ports or [] if p.port == port), None)
    if entry is None:
        raise LookupError(f"service {name} has no port {port}")
    selector = svc.spec.selector or {}
    runs = getattr(agent, "runs", {})
    for other in list(runs.values()):
        labels = other.pod.metadata.labels or {}
        if other.ns != namespace or any(labels.get(k) != v for k, v in selector.items()):
            continue
        target = entry.target_port if entry.target_port is not None else port
        container_port = other.port_names.get(target) if isinstance(target, str) else int(target)
        local = other.ports.get(container_port) if container_port is not None else None
        if local is not None and all(c.ready for c in other.mains):
            return f"{scheme}://127.0.0.1:{local}{rest}"
    raise LookupError(f"service {name} has no ready endpoint on this node (no ready pod matches its selector)")


# -- probes ----------------------------------------------------------------------------------------


def start_probes(run: PodRun, spec: Any, c: Container) -> None:
    """Run the container's startup and readiness probes (httpGet) as the kubelet does, in a thread."""
    startup, readiness = spec.startup_probe, spec.readiness_probe
    if startup is None and readiness is None:
        return
    c.probe_started = startup is None
    c.probe_ready = False
    threading.Thread(target=_probe_loop, args=(run, c, startup, readiness), daemon=True,
                     name=f"probe-{c.name}").start()


def _http(run: PodRun, probe: Any) -> tuple[bool, str]:
    get = probe.http_get
    port = run.port_names.get(get.port) if isinstance(get.port, str) else int(get.port)
    local = run.ports.get(port) if port is not None else None
    shown = f"http://{run.ip}:{port}{get.path or '/'}"
    if local is None:
        return False, f'Get "{shown}": dial tcp {run.ip}:{port}: connect: connection refused'
    conn = http.client.HTTPConnection("127.0.0.1", local, timeout=float(probe.timeout_seconds or 1))
    try:
        conn.request("GET", get.path or "/")
        status = conn.getresponse().status
    except ConnectionRefusedError:
        return False, f'Get "{shown}": dial tcp {run.ip}:{port}: connect: connection refused'
    except TimeoutError:
        return False, f'Get "{shown}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    except OSError as e:
        return False, f'Get "{shown}": {e}'
    finally:
        conn.close()
    return (200 <= status < 400), f"HTTP probe failed with statuscode: {status}"


def _probe_loop(run: PodRun, c: Container, startup: Any, readiness: Any) -> None:
    said: dict[str, int] = {}
    failures = 0
    first = startup if startup is not None else readiness
    if c.done.wait(float(first.initial_delay_seconds or 0)):
        return
    while c.running and not run.stopping:
        probe, kind = (startup, "Startup") if not c.probe_started else (readiness, "Readiness")
        if probe is None:  # started, and no readiness probe: ready
            c.probe_ready = True
            run._safe_publish()
            return
        ok, message = _http(run, probe)
        if ok:
            failures = 0
            if kind == "Startup":
                c.probe_started = True
                run._safe_publish()
                continue
            if not c.probe_ready:
                c.probe_ready = True
                run._safe_publish()
        else:
            failures += 1
            said[message] = said.get(message, 0) + 1
            if said[message] % 10 == 1:  # the kubelet's events aggregate; here: the first, then every tenth
                run._event("Unhealthy", f"{kind} probe failed: {message}", "Warning", c.name)
            if kind == "Startup" and failures >= int(probe.failure_threshold or 3):
                run._event("Killing", f"Container {c.name} failed startup probe, will be restarted", container=c.name)
                c.stop(2.0)
                return
            if kind == "Readiness" and c.probe_ready and failures >= int(probe.failure_threshold or 3):
                c.probe_ready = False
                run._safe_publish()
        if c.done.wait(float(probe.period_seconds or 10)):
            return
