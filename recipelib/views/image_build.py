"""What build-image.ipynb shows: plain text lines that read the same in JupyterLab, papermill and a log.

Kept out of the notebook so that it stays thin and what it shows is tested.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from recipelib.image.outcome import BuildOutcome, BuildState, format_seconds
from recipelib.image.plan import BuildPlan
from recipelib.image.submit import SubmittedBuild


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def show_plan(plan: BuildPlan | None) -> None:
    """The build about to be submitted; ``None`` on the local sandbox, which has no Cloud Build."""
    if plan is None:
        print("The local sandbox has no Cloud Build: nothing to build here. Its benchmark pods replay a recorded "
              "run and need no image. Run this notebook with your project's settings (setup.ipynb) to build one.")
        return
    print(f"Image {plan.image}")
    print(_table([
        ("Cloud Build", f"{plan.parent} ({plan.machine_type}, {plan.disk_size_gb} GB disk, "
                        f"timeout {plan.timeout_s // 60} min)"),
        ("config", str(plan.config_path)),
        ("context", f"{plan.context_dir} ({len(plan.files)} files)"),
        ("source bucket", f"gs://{plan.source_bucket}" + (" (default)" if plan.default_source_bucket else "")),
        *[(k, v) for k, v in sorted(plan.substitutions.items())],
    ]))
    for warning in plan.warnings:
        print("WARNING:", warning)


def show_submitted(submitted: SubmittedBuild) -> None:
    if submitted.skipped:
        version = submitted.existing.version if submitted.existing else ""
        print(f"{submitted.image} already exists in Artifact Registry ({version}): not rebuilding. "
              "Run again with force=True to rebuild it.")
        return
    print(f"Build {submitted.build_id} created: {submitted.name}")
    if submitted.source:
        print(f"Source: {submitted.source.uri}#{submitted.source.generation} ({submitted.source.size} bytes, "
              f"sha256 {submitted.source.sha256[:12]})")
    if submitted.log_url:
        print("Console:", submitted.log_url)


class TextProgress:
    """One line per status change, then the build log's lines as they arrive (``| ...``)."""

    def __init__(self, *, show_log: bool = True) -> None:
        self.show_log = show_log

    def status(self, state: BuildState) -> None:
        print(f"[{datetime.now():%H:%M:%S}] {state.describe()}", flush=True)

    def line(self, text: str) -> None:
        if self.show_log:
            print(f"  | {text}", flush=True)

    def callbacks(self) -> dict[str, Callable[[Any], None]]:
        """``follow_build(..., **progress.callbacks())``."""
        return {"on_status": self.status, "on_line": self.line}


def show_outcome(outcome: BuildOutcome) -> None:
    if outcome.success:
        print(f"Build {outcome.build_id} succeeded: {outcome.image}" + (f"@{outcome.digest}" if outcome.digest else ""))
        if outcome.state:
            for step in outcome.state.steps:
                took = format_seconds(step.seconds) if step.seconds is not None else "-"
                print(f"  {step.label}: {step.status} ({took})")
        return
    print(outcome.message)
