"""Build the benchmark image with Cloud Build from Python: the recipe's ``gcloud builds submit``, no gcloud.

The recipe (section 3.6) runs::

    gcloud builds submit --region=$REGION --config cloudbuild.yml \\
        --substitutions _ARTIFACT_REGISTRY=...,_TRTLLM_IMAGE=...,_TRTLLM_VERSION=...,_TRITON_SERVER_VERSION=... \\
        --timeout 2h --machine-type=e2-highcpu-32 --disk-size=1000 --async

Here the same happens in three steps a notebook can show and a test can check:

1. ``plan_image_build``: validate everything before any request (settings, the config's ``${_X}``
   substitutions against what we pass, the Dockerfile and what it copies, the build options) and warn
   about a TensorRT-LLM/Triton pair that NVIDIA does not ship together.
2. ``submit_image_build``: skip when the tag already exists in Artifact Registry (unless ``force``),
   pack ``launcher/`` reproducibly, upload it create-only to ``gs://<project>_cloudbuild/source/...``,
   create the regional build, and return at once with its id.
3. ``follow_build``: poll the build's status and stream its log object (``log-<id>.txt`` in the logs
   bucket) by byte ranges until a terminal state; a failure names the failing step and the last lines.

Every client is injected through ``BuildClients`` so tests point them at local servers; by default they
use Application Default Credentials. A 403 becomes a sentence that names the missing role.

Example::

    settings = load_settings()
    plan = plan_image_build(settings)
    submitted = submit_image_build(plan)
    outcome = follow_build(submitted, on_line=print)
    outcome.raise_for_status()
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from recipelib.errors import CloudError, ConfigError, ImageBuildError
from recipelib.image.context import IGNORE_FILE, BuildContext, context_files, missing_sources, pack_context
from recipelib.image.registry import ArtifactRegistryTags, ImageRef, TagChecker, TagInfo, permission_sentence
from recipelib.image.trtllm_versions import check_version_pair
from recipelib.paths import launcher_dir
from recipelib.settings import Settings, check_artifact_registry, check_bucket_name, validate_settings

log = logging.getLogger(__name__)

CONFIG_FILE = "cloudbuild.yaml"
DOCKERFILE = "Dockerfile"
DEFAULT_MACHINE_TYPE = "E2_HIGHCPU_32"
DEFAULT_DISK_SIZE_GB = 1000
DEFAULT_TIMEOUT_S = 2 * 3600
MACHINE_TYPES = ("E2_HIGHCPU_8", "E2_HIGHCPU_32", "E2_MEDIUM", "E2_STANDARD_2", "N1_HIGHCPU_8", "N1_HIGHCPU_32")
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

CLOUDBUILD_ENDPOINT_ENV = "RECIPELIB_CLOUDBUILD_ENDPOINT"
"""A Cloud Build API server to use instead of Google's (tests: a local fake); ``http://`` means anonymous."""
REGISTRY_ENDPOINT_ENV = "RECIPELIB_ARTIFACTREGISTRY_ENDPOINT"
"""An Artifact Registry API server to use instead of Google's, as above."""

MESSAGE_LINES = 20
"""How many of the log's last lines a failure message shows."""
TERMINAL = frozenset({"SUCCESS", "FAILURE", "INTERNAL_ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"})
_USER_SUBSTITUTION = re.compile(r"^_[A-Z0-9_]+$")
_REFERENCE = re.compile(r"\$\{(?P<braced>[A-Za-z0-9_]+)\}|\$(?P<bare>[A-Za-z0-9_]+)")


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildPlan:
    """A validated build request: nothing has been sent yet."""

    project_id: str
    region: str
    image: str
    substitutions: dict[str, str]
    context_dir: Path
    config_path: Path
    files: tuple[str, ...]
    source_bucket: str
    default_source_bucket: bool
    machine_type: str = DEFAULT_MACHINE_TYPE
    disk_size_gb: int = DEFAULT_DISK_SIZE_GB
    timeout_s: int = DEFAULT_TIMEOUT_S
    logs_bucket: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def parent(self) -> str:
        return f"projects/{self.project_id}/locations/{self.region}"

    @property
    def image_ref(self) -> ImageRef:
        return ImageRef.parse(self.image)


@dataclass(frozen=True)
class SourceUpload:
    """The context tarball in Cloud Storage; ``generation`` pins the exact object Cloud Build fetches."""

    bucket: str
    name: str
    generation: int
    size: int
    sha256: str

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


@dataclass(frozen=True)
class SubmittedBuild:
    """What ``submit_image_build`` did: a build created (``build_id``), or nothing because the tag exists."""

    image: str
    build_id: str | None = None
    name: str | None = None
    log_url: str | None = None
    logs_bucket: str | None = None
    source: SourceUpload | None = None
    existing: TagInfo | None = None
    warnings: tuple[str, ...] = ()

    @property
    def skipped(self) -> bool:
        return self.build_id is None


@dataclass(frozen=True)
class StepState:
    index: int
    id: str
    name: str
    status: str
    seconds: float | None = None

    @property
    def label(self) -> str:
        return f"step #{self.index} {self.id!r}" if self.id else f"step #{self.index} ({self.name})"


@dataclass(frozen=True)
class BuildState:
    """One poll of ``builds.get``: the status, each step's status and time, and what was pushed."""

    build_id: str
    status: str
    steps: tuple[StepState, ...] = ()
    status_detail: str = ""
    failure: str = ""
    logs_bucket: str = ""
    log_url: str = ""
    images: tuple[tuple[str, str], ...] = ()
    seconds: float | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def failed_step(self) -> StepState | None:
        for step in self.steps:
            if step.status in ("FAILURE", "TIMEOUT", "CANCELLED", "INTERNAL_ERROR"):
                return step
        return None

    def describe(self) -> str:
        running = [s for s in self.steps if s.status == "WORKING"]
        done = sum(1 for s in self.steps if s.status == "SUCCESS")
        parts = [self.status]
        if self.steps:
            parts.append(f"{done}/{len(self.steps)} steps done")
        if running:
            parts.append("running " + ", ".join(s.label for s in running))
        if self.seconds is not None:
            parts.append(format_seconds(self.seconds))
        return ", ".join(parts)


@dataclass(frozen=True)
class BuildOutcome:
    """How following a build ended. ``done`` is False when following stopped first (``timeout_s``)."""

    build_id: str
    image: str
    status: str
    done: bool
    state: BuildState | None = None
    digest: str | None = None
    last_lines: tuple[str, ...] = ()
    log_offset: int = 0
    lines_seen: int = 0

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"

    @property
    def failed_step(self) -> StepState | None:
        return self.state.failed_step if self.state else None

    @property
    def message(self) -> str:
        if self.success:
            return f"build {self.build_id} succeeded: {self.image}" + (f"@{self.digest}" if self.digest else "")
        if not self.done:
            return (f"build {self.build_id} is still {self.status}; stopped following at log offset "
                    f"{self.log_offset} (follow again with log_offset={self.log_offset} to resume)")
        parts = [f"build {self.build_id} ended {self.status}"]
        step = self.failed_step
        if step:
            took = f" after {format_seconds(step.seconds)}" if step.seconds is not None else ""
            parts.append(f"at {step.label}{took}")
        msg = " ".join(parts)
        if self.state and (self.state.failure or self.state.status_detail):
            msg += f": {self.state.failure or self.state.status_detail}"
        hint = _failure_hint(self.last_lines)
        if hint:
            msg += f". {hint}"
        if self.last_lines:
            msg += "\nLast log lines:\n  " + "\n  ".join(self.last_lines[-MESSAGE_LINES:])
        return msg

    def raise_for_status(self) -> BuildOutcome:
        """Raise ImageBuildError unless the build succeeded; return self so calls chain."""
        if not self.success:
            raise ImageBuildError(self.message, self)
        return self


def format_seconds(seconds: float) -> str:
    """``42s``, ``41m 0s``, ``2h 3m``: build times read at a glance."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    return f"{s // 3600}h {s % 3600 // 60}m"


def _failure_hint(lines: tuple[str, ...]) -> str:
    text = "\n".join(lines).lower()
    if "denied" in text and ("permission" in text or "artifactregistry" in text or "unauthorized" in text):
        return ("The push was refused: the build's service account needs roles/artifactregistry.writer on the "
                "repository")
    if "manifest unknown" in text or "not found: manifest" in text:
        return "A base image tag was not found: check TRITON_SERVER_VERSION"
    if "remote branch" in text and "not found" in text:
        return "The tensorrtllm_backend checkout failed: check TRTLLM_VERSION (a tag such as v0.17.0)"
    return ""


# --------------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------------


def default_credentials() -> Any:
    """Application Default Credentials, or a CloudError that says how to get them."""
    import google.auth
    import google.auth.exceptions

    try:
        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    except google.auth.exceptions.DefaultCredentialsError as e:
        raise CloudError(
            "no Google Cloud credentials: run 'gcloud auth application-default login' once on this machine, or run "
            f"the notebook on a VM or Workbench instance with a service account ({e})"
        ) from None
    return credentials


@dataclass
class BuildClients:
    """The three clients an image build uses. Build one with ``create``, or pass your own (tests)."""

    storage: Any
    cloudbuild: Any
    registry: TagChecker

    @classmethod
    def create(
        cls,
        project: str,
        *,
        credentials: Any = None,
        cloudbuild_endpoint: str | None = None,
        storage_endpoint: str | None = None,
        registry_endpoint: str | None = None,
    ) -> BuildClients:
        """Real clients with Application Default Credentials, or local servers where an endpoint is given.

        Endpoints default to ``$RECIPELIB_CLOUDBUILD_ENDPOINT`` / ``$RECIPELIB_ARTIFACTREGISTRY_ENDPOINT``
        (Cloud Storage: ``STORAGE_EMULATOR_HOST`` or the GCS_ENDPOINT setting, passed as
        ``storage_endpoint``). An ``http://`` endpoint is a local fake and gets anonymous credentials.
        """
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        from google.cloud.devtools import cloudbuild_v1

        cloudbuild_endpoint = cloudbuild_endpoint or os.environ.get(CLOUDBUILD_ENDPOINT_ENV) or None
        registry_endpoint = registry_endpoint or os.environ.get(REGISTRY_ENDPOINT_ENV) or None
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        storage_endpoint = storage_endpoint or (emulator if emulator and "://" in emulator else None)
        resolved: list[Any] = [credentials]

        def creds_for(endpoint: str | None) -> Any:
            if endpoint and endpoint.startswith("http://") and credentials is None:
                return AnonymousCredentials()
            if resolved[0] is None:
                resolved[0] = default_credentials()
            return resolved[0]

        storage_options = {"api_endpoint": storage_endpoint} if storage_endpoint else None
        storage_client = storage.Client(
            project=project, credentials=creds_for(storage_endpoint), client_options=storage_options
        )
        cb_options = {"api_endpoint": cloudbuild_endpoint} if cloudbuild_endpoint else None
        cloudbuild = cloudbuild_v1.CloudBuildClient(
            credentials=creds_for(cloudbuild_endpoint), transport="rest", client_options=cb_options
        )
        registry = ArtifactRegistryTags(
            credentials=creds_for(registry_endpoint),
            **({"endpoint": registry_endpoint} if registry_endpoint else {}),
        )
        return cls(storage=storage_client, cloudbuild=cloudbuild, registry=registry)


# --------------------------------------------------------------------------------------------------
# 1. Plan: validate everything, send nothing
# --------------------------------------------------------------------------------------------------


def default_source_bucket(project_id: str) -> str:
    """``<project>_cloudbuild``, the bucket gcloud stages sources in (``google`` is not allowed in names)."""
    return project_id.replace(":", "_").replace(".", "_").replace("google", "elgoog") + "_cloudbuild"


def recipe_substitutions(settings: Settings) -> dict[str, str]:
    """The recipe's four substitutions, from the settings of the same names."""
    return {
        "_ARTIFACT_REGISTRY": str(settings.artifact_registry),
        "_TRTLLM_IMAGE": settings.trtllm_image,
        "_TRTLLM_VERSION": settings.trtllm_version,
        "_TRITON_SERVER_VERSION": settings.triton_server_version,
    }


def plan_image_build(
    settings: Settings,
    *,
    context_dir: Path | str | None = None,
    config: Path | str | None = None,
    source_bucket: str | None = None,
    logs_bucket: str | None = None,
    machine_type: str = DEFAULT_MACHINE_TYPE,
    disk_size_gb: int = DEFAULT_DISK_SIZE_GB,
    timeout_s: int = DEFAULT_TIMEOUT_S,
    extra_substitutions: Mapping[str, str] | None = None,
) -> BuildPlan:
    """Check every input and return what would be sent; raises ConfigError naming the field at fault.

    ``context_dir`` defaults to the project's ``launcher/``, ``config`` to its ``cloudbuild.yaml``;
    ``source_bucket`` to ``<PROJECT_ID>_cloudbuild``. A TensorRT-LLM/Triton pair missing from NVIDIA's
    table is a warning (logged, and in ``plan.warnings``), not an error.
    """
    settings.require("PROJECT_ID", "REGION", "ARTIFACT_REGISTRY", purpose="an image build")
    validate_settings(settings)
    project, region, registry = str(settings.project_id), str(settings.region), str(settings.artifact_registry)
    check_artifact_registry(registry)

    if machine_type not in MACHINE_TYPES:
        raise ConfigError("machine_type", f"{machine_type!r} is not a Cloud Build machine type; use one of "
                                          f"{', '.join(MACHINE_TYPES)} (the recipe uses {DEFAULT_MACHINE_TYPE})")
    if isinstance(disk_size_gb, bool) or not isinstance(disk_size_gb, int) or not 10 <= disk_size_gb <= 4000:
        raise ConfigError("disk_size_gb", f"{disk_size_gb!r} must be a whole number of GB from 10 to 4000 "
                                          f"(the recipe uses {DEFAULT_DISK_SIZE_GB})")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or not 600 <= timeout_s <= 86400:
        raise ConfigError("timeout_s", f"{timeout_s!r} must be whole seconds from 600 to 86400 (24 h); the recipe "
                                       f"uses {DEFAULT_TIMEOUT_S} (2 h)")

    default_bucket = not source_bucket
    bucket = source_bucket or default_source_bucket(project)
    check_bucket_name(bucket, field="source_bucket")
    if logs_bucket:
        check_bucket_name(logs_bucket.removeprefix("gs://").split("/", 1)[0], field="logs_bucket")

    ctx = Path(context_dir) if context_dir else launcher_dir()
    files = tuple(context_files(ctx))
    dockerfile = ctx / DOCKERFILE
    if not dockerfile.is_file():
        raise ConfigError("context_dir", f"{dockerfile} is missing: the build needs a Dockerfile in {ctx}")
    if DOCKERFILE not in files:
        raise ConfigError("context_dir", f"{DOCKERFILE} is excluded by {ctx / IGNORE_FILE}: remove that pattern")
    missing = missing_sources(dockerfile.read_text(), files)
    if missing:
        line, src = missing[0]
        raise ConfigError(
            f"{DOCKERFILE}:{line}",
            f"copies {src!r}, which is not in the build context {ctx} (missing, or excluded by {IGNORE_FILE})",
        )

    config_path = Path(config) if config else ctx / CONFIG_FILE
    cfg = load_config(config_path)
    parse_build(cfg, config_path)  # an unknown or mistyped field fails here, not after the upload
    substitutions = recipe_substitutions(settings)
    for key, value in (extra_substitutions or {}).items():
        if not _USER_SUBSTITUTION.match(key):
            raise ConfigError(f"substitutions.{key}", "user substitutions are named _UPPER_CASE (a leading '_', then "
                                                      "A-Z, 0-9 and '_')")
        if not isinstance(value, str) or "\n" in value:
            raise ConfigError(f"substitutions.{key}", "must be a one-line string")
        substitutions[key] = value
    check_substitutions(cfg, substitutions, config_path)

    image = f"{registry}/{settings.trtllm_image}:{settings.trtllm_version}"
    ImageRef.parse(image, field="ARTIFACT_REGISTRY")
    images = [apply_substitutions(str(i), {**_config_defaults(cfg), **substitutions}) for i in cfg.get("images", [])]
    if image not in images:
        raise ConfigError(
            "config", f"{config_path} 'images' does not list {image} (it lists {images or 'nothing'}): the build would "
                      "not push the image that deploy.ipynb uses"
        )

    warnings = []
    pair = check_version_pair(settings.trtllm_version, settings.triton_server_version)
    if pair:
        log.warning("%s", pair)
        warnings.append(pair)
    return BuildPlan(
        project_id=project, region=region, image=image, substitutions=substitutions,
        context_dir=ctx, config_path=config_path, files=files, source_bucket=bucket,
        default_source_bucket=default_bucket, machine_type=machine_type, disk_size_gb=disk_size_gb,
        timeout_s=timeout_s, logs_bucket=logs_bucket or None, warnings=tuple(warnings),
    )


def load_config(path: Path) -> dict[str, Any]:
    """The Cloud Build config as a mapping, with its steps checked for the minimum Cloud Build needs."""
    if not path.is_file():
        raise ConfigError("config", f"Cloud Build config {path} does not exist")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError("config", f"{path} is not valid YAML: {e}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("steps"), list) or not cfg["steps"]:
        raise ConfigError("config", f"{path} must be a mapping with a non-empty 'steps' list")
    for i, step in enumerate(cfg["steps"]):
        if not isinstance(step, dict) or not step.get("name"):
            raise ConfigError(f"config.steps[{i}]", f"in {path}: each step needs a 'name' (the builder image)")
    return cfg


def parse_build(cfg: Mapping[str, Any], path: Path) -> Any:
    """The config as a ``cloudbuild_v1.Build``; unknown or mistyped fields are a ConfigError."""
    from google.cloud.devtools import cloudbuild_v1

    try:
        return cloudbuild_v1.Build.from_json(json.dumps(cfg))
    except Exception as e:  # google.protobuf.json_format.ParseError, and TypeError for odd YAML values
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError("config", f"{path} is not a Cloud Build config: {message}") from None


def _config_defaults(cfg: Mapping[str, Any]) -> dict[str, str]:
    subs = cfg.get("substitutions") or {}
    return {str(k): str(v) for k, v in subs.items()} if isinstance(subs, dict) else {}


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def referenced_substitutions(cfg: Mapping[str, Any]) -> set[str]:
    """User substitutions (``$_X`` / ``${_X}``) the config uses, outside its own ``substitutions`` defaults."""
    names: set[str] = set()
    for key, value in cfg.items():
        if key == "substitutions":
            continue
        for text in _strings(value):
            for m in _REFERENCE.finditer(text.replace("$$", "")):
                name = m["braced"] or m["bare"]
                if name.startswith("_"):
                    names.add(name)
    return names


def check_substitutions(cfg: Mapping[str, Any], given: Mapping[str, str], path: Path) -> None:
    """Every ``${_X}`` of the config has a value, and every value we pass is used: Cloud Build's MUST_MATCH."""
    used = referenced_substitutions(cfg)
    defaults = _config_defaults(cfg)
    missing = sorted(used - set(given) - set(defaults))
    if missing:
        raise ConfigError(f"substitutions.{missing[0]}", f"{path} uses {', '.join(missing)} but no value is given")
    unknown = sorted(set(given) - used)
    if unknown:
        raise ConfigError(f"substitutions.{unknown[0]}", f"{path} does not use {', '.join(unknown)}; it uses "
                                                         f"{', '.join(sorted(used)) or 'no substitutions'}")
    for name, value in given.items():
        if not value or value == "None":
            raise ConfigError(f"substitutions.{name}", "is empty")


def apply_substitutions(text: str, values: Mapping[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m["braced"] or m["bare"]
        return values.get(name, m[0])

    return "$".join(_REFERENCE.sub(repl, part) for part in text.split("$$"))


# --------------------------------------------------------------------------------------------------
# 2. Submit: tag check, upload, create
# --------------------------------------------------------------------------------------------------


def find_existing_image(plan: BuildPlan, registry: TagChecker) -> TagInfo | None:
    return registry.get_tag(plan.image_ref)


def upload_context(
    storage_client: Any,
    bucket: str,
    context: BuildContext,
    *,
    object_name: str | None = None,
    create_bucket: bool = False,
    location: str | None = None,
) -> SourceUpload:
    """Upload the tarball create-only (``if_generation_match=0``): an existing object is never replaced.

    The name is gcloud's ``source/<unix time>.<micros>-<uuid>.tgz`` unless given. With ``create_bucket``
    (the default ``<project>_cloudbuild`` bucket) a missing bucket is created, as gcloud does.
    """
    from google.api_core import exceptions as gexc

    name = object_name or f"source/{time.time():.6f}-{uuid.uuid4().hex}.tgz"
    for attempt in (1, 2):
        blob = storage_client.bucket(bucket).blob(name)
        blob.metadata = {"sha256": context.sha256, "files": str(len(context.files))}
        try:
            blob.upload_from_string(context.data, content_type="application/gzip", if_generation_match=0)
            break
        except gexc.PreconditionFailed:
            raise CloudError(f"gs://{bucket}/{name} already exists; build sources are never overwritten. "
                             "Submit again for a fresh name") from None
        except gexc.NotFound:
            if not create_bucket or attempt == 2:
                raise CloudError(f"source bucket gs://{bucket} does not exist: create it, or leave source_bucket "
                                 "empty to use <PROJECT_ID>_cloudbuild") from None
            _create_bucket(storage_client, bucket, location)
        except gexc.Forbidden as e:
            squatted = (f" If gs://{bucket} belongs to another project, pass source_bucket= a bucket of yours."
                        if create_bucket else "")
            raise CloudError(permission_sentence(
                e.message, f"upload the build source to gs://{bucket}", "roles/storage.objectAdmin",
                f"bucket gs://{bucket}", api="storage.googleapis.com") + squatted) from None
        except gexc.GoogleAPICallError as e:
            raise CloudError(f"could not upload the build source to gs://{bucket}/{name}: {e.message}") from None
    generation = int(blob.generation or 0)
    log.info("uploaded build context gs://%s/%s#%s (%d bytes, sha256 %s)", bucket, name, generation,
             context.size, context.sha256)
    return SourceUpload(bucket, name, generation, context.size, context.sha256)


def _create_bucket(storage_client: Any, bucket: str, location: str | None) -> None:
    from google.api_core import exceptions as gexc

    log.info("creating source bucket gs://%s", bucket)
    try:
        storage_client.create_bucket(bucket, location=location)
    except gexc.Conflict:
        pass  # created meanwhile, by us or gcloud
    except gexc.Forbidden as e:
        raise CloudError(permission_sentence(
            e.message, f"create the source bucket gs://{bucket}", "roles/storage.admin", "the project",
            api="storage.googleapis.com")) from None


def build_request(plan: BuildPlan, source: SourceUpload) -> Any:
    """The ``Build`` message: the config's steps and images, our substitutions, source and options."""
    from google.cloud.devtools import cloudbuild_v1

    build = parse_build(load_config(plan.config_path), plan.config_path)
    subs = dict(build.substitutions)
    subs.update(plan.substitutions)
    build.substitutions = subs
    build.source = cloudbuild_v1.Source(
        storage_source=cloudbuild_v1.StorageSource(
            bucket=source.bucket, object_=source.name, generation=source.generation
        )
    )
    build.options.machine_type = cloudbuild_v1.BuildOptions.MachineType[plan.machine_type]
    build.options.disk_size_gb = plan.disk_size_gb
    build.timeout = f"{plan.timeout_s}s"
    if plan.logs_bucket:
        build.logs_bucket = plan.logs_bucket if plan.logs_bucket.startswith("gs://") else f"gs://{plan.logs_bucket}"
    return build


def submit_image_build(
    plan: BuildPlan,
    clients: BuildClients | None = None,
    *,
    force: bool = False,
    context: BuildContext | None = None,
) -> SubmittedBuild:
    """Create the build and return at once (``--async``); or return ``skipped`` when the tag exists.

    ``force`` rebuilds even when Artifact Registry already has the tag.
    """
    from google.api_core import exceptions as gexc

    clients = clients or BuildClients.create(plan.project_id)
    if not force:
        existing = find_existing_image(plan, clients.registry)
        if existing is not None:
            log.info("%s already exists (%s); not rebuilding", plan.image, existing.version)
            return SubmittedBuild(image=plan.image, existing=existing, warnings=plan.warnings)
    context = context or pack_context(plan.context_dir)
    source = upload_context(clients.storage, plan.source_bucket, context, create_bucket=plan.default_source_bucket)
    build = build_request(plan, source)
    try:
        operation = clients.cloudbuild.create_build(request={"parent": plan.parent, "build": build})
    except (gexc.Forbidden, gexc.PermissionDenied) as e:
        raise CloudError(permission_sentence(
            e.message, f"create a build in {plan.parent}", "roles/cloudbuild.builds.editor",
            f"project {plan.project_id}", api="cloudbuild.googleapis.com")) from None
    except gexc.Unauthorized as e:
        raise CloudError(f"Cloud Build refused the credentials ({e.message}): run 'gcloud auth application-default "
                         "login' again, or check the service account") from None
    except gexc.GoogleAPICallError as e:
        raise CloudError(f"Cloud Build refused the build in {plan.parent}: HTTP {e.code} {e.message}") from None
    created = operation.metadata.build
    if not created.id:
        raise CloudError(f"Cloud Build answered without a build id (operation {operation.operation.name})")
    submitted = SubmittedBuild(
        image=plan.image,
        build_id=created.id,
        name=f"{plan.parent}/builds/{created.id}",
        log_url=created.log_url or None,
        logs_bucket=created.logs_bucket or None,
        source=source,
        warnings=plan.warnings,
    )
    log.info("created build %s for %s", submitted.build_id, plan.image)
    return submitted


# --------------------------------------------------------------------------------------------------
# 3. Follow: status and the log object, resumable
# --------------------------------------------------------------------------------------------------


class LogTail:
    """Read a growing Cloud Storage object line by line, by byte ranges, never repeating a line.

    ``offset`` is the byte just after the last complete line handed out: save it, and a new
    ``LogTail(..., offset=saved)`` goes on from there. A trailing line without its newline is held back
    until it is complete, or until ``flush`` at the end of the build.
    """

    def __init__(self, storage_client: Any, bucket: str, name: str, *, offset: int = 0) -> None:
        self.bucket, self.name = bucket, name
        self._storage = storage_client
        self.offset = offset
        self._pending = b""

    @classmethod
    def for_build(cls, storage_client: Any, logs_bucket: str, build_id: str, *, offset: int = 0) -> LogTail:
        """``logs_bucket`` as the Build says it (``gs://bucket`` or ``gs://bucket/dir``) -> ``log-<id>.txt``."""
        stripped = logs_bucket.removeprefix("gs://").rstrip("/")
        bucket, _, folder = stripped.partition("/")
        return cls(storage_client, bucket, f"{folder + '/' if folder else ''}log-{build_id}.txt", offset=offset)

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    def poll(self) -> list[str]:
        """New complete lines since the last call (empty when nothing new or no log yet)."""
        from google.api_core import exceptions as gexc

        start = self.offset + len(self._pending)
        try:
            # a fresh Blob each time: one that has been read remembers that generation, and the log
            # object gets a new generation each time it grows
            blob = self._storage.bucket(self.bucket).blob(self.name)
            data = blob.download_as_bytes(start=start, checksum=None)
        except (gexc.NotFound, gexc.RequestRangeNotSatisfiable):
            return []
        except gexc.Forbidden as e:
            raise CloudError(permission_sentence(
                e.message, f"read the build log {self.uri}", "roles/viewer (for Cloud Build's default logs bucket) "
                "or roles/storage.objectViewer", f"the project or bucket gs://{self.bucket}",
                api="storage.googleapis.com")) from None
        buf = self._pending + data
        *complete, self._pending = buf.split(b"\n")
        lines = [c.decode("utf-8", errors="replace").rstrip("\r") for c in complete]
        self.offset += sum(len(c) + 1 for c in complete)
        return lines

    def flush(self) -> list[str]:
        """The held-back last line, if the log did not end with a newline (call once the build ended)."""
        lines = self.poll()
        if self._pending:
            lines.append(self._pending.decode("utf-8", errors="replace").rstrip("\r"))
            self.offset += len(self._pending)
            self._pending = b""
        return lines


def _seconds(timing: Any) -> float | None:
    start, end = getattr(timing, "start_time", None), getattr(timing, "end_time", None)
    if not start:
        return None
    end = end or datetime.now(timezone.utc)
    return max(0.0, (end - start).total_seconds())


def _state_from(build: Any) -> BuildState:
    steps = tuple(
        StepState(i, s.id, s.name, s.status.name, _seconds(s.timing)) for i, s in enumerate(build.steps)
    )
    seconds = None
    if build.start_time:
        end = build.finish_time or datetime.now(timezone.utc)
        seconds = max(0.0, (end - build.start_time).total_seconds())
    return BuildState(
        build_id=build.id,
        status=build.status.name,
        steps=steps,
        status_detail=build.status_detail,
        failure=build.failure_info.detail if build.failure_info else "",
        logs_bucket=build.logs_bucket,
        log_url=build.log_url,
        images=tuple((i.name, i.digest) for i in build.results.images),
        seconds=seconds,
    )


def get_build_state(cloudbuild: Any, name: str) -> BuildState:
    """One ``builds.get`` as a BuildState; 403s and 404s as sentences."""
    from google.api_core import exceptions as gexc

    try:
        build = cloudbuild.get_build(request={"name": name})
    except (gexc.Forbidden, gexc.PermissionDenied) as e:
        project = name.split("/")[1] if name.count("/") >= 1 else name
        raise CloudError(permission_sentence(
            e.message, f"read build {name}", "roles/cloudbuild.builds.viewer (or roles/cloudbuild.builds.editor)",
            f"project {project}", api="cloudbuild.googleapis.com")) from None
    except gexc.NotFound:
        raise CloudError(f"build {name} not found: check the build id and REGION") from None
    except gexc.GoogleAPICallError as e:
        raise CloudError(f"could not read build {name}: HTTP {e.code} {e.message}") from None
    return _state_from(build)


def follow_build(
    build: SubmittedBuild | str,
    clients: BuildClients | None = None,
    *,
    image: str | None = None,
    on_line: Callable[[str], None] | None = None,
    on_status: Callable[[BuildState], None] | None = None,
    poll_s: float = 5.0,
    timeout_s: float | None = None,
    log_offset: int = 0,
    keep_lines: int = 30,
    sleep: Callable[[float], None] = time.sleep,
) -> BuildOutcome:
    """Poll until the build ends (or ``timeout_s`` passes); stream its log to ``on_line`` as it grows.

    ``build`` is what ``submit_image_build`` returned, or a build's full name
    ``projects/P/locations/R/builds/ID``. ``log_offset`` resumes a log read earlier
    (``outcome.log_offset``): no line is shown twice. ``on_status`` gets each change of the status or of a
    step's status. The log is read from the logs bucket Cloud Build reports; when that read is refused,
    following goes on with the status alone and says so once.
    """
    if isinstance(build, SubmittedBuild):
        if build.skipped or not build.name:
            raise ConfigError("build", f"nothing to follow: {build.image} already existed and no build was created")
        name, image = build.name, image or build.image
    else:
        name = build
        if not re.fullmatch(r"projects/[^/]+/locations/[^/]+/builds/[^/]+", name):
            raise ConfigError("build", f"{name!r} is not a build name such as projects/P/locations/R/builds/ID")
    if clients is None:
        clients = BuildClients.create(name.split("/")[1])
    build_id = name.rsplit("/", 1)[-1]
    emit_line = on_line or (lambda line: log.info("%s", line))
    last: deque[str] = deque(maxlen=keep_lines)
    tail: LogTail | None = None
    log_refused = False
    lines_seen = 0
    previous: tuple[str, tuple[str, ...]] | None = None
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    state = get_build_state(clients.cloudbuild, name)

    def read_log(final: bool) -> None:
        nonlocal tail, log_refused, lines_seen
        if log_refused:
            return
        if tail is None:
            if not state.logs_bucket:
                return
            tail = LogTail.for_build(clients.storage, state.logs_bucket, build_id, offset=log_offset)
        try:
            lines = tail.flush() if final else tail.poll()
        except CloudError as e:
            log_refused = True
            emit_line(f"(log not readable, following the status only: {e})")
            return
        for line in lines:
            last.append(line)
            lines_seen += 1
            emit_line(line)

    while True:
        signature = (state.status, tuple(s.status for s in state.steps))
        if signature != previous:
            previous = signature
            if on_status:
                on_status(state)
            else:
                log.info("build %s: %s", build_id, state.describe())
        read_log(final=state.done)
        if state.done:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        sleep(poll_s)
        state = get_build_state(clients.cloudbuild, name)

    digest = None
    for img_name, img_digest in state.images:
        if image and img_name == image:
            digest = img_digest or None
    return BuildOutcome(
        build_id=build_id,
        image=image or (state.images[0][0] if state.images else ""),
        status=state.status,
        done=state.done,
        state=state,
        digest=digest,
        last_lines=tuple(last),
        log_offset=tail.offset if tail else log_offset,
        lines_seen=lines_seen,
    )



def build_image(
    settings: Settings,
    clients: BuildClients | None = None,
    *,
    force: bool = False,
    **options: Any,
) -> SubmittedBuild:
    """``plan_image_build`` then ``submit_image_build``: every input is checked before the first request.

    ``options`` are ``plan_image_build``'s keyword arguments (``source_bucket``, ``machine_type``, ...).
    """
    plan = plan_image_build(settings, **options)
    return submit_image_build(plan, clients, force=force)
