"""build-image.ipynb run headless with papermill against local Cloud Build, Artifact Registry and GCS servers.

The notebook reaches the fakes through its parameters ``cloudbuild_endpoint`` and ``registry_endpoint``
and the GCS_ENDPOINT setting (here from the environment), exactly as a user would point it elsewhere.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import yaml
from fakes.google_apis import FakeGoogleAPIs
from helpers import REPO, run_notebook

from recipelib.settings import NAMES

NOTEBOOK = REPO / "notebooks" / "build-image.ipynb"


@pytest.fixture
def env(tmp_path, monkeypatch, gcs):
    """A settings file of the test's own; Cloud Storage is the local server, through the GCS_ENDPOINT setting."""
    for name in (*NAMES, "RECIPELIB_OVERLAY", "RECIPELIB_CLOUDBUILD_ENDPOINT", "RECIPELIB_ARTIFACTREGISTRY_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "settings.yaml"))
    monkeypatch.setenv("GCS_ENDPOINT", gcs.url)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def params(apis: FakeGoogleAPIs, project: str, **extra) -> dict:
    base = dict(project_id=project, region="us-central1",
                artifact_registry=f"us-central1-docker.pkg.dev/{project}/bench", trtllm_version="v0.17.0",
                triton_server_version="25.02-trtllm-python-py3", cloudbuild_endpoint=apis.url,
                registry_endpoint=apis.url, poll_s=0.02)
    return {**base, **extra}


def run(out: Path, **parameters) -> str:
    nb = run_notebook(NOTEBOOK, out, **parameters)
    return "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def test_builds_follows_and_saves_then_skips_an_existing_tag(env, apis):
    project = f"nb-{uuid.uuid4().hex[:10]}"
    out = run(env / "out.ipynb", **params(apis, project))
    (build_id,) = apis.builds
    build = apis.builds[build_id]
    image = f"us-central1-docker.pkg.dev/{project}/bench/trtllm:v0.17.0"
    assert f"Build {build_id} created" in out and f"Image {image}" in out
    assert "QUEUED" in out and re.search(r"\] SUCCESS, 2/2 steps done", out)
    for line in build.log.split("\n"):  # every log line shown, once
        assert out.count(f"  | {line}\n") == 1 or not line
    assert f"Build {build_id} succeeded: {image}@{build.digest}" in out
    assert build.request["substitutions"]["_BASE_IMAGE"] == "nvcr.io/nvidia/tritonserver:25.02-trtllm-python-py3"
    saved = yaml.safe_load((env / "settings.yaml").read_text())
    assert saved["ARTIFACT_REGISTRY"] == f"us-central1-docker.pkg.dev/{project}/bench"
    assert saved["TRTLLM_VERSION"] == "v0.17.0" and saved["TRITON_SERVER_VERSION"] == "25.02-trtllm-python-py3"
    assert saved["PROJECT_ID"] == project and saved["REGION"] == "us-central1"
    assert saved["TRTLLM_IMAGE_DIGEST"] == f"{image}@{build.digest}"  # what Cloud Build reported it pushed
    assert f"Saved {image}@{build.digest} to" in out

    before = len(apis.requests)
    again = run(env / "again.ipynb", **params(apis, project))
    assert "already exists in Artifact Registry" in again and "force=True" in again
    assert [m for m, _ in apis.requests[before:]] == ["GET"] and len(apis.builds) == 1
    assert yaml.safe_load((env / "settings.yaml").read_text())["TRTLLM_IMAGE_DIGEST"] == f"{image}@{build.digest}"


def test_a_1x_version_builds_on_nvidias_release_image(env, apis):
    project = f"nb-{uuid.uuid4().hex[:10]}"
    out = run(env / "out.ipynb", **params(apis, project, trtllm_version="1.2.0"))
    (build,) = apis.builds.values()
    assert build.request["substitutions"]["_BASE_IMAGE"] == "nvcr.io/nvidia/tensorrt-llm/release:1.2.0"
    assert "WARNING" not in out  # no Triton pair to check for 1.x
    image = f"us-central1-docker.pkg.dev/{project}/bench/trtllm:1.2.0"
    assert yaml.safe_load((env / "settings.yaml").read_text())["TRTLLM_IMAGE_DIGEST"] == f"{image}@{build.digest}"


def test_a_version_that_cannot_be_built_is_refused_before_any_request(env, apis):
    with pytest.raises(pm.PapermillExecutionError) as e:
        run(env / "out.ipynb", **params(apis, "nb-noversion", trtllm_version="1.3.0"))
    assert e.value.ename == "ConfigError" and e.value.evalue.startswith("TRTLLM_VERSION:")
    assert "1.2.1" in e.value.evalue and apis.requests == []


def test_a_failed_build_stops_the_notebook_with_the_step_and_the_log(env, apis):
    apis.outcome = "FAILURE"
    project = f"nb-{uuid.uuid4().hex[:10]}"
    with pytest.raises(pm.PapermillExecutionError) as e:
        run(env / "out.ipynb", **params(apis, project))
    assert e.value.ename == "ImageBuildError"
    assert "ended FAILURE at step #0 'build'" in e.value.evalue and "manifest unknown" in e.value.evalue
    assert not (env / "settings.yaml").exists()


def test_a_bad_registry_is_refused_before_any_request(env, apis):
    with pytest.raises(pm.PapermillExecutionError) as e:
        run(env / "out.ipynb", **params(apis, "nb-badregistry", artifact_registry="gcr.io/nb-badregistry"))
    assert e.value.ename == "ConfigError" and e.value.evalue.startswith("ARTIFACT_REGISTRY:")
    assert apis.requests == []


def test_every_parameter_is_typed_commented_and_listed_by_help_notebook(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    names = []
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.AnnAssign), ast.unparse(node)
        names.append(node.target.id)
    for line in cell.source.splitlines()[1:]:
        code, _, comment = line.partition("  # ")
        assert comment and "=" not in comment and "|" not in code, line  # papermill drops such lines
    proc = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook", str(NOTEBOOK)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = re.findall(r"^  (\w+): ", proc.stdout, re.M)
    assert listed == names
    assert {"force", "follow", "timeout_s", "source_bucket", "cloudbuild_endpoint", "registry_endpoint"} <= set(names)


def test_the_notebook_is_committed_without_outputs():
    raw = json.loads(NOTEBOOK.read_text())
    for cell in raw["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
