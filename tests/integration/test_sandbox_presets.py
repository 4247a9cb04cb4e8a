"""The sandbox plays every preset the README shows: a recorded run where one exists, else NVIDIA's published
figure for that model, GPU, TP and ISL/OSL (labelled so); an experiment with neither is refused at plan time.

The expected numbers are read here from the published table with the csv module, not through the replay's
own reader (``launcher/testing/published_replay.py``), so the replay is not checked against itself.
"""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
from helpers import REPO, deploy_on_sandbox
from helpers import until as wait

import recipelib
from recipelib.errors import ConfigError
from recipelib.results import load_results
from recipelib.sandbox import BUCKET

MODEL = "meta-llama/Llama-3.1-405B"
TABLE = REPO / "recipelib" / "data" / "nvidia_published_throughput.csv"
SWEEP = REPO / "manifests" / "experiments" / "nvidia-sweep.yaml"
LABEL = "replay of NVIDIA's published figure"
RECORDED = ("isl128-osl128-n30000", 3914.4509)  # the recipe's recorded 0.17.0.post1 run, as test_sandbox reads it


def published(model: str, gpu: str, tp: int, column: str) -> dict[tuple[int, int], float]:
    lines = [line for line in TABLE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {(int(r["isl"]), int(r["osl"])): float(r[column]) for r in csv.DictReader(lines)
            if (r["model"], r["gpu"], int(r["tp"])) == (model, gpu, tp) and r[column]}


def job_condition(cluster, release: str) -> str | None:
    job = cluster.batch.read_namespaced_job(release, cluster.namespace)
    return next((c.type for c in job.status.conditions or [] if c.status == "True"), None)


@pytest.fixture(scope="module")
def sweep_run(sandbox, tmp_path_factory):
    """The 405B with nvidia-sweep deployed once on the sandbox, run to its end."""
    from pydantic import SecretStr

    from recipelib.cluster.hf_secret import ensure_hf_secret

    name = "t-presets"
    cluster = sandbox.cluster(name)
    cluster.core.create_namespace({"metadata": {"name": name}})
    ensure_hf_secret(cluster, SecretStr("hf_sandboxTestPlaceholder0123456789"))
    plan = deploy_on_sandbox(sandbox, cluster, MODEL, "nvidia-sweep")
    yield cluster, plan, wait("the Job to finish", lambda: job_condition(cluster, plan.release), timeout=240)
    cluster.core.delete_namespace(name)


def blob_text(sandbox, plan, experiment: str, name: str) -> str:
    key = f"{plan.results_prefix}/{plan.release}/{plan.run_id}/{experiment}/{name}"
    return sandbox.storage_client().bucket(BUCKET).blob(key).download_as_text()


def test_the_405b_nvidia_sweep_reports_all_nine_experiments(sandbox, sweep_run):
    _, plan, condition = sweep_run
    assert condition == "Complete"
    assert len(plan.experiments) == len([line for line in SWEEP.read_text().splitlines() if line.startswith("- ")])
    results = load_results(bucket=BUCKET, prefix=plan.results_prefix, runs=f"{plan.release}/{plan.run_id}",
                           endpoint=sandbox.state()["gcs"], cache_dir=str(sandbox.root / "cache-presets"))
    frame = results.frame.set_index("experiment")
    assert sorted(frame.index) == sorted(e.id for e in plan.experiments)
    assert frame["replay"].all() and (frame["tp_size"] == 8).all()
    assert frame.loc[RECORDED[0], "output_throughput_tok_s"] == RECORDED[1]


def test_unrecorded_experiments_replay_nvidias_figure_labelled_so(sandbox, sweep_run):
    _, plan, _ = sweep_run
    figures = published("405B", "H200", 8, "v0.17")  # the sandbox's image is TensorRT-LLM v0.17.0 on H200
    results = load_results(bucket=BUCKET, prefix=plan.results_prefix, runs=f"{plan.release}/{plan.run_id}",
                           endpoint=sandbox.state()["gcs"], cache_dir=str(sandbox.root / "cache-presets-2"))
    frame = results.frame.set_index("experiment")
    unrecorded = [e for e in plan.experiments if e.id != RECORDED[0]]
    assert len(unrecorded) == 8
    for exp in unrecorded:
        figure = figures[(exp.isl, exp.osl)]
        row = frame.loc[exp.id]
        assert row["output_throughput_tok_s"] == pytest.approx(figure, abs=5e-5), exp.id
        # what follows from the figure: the run's time, and requests over that time
        total_s = exp.num_requests * exp.osl / figure
        assert row["total_latency_ms"] == pytest.approx(total_s * 1000, rel=1e-6)
        assert row["request_throughput_req_s"] == pytest.approx(exp.num_requests / total_s, abs=1e-4)
        report = blob_text(sandbox, plan, exp.id, "report.txt")
        named = f"row 405B,H200,8,{exp.isl},{exp.osl}, column v0.17"
        assert report.count(LABEL) >= 2 and named in report, exp.id
        assert "Latency Breakdown" not in report and "TTFT" not in report  # no latency was published
        log = blob_text(sandbox, plan, exp.id, "launcher.log")
        assert f"[replay] replay: trtllm-bench throughput is a {LABEL}" in log and named in log
        meta = json.loads(blob_text(sandbox, plan, exp.id, "metadata.json"))
        assert meta["replay"] is True and meta["status"] == "succeeded"
    recorded = blob_text(sandbox, plan, RECORDED[0], "report.txt")
    assert LABEL not in recorded and f"{RECORDED[1]:.4f}" in recorded


def test_metadata_names_the_published_row(sandbox, sweep_run):
    _, plan, _ = sweep_run
    exp = next(e for e in plan.experiments if (e.isl, e.osl) == (2048, 2048))
    meta = json.loads(blob_text(sandbox, plan, exp.id, "metadata.json"))
    assert LABEL in json.dumps(meta["replay_source"])
    assert "405B,H200,8,2048,2048, column v0.17" in json.dumps(meta["replay_source"])


def test_a_preset_experiment_without_a_figure_is_refused_at_plan_time(sandbox, ns):
    # NVIDIA published no v0.17 figure of the 8B on H200 for ISL/OSL 128/4096: nvidia-sweep's third experiment
    assert (128, 4096) not in published("8B", "H200", 1, "v0.17")
    settings = sandbox.settings(namespace=ns.namespace)
    with pytest.raises(ConfigError) as refused:
        recipelib.plan_benchmark(settings, "meta-llama/Llama-3.1-8B", "nvidia-sweep", user="alice")
    message = str(refused.value)
    assert refused.value.field == "experiments" and "isl128-osl4096-n1500" in message
    assert "neither a recorded run" in message and "128/2048, 500/2000" in message  # what exists
    assert "gpu-recipes_a3ultra_llama405b" in message
    assert ns.batch.list_namespaced_job(ns.namespace).items == []  # nothing reached the cluster
    # the 70B's catalog TP 2 has no H200 figure at all: even the recipe's single experiment is refused
    with pytest.raises(ConfigError, match=r"none for H200 TP2"):
        recipelib.plan_benchmark(settings, "meta-llama/Llama-3.1-70B", "recipe-default", user="alice")
    # the same sweep is no problem for a real cluster: the check is the sandbox's only
    real = dataclasses.replace(settings, sandbox=False)
    assert len(recipelib.plan_benchmark(real, "meta-llama/Llama-3.1-8B", "nvidia-sweep").experiments) == 9


def test_the_replay_answers_help_as_the_version_it_plays(sandbox):
    """``trtllm-bench --help`` on the node is the click stand-in's of the played version, byte for byte."""
    import subprocess
    import sys

    testing = REPO / "launcher" / "testing"
    bench = sandbox.root / "node" / "bin" / "trtllm-bench"
    env = {"PATH": "/usr/bin:/bin", "RECIPE_REPLAY_VERSION": "v0.17.0", "STANDIN_VERSION": "0.17.0.post1"}
    for argv in (["--help"], ["--model", MODEL, "throughput", "--help"], ["--model", MODEL, "build", "--help"]):
        replay = subprocess.run([str(bench), *argv], capture_output=True, text=True, env=env, check=False)
        standin = subprocess.run([sys.executable, str(testing / "trtllm_bench.py"), *argv], capture_output=True,
                                 text=True, env=env, check=False)
        assert replay.returncode == standin.returncode == 0 and replay.stdout == standin.stdout, argv
    wrong = subprocess.run([str(bench), "--model", MODEL, "throughput", "--report_json", "x"], capture_output=True,
                           text=True, env=env, check=False)
    assert wrong.returncode == 2 and "No such option '--report_json'" in wrong.stderr  # not in 0.17
