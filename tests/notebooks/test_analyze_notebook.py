"""notebooks/analyze.ipynb, run headless with papermill: on the examples with no cloud at all, and on a
bucket of the local GCS server. The output notebook must show its table, its figures and the HTML path."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import papermill
import pytest
from helpers import REPO, REPORTS, run_notebook

NOTEBOOK = REPO / "notebooks" / "analyze.ipynb"


def outputs(nb) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def text_of(nb) -> str:
    parts = []
    for o in outputs(nb):
        parts.append(o.get("text", ""))
        data = o.get("data", {})
        parts.append(data.get("text/plain", "") + data.get("text/html", "") + data.get("text/markdown", ""))
    return "\n".join(parts)


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **parameters) -> nbformat.NotebookNode:
    # nothing configured: no settings file, no bucket, and no credentials a cloud client could find
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "no-settings.yaml"))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-credentials.json"))
    for name in ("GCS_BUCKET", "RESULTS_PREFIX", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "executed.ipynb"
    return run_notebook(NOTEBOOK, out, cwd=tmp_path, **parameters)


def test_committed_without_outputs_and_with_typed_parameters() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    lines = [line for line in params[0].source.splitlines() if line.strip()]
    assert {line.split(":")[0] for line in lines} >= {"bucket", "prefix", "runs", "local_dir", "out_dir", "gpu",
                                                     "offline", "cache_dir"}
    for line in lines:  # name: type = default  # comment
        assert re.match(r"^\w+: (str|bool|int|float) = .+  # \S", line), line
    assert nb.metadata.kernelspec.name == "python3"
    # what `papermill --help-notebook` shows: every parameter, with its type and comment
    inspected = papermill.inspect_notebook(str(NOTEBOOK))
    assert set(inspected) == {line.split(":")[0] for line in lines}
    assert all(p["inferred_type_name"] in {"str", "bool"} and p["help"] for p in inspected.values())


def test_runs_on_the_examples_with_no_cloud(tmp_path, monkeypatch) -> None:
    nb = run(tmp_path, monkeypatch, runs="all", out_dir="report")
    text = text_of(nb)
    out = tmp_path / "report"
    assert "source: recipelib examples" in text
    assert "3,914.5" in text  # the recipe's run in the summary table
    assert "gpu-recipes-a3ultra/20250528-llama405b-fp8-tp8-trt0.17" in text
    html_tables = [o["data"]["text/html"] for o in outputs(nb) if "text/html" in o.get("data", {})]
    assert len(html_tables) >= 5  # runs, summary, limits, published, comparison
    for table in html_tables:  # the notebook shows tables as the report does: scrolling, an em dash for a gap
        assert table.startswith('<div class="table-wrap" style="overflow-x:auto')
        assert ">None<" not in table and ">NaN<" not in table and "&lt;NA&gt;" not in table
    assert any(">\u2014<" in table for table in html_tables)  # the examples lack some values
    images = [o for o in outputs(nb) if "image/png" in o.get("data", {})]
    # throughput, limits and latency of the trtllm-bench examples; latency, goodput and frontier of the serving one
    assert len(images) == 6
    assert "No latency figure" not in text
    assert f"HTML report: {out / 'report.html'}" in text
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 6
    assert {p.name for p in out.iterdir()} >= {"report.html", "results.csv", "throughput.png"}
    assert "gs://" not in text


def test_runs_against_a_bucket(tmp_path, monkeypatch, gcs, gcs_bucket) -> None:
    prefix = "trtllm-benchmarks"
    gpus = {"available": True, "count": 8, "gpus": [{"index": str(i), "name": "NVIDIA H200"} for i in range(8)]}
    experiment = {"id": "isl128-osl128-n30000", "isl": 128, "osl": 128, "num_requests": 30000, "concurrency": None,
                  "streaming": False, "status": "succeeded"}
    doc = {"schema": 1, "release": "bob-llama-405b", "run_id": "run-1", "model": "meta-llama/Llama-3.1-405B",
           "status": "succeeded", "exit_code": 0, "started": "2025-05-28T22:40:28Z",
           "finished": "2025-05-28T23:40:59Z", "experiments": [experiment], "gpus": gpus}
    gcs_bucket.blob(f"{prefix}/bob-llama-405b/run-1/run.json").upload_from_string(json.dumps(doc))
    gcs_bucket.blob(f"{prefix}/bob-llama-405b/run-1/isl128-osl128-n30000/report.txt").upload_from_string(
        (REPORTS / "gpu-recipes_a3ultra_llama405b_trt-0.17.0.post1_h200.txt").read_text())
    nb = run(tmp_path, monkeypatch, bucket=gcs_bucket.name, prefix=prefix, gcs_endpoint=gcs.url,
             cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "out"))
    text = text_of(nb)
    assert f"source: gs://{gcs_bucket.name}/{prefix}" in text
    assert "bob-llama-405b/run-1" in text and "3,914.5" in text
    assert "Only one run selected" in text
    # a 0.17 report has no latency percentiles: no latency figure, and a sentence saying why instead
    assert len([o for o in outputs(nb) if "image/png" in o.get("data", {})]) == 2
    assert "No latency figure: these reports (TensorRT-LLM 0.17.0.post1) give no latency percentiles" in text
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "No latency figure" in html
    assert not (tmp_path / "out" / "latency.png").exists()
    assert (tmp_path / "cache" / gcs_bucket.name / prefix / "bob-llama-405b" / "run-1" / "run.json").exists()
    assert (tmp_path / "out" / "report.html").exists()
    assert os.environ.get("GCS_BUCKET") is None
