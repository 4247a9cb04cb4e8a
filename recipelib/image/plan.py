"""Plan an image build: check every input, send nothing.

A build runs up to two hours; a wrong substitution, a Dockerfile that copies an ignored file or a bad
machine type should fail here, in a second, naming the field at fault (a ConfigError), not after the
upload or halfway through the build.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from recipelib.errors import ConfigError
from recipelib.image.config import (
    CONFIG_FILE,
    apply_substitutions,
    check_substitutions,
    check_user_substitution,
    config_defaults,
    load_config,
    parse_build,
    recipe_substitutions,
)
from recipelib.image.context import IGNORE_FILE, context_files, missing_sources
from recipelib.image.registry import ImageRef
from recipelib.image.trtllm_versions import ImageSource, check_version_pair, image_source
from recipelib.paths import launcher_dir
from recipelib.settings import Settings, check_artifact_registry, check_bucket_name, validate_settings

log = logging.getLogger(__name__)

DOCKERFILE = "Dockerfile"
DEFAULT_MACHINE_TYPE = "E2_HIGHCPU_32"
DEFAULT_DISK_SIZE_GB = 1000
DEFAULT_TIMEOUT_S = 2 * 3600
MACHINE_TYPES = ("E2_HIGHCPU_8", "E2_HIGHCPU_32", "E2_MEDIUM", "E2_STANDARD_2", "N1_HIGHCPU_8", "N1_HIGHCPU_32")


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
    trtllm: ImageSource | None = None
    """How this TensorRT-LLM version is built (Triton base + backend clone, or NVIDIA's release image)."""

    @property
    def base_image(self) -> str:
        """The image the Dockerfile starts ``FROM``."""
        return self.substitutions.get("_BASE_IMAGE", "")

    @property
    def parent(self) -> str:
        """Where the build is created: ``projects/P/locations/REGION`` (regional, as the recipe's --region)."""
        return f"projects/{self.project_id}/locations/{self.region}"

    @property
    def image_ref(self) -> ImageRef:
        return ImageRef.parse(self.image)


def default_source_bucket(project_id: str) -> str:
    """``<project>_cloudbuild``, the bucket gcloud stages sources in (``google`` is not allowed in names)."""
    return project_id.replace(":", "_").replace(".", "_").replace("google", "elgoog") + "_cloudbuild"



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
    table is a warning (logged, and in ``plan.warnings``), not an error; a ``TRTLLM_VERSION`` that cannot be
    built at all (:data:`~recipelib.image.trtllm_versions.BUILDABLE`) is refused here.
    """
    settings.require("PROJECT_ID", "REGION", "ARTIFACT_REGISTRY", purpose="an image build")
    validate_settings(settings)
    trtllm = image_source(settings.trtllm_version)
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
        check_user_substitution(key, value)
        substitutions[key] = value
    check_substitutions(cfg, substitutions, config_path)

    image = f"{registry}/{settings.trtllm_image}:{settings.trtllm_version}"
    ImageRef.parse(image, field="ARTIFACT_REGISTRY")
    images = [apply_substitutions(str(i), {**config_defaults(cfg), **substitutions}) for i in cfg.get("images", [])]
    if image not in images:
        raise ConfigError(
            "config", f"{config_path} 'images' does not list {image} (it lists {images or 'nothing'}): the build would "
                      "not push the image that deploy.ipynb uses"
        )

    warnings = []
    pair = trtllm.kind == "triton" and check_version_pair(settings.trtllm_version, settings.triton_server_version)
    if pair:
        log.warning("%s", pair)
        warnings.append(pair)
    return BuildPlan(
        project_id=project, region=region, image=image, substitutions=substitutions,
        context_dir=ctx, config_path=config_path, files=files, source_bucket=bucket,
        default_source_bucket=default_bucket, machine_type=machine_type, disk_size_gb=disk_size_gb,
        timeout_s=timeout_s, logs_bucket=logs_bucket or None, warnings=tuple(warnings), trtllm=trtllm,
    )
