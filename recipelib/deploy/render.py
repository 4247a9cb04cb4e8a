"""Render the benchmark's Kubernetes objects from a frozen plan, and write them for a dry run.

Templates are Jinja2 YAML in ``manifests/`` with StrictUndefined (a misspelled variable fails loudly
instead of rendering empty), every value inserted through ``tojson``; the result is parsed back with
``yaml.safe_load_all`` into plain dicts, which the validator and the API client take as they are.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from recipelib.deploy.catalog import Experiment, ModelSpec
from recipelib.errors import ConfigError
from recipelib.names import check_name
from recipelib.paths import launcher_dir, manifests_dir
from recipelib.redaction import TOKEN, holds_token, redact
from recipelib.settings import check_bucket_name

SECRET_PATTERNS = (TOKEN,)


def default_values() -> dict[str, Any]:
    return yaml.safe_load((manifests_dir() / "values.yaml").read_text())


def merge_values(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """``values.yaml`` with ``overrides`` on top; an unknown key or a wrong type names the key."""
    values = default_values()
    if not isinstance(overrides, dict | None):
        raise ConfigError("overrides", f"must be a mapping of values.yaml keys, got {type(overrides).__name__}")
    for key, value in (overrides or {}).items():
        if holds_token(key) or holds_token(value):
            raise ConfigError(f"overrides.{redact(str(key))}", "holds a Hugging Face token: refused before any "
                              "request. The token goes only into the hf-secret Secret (setup.ipynb), never into values")
        if key not in values:
            raise ConfigError(f"overrides.{key}", f"unknown value; allowed: {', '.join(sorted(values))}")
        expected = type(values[key])
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise ConfigError(f"overrides.{key}", f"must be {expected.__name__}, got {value!r}")
        values[key] = value
    for key in ("backoff_limit", "active_deadline_seconds", "ttl_seconds_after_finished"):
        if values[key] < 0 or (key == "active_deadline_seconds" and values[key] == 0):
            raise ConfigError(f"overrides.{key}", f"must be a positive number of seconds, got {values[key]}")
    return values


@dataclass(frozen=True)
class BenchmarkPlan:
    """Everything one deploy sends, decided before rendering; ``run_id`` is stable for the same inputs."""

    release: str
    namespace: str
    model: ModelSpec
    experiments: tuple[Experiment, ...]
    image: str
    bucket: str
    results_prefix: str
    queue: str | None = None
    gpus: int = 0
    run_id: str = ""
    values: dict[str, Any] = field(default_factory=default_values, hash=False, compare=False)

    def __post_init__(self) -> None:
        check_name(self.release, "release")
        check_name(self.namespace, "NAMESPACE")
        check_bucket_name(self.bucket)
        if not self.experiments:
            raise ConfigError("experiments", "is empty: give at least one {isl, osl, num_requests}")
        gpus = self.gpus or self.model.gpus
        if isinstance(gpus, bool) or not isinstance(gpus, int) or not 1 <= gpus <= 8:
            raise ConfigError("gpus", f"a node has 1-8 GPUs; got {gpus!r}")
        if gpus < self.model.gpus:
            raise ConfigError(
                "gpus", f"{gpus} GPUs cannot hold tp_size x pp_size = {self.model.gpus}: raise gpus or lower tp_size"
            )
        object.__setattr__(self, "gpus", gpus)
        if not self.run_id:
            object.__setattr__(self, "run_id", self.derived_run_id())
        elif not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?", self.run_id):
            raise ConfigError("run_id", f"{self.run_id!r}: use lower-case letters, digits and '-', at most 40")

    def derived_run_id(self) -> str:
        """A hash of what the run measures: deploying the same sweep again resumes it, never duplicates it."""
        what = {
            "release": self.release,
            "model": asdict(self.model),
            "experiments": [asdict(e) for e in self.experiments],
            "image": self.image,
            "gpus": self.gpus,
        }
        return "run-" + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]

    @property
    def results_path(self) -> str:
        """Where this run's results land: ``gs://BUCKET/PREFIX/RELEASE/RUN_ID/``."""
        return f"gs://{self.bucket}/{self.results_prefix}/{self.release}/{self.run_id}/"


def launcher_config(plan: BenchmarkPlan) -> dict[str, Any]:
    """The launcher's config file (``launcher/launch.py`` documents and validates each key)."""
    v = plan.values
    ssd = v["ssd_mount_path"].rstrip("/")
    m = plan.model
    return {
        "release": plan.release,
        "run_id": plan.run_id,
        "model": m.id,
        # the repository actually downloaded and run (a pre-quantized one such as NVIDIA's FP8 405B for 1.x)
        "checkpoint": m.checkpoint or m.id,
        # what the launcher checks the parallel sizes against before it downloads anything
        "model_shape": {k: v for k, v in (("attention_heads", m.attention_heads), ("layers", m.layers)) if v} or None,
        "backend": m.backend,
        "tp_size": m.tp_size,
        "pp_size": m.pp_size,
        "ep_size": m.ep_size,
        "quantization": m.quantization,
        "kv_cache_free_gpu_mem_fraction": m.kv_cache_free_gpu_mem_fraction,
        "max_batch_size": m.max_batch_size,
        "max_num_tokens": m.max_num_tokens,
        "checkpoint_dir": f"{ssd}/models",
        "workspace": f"{ssd}/workspace",
        "engine_cache_dir": f"{ssd}/engines",
        "results": f"{v['gcs_mount_path'].rstrip('/')}/{plan.results_prefix}",
        "experiments": [asdict(e) for e in plan.experiments],
    }


def launcher_files() -> dict[str, str]:
    """The launcher's top-level modules, shipped to the pod in a ConfigMap."""
    files = {p.name: p.read_text() for p in sorted(launcher_dir().glob("*.py"))}
    if "launch.py" not in files:
        raise ConfigError("launcher", f"{launcher_dir() / 'launch.py'} is missing: the pod would have nothing to run")
    return files


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(manifests_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def rdma_interfaces() -> list[dict[str, str]]:
    """A3 Ultra's multi-network: eth0 default, eth1 gVNIC, eth2-eth9 one RDMA NIC per GPU."""
    return [
        {"interfaceName": "eth0", "network": "default"},
        {"interfaceName": "eth1", "network": "gvnic-1"},
        *({"interfaceName": f"eth{i + 2}", "network": f"rdma-{i}"} for i in range(8)),
    ]


PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def image_pull_policy(image: str, configured: str) -> str:
    """``Always`` for a tag (a re-pushed tag must not run stale from a node's cache), ``IfNotPresent`` for
    a digest, which names one image for good; a configured policy wins."""
    if configured:
        if configured not in PULL_POLICIES:
            raise ConfigError("overrides.image_pull_policy", f"{configured!r}: use one of {', '.join(PULL_POLICIES)}")
        return configured
    return "IfNotPresent" if "@sha256:" in image else "Always"


@dataclass(frozen=True)
class ClusterFeatures:
    """What the target cluster's API can hold; an older cluster gets the manifest without the newer fields.

    ``pod_failure_policy``: Job ``podFailurePolicy`` (beta and on by default from 1.26, GA in 1.31). A 1.20
    API server refuses the whole Job for it (server-side apply: "field not declared in schema").
    """

    minor: int | None = None

    @property
    def pod_failure_policy(self) -> bool:
        return self.minor is None or self.minor >= 26

    def omitted(self) -> list[str]:
        return [] if self.pod_failure_policy else [
            f"Job podFailurePolicy (needs Kubernetes >= 1.26; this cluster is 1.{self.minor}): a lost node or a "
            "configuration error spends a retry of backoffLimit"]


def render_benchmark(plan: BenchmarkPlan, features: ClusterFeatures | None = None) -> list[dict[str, Any]]:
    """The objects of one benchmark release: launcher ConfigMap, config ConfigMap, Job.

    ``features`` describes the target cluster (its minor version); without it, a current cluster.
    """
    text = _environment().get_template("benchmark-job.yaml.j2").render(
        features=features or ClusterFeatures(),
        image_pull_policy=image_pull_policy(plan.image, plan.values["image_pull_policy"]),
        release=plan.release,
        namespace=plan.namespace,
        run_id=plan.run_id,
        model=plan.model,
        experiments=plan.experiments,
        image=plan.image,
        bucket=plan.bucket,
        queue=plan.queue,
        gpus=plan.gpus,
        values=plan.values,
        rdma_interfaces=rdma_interfaces(),
        launcher_files=launcher_files(),
        launcher_config=launcher_config(plan),
    )
    return [doc for doc in yaml.safe_load_all(text) if doc]


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the launcher's files, its config) as readable ``|`` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def to_yaml(obj: dict[str, Any]) -> str:
    return yaml.dump(obj, Dumper=_BlockDumper, sort_keys=False, width=1000)


def write_manifests(objects: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One YAML file per object, named ``NN-kind-name.yaml``; returns the paths written.

    A dry run writes into ``out_dir`` and replaces only files it wrote itself before (same names), so a
    user's other files in that folder are left alone.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, obj in enumerate(objects, 1):
        text = to_yaml(obj)
        if any(p.search(text) for p in SECRET_PATTERNS):
            raise ConfigError("manifests", "a rendered object holds what looks like a Hugging Face token; not written")
        path = out_dir / f"{i:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        path.write_text(text)
        paths.append(path)
    return paths
