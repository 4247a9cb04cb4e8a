"""Deploy a benchmark: settings + model + experiments -> plan -> objects -> validate -> apply (or write).

The order is the contract: every input is checked and every object validated before the first API
call, so a bad value never leaves half a release behind.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client import VersionApi

from recipelib.cluster.client import Cluster, call
from recipelib.cluster.releases import Applied, apply
from recipelib.deploy.catalog import parse_experiments, resolve_model
from recipelib.deploy.render import BenchmarkPlan, ClusterFeatures, merge_values, render_benchmark, write_manifests
from recipelib.deploy.validate import validate_objects
from recipelib.errors import ConfigError
from recipelib.names import release_name
from recipelib.settings import Settings

log = logging.getLogger(__name__)


def plan_benchmark(
    settings: Settings,
    model: str,
    experiments: Any = None,
    *,
    release: str = "",
    user: str = "",
    tp_size: int = 0,
    pp_size: int = 0,
    quantization: str = "",
    backend: str = "",
    gpus: int = 0,
    run_id: str = "",
    overrides: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> BenchmarkPlan:
    """Check every input and decide everything a deploy sends. Empty/zero arguments mean "default".

    A dry run may go without GCS_BUCKET and ARTIFACT_REGISTRY: it then renders visible placeholders
    so that a first look at the manifests needs no cloud project at all.
    """
    if not isinstance(model, str):
        raise ConfigError("model", f"must be a Hugging Face model id string, got {model!r}")
    spec = resolve_model(model, tp_size=tp_size, pp_size=pp_size, quantization=quantization, backend=backend)
    sweep = tuple(parse_experiments(experiments))
    name = release_name(spec.id, user=user or None, release=release or None)
    values = merge_values(overrides)
    if dry_run:
        bucket = settings.gcs_bucket or "set-gcs-bucket"
        placeholder = f"LOCATION-docker.pkg.dev/PROJECT/REPO/{settings.trtllm_image}:{settings.trtllm_version}"
        image = settings.image or placeholder
    else:
        settings.require("GCS_BUCKET", "ARTIFACT_REGISTRY", purpose="deploying a benchmark")
        bucket, image = settings.gcs_bucket or "", settings.image or ""
    return BenchmarkPlan(
        release=name,
        namespace=settings.namespace,
        model=spec,
        experiments=sweep,
        image=image,
        bucket=bucket,
        results_prefix=settings.results_prefix,
        queue=settings.kueue_name,
        gpus=gpus,
        run_id=run_id,
        values=values,
    )


def cluster_features(cluster: Cluster | None) -> ClusterFeatures:
    """The API server's minor version (``/version``), so the Job holds only what that server accepts."""
    if cluster is None:
        return ClusterFeatures()
    code = call(lambda: VersionApi(cluster.api).get_code(), "read the API server's version")
    digits = re.match(r"\d+", str(code.minor or ""))
    return ClusterFeatures(int(digits[0]) if digits else None)


@dataclass(frozen=True)
class DeployResult:
    plan: BenchmarkPlan
    objects: list[dict[str, Any]]
    files: list[Path]
    applied: list[Applied]


def deploy(
    plan: BenchmarkPlan,
    cluster: Cluster | None = None,
    *,
    dry_run: bool = False,
    out_dir: Path | str | None = None,
    force: bool = False,
) -> DeployResult:
    """Render and validate; then write the manifests (``out_dir``) and/or apply them (not on a dry run).

    With a cluster and ``dry_run``, the server also checks the objects (``dryRun=All``) and stores nothing.
    """
    features = cluster_features(cluster)
    for note in features.omitted():
        log.warning("left out: %s", note)
    objects = render_benchmark(plan, features)
    validate_objects(objects, plan.values["kubernetes_version"])
    files = write_manifests(objects, Path(out_dir)) if out_dir else []
    applied: list[Applied] = []
    if cluster is not None:
        applied = apply(cluster, objects, force=force, dry_run=dry_run)
    elif not dry_run:
        raise ConfigError("cluster", "no cluster to deploy to: run setup.ipynb to connect, or use dry_run=True")
    return DeployResult(plan, objects, files, applied)
