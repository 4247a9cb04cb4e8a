"""Serve a model: a ``trtllm-serve`` Deployment and its Service, planned, rendered, validated, applied.

Why a Deployment (and not the benchmark's Job): a server is long-lived. Loading 405B takes tens of
minutes, so one load serves many load sweeps (:mod:`recipelib.deploy.serving_load`, each a Job running
aiperf against the Service). The pod is the benchmark's A3 Ultra pod (``manifests/_pod.yaml.j2``, shared by
both templates); its command line is built from the version table of ``trtllm-serve``
(``manifests/trtllm/serve-<v>.yaml`` for ``settings.trtllm_version``) and holds only options that table
lists: a setting the version cannot take is refused naming the field, never dropped silently.

Objects (all labelled ``app.kubernetes.io/instance: <release>``, so cleanup removes them and only them):
ConfigMap ``<release>-serve`` (the checkpoint fetcher and its config), Deployment ``<release>-serve``
(``strategy: Recreate``: a node holds one 8-GPU server, a rolling update would wait forever for a second),
Service ``<release>-serve`` on port 8000.

Example::

    plan = plan_serving(settings, "meta-llama/Llama-3.1-405B")
    result = deploy_serving(plan, cluster)
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from recipelib.cluster.client import Cluster
from recipelib.cluster.releases import Applied, check_objects, write_objects
from recipelib.deploy.benchmark import cluster_features
from recipelib.deploy.catalog import ModelSpec, catalog, check_model_id, resolve_model
from recipelib.deploy.render import (
    _environment,
    default_values,
    image_pull_policy,
    merge_values,
    rdma_interfaces,
    write_manifests,
)
from recipelib.deploy.validate import validate_objects
from recipelib.errors import ConfigError
from recipelib.names import check_name, release_name, slug
from recipelib.paths import launcher_dir, manifests_dir
from recipelib.settings import Settings

log = logging.getLogger(__name__)

SERVE_PORT = 8000
SERVE_DIR = "/workload/serve"
POD_PROGRAM = Path(__file__).with_name("serving_pod.py")
FETCH_MODULES = ("checkpoint.py", "proc.py", "errors.py")
"""The launcher modules the checkpoint fetcher imports (``launcher/checkpoint.py`` and what it needs)."""
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _version_key(text: str) -> tuple[int, int, int] | None:
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    return (int(m[1]), int(m[2]), int(m[3] or 0)) if m else None


@cache
def _tables(folder: Path) -> dict[tuple[int, int, int], Path]:
    return {k: p for p in folder.glob("serve-*.yaml") if (k := _version_key(p.stem.removeprefix("serve-")))}


def serve_table(version: str) -> dict[str, Any]:
    """The ``trtllm-serve`` table playing ``version``: the nearest release at or below it (as the stand-in)."""
    key = _version_key(version)
    if key is None:
        raise ConfigError("TRTLLM_VERSION", f"{version!r} is not a TensorRT-LLM version such as 'v0.17.0' or '1.2.0'")
    tables = _tables(manifests_dir() / "trtllm")
    fits = [k for k in tables if k <= key]
    if not fits:
        first = ".".join(map(str, min(tables))) if tables else "none"
        raise ConfigError("TRTLLM_VERSION", f"no trtllm-serve table at or below {version} (the first is {first}): "
                                            "serving needs TensorRT-LLM 0.17 or later")
    return yaml.safe_load(tables[max(fits)].read_text())


@dataclass(frozen=True)
class ServingPlan:
    """One server, decided before rendering: what runs, where, with which flags."""

    release: str
    namespace: str
    model: ModelSpec
    image: str
    trtllm_version: str
    queue: str | None = None
    gpus: int = 0
    values: dict[str, Any] = field(default_factory=default_values, hash=False, compare=False)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.release, "release")
        check_name(self.namespace, "NAMESPACE")
        if not _DNS_1035.fullmatch(self.server_name) or len(self.server_name) > 63:
            raise ConfigError("release", f"{self.release!r}: the Service {self.server_name!r} must start with a "
                                         "letter and be at most 63 characters; give a release of at most 57 "
                                         "characters that starts with a letter")
        gpus = self.gpus or self.model.gpus
        if isinstance(gpus, bool) or not isinstance(gpus, int) or not 1 <= gpus <= 8:
            raise ConfigError("gpus", f"a node has 1-8 GPUs; got {gpus!r}")
        if gpus < self.model.gpus:
            raise ConfigError("gpus", f"{gpus} GPUs cannot hold tp_size x pp_size = {self.model.gpus}: raise gpus "
                                      "or lower tp_size")
        object.__setattr__(self, "gpus", gpus)

    @property
    def server_name(self) -> str:
        """The Deployment's and the Service's name; the Service's DNS name is the load's target."""
        return f"{self.release}-serve"

    @property
    def url(self) -> str:
        return f"http://{self.server_name}:{SERVE_PORT}"

    @property
    def checkpoint(self) -> str:
        return self.model.checkpoint or self.model.id

    @property
    def checkpoint_path(self) -> str:
        """Where the checkpoint lives on the node's SSD: the benchmark's place, so either one reuses it."""
        return f"{self.values['ssd_mount_path'].rstrip('/')}/models/{self.checkpoint}"


def serving_release(model: str, *, user: str = "", release: str = "") -> str:
    """The release a serving deploy and its load steps share: ``release``, else ``<user>-<model>`` (derived
    names kept to 57 characters, so that ``<release>-serve`` is a valid Service name)."""
    if not release:
        known = {k.lower(): k for k in catalog()}
        model = known.get(str(model).lower()) or check_model_id(model)
    name = release_name(model, user=user or None, release=release or None)
    return slug(name, 57) if not release and len(name) > 57 else name


def plan_serving(settings: Settings, model: str, *, release: str = "", user: str = "", tp_size: int = 0,
                 pp_size: int = 0, quantization: str = "", backend: str = "", gpus: int = 0,
                 overrides: dict[str, Any] | None = None, dry_run: bool = False, checkpoint: str = "") -> ServingPlan:
    """Check every input of a serving deploy (as :func:`recipelib.deploy.plan_benchmark` does) and decide it.

    A model whose ``tp_size x pp_size`` does not fit the node is refused naming ``tp_size`` (ModelSpec),
    before anything is rendered. A dry run may go without ARTIFACT_REGISTRY (a visible placeholder image).
    """
    if not isinstance(model, str):
        raise ConfigError("model", f"must be a Hugging Face model id string, got {model!r}")
    values = merge_values(overrides)
    spec = resolve_model(model, tp_size=tp_size, pp_size=pp_size, quantization=quantization, backend=backend,
                         trtllm_version=settings.trtllm_version, gpu=str(values["accelerator"]),
                         checkpoint=checkpoint)
    name = serving_release(spec.id, user=user, release=release)
    if dry_run:
        placeholder = f"LOCATION-docker.pkg.dev/PROJECT/REPO/{settings.trtllm_image}:{settings.trtllm_version}"
        image = settings.image or placeholder
    else:
        settings.require("ARTIFACT_REGISTRY", purpose="deploying a server")
        image = settings.image or ""
    notes = []
    if spec.quantization and spec.backend == "tensorrt" and not (spec.checkpoint and spec.checkpoint != spec.id):
        notes.append(f"trtllm-serve serves the checkpoint {spec.checkpoint or spec.id} as it is: its command line has "
                     f"no quantization option, so {spec.quantization} is not applied (serve a pre-quantized "
                     "checkpoint, the checkpoint parameter, to serve quantized weights)")
    plan = ServingPlan(release=name, namespace=settings.namespace, model=spec, image=image,
                       trtllm_version=settings.trtllm_version, queue=settings.kueue_name, gpus=gpus, values=values,
                       notes=tuple(notes))
    serve_command(plan)  # every flag checked against the version's table now, not at render time
    for note in notes:
        log.warning("%s", note)
    return plan


def serve_command(plan: ServingPlan) -> list[str]:
    """``trtllm-serve MODEL --host 0.0.0.0 --port 8000 ...``: only options the version's table lists.

    ``MODEL`` is the checkpoint folder on SSD (trtllm-serve takes an HF checkpoint path). A group-era
    ``trtllm-serve`` implies ``serve`` (DefaultGroup), so the same line suits every version.
    """
    table = serve_table(plan.trtllm_version)
    options = {o["name"]: o for o in table["command"].get("options") or []}
    version = table.get("version", plan.trtllm_version)
    argv = ["trtllm-serve", plan.checkpoint_path]

    def add(flag: str, value: Any, field_name: str) -> None:
        if flag not in options:
            raise ConfigError(field_name, f"trtllm-serve {version} has no {flag} (manifests/trtllm/serve-*.yaml); "
                                          f"leave {field_name} unset for this TRTLLM_VERSION")
        argv.extend([flag, str(value)])

    m, v = plan.model, plan.values
    add("--host", "0.0.0.0", "host")
    add("--port", SERVE_PORT, "port")
    backend = options.get("--backend")
    choices = (backend or {}).get("choices") or []
    if m.backend in choices:
        add("--backend", m.backend, "backend")
    elif not (m.backend == "tensorrt" and backend is not None and backend.get("default") is None):
        raise ConfigError("backend", f"trtllm-serve {version} cannot serve the {m.backend} backend "
                                     f"(--backend takes {', '.join(choices) or 'nothing'})")
    add("--tp_size", m.tp_size, "tp_size")
    add("--pp_size", m.pp_size, "pp_size")
    for flag, value, name in (("--ep_size", m.ep_size, "ep_size"), ("--max_batch_size", m.max_batch_size,
                              "max_batch_size"), ("--max_num_tokens", m.max_num_tokens, "max_num_tokens"),
                              ("--max_seq_len", v["serve_max_seq_len"] or None, "overrides.serve_max_seq_len")):
        if value is not None:
            add(flag, value, name)
    add("--kv_cache_free_gpu_memory_fraction", m.kv_cache_free_gpu_mem_fraction, "kv_cache_free_gpu_mem_fraction")
    if v["serve_extra_llm_api_options"]:
        add("--extra_llm_api_options", f"{SERVE_DIR}/extra_llm_api_options.yaml",
            "overrides.serve_extra_llm_api_options")
    return argv


def server_files(plan: ServingPlan) -> dict[str, str]:
    """The server ConfigMap: the fetcher (ours + the launcher's checkpoint rules) and its settings."""
    files = {"serving_pod.py": POD_PROGRAM.read_text()}
    for name in FETCH_MODULES:
        path = launcher_dir() / name
        if not path.is_file():
            raise ConfigError("launcher", f"{path} is missing: the server pod could not fetch its checkpoint")
        files[name] = path.read_text()
    files["serve.json"] = json.dumps({"checkpoint": plan.checkpoint, "dest": plan.checkpoint_path,
                                      "launcher": SERVE_DIR}, indent=2)
    if plan.values["serve_extra_llm_api_options"]:
        files["extra_llm_api_options.yaml"] = yaml.safe_dump(plan.values["serve_extra_llm_api_options"],
                                                             sort_keys=False)
    return files


def render_serving(plan: ServingPlan) -> list[dict[str, Any]]:
    """ConfigMap, Deployment and Service of one server."""
    text = _environment().get_template("serving-server.yaml.j2").render(
        plan=plan, values=plan.values, release=plan.release, namespace=plan.namespace, name=plan.server_name,
        image=plan.image, image_pull_policy=image_pull_policy(plan.image, plan.values["image_pull_policy"]),
        queue=plan.queue, gpus=plan.gpus, rdma_interfaces=rdma_interfaces(), files=server_files(plan),
        serve_argv=serve_command(plan), port=SERVE_PORT, serve_dir=SERVE_DIR,
        annotations={"recipelib.io/model": plan.model.id, "recipelib.io/checkpoint": plan.checkpoint,
                     "recipelib.io/checkpoint-path": plan.checkpoint_path,
                     "recipelib.io/trtllm-version": plan.trtllm_version, "recipelib.io/backend": plan.model.backend,
                     "recipelib.io/tp-size": str(plan.model.tp_size), "recipelib.io/pp-size": str(plan.model.pp_size),
                     "recipelib.io/gpus": str(plan.gpus), "recipelib.io/image": plan.image},
    )
    return [doc for doc in yaml.safe_load_all(text) if doc]


@dataclass(frozen=True)
class ServingResult:
    """What a serving deploy (or a load step) rendered, wrote and applied."""

    plan: Any  # ServingPlan or LoadPlan
    objects: list[dict[str, Any]]
    files: list[Path]
    applied: list[Applied]
    note: str | None = None

    def lines(self) -> list[str]:
        """What the notebook prints."""
        out = [*(f"Wrote {p}" for p in self.files), *(str(a) for a in self.applied)]
        return out + ([f"Note: {self.note}"] if self.note else [])


def deploy_objects(objects: list[dict[str, Any]], values: dict[str, Any], cluster: Cluster | None, *,
                   dry_run: bool, out_dir: Path | str | None, force: bool) -> tuple[list[Path], list[Applied]]:
    """Validate (strict, the values' Kubernetes version), let the server check every object, then write and apply.

    The order is the benchmark's: nothing is written anywhere until everything passed.
    """
    validate_objects(objects, values["kubernetes_version"])
    if cluster is None and not dry_run:
        raise ConfigError("cluster", "no cluster to deploy to: run setup.ipynb to connect, or use dry_run=True")
    applied = check_objects(cluster, objects, force=force) if cluster is not None else []
    files = write_manifests(objects, Path(out_dir)) if out_dir else []
    if cluster is not None and not dry_run:
        applied = write_objects(cluster, objects, force=force)
    return files, applied


def deploy_serving(plan: ServingPlan, cluster: Cluster | None = None, *, dry_run: bool = False,
                   out_dir: Path | str | None = None, force: bool = False) -> ServingResult:
    """Render, validate and apply the server; re-running with the same plan changes nothing (server-side apply).

    The server stays up between load sweeps; remove it with cleanup.ipynb (the release's objects only).
    """
    features = cluster_features(cluster)
    if features.minor is not None and features.minor < 20:
        raise ConfigError("cluster", f"Kubernetes 1.{features.minor} has no startupProbe in Deployments: serving "
                                     "needs 1.20 or later")
    objects = render_serving(plan)
    files, applied = deploy_objects(objects, plan.values, cluster, dry_run=dry_run, out_dir=out_dir, force=force)
    return ServingResult(plan, objects, files, applied, "; ".join(plan.notes) or None)
