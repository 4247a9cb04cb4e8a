"""notebooks/analyze.ipynb's serving section, run headless with papermill: on the shipped stand-in example
with no cloud at all, and on a bucket of the local GCS server holding a throughput run and a serving run of
the same model (offline beside online, MLPerf's server point), with a broken load point skipped."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from helpers import REPO, REPORTS, run_notebook

from recipelib.results import layout
from recipelib.serving.results import LoadPoint

NOTEBOOK = REPO / "notebooks" / "analyze.ipynb"
SERVING_FIGURES = ("serving_latency", "serving_goodput", "serving_frontier", "serving_offline")


def outputs(nb) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def text_of(nb) -> str:
    parts = []
    for o in outputs(nb):
        data = o.get("data", {})
        parts += [o.get("text", ""), data.get("text/plain", ""), data.get("text/html", ""),
                  data.get("text/markdown", "")]
    return "\n".join(parts)


def serving_images(nb) -> int:
    """PNG outputs of the serving cell (the one that calls load_serving)."""
    cell = next(c for c in nb.cells if c.cell_type == "code" and "load_serving(" in c.source)
    return sum("image/png" in o.get("data", {}) for o in cell.outputs)


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **parameters):
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "no-settings.yaml"))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-credentials.json"))
    for name in ("GCS_BUCKET", "RESULTS_PREFIX", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    return run_notebook(NOTEBOOK, tmp_path / "executed.ipynb", cwd=tmp_path, **parameters)


def test_serving_section_on_the_stand_in_example_with_no_cloud(tmp_path, monkeypatch) -> None:
    nb = run(tmp_path, monkeypatch, runs="all", out_dir="report")
    text = text_of(nb)
    assert "load points from 2 serving run(s), source: recipelib examples" in text
    assert "Stand-in measurement" in text and "STAND-IN" in text  # the banner, and each point's server
    assert "isl64-osl32-c32" in text and "isl64-osl32-r80" in text
    # the stand-in's model has no throughput run and no MLPerf result: those say so instead of a figure
    assert serving_images(nb) == 3 and "No offline-against-online figure" in text
    assert "No MLPerf server-scenario result" in text
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Online serving (stand-in measurement)" in html and "trtllm-serve stand-in" in html
    for name in SERVING_FIGURES[:3]:
        assert (tmp_path / "report" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "report" / "serving_offline.png").exists()
    assert "gs://" not in text


def _point(concurrency: int, tput: float, ttft_p99: float, itl_p99: float) -> LoadPoint:
    return LoadPoint(mode="concurrency", value=float(concurrency), requests=512, errors=0,
                     output_tokens_per_s=tput, requests_per_s=tput / 128, e2e_p50_ms=9000.0, e2e_p99_ms=12000.0,
                     ttft_p50_ms=ttft_p99 / 2, ttft_p99_ms=ttft_p99, itl_p50_ms=itl_p99 * 0.8, itl_p99_ms=itl_p99,
                     goodput_rps=1.0, good_fraction=0.5, slos={"time_to_first_token": 6000.0},
                     isl=128.0, osl=128.0, aiperf_version="0.13.0", source="profile_export_aiperf.json")


def test_serving_from_a_bucket_beside_the_offline_run(tmp_path, monkeypatch, gcs, gcs_bucket) -> None:
    prefix = "trtllm-benchmarks"
    model = "meta-llama/Llama-3.1-405B"
    gpus = {"available": True, "count": 8, "gpus": [{"index": str(i), "name": "NVIDIA H200"} for i in range(8)]}
    experiment = {"id": "isl128-osl128-n30000", "isl": 128, "osl": 128, "num_requests": 30000,
                  "concurrency": None, "streaming": False, "status": "succeeded"}
    doc = {"schema": 1, "release": "bob-405b", "run_id": "bench-1", "model": model, "status": "succeeded",
           "exit_code": 0, "started": "2025-05-28T22:40:28Z", "finished": "2025-05-28T23:40:59Z",
           "experiments": [experiment], "gpus": gpus}
    gcs_bucket.blob(f"{prefix}/bob-405b/bench-1/run.json").upload_from_string(json.dumps(doc))
    gcs_bucket.blob(f"{prefix}/bob-405b/bench-1/isl128-osl128-n30000/report.txt").upload_from_string(
        (REPORTS / "gpu-recipes_a3ultra_llama405b_trt-0.17.0.post1_h200.txt").read_text())
    about = {"schema": 1, "model": model, "tp_size": 8, "gpu": "H200", "gpu_count": 8, "trtllm_version": "0.17.0",
             "started": "2025-06-01T10:00:00Z"}
    for conc, tput, ttft, itl in ((16, 150.0, 2500.0, 60.0), (64, 270.0, 5500.0, 120.0), (256, 420.0, 20000.0, 190.0)):
        point_dir = f"{prefix}/bob-405b/serve-1/{layout.load_point_id(conc, isl=128, osl=128)}"
        body = {**about, "points": [asdict(_point(conc, tput, ttft, itl))]}
        gcs_bucket.blob(f"{point_dir}/{layout.LOAD_SUMMARY}").upload_from_string(json.dumps(body))
        gcs_bucket.blob(f"{point_dir}/profile_export.jsonl").upload_from_string("{}\n" * 100)  # never downloaded
    broken = f"{prefix}/bob-405b/serve-1/{layout.load_point_id(512, isl=128, osl=128)}"
    gcs_bucket.blob(f"{broken}/{layout.LOAD_SUMMARY}").upload_from_string(
        json.dumps({**about, "points": [{**asdict(_point(512, 1.0, 1.0, 1.0)), "ttft_p99_ms": "n/a"}]}))
    cache = tmp_path / "cache"
    nb = run(tmp_path, monkeypatch, bucket=gcs_bucket.name, prefix=prefix, gcs_endpoint=gcs.url,
             runs="bob-405b/bench-1", serving_runs="all",
             cache_dir=str(cache), out_dir=str(tmp_path / "out"), gpu="H200", strict=False)
    text = text_of(nb)
    assert f"3 load points from 1 serving run(s), source: gs://{gcs_bucket.name}/{prefix}" in text
    assert "isl128-osl128-c512" in text and "points[0].ttft_p99_ms" in text  # skipped, and why
    assert "Stand-in measurement" not in text
    assert serving_images(nb) == 4  # latency (with MLPerf's point), goodput, frontier, offline beside online
    # best within MLPerf's limits (p99 TTFT <= 6 s, p99 TPOT <= 175 ms) is c64, 270 tok/s, against 291.37
    assert "MLPerf Inference v5.0 closed, Server, NVIDIA" in text and "isl128-osl128-c64" in text
    html = (tmp_path / "out" / "report.html").read_text()
    assert "291.4" in html and "3,914.5" in html and "Online serving</h2>" in html
    run_cache = cache / gcs_bucket.name / prefix / "bob-405b" / "serve-1"
    assert (run_cache / "isl128-osl128-c64" / layout.LOAD_SUMMARY).is_file()
    assert not list(run_cache.rglob("profile_export.jsonl"))  # only our summaries are downloaded
