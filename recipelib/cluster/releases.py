"""Releases: a benchmark's objects applied together, listed and removed by label (Helm's role).

Every object carries ``app.kubernetes.io/managed-by: recipelib`` and ``app.kubernetes.io/instance:
<release>``; apply is server-side apply with one field manager, so re-running deploy is safe and a
field someone else owns is reported as a conflict instead of being overwritten.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kubernetes.dynamic import DynamicClient

from recipelib.cluster.client import Cluster, call
from recipelib.errors import ClusterError, ConflictError, NotFoundError
from recipelib.names import check_name

log = logging.getLogger(__name__)

FIELD_MANAGER = "recipelib"
MANAGED_BY = "app.kubernetes.io/managed-by"
INSTANCE = "app.kubernetes.io/instance"
RUN_ID = "recipelib.io/run-id"
MODEL = "recipelib.io/model"
# What a release may hold, in the order uninstall removes it (the workload before its config).
RELEASE_KINDS: tuple[tuple[str, str], ...] = (
    ("batch/v1", "Job"),
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
)


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    action: str  # "created", "configured" or "unchanged": what the apply did, or would do on a dry run
    dry_run: bool = False

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} {'would be ' + self.action + ' (dry run)' if self.dry_run else self.action}"


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    objects: tuple[str, ...]
    status: str
    run_id: str | None
    model: str | None
    created: str | None


def _dynamic(cluster: Cluster) -> DynamicClient:
    return call(lambda: DynamicClient(cluster.api), "discover the cluster's API resources")


def _resource(dyn: DynamicClient, api_version: str, kind: str) -> Any:
    return call(lambda: dyn.resources.get(api_version=api_version, kind=kind), f"find the {kind} API")


def apply(
    cluster: Cluster, objects: list[dict[str, Any]], *, force: bool = False, dry_run: bool = False
) -> list[Applied]:
    """Server-side apply every object, all or nothing; ``force`` takes over fields another manager owns.

    Every object is first sent with ``dryRun=All`` (the server validates, admits and stores nothing), and
    only when the server accepts all of them is the first one written: a value the server refuses in the
    last object must not leave the first ones changed. ``dry_run`` stops after that check.
    """
    checked = check_objects(cluster, objects, force=force)
    return checked if dry_run else write_objects(cluster, objects, force=force)


def check_objects(cluster: Cluster, objects: list[dict[str, Any]], *, force: bool = False) -> list[Applied]:
    """The server's verdict on every object (``dryRun=All``): what an apply would do; nothing is stored."""
    dyn = _dynamic(cluster)
    return [_apply_one(dyn, cluster, obj, force=force, dry_run=True) for obj in objects]


def write_objects(cluster: Cluster, objects: list[dict[str, Any]], *, force: bool = False) -> list[Applied]:
    """Apply for real, in order; if the server refuses one (it accepted them all a moment ago), the
    objects this call created are deleted again, so no half-made release is left behind."""
    dyn = _dynamic(cluster)
    done: list[Applied] = []
    try:
        for obj in objects:
            done.append(_apply_one(dyn, cluster, obj, force=force, dry_run=False))
    except ClusterError:
        for made, obj in zip(done, objects, strict=False):
            if made.action == "created":
                res = _resource(dyn, obj["apiVersion"], made.kind)
                namespace = obj["metadata"].get("namespace", cluster.namespace)
                try:
                    call(lambda res=res, made=made, namespace=namespace: res.delete(
                        name=made.name, namespace=namespace, body={"propagationPolicy": "Background"}),
                        f"delete {made.kind}/{made.name} again")
                except ClusterError as e:  # say so, and let the first error be the one raised
                    log.warning("could not remove %s/%s after a failed apply: %s", made.kind, made.name, e)
        raise
    return done


def _apply_one(dyn: DynamicClient, cluster: Cluster, obj: dict[str, Any], *, force: bool, dry_run: bool) -> Applied:
    kind, meta = obj["kind"], obj["metadata"]
    name, namespace = meta["name"], meta.get("namespace", cluster.namespace)
    res = _resource(dyn, obj["apiVersion"], kind)
    before = _current(res, name, namespace)
    kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force_conflicts": force}
    if dry_run:
        kwargs["dry_run"] = "All"
    unchanged = " Nothing was changed: the server checks every object before the first is written." if dry_run else ""
    try:
        out = call(
            lambda: res.server_side_apply(body=obj, name=name, namespace=namespace, **kwargs),
            f"apply {kind}/{name} in namespace {namespace}",
        )
    except ConflictError as e:
        raise ConflictError(
            f"{e} Another field manager owns these fields; re-run with force=True to take them over, "
            f"or change them back where they were changed.{unchanged}",
            status=409,
        ) from None
    except ClusterError as e:
        if e.status == 422 and kind == "Job" and "field is immutable" in str(e):
            raise ClusterError(
                f"Job {name} already exists with another pod template, and a Job's pod template cannot change "
                f"(immutable).{unchanged} Uninstall the release first (cleanup.ipynb -p release {name}; results "
                "in the bucket are kept), or deploy under another release name (the release parameter).",
                status=422,
            ) from None
        if e.status in (400, 422):
            raise ClusterError(f"{e} Fix the value it names (deploy.ipynb's parameters or overrides) and deploy "
                               f"again.{unchanged}", status=e.status) from None
        if unchanged and e.status is not None:
            raise ClusterError(f"{e}{unchanged}", status=e.status) from None
        raise
    action = "created" if before is None else "unchanged" if _content(out.to_dict()) == before else "configured"
    if not dry_run:
        log.info("%s/%s %s", kind, name, action)
    return Applied(kind, name, action, dry_run)


_VOLATILE = ("resourceVersion", "managedFields", "selfLink")


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """What a user would call the object: no status, no bookkeeping that a no-op apply may touch.

    Some servers (1.20 for Jobs) rewrite ``managedFields`` timestamps on an apply that changes nothing,
    which moves ``resourceVersion``; ``generation`` and the content still tell the truth.
    """
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in _VOLATILE}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def _current(res: Any, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        return _content(call(lambda: res.get(name=name, namespace=namespace), f"read {res.kind}/{name}").to_dict())
    except NotFoundError:
        return None


def _selector(release: str | None = None) -> str:
    sel = f"{MANAGED_BY}=recipelib"
    return f"{sel},{INSTANCE}={release}" if release else sel


def _job_status(job: Any) -> str:
    status = job.status or {}
    conditions = {c["type"]: c.get("status") for c in (status.get("conditions") or [])}
    if conditions.get("Complete") == "True":
        return "Complete"
    if conditions.get("Failed") == "True":
        return "Failed"
    if job.spec.get("suspend"):
        return "Suspended (waiting for Kueue admission)"
    if status.get("active"):
        return "Active"
    return "Pending"


@dataclass(frozen=True)
class ExistingRun:
    """The run a release's Job holds on the cluster: what a new deploy must not silently change."""

    release: str
    run_id: str | None
    status: str  # as in Release.status: Complete, Failed, Active, Pending, Suspended (...)

    @property
    def finished(self) -> bool:
        return self.status in ("Complete", "Failed")


def existing_run(cluster: Cluster, release: str, namespace: str | None = None) -> ExistingRun | None:
    """The release's Job (its name is the release's) and the run id it was deployed with, or None."""
    namespace = namespace or cluster.namespace
    res = _resource(_dynamic(cluster), "batch/v1", "Job")
    try:
        job = call(lambda: res.get(name=release, namespace=namespace), f"read Job {release} in {namespace}")
    except NotFoundError:
        return None
    return ExistingRun(release, (job.metadata.annotations or {}).get(RUN_ID), _job_status(job))


def check_release(cluster: Cluster, release: str, run_id: str, namespace: str | None = None) -> ExistingRun | None:
    """Refuse a deploy of run ``run_id`` under a release whose Job holds another run; returns that Job's run.

    A Job's pod template cannot change, and its pods read the release's ConfigMaps when they start: writing
    a new sweep's ConfigMaps under the old Job would make its next retry run the new sweep under the old run
    id. So another run id is refused before anything is written.
    """
    found = existing_run(cluster, release, namespace)
    if found is not None and found.run_id != run_id:
        raise ClusterError(
            f"release {release} already holds run {found.run_id or '(unknown)'} (Job {release}: {found.status}); "
            f"this deploy is run {run_id}, and a Job's pod template cannot change (immutable). Nothing was changed. "
            f"Uninstall the release first (cleanup.ipynb -p release {release}; results in the bucket are kept), "
            "or deploy under another release name (the release parameter)."
        )
    return found


def list_releases(cluster: Cluster, namespace: str | None = None) -> list[Release]:
    """Every release in ``namespace`` (default: the cluster's), newest first."""
    namespace = namespace or cluster.namespace
    dyn = _dynamic(cluster)
    found: dict[str, dict[str, Any]] = {}
    for api_version, kind in RELEASE_KINDS:
        res = _resource(dyn, api_version, kind)
        items = call(
            lambda res=res: res.get(namespace=namespace, label_selector=_selector()), f"list {kind}s in {namespace}"
        ).items
        for item in items:
            meta = item.metadata
            name = (meta.labels or {}).get(INSTANCE)
            if not name:
                continue
            entry = found.setdefault(name, {"objects": [], "status": "No Job", "run_id": None, "model": None,
                                            "created": meta.creationTimestamp})
            entry["objects"].append(f"{kind}/{meta.name}")
            if kind == "Job":
                annotations = meta.annotations or {}
                entry.update(status=_job_status(item), run_id=annotations.get(RUN_ID), model=annotations.get(MODEL),
                             created=meta.creationTimestamp)
    releases = [Release(name, namespace, tuple(v["objects"]), v["status"], v["run_id"], v["model"], v["created"])
                for name, v in found.items()]
    return sorted(releases, key=lambda r: r.created or "", reverse=True)


def uninstall(cluster: Cluster, release: str, namespace: str | None = None, *, dry_run: bool = False) -> list[str]:
    """Delete every object labelled with ``release`` (and nothing else); returns ``Kind/name`` of each.

    Safe to repeat: a release already gone returns an empty list. Pods go with their Job (background
    propagation); results already in the bucket are never touched.
    """
    check_name(release, "release")
    namespace = namespace or cluster.namespace
    dyn = _dynamic(cluster)
    deleted = []
    for api_version, kind in RELEASE_KINDS:
        res = _resource(dyn, api_version, kind)
        items = call(
            lambda res=res: res.get(namespace=namespace, label_selector=_selector(release)),
            f"list {kind}s of release {release}",
        ).items
        for item in items:
            name = item.metadata.name
            if not dry_run:
                try:
                    call(
                        lambda res=res, name=name: res.delete(
                            name=name, namespace=namespace, body={"propagationPolicy": "Background"}
                        ),
                        f"delete {kind}/{name}",
                    )
                except NotFoundError:
                    continue
            deleted.append(f"{kind}/{name}")
            log.info("deleted %s/%s", kind, name)
    return deleted
