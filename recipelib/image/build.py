"""Build the benchmark image with Cloud Build from Python: the recipe's ``gcloud builds submit``, no gcloud.

The recipe (section 3.6) runs::

    gcloud builds submit --region=$REGION --config cloudbuild.yml \\
        --substitutions _ARTIFACT_REGISTRY=...,_TRTLLM_IMAGE=...,_TRTLLM_VERSION=...,_TRITON_SERVER_VERSION=... \\
        --timeout 2h --machine-type=e2-highcpu-32 --disk-size=1000 --async

Here the same happens in three steps a notebook can show and a test can check, each in its own module:

1. ``plan_image_build`` (:mod:`~recipelib.image.plan`, with :mod:`~recipelib.image.config` for
   ``cloudbuild.yaml``): validate everything before any request (settings, the config's ``${_X}``
   substitutions against what we pass, the Dockerfile and what it copies, the build options) and warn
   about a TensorRT-LLM/Triton pair that NVIDIA does not ship together.
2. ``submit_image_build`` (:mod:`~recipelib.image.submit`): skip when the tag already exists in Artifact
   Registry (unless ``force``), pack ``launcher/`` reproducibly, upload it create-only to
   ``gs://<project>_cloudbuild/source/...``, create the regional build, and return at once with its id.
3. ``follow_build`` (:mod:`~recipelib.image.follow`, states in :mod:`~recipelib.image.outcome`): poll the
   build's status and stream its log object (``log-<id>.txt`` in the logs bucket) by byte ranges until a
   terminal state; a failure names the failing step and the last lines.
4. ``record_image`` (:mod:`~recipelib.image.pin`): once the image exists, save its digest with its tag
   (``TRTLLM_IMAGE_DIGEST``), so that deploy pins ``IMAGE:TAG@sha256:...``.

Every client is injected through ``BuildClients`` (:mod:`~recipelib.image.clients`) so tests point them at
local servers; by default they use Application Default Credentials (:mod:`recipelib.gcp`, which also turns
a 403 into a sentence that names the missing role).

This module keeps :func:`build_image` and the names notebooks use as ``imagebuild.X``. Example::

    settings = load_settings()
    plan = plan_image_build(settings)
    submitted = submit_image_build(plan)
    outcome = follow_build(submitted, on_line=print)
    outcome.raise_for_status()
"""

from __future__ import annotations

from typing import Any

from recipelib.errors import CloudError, ConfigError, ImageBuildError
from recipelib.gcp import CLOUD_PLATFORM_SCOPE, default_credentials
from recipelib.image.clients import CLOUDBUILD_ENDPOINT_ENV, REGISTRY_ENDPOINT_ENV, BuildClients
from recipelib.image.config import (
    CONFIG_FILE,
    apply_substitutions,
    check_substitutions,
    load_config,
    parse_build,
    recipe_substitutions,
    referenced_substitutions,
)
from recipelib.image.follow import LogTail, follow_build, get_build_state
from recipelib.image.outcome import MESSAGE_LINES, TERMINAL, BuildOutcome, BuildState, StepState, format_seconds
from recipelib.image.pin import RecordedImage, image_digest, pin, record_image
from recipelib.image.plan import (
    DEFAULT_DISK_SIZE_GB,
    DEFAULT_MACHINE_TYPE,
    DEFAULT_TIMEOUT_S,
    DOCKERFILE,
    MACHINE_TYPES,
    BuildPlan,
    default_source_bucket,
    plan_image_build,
)
from recipelib.image.submit import (
    SourceUpload,
    SubmittedBuild,
    build_request,
    find_existing_image,
    submit_image_build,
    upload_context,
)
from recipelib.settings import Settings

__all__ = [
    "CLOUDBUILD_ENDPOINT_ENV",
    "CLOUD_PLATFORM_SCOPE",
    "CONFIG_FILE",
    "DEFAULT_DISK_SIZE_GB",
    "DEFAULT_MACHINE_TYPE",
    "DEFAULT_TIMEOUT_S",
    "DOCKERFILE",
    "MACHINE_TYPES",
    "MESSAGE_LINES",
    "REGISTRY_ENDPOINT_ENV",
    "TERMINAL",
    "BuildClients",
    "BuildOutcome",
    "BuildPlan",
    "BuildState",
    "CloudError",
    "ConfigError",
    "ImageBuildError",
    "LogTail",
    "RecordedImage",
    "SourceUpload",
    "StepState",
    "SubmittedBuild",
    "apply_substitutions",
    "build_image",
    "build_request",
    "check_substitutions",
    "default_credentials",
    "default_source_bucket",
    "find_existing_image",
    "follow_build",
    "format_seconds",
    "get_build_state",
    "image_digest",
    "load_config",
    "parse_build",
    "pin",
    "plan_image_build",
    "recipe_substitutions",
    "record_image",
    "referenced_substitutions",
    "submit_image_build",
    "upload_context",
]


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
