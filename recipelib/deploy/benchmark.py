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
from recipelib.cluster.releases import Applied, check_objects, check_release, write_objects
from recipelib.deploy.catalog import parse_experiments, resolve_model
from recipelib.deploy.render import BenchmarkPlan, ClusterFeatures, merge_values, render_benchmark, write_manifests
from recipelib.deploy.validate import validate_objects
from recipelib.errors import ClusterError, ConfigError
from recipelib.names import release_name
from recipelib.paths import load_launcher_module
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
    checkpoint: str = "",
) -> BenchmarkPlan:
    """Check every input and decide everything a deploy sends. Empty/zero arguments mean "default".

    The model's flow (engine or PyTorch) and checkpoint follow ``settings.trtllm_version``; its sizes are
    checked against the node's GPUs (``accelerator`` of the values). ``checkpoint`` replaces the catalog's.
    A dry run may go without GCS_BUCKET and ARTIFACT_REGISTRY: it then renders visible placeholders
    so that a first look at the manifests needs no cloud project at all.
    """
    if not isinstance(model, str):
        raise ConfigError("model", f"must be a Hugging Face model id string, got {model!r}")
    _require_bool(dry_run, "dry_run")
    values = merge_values(overrides)
    spec = resolve_model(model, tp_size=tp_size, pp_size=pp_size, quantization=quantization, backend=backend,
                         trtllm_version=settings.trtllm_version, gpu=str(values["accelerator"]),
                         checkpoint=checkpoint)
    sweep = tuple(parse_experiments(experiments))
    check_sandbox_replay(settings, spec, sweep, str(values["accelerator"]))
    name = release_name(spec.id, user=user or None, release=release or None)
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


def check_sandbox_replay(settings: Settings, spec: Any, sweep: tuple[Any, ...], accelerator: str) -> None:
    """On the local sandbox (``settings.sandbox``), refuse an experiment its replay cannot play.

    The sandbox measures nothing: each experiment replays a recorded real run, or else NVIDIA's published
    figure for that model, GPU, TP and ISL/OSL in the image's TensorRT-LLM version. One with neither would
    only fail in the pod after the download and build, so it is refused here, naming the experiment and
    what does exist. What the replay can play is read from the same file the replay uses
    (``launcher/testing/published_replay.py``), loaded by path: nothing of the sandbox is imported.
    """
    if not settings.sandbox:
        return
    replay = load_launcher_module("testing/published_replay", "recipelib._launcher.published_replay")
    version = replay.played_version(settings.trtllm_version)
    gpu = replay.gpu_name(accelerator) or accelerator
    model = spec.checkpoint or spec.id
    refused = []
    for exp in sweep:
        want = replay.Wanted(model, gpu, spec.tp_size, spec.pp_size, spec.quantization, exp.isl, exp.osl,
                             exp.num_requests, version, concurrency=exp.concurrency or None, streaming=exp.streaming)
        if replay.find(want) is None:
            refused.append(exp.id)
    if refused:
        first = next(e for e in sweep if e.id == refused[0])
        want = replay.Wanted(model, gpu, spec.tp_size, spec.pp_size, spec.quantization, first.isl, first.osl,
                             first.num_requests, version, concurrency=first.concurrency or None,
                             streaming=first.streaming)
        raise ConfigError("experiments", f"{len(refused)} of {len(sweep)} experiment(s) cannot run on the local "
                          f"sandbox ({', '.join(refused)}): {replay.refusal(want, refused[0])}. Deploy only "
                          "experiments it can replay, or deploy to a real cluster")


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
    note: str | None = None  # what the user should know though nothing failed (a finished run, not re-run)


def deploy(
    plan: BenchmarkPlan,
    cluster: Cluster | None = None,
    *,
    dry_run: bool = False,
    out_dir: Path | str | None = None,
    force: bool = False,
) -> DeployResult:
    """Render and validate; check the whole release on the cluster; then write the manifests (``out_dir``)
    and apply them (not on a dry run).

    Nothing is written anywhere until everything passed: the release's Job must hold this run (or none),
    and the server must accept every object as a dry run (``dryRun=All``; a ``dry_run`` deploy stops there).
    A run already deployed must not change either (unless ``force``): a retry of its pod would read the new
    ConfigMaps. A finished run (its Job Complete or Failed) is left as it is, and ``note`` says how to run again.
    """
    _require_bool(dry_run, "dry_run")
    _require_bool(force, "force")
    features = cluster_features(cluster)
    for omitted in features.omitted():
        log.warning("left out: %s", omitted)
    objects = render_benchmark(plan, features)
    validate_objects(objects, plan.values["kubernetes_version"])
    if cluster is None and not dry_run:
        raise ConfigError("cluster", "no cluster to deploy to: run setup.ipynb to connect, or use dry_run=True")
    applied: list[Applied] = []
    note = None
    if cluster is not None:
        existing = check_release(cluster, plan.release, plan.run_id, plan.namespace)
        applied = check_objects(cluster, objects, force=force)
        changed = [f"{a.kind}/{a.name}" for a in applied if a.action != "unchanged"]
        if existing is not None and existing.finished:
            note = (f"run {plan.run_id} of release {plan.release} already finished ({existing.status}): nothing was "
                    f"re-run or changed; its results are in {plan.results_path}. To run it again, deploy with a new "
                    f"run id (the run_id parameter, e.g. run_id=\"{_next_run_id(plan.run_id)}\") after removing this "
                    f"release's finished Job (cleanup.ipynb -p release {plan.release}; results in the bucket are "
                    "kept), or under another release name (the release parameter)")
            log.warning("%s", note)
            applied = applied if dry_run else []
        elif existing is not None and changed and not force:
            raise ClusterError(
                f"run {plan.run_id} is already deployed in release {plan.release} (Job {existing.status}) with other "
                f"settings or launcher code ({', '.join(changed)} would change), and a retry of its pod would read "
                "them. Nothing was changed. To run the new settings, deploy with a new run id (the run_id "
                f"parameter), or uninstall the release first (cleanup.ipynb -p release {plan.release}); force=True "
                "changes them under the running run."
            )
    files = write_manifests(objects, Path(out_dir)) if out_dir else []
    if cluster is not None and not dry_run and note is None:
        applied = write_objects(cluster, objects, force=force)
    return DeployResult(plan, objects, files, applied, note)


def _next_run_id(run_id: str) -> str:
    """``run-abc`` -> ``run-abc-2``, ``run-abc-2`` -> ``run-abc-3``: a suggestion that keeps the name readable."""
    stem, _, n = run_id.rpartition("-")
    nxt = f"{stem}-{int(n) + 1}" if stem and n.isdigit() and len(n) < 4 else f"{run_id}-2"
    return nxt if len(nxt) <= 40 else f"{run_id[:38]}-2"


def _require_bool(value: object, field: str) -> None:
    """``dry_run="yes"`` (papermill's ``-p dry_run yes``) must not pass for True, nor "no" for a real deploy."""
    if not isinstance(value, bool):
        raise ConfigError(field, f"must be True or False, got {value!r} (papermill: -p {field} True)")
