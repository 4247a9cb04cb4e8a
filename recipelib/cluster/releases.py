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
    action: str  # "created", "configured", "unchanged", or "valid (dry run)"

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} {self.action}"


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
    """Server-side apply each object; ``force`` takes over fields another manager owns.

    ``dry_run`` sends the objects with ``dryRun=All``: the server validates and admits them, stores nothing.
    """
    dyn = _dynamic(cluster)
    results = []
    for obj in objects:
        kind, meta = obj["kind"], obj["metadata"]
        name, namespace = meta["name"], meta.get("namespace", cluster.namespace)
        res = _resource(dyn, obj["apiVersion"], kind)
        before = _current(res, name, namespace)
        kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force_conflicts": force}
        if dry_run:
            kwargs["dry_run"] = "All"
        try:
            out = call(
                lambda res=res, obj=obj, name=name, namespace=namespace, kwargs=kwargs: res.server_side_apply(
                    body=obj, name=name, namespace=namespace, **kwargs
                ),
                f"apply {kind}/{name} in namespace {namespace}",
            )
        except ConflictError as e:
            raise ConflictError(
                f"{e} Another field manager owns these fields; re-run with force=True to take them over, "
                "or change them back where they were changed.",
                status=409,
            ) from None
        except ClusterError as e:
            if e.status == 422 and kind == "Job" and "field is immutable" in str(e):
                raise ClusterError(
                    f"release {name!r} already has a Job for another run: a Job's pod template cannot change. "
                    "Uninstall the release first (cleanup.ipynb), or deploy under another release name.",
                    status=422,
                ) from None
            raise
        action = "valid (dry run)" if dry_run else (
            "created" if before is None else "unchanged" if _content(out.to_dict()) == before else "configured"
        )
        results.append(Applied(kind, name, action))
        log.info("%s/%s %s", kind, name, action)
    return results


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
