"""The launcher end to end, as a real subprocess against stand-ins for trtllm-bench and the hub.

Each test gets a fresh fake node (``launcher/testing/harness.py``): local-SSD folders, a fake hub, and
stand-ins that accept only the real command lines of the TensorRT-LLM version they pretend to be (the
harness' default is the recipe's 0.17.0.post1: no --report_json, so the printed report is the result).
Version coverage across the CLI tables is in ``test_launcher_versions.py``.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

import pytest
from helpers import REPO

sys.path[:0] = [str(REPO / "launcher"), str(REPO / "launcher" / "testing")]  # flat modules, as in the pod

import layout  # noqa: E402
from events import parse_event  # noqa: E402
from harness import MODEL, SWEEP, TOKEN, Node, kill_group, wait_for_event, wait_until  # noqa: E402

IDS = ["isl128-osl128-n30", "isl9000-osl100-n5-c4-stream", "isl500-osl200-n10"]
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def one(node: Node, **overrides: object) -> dict[str, object]:
    """A one-experiment config, for tests about the phases before and around the benchmark."""
    return node.config(experiments=[SWEEP[0]], **overrides)


def runs(node: Node, tool: str | None = None, subcommand: str | None = None) -> list[dict[str, object]]:
    """Calls that did work: the launcher also asks each tool for ``--help``, which is reading, not running."""
    return [c for c in node.calls(tool, subcommand) if "--help" not in c["argv"]]


def run_dir(node: Node, run_id: str = "run-1") -> Path:
    return node.results / "bench-acme-tiny" / run_id


def assert_follows_layout(folder: Path) -> dict[str, str]:
    """Every metadata.json (and run.json, where the run is closed) under a run folder passes the reader's
    schema-1 checks, and both agree; returns each experiment's status by id."""
    statuses = {}
    for path in folder.glob(f"*/{layout.METADATA_FILE}"):
        meta = layout.check_metadata(json.loads(path.read_text()), str(path))
        assert meta["experiment"]["id"] == path.parent.name
        statuses[path.parent.name] = meta["status"]
    run_file = folder / layout.RUN_FILE
    if run_file.exists():
        run = layout.check_run(json.loads(run_file.read_text()), str(run_file))
        assert {e["id"]: e["status"] for e in run["experiments"]} == statuses
    return statuses


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    files = (p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


# -- the sweep ------------------------------------------------------------------------------------------


def test_sweep_builds_an_engine_per_dataset_and_reports_every_experiment(node: Node) -> None:
    result = node.run(node.config())
    assert result.returncode == 0, result.stdout

    assert len(runs(node, "download")) == 1
    builds = runs(node, "trtllm-bench", "build")
    # NVIDIA's method: each engine built by trtllm-bench from its experiment's own dataset
    assert [b["argv"][b["argv"].index("--dataset") + 1].split("/")[-2] for b in builds] == IDS
    assert len(runs(node, "trtllm-bench", "throughput")) == 3

    folder = run_dir(node)
    for exp_id in IDS:
        names = {p.name for p in (folder / exp_id).iterdir()}
        assert {"report.txt", "metadata.json", "launcher.log"} <= names and "report.json" not in names
        assert "= PERFORMANCE OVERVIEW" in (folder / exp_id / "report.txt").read_text()
        meta = json.loads((folder / exp_id / "metadata.json").read_text())
        assert meta["status"] == "succeeded" and meta["error"] is None and meta["report_source"] == "report.txt"
        assert (meta["flow"], meta["backend"], meta["engine_method"]) == ("engine", "tensorrt", "per-dataset")
        assert meta["versions"]["tensorrt_llm"] == "0.17.0.post1"
        assert meta["gpus"]["count"] == 8 and meta["gpus"]["gpus"][0]["name"] == "NVIDIA H200"
        assert meta["commands"]["benchmark"][0] == str(node.bench)
        assert "--report_json" not in meta["commands"]["benchmark"]  # 0.17's throughput does not list it
        assert meta["engine"]["key"] in meta["commands"]["benchmark"][meta["commands"]["benchmark"].index(
            "--engine_dir") + 1]
        assert set(meta["phases"]) >= {"download", "build", "dataset", "benchmark", "upload"}
    # the 9000-token prompts exceed the engine's 8192-token budget, but 0.17 lists no --enable_chunked_context:
    # chunking is that release's default
    long_prompt = json.loads((folder / IDS[1] / "metadata.json").read_text())["commands"]["benchmark"]
    assert "--enable_chunked_context" not in long_prompt and "--streaming" in long_prompt
    assert long_prompt[long_prompt.index("--concurrency") + 1] == "4"

    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "succeeded" and run["exit_code"] == 0 and run["engine_method"] == "per-dataset"
    assert [e["id"] for e in run["experiments"]] == IDS and len({e["engine"] for e in run["experiments"]}) == 3
    assert {e["status"] for e in run["experiments"]} == {"succeeded"}
    assert run["model"] == MODEL and run["tp_size"] == 8 and run["versions"]["tensorrt_llm"] == "0.17.0.post1"
    assert assert_follows_layout(folder) == dict.fromkeys(IDS, "succeeded")


def test_events_follow_the_documented_format(node: Node) -> None:
    result = node.run(node.config())
    assert result.returncode == 0, result.stdout
    events = result.events
    assert events[0]["phase"] == "run" and events[0]["state"] == "started" and events[0]["total"] == 3
    assert events[-1]["phase"] == "run" and events[-1]["state"] == "finished"
    for event in events:
        assert event["phase"] in {"preflight", "download", "build", "dataset", "benchmark", "upload", "run"}
        assert event["state"] in {"started", "finished", "skipped", "failed"}
        assert "experiment" in event and RFC3339_UTC.match(event["time"])
        if event["experiment"] is not None:
            assert event["total"] == 3 and event["experiment"] == IDS[event["index"] - 1]
    finished = [(e["experiment"], e["index"]) for e in result.find("benchmark", "finished")]
    assert finished == [(IDS[0], 1), (IDS[1], 2), (IDS[2], 3)]
    assert result.find("download", "finished")[0]["bytes"] > 0
    assert all("seconds" in e for e in result.find("benchmark", "finished"))


def test_second_run_on_the_same_node_builds_nothing_and_skips_the_download(node: Node) -> None:
    assert node.run(node.config(run_id="run-1")).returncode == 0
    second = node.run(node.config(run_id="run-2"))
    assert second.returncode == 0, second.stdout

    assert len(runs(node, "trtllm-bench", "build")) == 3  # all from the first run
    assert len(runs(node, "download")) == 1
    assert len(runs(node, "trtllm-bench", "throughput")) == 6
    assert second.find("download", "skipped") and len(second.find("build", "skipped")) == 3
    assert not second.find("build", "started")
    run = json.loads((run_dir(node, "run-2") / "run.json").read_text())
    assert run["checkpoint"]["downloaded_now"] is False
    for exp_id in IDS:
        meta = json.loads((run_dir(node, "run-2") / exp_id / "metadata.json").read_text())
        assert meta["engine"]["built_now"] is False
    assert {e["status"] for e in run["experiments"]} == {"succeeded"}


def test_experiments_with_identical_builds_share_one_engine(node: Node) -> None:
    same_dataset = [dict(SWEEP[0]), dict(SWEEP[0], concurrency=8), dict(SWEEP[0], streaming=True)]
    result = node.run(node.config(experiments=same_dataset))
    assert result.returncode == 0, result.stdout
    assert len(runs(node, "trtllm-bench", "build")) == 1
    assert len(result.find("build", "skipped")) == 2 and len(runs(node, "trtllm-bench", "throughput")) == 3


def test_a_shared_engine_covers_the_sweep_and_a_longer_sweep_gets_its_own(node: Node) -> None:
    assert node.run(node.config(run_id="run-1", engine_method="shared")).returncode == 0
    assert len(runs(node, "trtllm-bench", "build")) == 1  # one engine long enough for 9000 + 100
    meta = json.loads((run_dir(node) / IDS[0] / "metadata.json").read_text())
    assert meta["engine_method"] == "shared" and meta["engine"]["method"] == "shared"
    longer = [*SWEEP, {"isl": 20000, "osl": 2000, "num_requests": 2, "concurrency": None, "streaming": False}]
    assert node.run(node.config(run_id="run-2", experiments=longer, engine_method="shared")).returncode == 0
    builds = runs(node, "trtllm-bench", "build")
    assert [b["argv"][b["argv"].index("--max_seq_len") + 1] for b in builds] == ["9100", "22000"]
    assert len([p for p in (node.ssd / "engines").iterdir() if p.is_dir()]) == 2


def test_a_killed_run_resumes_only_what_is_missing_and_overwrites_nothing(node: Node) -> None:
    proc = node.start(node.config(), STANDIN_SLEEP_ISL="9000:60")
    wait_for_event(proc, lambda e: e["phase"] == "benchmark" and e["state"] == "started" and e.get("index") == 2)
    wait_until(lambda: len(runs(node, "trtllm-bench", "throughput")) == 2)  # the benchmark is running
    kill_group(proc)

    folder = run_dir(node)
    assert (folder / IDS[0] / "metadata.json").is_file()
    assert not (folder / IDS[1]).exists() and not (folder / "run.json").exists()
    before = snapshot(folder / IDS[0])

    resumed = node.run(node.config())
    assert resumed.returncode == 0, resumed.stdout
    assert snapshot(folder / IDS[0]) == before  # same bytes, never rewritten
    skipped = resumed.find("benchmark", "skipped")
    assert [e["experiment"] for e in skipped] == [IDS[0]]
    benches = [c["argv"] for c in runs(node, "trtllm-bench", "throughput")]
    per_exp = {i: sum(1 for a in benches if f"/{i}/dataset.jsonl" in " ".join(a)) for i in IDS}
    assert per_exp == {IDS[0]: 1, IDS[1]: 2, IDS[2]: 1}  # the killed one again, the rest once
    assert len(runs(node, "trtllm-bench", "build")) == 3 and len(runs(node, "download")) == 1
    run = json.loads((folder / "run.json").read_text())
    assert {e["status"] for e in run["experiments"]} == {"succeeded"}
    attempts = sorted(p.name for p in (folder / ".attempts").iterdir())
    assert len(attempts) == 2
    assert not (folder / ".attempts" / attempts[0] / "result.json").exists()  # the killed pod never finished

    # the run is closed: a further pod changes nothing and runs nothing
    everything = snapshot(folder)
    again = node.run(node.config())
    assert again.returncode == 0 and again.find("run", "skipped")
    assert len(runs(node, "trtllm-bench", "throughput")) == 4
    assert snapshot(folder) == everything


def test_sigterm_stops_the_benchmark_and_records_nothing_as_done(node: Node) -> None:
    """Kubernetes stops a pod with SIGTERM: the child goes too, and the experiment stays to be resumed."""
    proc = node.start(one(node), STANDIN_SLEEP_ISL="128:60")
    wait_for_event(proc, lambda e: e["phase"] == "benchmark" and e["state"] == "started")
    wait_until(lambda: len(runs(node, "trtllm-bench", "throughput")) == 1)
    bench_pid = runs(node, "trtllm-bench", "throughput")[0]["pid"]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert "interrupted" in [e for e in map(parse_event, out.splitlines()) if e][-1]["error"]
    wait_until(lambda: not Path(f"/proc/{bench_pid}").exists() or "Z" in _proc_state(bench_pid))
    assert not (run_dir(node) / IDS[0] / "metadata.json").exists() and not (run_dir(node) / "run.json").exists()
    attempt = next((run_dir(node) / ".attempts").iterdir())
    assert json.loads((attempt / "result.json").read_text())["status"] == "interrupted"


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return "Z"


@pytest.mark.parametrize("report", ["report.json", "report.txt"])
def test_report_without_metadata_is_recovered_not_rerun(node: Node, report: str) -> None:
    """A pod that died between uploading a report and metadata.json: the report stands."""
    exp = run_dir(node) / IDS[0]
    exp.mkdir(parents=True)
    (exp / report).write_text('{"performance": {"request_throughput_req_s": 1.0}}')
    result = node.run(node.config())
    assert result.returncode == 0, result.stdout
    assert len(runs(node, "trtllm-bench", "throughput")) == 2
    meta = json.loads((exp / "metadata.json").read_text())
    assert meta["recovered"] is True and meta["status"] == "succeeded"
    assert assert_follows_layout(run_dir(node)) == dict.fromkeys(IDS, layout.SUCCEEDED)
    assert (exp / report).read_text() == '{"performance": {"request_throughput_req_s": 1.0}}'


# -- failures -------------------------------------------------------------------------------------------


def test_a_failing_experiment_does_not_stop_the_others(node: Node) -> None:
    result = node.run(node.config(), STANDIN_FAIL_ISL="9000")
    assert result.returncode == 1
    folder = run_dir(node)
    assert (folder / IDS[0] / "report.txt").is_file() and (folder / IDS[2] / "report.txt").is_file()
    assert not (folder / IDS[1] / "report.txt").exists()
    meta = json.loads((folder / IDS[1] / "metadata.json").read_text())
    assert meta["status"] == "failed" and "exited with code 1" in meta["error"]
    assert "Simulated failure" in meta["error"]
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "failed" and run["exit_code"] == 1
    assert [e["status"] for e in run["experiments"]] == ["succeeded", "failed", "succeeded"]
    assert run["experiments"][1]["error"] == meta["error"]
    assert assert_follows_layout(folder) == {IDS[0]: "succeeded", IDS[1]: "failed", IDS[2]: "succeeded"}
    failed = result.find("benchmark", "failed")
    assert [e["experiment"] for e in failed] == [IDS[1]] and failed[0]["error"]
    assert result.events[-1]["state"] == "failed"


def test_exit_zero_without_a_report_is_a_failure(node: Node) -> None:
    """An out-of-memory rank: trtllm-bench exits 0 and prints no report."""
    result = node.run(node.config(), STANDIN_OOM_ISL="500")
    assert result.returncode == 1
    meta = json.loads((run_dir(node) / IDS[2] / "metadata.json").read_text())
    assert meta["status"] == "failed"
    assert "exited 0 but printed no PERFORMANCE OVERVIEW (out of memory)" in meta["error"]
    assert meta["phases"]["benchmark"]["exit_code"] == 0
    assert "out of memory" in (run_dir(node) / IDS[2] / "benchmark.log").read_text()
    assert not (run_dir(node) / IDS[2] / "report.txt").exists()  # report.txt always means a report


def test_a_failed_build_leaves_no_engine_and_a_retry_builds_it(node: Node) -> None:
    failed = node.run(one(node), STANDIN_BUILD_FAIL="1")
    assert failed.returncode == 4
    assert failed.find("build", "failed") and not runs(node, "trtllm-bench", "throughput")
    engines = node.ssd / "engines"
    assert [p.name for p in engines.iterdir() if p.is_dir()] == []  # neither engine nor temp folder
    assert not (run_dir(node) / "run.json").exists()  # not closed: the Job's retry may try again
    attempt = next((run_dir(node) / ".attempts").iterdir())
    assert json.loads((attempt / "result.json").read_text())["exit_code"] == 4

    killed = engines / ".tmp-other-engine-s256-0123456789ab-4242-1700000000000000000"  # a build that was killed
    (killed / "acme").mkdir(parents=True)
    (killed / "acme" / "rank0.safetensors").write_bytes(b"quantized checkpoint")
    retry = node.run(one(node))
    assert retry.returncode == 0, retry.stdout
    assert len(runs(node, "trtllm-bench", "build")) == 2 and len(runs(node, "download")) == 1
    assert not killed.exists()


@pytest.mark.parametrize(
    ("variable", "message"),
    [("RECIPE_PREPARE_DATASET", "set RECIPE_PREPARE_DATASET"), ("TRTLLM_BENCH", "set $TRTLLM_BENCH")],
)
def test_a_missing_tool_stops_the_run_before_any_work(node: Node, variable: str, message: str) -> None:
    result = node.run(one(node), **{variable: str(node.root / "missing" / "tool")})
    assert result.returncode == 4
    assert message in result.events[-1]["error"]
    assert not runs(node, "download") and not runs(node, "trtllm-bench", "build")
    assert not (run_dir(node) / "run.json").exists()


def test_a_partial_download_is_never_marked_complete(node: Node) -> None:
    partial = node.run(one(node), FAKE_DOWNLOAD_PARTIAL="1")
    assert partial.returncode == 4
    assert "shards missing" in partial.find("download", "failed")[0]["error"]
    assert not (node.ssd / "models" / MODEL / ".recipe-download-complete.json").exists()
    retry = node.run(one(node))
    assert retry.returncode == 0 and len(runs(node, "download")) == 2


def test_the_token_never_appears_in_logs_events_or_results(node: Node) -> None:
    leaky = node.run(one(node), FAKE_DOWNLOAD_FAIL="1")  # the downloader prints the token
    assert leaky.returncode == 4
    assert TOKEN not in leaky.stdout and "[REDACTED]" in leaky.stdout
    ok = node.run(one(node, run_id="run-2"), STANDIN_ECHO_ENV="HF_TOKEN")
    assert ok.returncode == 0, ok.stdout
    assert "env HF_TOKEN=<unset>" in ok.stdout  # benchmark steps never receive it
    for path in [*node.results.rglob("*"), *(node.ssd / "workspace").rglob("*")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_two_pods_on_one_node_build_the_engine_once(node: Node) -> None:
    first = node.start(one(node, run_id="run-a"), STANDIN_BUILD_SLEEP="1.5")
    second = node.start(one(node, run_id="run-b"), STANDIN_BUILD_SLEEP="1.5")
    outputs = [p.communicate(timeout=60)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    assert len(runs(node, "trtllm-bench", "build")) == 1
    assert sum("engine built by another pod" in out for out in outputs) == 1


# -- configuration, backends, versions ------------------------------------------------------------------


def test_bad_config_values_are_rejected_naming_the_field(node: Node) -> None:
    cfg = node.config()
    cfg["experiments"][1]["isl"] = 0
    cfg["tp-size"] = cfg.pop("tp_size")
    result = node.run(cfg)
    assert result.returncode == 2
    assert "experiments[1].isl: must be a positive integer, got 0" in result.stdout
    assert "tp-size: unknown key; did you mean 'tp_size'?" in result.stdout
    assert "tp_size: is required" in result.stdout
    assert result.events[-1]["state"] == "failed" and not node.calls()


def test_plan_option_prints_the_plan_and_runs_nothing(node: Node) -> None:
    result = node.run(node.config(), "--plan")
    assert result.returncode == 0, result.stdout
    plan = json.loads(result.stdout)
    assert plan["download"] is True and len(plan["builds"]) == 3 and plan["run"] == IDS
    assert plan["trtllm_version"] == "0.17.0.post1" and plan["engine_method"] == "per-dataset"
    assert not runs(node) and not node.ssd.exists()


# -- preflight ------------------------------------------------------------------------------------------


def test_healthy_preflight_is_recorded_with_every_result(node: Node) -> None:
    result = node.run(node.config(preflight={"enabled": True, "mode": "enforce"}))
    assert result.returncode == 0, result.stdout
    meta = json.loads((run_dir(node) / IDS[0] / "metadata.json").read_text())
    assert meta["preflight"]["status"] == "pass"
    assert json.loads((run_dir(node) / "run.json").read_text())["preflight"]["status"] == "pass"
    assert result.find("preflight", "finished")


def test_unhealthy_preflight_in_enforce_mode_stops_the_run(node: Node) -> None:
    result = node.run(one(node, preflight={"enabled": True, "mode": "enforce"}), STANDIN_PREFLIGHT="unhealthy")
    assert result.returncode == 3
    assert "below its threshold" in result.find("preflight", "failed")[0]["error"]
    assert not runs(node, "download") and not runs(node, "trtllm-bench", "throughput")
    attempt = next((run_dir(node) / ".attempts").iterdir())
    assert json.loads((attempt / "preflight.json").read_text())["status"] == "fail"


def test_unhealthy_preflight_in_warn_mode_runs_and_records_it(node: Node) -> None:
    result = node.run(one(node, preflight={"enabled": True, "mode": "warn"}), STANDIN_PREFLIGHT="unhealthy")
    assert result.returncode == 0, result.stdout
    run = json.loads((run_dir(node) / "run.json").read_text())
    assert run["preflight"]["status"] == "fail"


# -- what the analyze side reads ------------------------------------------------------------------------


def test_results_load_in_the_analyze_code_with_the_failure_explained(node: Node) -> None:
    from recipelib.results import load_local

    assert node.run(node.config(), STANDIN_FAIL_ISL="9000").returncode == 1
    results = load_local(node.results, strict=True)
    assert [r.status for r in results.runs] == ["failed"]
    assert [(m.experiment, "Simulated failure" in m.reason) for m in results.missing] == [(IDS[1], True)]
    assert sorted(results.frame["experiment"]) == sorted([IDS[0], IDS[2]])
