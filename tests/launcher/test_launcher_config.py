"""The launcher's pure logic in-process: config validation, the setup plan, command lines, report checks.

The launcher's modules are flat siblings (they are shipped into the pod as one folder), so the folder
goes on ``sys.path`` here just as ``launch.py`` puts it there in the pod.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO

sys.path.insert(0, str(REPO / "launcher"))

import bench
import tool_cli
from bench import BenchOutputs, BuildTuning, check_report, throughput_command
from config import ConfigError, Experiment, LauncherConfig, load_config, parse_config
from events import EventLog, Redactor, parse_event
from plan import CacheState, engine_specs, plan_setup
from store import LocalStore, StoreError, open_store
from tool_cli import Tools, read_tools

TESTING = REPO / "launcher" / "testing"

NVIDIA_SWEEP = [(128, 128), (128, 2048), (128, 4096), (500, 2000), (1000, 1000), (2048, 128), (2048, 2048),
                (5000, 500), (20000, 2000)]


def base() -> dict[str, Any]:
    return {
        "release": "bench-llama", "run_id": "run-abc123", "model": "meta-llama/Llama-3.1-405B",
        "backend": "tensorrt", "tp_size": 8, "pp_size": 1, "ep_size": None, "quantization": "FP8",
        "kv_cache_free_gpu_mem_fraction": 0.95, "max_batch_size": None, "max_num_tokens": None,
        "checkpoint_dir": "/ssd/models", "workspace": "/ssd/workspace", "engine_cache_dir": "/ssd/engines",
        "results": "gs://my-bucket/benchmarks",
        "experiments": [{"isl": i, "osl": o, "num_requests": 1000, "concurrency": None, "streaming": False}
                        for i, o in NVIDIA_SWEEP],
    }


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return [f"{name}: {message}" for name, message in info.value.problems]


# -- config ---------------------------------------------------------------------------------------------


def test_the_deploy_contract_parses() -> None:
    cfg = parse_config(base())
    assert cfg.max_seq_len == 22000 and len(cfg.experiments) == 9
    assert cfg.checkpoint_path == Path("/ssd/models/meta-llama/Llama-3.1-405B")
    assert cfg.preflight.enabled is False
    assert parse_config(base()).config_hash() == cfg.config_hash()


def test_experiment_ids() -> None:
    assert Experiment(128, 128, 30000).id == "isl128-osl128-n30000"
    assert Experiment(128, 2048, 3000, concurrency=64, streaming=True).id == "isl128-osl2048-n3000-c64-stream"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["experiments"][1].update(isl=0), "experiments[1].isl: must be a positive integer, got 0"),
        (lambda d: d["experiments"][0].update(osl="128"), "experiments[0].osl: must be a positive integer, got '128'"),
        (lambda d: d["experiments"][2].pop("num_requests"), "experiments[2].num_requests: is required"),
        (lambda d: d["experiments"][0].update(streaming="yes"), "experiments[0].streaming: must be true or false"),
        (lambda d: d["experiments"][0].update(concurrency=0), "experiments[0].concurrency: must be a positive integer"),
        (lambda d: d["experiments"][0].update(isl_len=5), "experiments[0].isl_len: unknown key"),
        (lambda d: d.update({"tp-size": d.pop("tp_size")}), "tp-size: unknown key; did you mean 'tp_size'?"),
        (lambda d: d.update(tp_size=True), "tp_size: must be a positive integer, got True"),
        (lambda d: d.update(tp_size=16), "tp_size: tp_size x pp_size = 16 exceeds the 8 GPUs of one node"),
        (lambda d: d.update(ep_size=3), "ep_size: must divide tp_size (8), got 3"),
        (lambda d: d.update(backend="vllm"), "backend: must be one of tensorrt, pytorch, got 'vllm'"),
        (lambda d: d.update(quantization="fp8"), "quantization: must be one of FP8"),
        (lambda d: d.update(kv_cache_free_gpu_mem_fraction=0), "kv_cache_free_gpu_mem_fraction: must be a number in"),
        (lambda d: d.update(kv_cache_free_gpu_mem_fraction=1.5), "kv_cache_free_gpu_mem_fraction: must be a number"),
        (lambda d: d.update(release="Bench_Llama"), "release: must be a Kubernetes name"),
        (lambda d: d.update(run_id="run 1; rm -rf /"), "run_id: must be lower-case letters"),
        (lambda d: d.update(model="llama"), "model: must be a Hugging Face id"),
        (lambda d: d.update(model="../etc/passwd"), "model: must be a Hugging Face id"),
        (lambda d: d.update(workspace="ssd/workspace"), "workspace: must be an absolute path"),
        (lambda d: d.update(results="gs://Bad_Bucket!/x"), "results: 'gs://Bad_Bucket!/x' does not name a valid"),
        (lambda d: d.update(experiments=[]), "experiments: must be a non-empty list"),
        (lambda d: d["experiments"].append(dict(d["experiments"][0])), "experiments[9]: duplicates experiments[0]"),
        (lambda d: d.update(preflight={"enabled": True, "mode": "strict"}), "preflight.mode: must be one of enforce"),
        (lambda d: d.update(preflight={"enable": True}), "preflight.enable: unknown key; did you mean 'enabled'?"),
        (lambda d: d.pop("results"), "results: is required"),
        (lambda d: d.update(checkpoint="FP8"), "checkpoint: must be a Hugging Face id"),
        (lambda d: d.update(engine_method="per-experiment"), "engine_method: must be one of per-dataset, shared"),
        (lambda d: d.update(backend="pytorch", engine_method="shared"), "engine_method: applies only to backend"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(change: Any, expected: str) -> None:
    data = copy.deepcopy(base())
    change(data)
    found = problems(data)
    assert any(p.startswith(expected) for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    data = base()
    data["tp_size"] = 0
    data["experiments"][3]["isl"] = -5
    data["bogus"] = 1
    assert problems(data) == [
        "bogus: unknown key; allowed: " + ", ".join([
            "release", "run_id", "model", "backend", "tp_size", "pp_size", "kv_cache_free_gpu_mem_fraction",
            "checkpoint_dir", "workspace", "engine_cache_dir", "results", "experiments", "ep_size", "quantization",
            "max_batch_size", "max_num_tokens", "preflight", "checkpoint", "engine_method", "model_shape"]),
        "tp_size: must be a positive integer, got 0",
        "experiments[3].isl: must be a positive integer, got -5",
    ]


def test_checkpoint_and_engine_method_defaults() -> None:
    cfg = parse_config(base())
    assert (cfg.checkpoint, cfg.engine_method, cfg.flow) == ("meta-llama/Llama-3.1-405B", "per-dataset", "engine")
    fp8 = parse_config(base() | {"backend": "pytorch", "quantization": None,
                                 "checkpoint": "nvidia/Llama-3.1-405B-Instruct-FP8"})
    assert fp8.checkpoint_path == Path("/ssd/models/nvidia/Llama-3.1-405B-Instruct-FP8")
    assert (fp8.engine_method, fp8.flow) == (None, "pytorch")


def test_yaml_and_json_files(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps(base()))
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(base()))
    assert load_config(tmp_path / "c.json") == load_config(tmp_path / "c.yaml")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path / "bad.json")


def test_recipelib_renders_a_config_the_launcher_accepts() -> None:
    """The deploy side and the launcher agree on the contract (recipelib.deploy.render.launcher_config)."""
    from recipelib.deploy.catalog import Experiment as DeployExperiment
    from recipelib.deploy.catalog import ModelSpec
    from recipelib.deploy.render import BenchmarkPlan, launcher_config

    spec = ModelSpec(id="meta-llama/Llama-3.1-405B", parameters_billion=405, backend="tensorrt", tp_size=8,
                     pp_size=1, quantization="FP8", kv_cache_free_gpu_mem_fraction=0.95)
    plan = BenchmarkPlan(release="bench-llama", namespace="default", model=spec,
                         experiments=(DeployExperiment(128, 128, 30000), DeployExperiment(20000, 2000, 1000, 8, True)),
                         image="us-docker.pkg.dev/p/r/trtllm:0.17.0", bucket="my-bucket", results_prefix="benchmarks")
    cfg = parse_config(json.loads(json.dumps(launcher_config(plan))))
    assert cfg.checkpoint == spec.id and cfg.engine_method == "per-dataset" and cfg.flow == "engine"
    assert [e.id for e in cfg.experiments] == [e.id for e in plan.experiments]
    assert cfg.results == "/gcs/benchmarks" and cfg.max_seq_len == 22000


def standin_tools(tmp_path: Path, version: str, monkeypatch: pytest.MonkeyPatch) -> Tools:
    """The stand-in of ``version``, asked for its --help exactly as the launcher asks a real trtllm-bench."""
    wrapper = tmp_path / "trtllm-bench"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{TESTING / "trtllm_bench.py"}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("STANDIN_VERSION", version)
    monkeypatch.delenv(tool_cli.VERSION_ENV, raising=False)
    return read_tools(str(wrapper), "a/b", sys.executable, TESTING / "prepare_dataset.py")


# -- plan and engine key ----------------------------------------------------------------------------------


def test_plan_per_dataset_and_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = standin_tools(tmp_path, "0.17.0.post1", monkeypatch)
    cfg = parse_config(base())
    cold = plan_setup(cfg, tools, CacheState())
    assert cold.download and len(cold.builds) == 9 and len(cold.run) == 9 and cold.engine_method == "per-dataset"
    assert all("--dataset" in s.command and s.dataset_command for s in cold.builds)
    warm = plan_setup(cfg, tools, CacheState(checkpoint_complete=True, engines=frozenset(s.key for s in cold.builds)))
    assert not warm.download and warm.builds == () and warm.engines == cold.engines
    shared = plan_setup(parse_config(base() | {"engine_method": "shared"}), tools, CacheState())
    [engine] = shared.builds
    assert engine.command[engine.command.index("--max_seq_len") + 1] == "22000" and shared.shared_engine == engine
    finished = plan_setup(cfg, tools, CacheState(done_experiments=frozenset(e.id for e in cfg.experiments)))
    assert not finished.download and finished.builds == () and finished.run == ()
    pytorch = plan_setup(parse_config(base() | {"backend": "pytorch"}), tools, CacheState())
    assert pytorch.builds == () and pytorch.engines == {}


def test_engine_key_changes_with_what_changes_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = standin_tools(tmp_path, "0.17.0.post1", monkeypatch)

    def key(cfg: LauncherConfig, t: Tools = tools) -> str:
        return engine_specs(cfg, t)[cfg.experiments[-1].id].key

    cfg = parse_config(base())
    first = key(cfg)
    assert first.startswith("llama-3-1-405b-tp8-pp1-fp8-trt0-17-0-post1-isl20000-osl2000-n1000-")
    assert key(parse_config(base())) == first  # stable
    assert key(parse_config(base() | {"checkpoint_dir": "/other"})) == first  # node paths are not identity
    newer = standin_tools(tmp_path, "1.2.0", monkeypatch)
    others = [
        key(cfg, newer),
        key(parse_config(base() | {"quantization": "NVFP4"})),
        key(parse_config(base() | {"tp_size": 4, "pp_size": 2})),
        key(parse_config(base() | {"checkpoint": "nvidia/Llama-3.1-405B-Instruct-FP8"})),
        key(parse_config(base() | {"experiments": [dict(base()["experiments"][-1], num_requests=7)]})),
    ]
    assert len({first, *others}) == 6


def test_build_tuning() -> None:
    assert BuildTuning.for_config(parse_config(base())) == BuildTuning(22000, target_input_len=128,
                                                                        target_output_len=128)
    pinned = parse_config(base() | {"max_batch_size": 512, "max_num_tokens": 16384})
    assert BuildTuning.for_config(pinned) == BuildTuning(22000, max_batch_size=512, max_num_tokens=16384)


# -- command lines and reports ------------------------------------------------------------------------------


def test_build_commands_use_the_spelling_the_tool_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """0.16's build spells --max_seq_length and its group has no --model_path; 1.2's has both newer forms."""
    cfg = parse_config(base())
    tuning = BuildTuning.for_config(cfg)
    old = bench.build_command(standin_tools(tmp_path, "0.16.0", monkeypatch).bench, cfg, workspace="/w",
                              checkpoint="/c", tuning=tuning)
    assert old[1:] == ["--model", cfg.model, "--workspace", "/w", "build", "--tp_size", "8", "--pp_size", "1",
                       "--quantization", "FP8", "--max_seq_length", "22000"]
    new = bench.build_command(standin_tools(tmp_path, "1.2.0", monkeypatch).bench, cfg, workspace="/w",
                              checkpoint="/c", tuning=tuning)
    assert new[1:] == ["--model", cfg.model, "--model_path", "/c", "--workspace", "/w", "build", "--tp_size", "8",
                       "--pp_size", "1", "--quantization", "FP8", "--max_seq_len", "22000",
                       "--target_input_len", "128", "--target_output_len", "128"]


def test_throughput_options_not_listed_are_never_passed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config(base())
    exp = Experiment(128, 128, 30, concurrency=None, streaming=True)
    out = BenchOutputs(Path("/w/exp"))
    old = standin_tools(tmp_path, "0.16.0", monkeypatch)
    argv = throughput_command(old.bench, cfg, exp, out, workspace="/w", checkpoint="/c", engine_dir="/e")
    assert "--report_json" not in argv and "--backend" not in argv and "--streaming" in argv
    with pytest.raises(bench.UnsupportedOptionError, match="does not list --concurrency"):
        throughput_command(old.bench, cfg, Experiment(128, 128, 30, concurrency=8), out, workspace="/w",
                           checkpoint="/c", engine_dir="/e")
    new = standin_tools(tmp_path, "1.2.0", monkeypatch)
    argv = throughput_command(new.bench, cfg, exp, out, workspace="/w", checkpoint="/c", engine_dir="/e")
    assert argv[argv.index("--backend") + 1] == "tensorrt" and argv[argv.index("--report_json") + 1] == str(
        out.report_json)


def test_dataset_command_is_the_recipes_synthetic_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = standin_tools(tmp_path, "1.2.0", monkeypatch)
    cfg = parse_config(base())
    argv, to_stdout = bench.dataset_command(tools.dataset, tools.bench, cfg, "python3", Experiment(128, 256, 30),
                                            "/ssd/m", "/w/d.jsonl", "/w")
    assert to_stdout and tools.dataset.kind == "script"
    assert argv == ["python3", str(TESTING / "prepare_dataset.py"), "--tokenizer", "/ssd/m", "--stdout",
                    "token-norm-dist", "--num-requests", "30", "--input-mean", "128", "--output-mean", "256",
                    "--input-stdev", "0", "--output-stdev", "0"]


def test_check_report(tmp_path: Path) -> None:
    rj, rt = tmp_path / "report.json", tmp_path / "report.txt"
    rt.write_text("...\n= PERFORMANCE OVERVIEW \nRequest Throughput (req/sec):   30.5816\n")
    assert "wrote no report" in check_report(rj, rt, 0, ())
    assert check_report(None, rt, 0, ()) is None  # no --report_json: the printed report is the result
    rj.write_text(json.dumps({"performance": {"request_throughput_req_s": 30.5}}))
    assert check_report(rj, rt, 0, ()) is None
    assert "exited with code 1" in check_report(rj, rt, 1, ("boom",))
    rj.write_text(json.dumps({"performance": {"request_throughput_req_s": float("nan")}}))
    assert "non-numeric" in check_report(rj, rt, 0, ())
    rj.write_text(json.dumps({"engine": {}}))
    assert "no 'performance'" in check_report(rj, rt, 0, ())
    rj.write_text(json.dumps({"performance": {"request_throughput_req_s": 1.0}}))
    rt.write_text("[TensorRT-LLM][ERROR] CUDA runtime error: out of memory\n")
    expected = "trtllm-bench wrote report.json but printed no PERFORMANCE OVERVIEW (out of memory)"
    assert check_report(rj, rt, 0, ()) == expected
    assert "printed no PERFORMANCE OVERVIEW (out of memory)" in check_report(None, rt, 0, ())
    rt.write_text("= PERFORMANCE OVERVIEW \nRequest Throughput (req/sec):   nan\n")
    assert "no numeric 'Request Throughput (req/sec)'" in check_report(None, rt, 0, ())


# -- the stand-in is as strict as the real tool ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "argv"),
    [
        ("0.17.0.post1", ["--model", "a/b", "throughput", "--engine_dir", "/", "--request_json", "/tmp/x"]),
        ("0.17.0.post1", ["--model", "a/b", "throughput", "--engine_dir", "/", "--output_json", "/tmp/x"]),
        ("0.20.0", ["--model", "a/b", "throughput", "--backend", "tensorrt"]),
        ("1.0.0", ["--model", "a/b", "build", "--tp-size", "8"]),
        ("1.0.0", ["--model", "a/b", "throughput", "--num-requests", "3"]),
        ("1.0.0", ["throughput", "--model", "a/b"]),
    ],
)
def test_standin_rejects_flags_its_version_does_not_have(version: str, argv: list[str]) -> None:
    out = subprocess.run([sys.executable, str(REPO / "launcher" / "testing" / "trtllm_bench.py"), *argv],
                         env={"STANDIN_VERSION": version, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Error:" in out.stderr


# -- events, secrets, local store -------------------------------------------------------------------------------


def test_events_round_trip_and_secrets_are_redacted(tmp_path: Path) -> None:
    import io

    stream = io.StringIO()
    log = EventLog(stream=stream, redact=Redactor(("hf_secretsecret",)))
    log.open_file(tmp_path / "l.log")
    log.event("download", "failed", error="403 for token hf_secretsecret", seconds=1.23456)
    log.info("token hf_secretsecret")
    log.close()
    lines = stream.getvalue().splitlines()
    event = parse_event(lines[0])
    assert event is not None and event["error"] == "403 for token [REDACTED]" and event["seconds"] == 1.235
    assert event["experiment"] is None and "index" not in event
    assert "hf_secretsecret" not in stream.getvalue() + (tmp_path / "l.log").read_text()
    assert parse_event("RECIPE_EVENT {not json") is None and parse_event("plain line") is None
    with pytest.raises(ValueError):
        log.event("compile", "started")


def test_local_store_creates_only_once(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "results"))
    assert isinstance(store, LocalStore)
    assert store.create("r/run/a.json", b"1") is True and store.create("r/run/a.json", b"2") is False
    assert store.read("r/run/a.json") == b"1" and store.read("r/run/missing") is None
    with pytest.raises(StoreError):
        store.create("../escape", b"x")


def test_launcher_errors_share_one_base_and_keep_their_old_homes() -> None:
    import checkpoint
    import errors
    import proc
    import runner

    for cls in (ConfigError, bench.BenchError, checkpoint.DownloadError, StoreError, runner.SetupError):
        assert issubclass(cls, errors.LauncherError), cls
    assert ConfigError is errors.LauncherConfigError  # recipelib's ConfigError is another thing
    assert not issubclass(proc.Interrupted, Exception)  # a signal, not an error
    exit_codes = {errors.LauncherConfigError([]).exit_code, errors.StoreError().exit_code,
                  errors.SetupError("build", "x").exit_code, errors.SetupError("preflight", "x", 3).exit_code}
    assert exit_codes == {2, 3, 4, 5}
