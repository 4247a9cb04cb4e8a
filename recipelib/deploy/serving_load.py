"""A load sweep against a release's server: a Job running NVIDIA's aiperf, planned, rendered, applied.

Why a Job next to the server (and not a client in the notebook): the load must come from inside the
cluster (the Service's DNS name, the node's network), must survive a closed laptop, and must leave its
results where throughput runs leave theirs (``<results>/<release>/<run_id>/<load point id>/``, create-only:
aiperf's own exports as it wrote them, plus ``load_summary.json``). The pod runs
``recipelib/deploy/serving_pod.py load``; aiperf (pinned, ``recipelib.serving.aiperf_env.AIPERF_VERSION``)
comes from the load image (``aiperf_image``, default the benchmark image with aiperf in its own virtual
environment, ``aiperf_executable``). Its tokenizer is the served checkpoint's, read from the node's SSD:
the pod is placed on the server's node and sees no Hugging Face token (a local path needs no hub).

A load step against a release whose server is not ready is refused before anything is created, naming
the release and the server's state (:func:`recipelib.monitor.serving.server_state`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recipelib.cluster.client import Cluster
from recipelib.deploy.catalog import parse_experiments
from recipelib.deploy.render import _environment, default_values, image_pull_policy, merge_values
from recipelib.deploy.serving import (
    POD_PROGRAM,
    ServingPlan,
    ServingResult,
    deploy_objects,
    deploy_serving,
    plan_serving,
    serving_release,
)
from recipelib.errors import ClusterError, ConfigError
from recipelib.monitor.serving import server_state
from recipelib.paths import ROOT, launcher_dir
from recipelib.serving.aiperf_env import AIPERF_VERSION
from recipelib.serving.load import LoadSweep
from recipelib.settings import Settings, check_bucket_name

LOAD_DIR = "/workload/load"
LAUNCHER_MODULES = ("store.py", "errors.py", "layout.py")
SHIPPED = ("recipelib/errors.py", "recipelib/redaction.py", "recipelib/serving/__init__.py",
           "recipelib/serving/load.py", "recipelib/serving/results.py", "recipelib/serving/aiperf_env.py")
"""recipelib's part the load pod imports (validation, aiperf's command line, the summary): shipped as is."""
_STUB = '"""The part of recipelib shipped to a serving load pod: errors and serving only."""\n'


@dataclass(frozen=True)
class ServerInfo:
    """What the load needs to know of the server it drives (read from the Deployment, or planned)."""

    url: str
    model: str
    checkpoint: str
    checkpoint_path: str
    tp_size: int
    gpus: int
    trtllm_version: str
    image: str
    node: str | None = None  # the server pod's node: the checkpoint (tokenizer) is on its SSD

    @property
    def served_model(self) -> str:
        """The name trtllm-serve gives the model: the checkpoint folder's name (``/v1/models``)."""
        return self.checkpoint_path.rstrip("/").rsplit("/", 1)[-1]

    @classmethod
    def from_plan(cls, plan: ServingPlan) -> ServerInfo:
        return cls(plan.url, plan.model.id, plan.checkpoint, plan.checkpoint_path, plan.model.tp_size, plan.gpus,
                   plan.trtllm_version, plan.image)


@dataclass(frozen=True)
class LoadPlan:
    """One load Job: the sweeps (one per ISL/OSL pair), where results go, which image runs aiperf."""

    release: str
    namespace: str
    server: ServerInfo
    sweeps: tuple[LoadSweep, ...]
    image: str
    bucket: str
    results_prefix: str
    run_id: str = ""
    values: dict[str, Any] = field(default_factory=default_values, hash=False, compare=False)

    def __post_init__(self) -> None:
        check_bucket_name(self.bucket)
        if not self.run_id:
            what = {"release": self.release, "server": asdict(self.server) | {"node": None}, "image": self.image,
                    "sweeps": [_sweep_dict(s) for s in self.sweeps]}
            digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]
            object.__setattr__(self, "run_id", f"load-{digest}")
        elif not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?", self.run_id):
            raise ConfigError("run_id", f"{self.run_id!r}: use lower-case letters, digits and '-', at most 40")

    @property
    def job_name(self) -> str:
        """``<release>-<run id>``, the release part shortened to keep the name within 63 characters."""
        room = 63 - len(self.run_id) - 1
        return f"{self.release[:room].rstrip('-')}-{self.run_id}"

    @property
    def results_path(self) -> str:
        return f"gs://{self.bucket}/{self.results_prefix}/{self.release}/{self.run_id}/"

    @property
    def points(self) -> int:
        return sum(len(s.concurrency) + len(s.request_rate) for s in self.sweeps)


def _sweep_dict(s: LoadSweep) -> dict[str, Any]:
    """The arguments of :meth:`LoadSweep.create` that rebuild ``s`` in the pod (validated there again)."""
    out = asdict(s)
    out["concurrency"], out["request_rate"] = list(s.concurrency) or None, list(s.request_rate) or None
    out["slos"] = dict(s.slos)
    return out


def _server_from_cluster(cluster: Cluster, release: str) -> ServerInfo:
    """The release's server, which must be ready; refused (nothing created) otherwise."""
    state = server_state(cluster, release, events=0)
    if not state.ready:
        raise ClusterError(f"release {release} has no ready server to load: the server is {state.state} "
                           f"({state.detail}). Nothing was created. Wait until monitor says READY (or deploy "
                           "it with mode='serving'), then run the load step again")
    a = state.annotations
    try:
        return ServerInfo(f"http://{release}-serve:8000", a["recipelib.io/model"], a["recipelib.io/checkpoint"],
                          a["recipelib.io/checkpoint-path"], int(a["recipelib.io/tp-size"]),
                          int(a["recipelib.io/gpus"]), a["recipelib.io/trtllm-version"], a["recipelib.io/image"],
                          state.node)
    except (KeyError, ValueError) as e:
        raise ClusterError(f"Deployment {release}-serve lacks recipelib's annotation {e}: it was not deployed by "
                           "this version of recipelib; deploy the server again (mode='serving')") from None


def plan_load(settings: Settings, model: str = "", *, release: str = "", user: str = "", experiments: Any = None,
              concurrency: Any = None, request_rate: Any = None, requests: int = 0, duration_s: float = 0,
              streaming: bool = True, ttft_ms: float = 0, tpot_ms: float = 0, run_id: str = "",
              overrides: dict[str, Any] | None = None, cluster: Cluster | None = None, dry_run: bool = False,
              **serving: Any) -> LoadPlan:
    """Check a load step and decide its Job; ``cluster`` (not on a dry run) must hold the release's ready server.

    ISL/OSL pairs come from ``experiments`` (one sweep each); ``requests`` per point (0: the experiment's
    ``num_requests``) or ``duration_s``; ``ttft_ms``/``tpot_ms`` (0: none) are the goodput SLOs. Without a
    cluster (a dry run) the server is planned from ``model`` and ``serving`` (plan_serving's options).
    """
    values = merge_values(overrides)
    if cluster is None:
        if not dry_run:
            raise ConfigError("cluster", "a load step needs the cluster that runs the server (or dry_run=True)")
        server_plan = plan_serving(settings, model, release=release, user=user, overrides=overrides, dry_run=True,
                                   **serving)
        name, server = server_plan.release, ServerInfo.from_plan(server_plan)
    else:
        name = serving_release(model, user=user, release=release)
        server = _server_from_cluster(cluster, name)
    slos = {k: v for k, v in (("ttft_ms", ttft_ms), ("tpot_ms", tpot_ms)) if v}
    sweeps, seen = [], set()
    for exp in parse_experiments(experiments):
        if (exp.isl, exp.osl) in seen:
            raise ConfigError("experiments", f"ISL/OSL {exp.isl}/{exp.osl} is given twice: each pair is one sweep")
        seen.add((exp.isl, exp.osl))
        sweeps.append(LoadSweep.create(
            model=server.served_model, url=server.url, tokenizer=server.checkpoint_path, isl=exp.isl, osl=exp.osl,
            concurrency=concurrency, request_rate=request_rate, streaming=streaming, slos=slos or None,
            requests=None if duration_s else (requests or exp.num_requests), duration_s=duration_s or None))
    if dry_run and not settings.gcs_bucket:
        bucket = "set-gcs-bucket"
    else:
        settings.require("GCS_BUCKET", purpose="a load sweep (its results)")
        bucket = settings.gcs_bucket or ""
    image = values["aiperf_image"] or server.image
    return LoadPlan(name, settings.namespace, server, tuple(sweeps), image, bucket, settings.results_prefix,
                    run_id, values)


def load_config(plan: LoadPlan) -> dict[str, Any]:
    """The load pod's config file (``serving_pod.py load`` reads every key)."""
    s = plan.server
    return {"release": plan.release, "run_id": plan.run_id, "url": s.url, "model": s.model,
            "checkpoint": s.checkpoint, "tp_size": s.tp_size, "gpu": plan.values["accelerator"], "gpu_count": s.gpus,
            "trtllm_version": s.trtllm_version, "image": s.image, "aiperf_version": AIPERF_VERSION,
            "results": f"{plan.values['gcs_mount_path'].rstrip('/')}/{plan.results_prefix}",
            "sweeps": [_sweep_dict(sw) for sw in plan.sweeps]}


def load_files(plan: LoadPlan) -> list[tuple[str, str, str]]:
    """``(ConfigMap key, path in the pod's folder, text)`` of everything the load pod runs."""
    files = [("serving_pod.py", "serving_pod.py", POD_PROGRAM.read_text()),
             ("load.json", "load.json", json.dumps(load_config(plan), indent=2)),
             ("recipelib.__init__.py", "recipelib/__init__.py", _STUB)]
    for name in LAUNCHER_MODULES:
        path = launcher_dir() / name
        if not path.is_file():
            raise ConfigError("launcher", f"{path} is missing: the load pod could not store its results")
        files.append((name, name, path.read_text()))
    files += [(rel.replace("/", "."), rel, (ROOT / rel).read_text()) for rel in SHIPPED]
    return files


def render_load(plan: LoadPlan) -> list[dict[str, Any]]:
    """The load's ConfigMap and Job."""
    files = load_files(plan)
    text = _environment().get_template("serving-load.yaml.j2").render(
        plan=plan, values=plan.values, release=plan.release, namespace=plan.namespace, name=plan.job_name,
        image=plan.image, image_pull_policy=image_pull_policy(plan.image, plan.values["image_pull_policy"]),
        bucket=plan.bucket, node=plan.server.node or "", load_dir=LOAD_DIR, run_id=plan.run_id,
        data={key: text for key, _, text in files}, items=[{"key": k, "path": p} for k, p, _ in files],
        annotations={"recipelib.io/run-id": plan.run_id, "recipelib.io/model": plan.server.model,
                     "recipelib.io/aiperf-version": AIPERF_VERSION, "recipelib.io/points": str(plan.points),
                     "recipelib.io/server": plan.server.url},
    )
    return [doc for doc in yaml.safe_load_all(text) if doc]


def deploy_load(plan: LoadPlan, cluster: Cluster | None = None, *, dry_run: bool = False,
                out_dir: Path | str | None = None, force: bool = False) -> ServingResult:
    """Render, validate and apply the load Job; the same plan again changes nothing (its Job is kept)."""
    objects = render_load(plan)
    files, applied = deploy_objects(objects, plan.values, cluster, dry_run=dry_run, out_dir=out_dir, force=force)
    return ServingResult(plan, objects, files, applied)


MODES = ("throughput", "serving")


def deploy_serving_mode(settings: Settings, cluster: Cluster | None, *, mode: str = "serving", model: str,
                        experiments: Any = None, concurrency: Any = "", request_rate: Any = "", requests: int = 0,
                        duration_s: float = 0, streaming: bool = True, ttft_ms: float = 0, tpot_ms: float = 0,
                        wait_ready_s: float = 0, release: str = "", user: str = "", run_id: str = "",
                        overrides: dict[str, Any] | None = None, dry_run: bool = False,
                        out_dir: Path | str | None = None, force: bool = False, **serving: Any) -> list[ServingResult]:
    """deploy.ipynb's ``mode="serving"``: the server (unchanged if already up), then a load sweep if asked.

    Every input of both steps is checked before the first object is sent. The load step needs the server
    ready; ``wait_ready_s`` waits for it (a first 405B load takes tens of minutes: rather run the load step
    again later, with the same parameters). A dry run renders and validates both and applies nothing.
    """
    if check_mode(mode) != "serving":
        raise ConfigError("mode", "deploy_serving_mode serves: use plan_benchmark and deploy for 'throughput'")
    wants_load = concurrency not in (None, "", ()) or request_rate not in (None, "", ())
    server = plan_serving(settings, model, release=release, user=user, overrides=overrides, dry_run=dry_run,
                          **serving)
    options = dict(experiments=experiments, concurrency=concurrency or None, request_rate=request_rate or None,
                   requests=requests, duration_s=duration_s, streaming=streaming, ttft_ms=ttft_ms, tpot_ms=tpot_ms,
                   run_id=run_id, overrides=overrides)
    if wants_load and (dry_run or cluster is None):  # checked now: a bad load value must not follow a deploy
        plan_load(settings, model, release=release, user=user, dry_run=True, **options, **serving)
    results = [deploy_serving(server, cluster, dry_run=dry_run, out_dir=out_dir, force=force)]
    if not wants_load:
        return results
    if cluster is not None and not dry_run and wait_ready_s:
        from recipelib.monitor.serving import wait_ready

        wait_ready(cluster, server.release, timeout_s=wait_ready_s)
    load = plan_load(settings, model, release=server.release, user=user, dry_run=dry_run,
                     cluster=None if dry_run else cluster, **options, **serving)
    results.append(deploy_load(load, cluster, dry_run=dry_run, out_dir=out_dir, force=force))
    return results


_SERVING_ONLY = {"concurrency": "", "request_rate": "", "requests": 0, "duration_s": 0, "streaming": True,
                 "ttft_ms": 0, "tpot_ms": 0, "wait_ready_s": 0}


def check_mode(mode: str, **serving_only: Any) -> str:
    """``mode`` if known; a serving-only parameter given with ``mode="throughput"`` is refused, not ignored."""
    if mode not in MODES:
        raise ConfigError("mode", f"{mode!r}: use one of {', '.join(MODES)}")
    if mode == "throughput":
        for name, value in serving_only.items():
            if name in _SERVING_ONLY and value != _SERVING_ONLY[name]:
                raise ConfigError(name, f"is a load-sweep parameter: it needs mode='serving' (got {value!r} with "
                                        "mode='throughput', which runs trtllm-bench)")
    return mode


def show_serving(results: list[ServingResult], *, show_yaml: bool = False) -> None:
    """What deploy.ipynb prints for a serving deploy: the server, the load sweep, where results go."""
    from recipelib.deploy.render import to_yaml

    for result in results:
        plan = result.plan
        if isinstance(plan, ServingPlan):
            m = plan.model
            print(f"Server {plan.server_name} (release {plan.release}, namespace {plan.namespace}): {m.id} from "
                  f"{plan.checkpoint}, {m.backend}, TP {m.tp_size} x PP {m.pp_size} on {plan.gpus} GPU(s); "
                  f"TensorRT-LLM {plan.trtllm_version}; {plan.url}")
        else:
            print(f"Load {plan.job_name}: {plan.points} point(s) of aiperf {AIPERF_VERSION} against {plan.server.url} "
                  f"({plan.image}); results in {plan.results_path}")
            for sweep in plan.sweeps:
                print(f"  ISL {sweep.isl} / OSL {sweep.osl}: concurrency {list(sweep.concurrency) or '-'}, request "
                      f"rate {list(sweep.request_rate) or '-'}, SLOs {dict(sweep.slos) or 'none'}")
        for line in result.lines():
            print(line)
        if show_yaml:
            for obj in result.objects:
                print("---")
                if obj["kind"] == "ConfigMap":
                    print(f"# ConfigMap {obj['metadata']['name']}: {', '.join(obj['data'])}")
                    continue
                print(to_yaml(obj), end="")
