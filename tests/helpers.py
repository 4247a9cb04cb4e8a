"""Helpers the test folders share (importable as ``helpers``: pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import papermill

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
NOTEBOOKS = REPO / "notebooks"
REPORTS = TESTS / "data" / "reports"


def until(what: str, check: Callable[[], Any], timeout: float = 60, poll: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy (returned), or fail naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def deploy_on_sandbox(sandbox: Any, cluster: Any, model: str, experiments: Any = "recipe-default", *,
                      user: str = "alice", run_prefix: str = "replay", **options: Any) -> Any:
    """Plan and apply a benchmark on the sandbox in ``cluster``'s namespace, with a fresh run id."""
    import recipelib

    settings = sandbox.settings(namespace=cluster.namespace)
    plan = recipelib.plan_benchmark(settings, model, experiments, user=user,
                                    run_id=f"{run_prefix}-{uuid.uuid4().hex[:8]}", **options)
    recipelib.deploy(plan, cluster)
    return plan


def run_notebook(path: Path, out: Path, *, cwd: Path | None = None, **parameters: Any) -> nbformat.NotebookNode:
    """Execute a notebook headless as a user's papermill run does; returns the executed notebook."""
    papermill.execute_notebook(str(path), str(out), parameters=parameters, kernel_name="python3",
                               cwd=str(cwd) if cwd else None, progress_bar=False)
    return nbformat.read(out, as_version=4)


def project_settings(tmp_path: Path, namespace: str) -> Any:
    """Settings of a user's project with no settings file and no environment: a bucket and a registry only."""
    from recipelib.settings import load_settings

    return load_settings(path=tmp_path / "none.yaml", environ={}, namespace=namespace, gcs_bucket="my-results",
                         artifact_registry="us-central1-docker.pkg.dev/my-project/my-repo")
