"""Submit an image build: skip an existing tag, upload the context create-only, create the build.

What ``gcloud builds submit --async`` does, in steps a test can check: the context goes to
``gs://<project>_cloudbuild/source/<time>-<uuid>.tgz`` and is never overwritten, and the build is pinned
to that object's generation, so what Cloud Build builds is exactly what was packed.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import recipelib.gcp as gcp
from recipelib.errors import CloudError
from recipelib.image.clients import BuildClients
from recipelib.image.config import load_config, parse_build
from recipelib.image.context import BuildContext, pack_context
from recipelib.image.plan import BuildPlan
from recipelib.image.registry import TagChecker, TagInfo

log = logging.getLogger(__name__)

STORAGE_API = "storage.googleapis.com"
CLOUDBUILD_API = "cloudbuild.googleapis.com"


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


def find_existing_image(plan: BuildPlan, registry: TagChecker) -> TagInfo | None:
    """The plan's tag in Artifact Registry, or None: one request that can save a two-hour build."""
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
    name = object_name or f"source/{time.time():.6f}-{uuid.uuid4().hex}.tgz"
    squatted = (" (if it belongs to another project, pass source_bucket= a bucket of yours)"
                if create_bucket else "")
    for attempt in (1, 2):
        blob = storage_client.bucket(bucket).blob(name)
        blob.metadata = {"sha256": context.sha256, "files": str(len(context.files))}
        try:
            blob.upload_from_string(context.data, content_type="application/gzip", if_generation_match=0)
            break
        except gcp.api_errors() as e:
            if gcp.status_of(e) == 404 and create_bucket and attempt == 1:
                _create_bucket(storage_client, bucket, location)
                continue
            raise gcp.translate(
                e, f"uploading the build context to gs://{bucket}/{name}", role="roles/storage.objectAdmin",
                on=f"bucket gs://{bucket}{squatted}", api=STORAGE_API,
                not_found=f"source bucket gs://{bucket} does not exist: create it, or leave source_bucket empty "
                          "to use <PROJECT_ID>_cloudbuild",
                conflict=f"gs://{bucket}/{name} already exists; build sources are never overwritten. Submit again "
                         "for a fresh name",
            ) from None
    generation = int(blob.generation or 0)
    log.info("uploaded build context gs://%s/%s#%s (%d bytes, sha256 %s)", bucket, name, generation,
             context.size, context.sha256)
    return SourceUpload(bucket, name, generation, context.size, context.sha256)


def _create_bucket(storage_client: Any, bucket: str, location: str | None) -> None:
    log.info("creating source bucket gs://%s", bucket)
    try:
        storage_client.create_bucket(bucket, location=location)
    except gcp.api_errors() as e:
        if gcp.status_of(e) == 409:
            return  # created meanwhile, by us or gcloud
        raise gcp.translate(e, f"creating the source bucket gs://{bucket}", role="roles/storage.admin",
                            on="the project", api=STORAGE_API) from None


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
    except gcp.api_errors() as e:
        raise gcp.translate(e, f"creating a build in {plan.parent}", role="roles/cloudbuild.builds.editor",
                            on=f"project {plan.project_id}", api=CLOUDBUILD_API) from None
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
