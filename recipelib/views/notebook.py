"""What the notebooks show: plain text that reads the same in JupyterLab, papermill output and a log.

Kept here, not in cells, so that the notebooks stay thin and what they show is tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from recipelib.cluster.checks import Check, summary
from recipelib.errors import RecipelibError
from recipelib.settings import Settings, settings_path

if TYPE_CHECKING:
    from recipelib.cluster.releases import Release
    from recipelib.deploy.benchmark import DeployResult


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def banner(settings: Settings) -> str:
    """The first line every notebook prints: which cluster it works on, and whether that is a sandbox.

    A run against a sandbox must never pass for a measurement, so the notebook says so before anything
    else. ``Settings.sandbox`` is plain data from the settings file (``SANDBOX: true``, written by whatever
    runs the sandbox), and ``Settings.note`` says where the settings come from.
    """
    if settings.sandbox:
        line = (f"Using the local sandbox (a replay of a recorded run, not a real cluster): context "
                f"{settings.kube_context}, namespace {settings.namespace}, bucket {settings.gcs_bucket} at "
                f"{settings.gcs_endpoint}")
    elif settings.kubeconfig or settings.kube_context:
        line = (f"Using cluster: kubeconfig {settings.kubeconfig or '(default)'}, context "
                f"{settings.kube_context or '(current)'}, namespace {settings.namespace}")
    elif settings.project_id and settings.cluster_name and settings.cluster_region:
        line = (f"Using GKE cluster {settings.cluster_name} in {settings.cluster_region} (project "
                f"{settings.project_id}), namespace {settings.namespace}")
    else:
        line = ("No cluster configured: the default kubeconfig is used if there is one. To try everything on "
                "this machine without a cloud account: python -m recipelib.sandbox start")
    if settings.note:
        line += f" [{settings.note}]"
    print(line)
    return line


def show_settings(settings: Settings) -> None:
    env = settings.as_env()
    from recipelib.settings import NAMES

    print(f"Settings (file: {settings_path()})")
    print(table([(n, env.get(n, "(not set)")) for n in NAMES], ("setting", "value")))
    if settings.image:
        print("Benchmark image:", settings.image)


def show_checks(checks: list[Check], *, require_ready: bool = True) -> None:
    """Print each check; raise when a required one failed and the user asked for a ready cluster."""
    result = summary(checks)
    print("Cluster preflight:")
    print("\n".join(result["lines"]))
    if result["ok"]:
        print("Ready for a benchmark.")
    elif require_ready:
        raise RecipelibError(
            f"cluster not ready: {', '.join(result['failed'])} failed (see above); fix them, or re-run with "
            "require_ready=False to continue anyway"
        )
    else:
        print(f"Not ready ({', '.join(result['failed'])}); continuing because require_ready=False.")


def show_deploy(result: DeployResult, *, show_yaml: bool = False) -> None:
    from recipelib.deploy.render import to_yaml

    plan = result.plan
    m = plan.model
    print(f"Release {plan.release} in namespace {plan.namespace}: run {plan.run_id}")
    print(f"Model {m.id}: {m.backend}, TP {m.tp_size} x PP {m.pp_size}, quantization {m.quantization or 'none'}, "
          f"{plan.gpus} GPU(s); image {plan.image}")
    print(table([(e.id, e.isl, e.osl, e.num_requests) for e in plan.experiments],
                ("experiment", "ISL", "OSL", "requests")))
    print(f"Results: {plan.results_path}")
    for path in result.files:
        print("Wrote", path)
    for applied in result.applied:
        print(applied)
    if result.note:
        print(f"Note: {result.note}")
    if show_yaml:
        for obj in result.objects:
            print("---")
            if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].endswith("-launcher"):
                files = ", ".join(f"{k} ({len(v.splitlines())} lines)" for k, v in obj["data"].items())
                print(f"# ConfigMap {obj['metadata']['name']}: the launcher's code from launcher/: {files}")
                continue
            print(to_yaml(obj), end="")


def show_releases(releases: list[Release]) -> None:
    if not releases:
        print("No releases deployed by recipelib in this namespace.")
        return
    print(table([(r.name, r.status, r.model, r.run_id, r.created, len(r.objects)) for r in releases],
                ("release", "status", "model", "run id", "created", "objects")))


def show_uninstall(
    release: str, deleted: list[str], releases: list[Release], namespace: str, *, dry_run: bool = False
) -> None:
    """What cleanup removed; for a release with nothing to remove, which releases there are (a typo shows)."""
    if deleted:
        verb = "Would delete" if dry_run else "Deleted"
        print(f"{verb} {len(deleted)} object(s) of release {release}:", *deleted, sep="\n  ")
        return
    others = [r.name for r in releases if r.name != release]
    there = f"Releases there: {', '.join(others)}." if others else "There are no recipelib releases there."
    print(f"Release {release} not found in namespace {namespace}: nothing to delete (already removed, or a "
          f"misspelt name). {there}")
