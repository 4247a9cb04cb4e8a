"""The whole sweep against the stand-ins of the oldest and newest TensorRT-LLM CLIs, both flows, and the dry run.

The stand-ins (``launcher/testing/trtllm_bench.py``, ``prepare_dataset.py``) are generated from the version
tables in ``manifests/trtllm/`` (``STANDIN_VERSION`` picks one); they accept exactly that release's options
and fail as click fails otherwise. These tests hold the launcher to the tables themselves: every option it
passed (``STANDIN_CALLS``) must be one the table lists, and the reports it keeps must be readable by the
analysis' parser (``recipelib.results.reports``).

The sweeps are the recipe's model with the ISL/OSL pairs of ``manifests/experiments/*.yaml``; request
counts are cut to a few per experiment (the stand-in's numbers do not depend on them, and a 20000-token
dataset of 1000 requests would only make the test slow).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO

sys.path[:0] = [str(REPO / "launcher"), str(REPO / "launcher" / "testing")]  # flat modules, as in the pod

from harness import MODEL as SMALL_MODEL  # noqa: E402
from harness import SWEEP, Node, make_hub  # noqa: E402

MODEL = "meta-llama/Llama-3.1-405B"
FP8_CHECKPOINT = "nvidia/Llama-3.1-405B-Instruct-FP8"
TABLES = REPO / "manifests" / "trtllm"
TABLE_OF = {"0.16.0": "bench-0.16.yaml", "0.17.0.post1": "bench-0.17.yaml", "0.19.0": "bench-0.19.yaml",
            "0.21.0": "bench-0.21.yaml", "1.0.0": "bench-1.0.yaml", "1.2.0": "bench-1.2.yaml"}
OLDEST, NEWEST = "0.16.0", "1.2.0"
SMALL_IDS = ["isl128-osl128-n30", "isl9000-osl100-n5-c4-stream", "isl500-osl200-n10"]  # harness.SWEEP


def experiments(name: str, requests: int = 3) -> list[dict[str, Any]]:
    data = yaml.safe_load((REPO / "manifests" / "experiments" / f"{name}.yaml").read_text())
    return [{"isl": e["isl"], "osl": e["osl"], "num_requests": min(e["num_requests"], requests),
             "concurrency": None, "streaming": False} for e in data]


def node_for(tmp_path: Path, version: str, *models: str) -> Node:
    node = Node(tmp_path, version=version)
    for model in (MODEL, *models):
        make_hub(node.hub, model=model)
    return node


def config(node: Node, sweep: str, **overrides: Any) -> dict[str, Any]:
    return node.config(**{"release": "bench-llama", "model": MODEL, "experiments": experiments(sweep), **overrides})


def runs(node: Node, tool: str, subcommand: str | None = None) -> list[list[str]]:
    """The calls that did work (asking for ``--help`` is how the launcher reads the tools)."""
    return [c["argv"] for c in node.calls(tool, subcommand) if "--help" not in c["argv"]]


def table(version: str) -> dict[str, Any]:
    return yaml.safe_load((TABLES / TABLE_OF[version]).read_text())["commands"]


def listed(command: dict[str, Any]) -> set[str]:
    """Every spelling of every option a table entry lists (click adds --help to each command)."""
    names = {"--help"}
    for option in command.get("options", []):
        names |= {option["name"], *(option.get("aliases") or []), *([option["secondary"]] if "secondary" in option
                                                                    else [])}
    return names


def options_of(argv: list[str]) -> list[str]:
    return [a for a in argv if re.match(r"^--?[A-Za-z]", a)]


def assert_only_listed_options(node: Node, version: str) -> None:
    """No option absent from the release's table was ever passed to trtllm-bench or prepare_dataset.py."""
    cmds = table(version)
    for argv in runs(node, "trtllm-bench"):
        sub = next(a for a in argv if a in ("build", "throughput", "prepare-dataset"))
        at = argv.index(sub)
        assert set(options_of(argv[1:at])) <= listed(cmds["trtllm-bench"]), argv
        assert set(options_of(argv[at + 1:])) <= listed(cmds[f"trtllm-bench {sub}"]), argv
    dataset = cmds["prepare_dataset.py"]
    if dataset.get("not_read"):
        dataset = table(dataset["stand_in_from"])["prepare_dataset.py"]
    for argv in runs(node, "prepare_dataset"):
        at = argv.index("token-norm-dist")
        assert set(options_of(argv[:at])) <= listed(dataset), argv
        assert set(options_of(argv[at + 1:])) <= listed(dataset["subcommands"]["token-norm-dist"]), argv


def experiment_dirs(node: Node, run_id: str = "run-1") -> list[Path]:
    return sorted(p for p in (node.results / "bench-llama" / run_id).iterdir() if p.is_dir() and p.name[0] != ".")


def assert_reports_parse(folder: Path, with_json: bool) -> None:
    """The kept report is the one the analysis reads, and it parses with the analysis' parser."""
    from recipelib.results.reports import parse_report

    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["report_source"] == ("report.json" if with_json else "report.txt")
    assert (folder / "report.json").is_file() == with_json
    [record] = parse_report((folder / "report.txt").read_text(), name="report.txt")
    assert record.request_throughput > 0 and record.output_throughput > 0


# -- the engine flow, oldest and newest CLI, both sweeps -----------------------------------------------------


@pytest.mark.parametrize("version", [OLDEST, NEWEST])
@pytest.mark.parametrize("sweep", ["recipe-default", "nvidia-sweep"])
def test_engine_flow_sweep(tmp_path: Path, version: str, sweep: str) -> None:
    node = node_for(tmp_path, version)
    result = node.run(config(node, sweep), timeout=240)
    assert result.returncode == 0, result.stdout[-4000:]
    n = len(experiments(sweep))
    assert len(runs(node, "download")) == 1
    builds, benches = runs(node, "trtllm-bench", "build"), runs(node, "trtllm-bench", "throughput")
    assert len(builds) == n and len(benches) == n  # per-dataset: an engine per experiment, each from its dataset
    for argv in builds:
        assert "--dataset" in argv and "--max_seq_len" not in argv and "--max_seq_length" not in argv
    for argv in benches:
        assert ("--backend" in argv) == (version == NEWEST)  # 1.x defaults to pytorch; 0.16 has no --backend
        if version == NEWEST:
            assert argv[argv.index("--backend") + 1] == "tensorrt"
        assert ("--report_json" in argv) == (version == NEWEST)
    assert ("--model_path" in builds[0]) == (version == NEWEST)  # 0.16's group has no --model_path
    assert_only_listed_options(node, version)
    folders = experiment_dirs(node)
    assert len(folders) == n
    for folder in folders:
        meta = json.loads((folder / "metadata.json").read_text())
        assert (meta["flow"], meta["backend"], meta["engine_method"]) == ("engine", "tensorrt", "per-dataset")
        assert meta["versions"]["tensorrt_llm"] == version and meta["engine"]["method"] == "per-dataset"
        assert meta["commands"]["build"][meta["commands"]["build"].index("--dataset") + 1].endswith(
            f"{folder.name}/dataset.jsonl")
        assert_reports_parse(folder, with_json=version == NEWEST)
    run = json.loads((node.results / "bench-llama" / "run-1" / "run.json").read_text())
    assert (run["flow"], run["engine_method"], run["status"]) == ("engine", "per-dataset", "succeeded")
    assert len({e["engine"] for e in run["experiments"]}) == n


@pytest.mark.parametrize("sweep", ["recipe-default", "nvidia-sweep"])
def test_pytorch_flow_sweep_on_the_newest_cli(tmp_path: Path, sweep: str) -> None:
    node = node_for(tmp_path, NEWEST, FP8_CHECKPOINT)
    cfg = config(node, sweep, backend="pytorch", quantization=None, checkpoint=FP8_CHECKPOINT, tp_size=8)
    result = node.run(cfg, timeout=240)
    assert result.returncode == 0, result.stdout[-4000:]
    assert runs(node, "download")[0][:2] == [FP8_CHECKPOINT, str(node.ssd / "models" / FP8_CHECKPOINT)]
    assert not runs(node, "trtllm-bench", "build")
    benches = runs(node, "trtllm-bench", "throughput")
    assert len(benches) == len(cfg["experiments"])
    for argv in benches:
        assert argv[argv.index("--backend") + 1] == "pytorch" and "--engine_dir" not in argv
        assert argv[argv.index("--model_path") + 1] == str(node.ssd / "models" / FP8_CHECKPOINT)
        assert argv[argv.index("--tp") + 1] == "8" and "--extra_llm_api_options" in argv
    assert_only_listed_options(node, NEWEST)
    for folder in experiment_dirs(node):
        meta = json.loads((folder / "metadata.json").read_text())
        assert (meta["flow"], meta["backend"], meta["engine_method"]) == ("pytorch", "pytorch", None)
        assert meta["checkpoint_repo"] == FP8_CHECKPOINT and meta["engine"] is None
        options = yaml.safe_load((folder / "extra_llm_api_options.yaml").read_text())
        assert options["kv_cache_config"] == {"free_gpu_memory_fraction": 0.95}
        isl = meta["experiment"]["isl"]
        assert options.get("enable_chunked_prefill", False) == (isl > 8192)  # the LLM API's token budget
        assert_reports_parse(folder, with_json=True)


def test_pytorch_flow_is_refused_where_throughput_lists_no_pytorch_backend(tmp_path: Path) -> None:
    node = node_for(tmp_path, OLDEST)
    result = node.run(config(node, "recipe-default", backend="pytorch", quantization=None))
    assert result.returncode == 4
    assert "lists no --backend pytorch" in result.events[-1]["error"]
    assert not runs(node, "download") and not runs(node, "trtllm-bench")


def test_concurrency_the_cli_cannot_apply_fails_that_experiment_with_the_reason(tmp_path: Path) -> None:
    node = node_for(tmp_path, OLDEST)
    limited = {"isl": 500, "osl": 200, "num_requests": 2, "concurrency": 4, "streaming": False}
    sweep = [*experiments("recipe-default"), limited]
    result = node.run(config(node, "recipe-default", experiments=sweep))
    assert result.returncode == 1
    folder = node.results / "bench-llama" / "run-1" / "isl500-osl200-n2-c4"
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["status"] == "failed"
    assert "concurrency 4 cannot be applied" in meta["error"] and "--concurrency" in meta["error"]
    assert len(runs(node, "trtllm-bench", "throughput")) == 1  # only the experiment it can express ran
    assert_only_listed_options(node, OLDEST)


# -- each release's options, one experiment ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "backend", "report_json", "per_request", "chunked"),
    [
        ("0.17.0.post1", None, False, None, False),  # --backend [pytorch]: the engine path is the default
        ("0.19.0", None, True, "--output_json", False),  # --backend [pytorch|autodeploy]
        ("0.21.0", None, True, "--output_json", True),  # --backend [pytorch|_autodeploy]
        ("1.0.0", "tensorrt", True, "--request_json", True),  # 1.x defaults to pytorch
        ("1.2.0", "tensorrt", True, "--request_json", True),
    ],
)
def test_each_version_gets_the_options_its_help_lists(
    tmp_path: Path, version: str, backend: str | None, report_json: bool, per_request: str | None, chunked: bool
) -> None:
    """The engine flow's throughput command follows what each release's --help lists, and its report parses.

    The 9000-token prompts exceed the engine's 8192-token budget: --enable_chunked_context where listed.
    """
    from recipelib.results.reports import parse_report

    node = Node(tmp_path, version=version)
    result = node.run(node.config(experiments=[SWEEP[1]]))
    assert result.returncode == 0, result.stdout
    folder = node.results / "bench-acme-tiny" / "run-1" / SMALL_IDS[1]
    meta = json.loads((folder / "metadata.json").read_text())
    argv = meta["commands"]["benchmark"]
    assert (argv[argv.index("--backend") + 1] if "--backend" in argv else None) == backend
    assert ("--report_json" in argv) == report_json == (folder / "report.json").is_file()
    assert [f for f in ("--output_json", "--request_json") if f in argv] == ([per_request] if per_request else [])
    assert ("--enable_chunked_context" in argv) == chunked
    assert meta["report_source"] == ("report.json" if report_json else "report.txt")
    [record] = parse_report((folder / "report.txt").read_text(), name="report.txt")
    assert record.request_throughput > 0


def test_pytorch_flow_builds_no_engine(tmp_path: Path) -> None:
    node = Node(tmp_path, version="1.0.0")
    result = node.run(node.config(backend="pytorch", quantization=None, tp_size=4, ep_size=2))
    assert result.returncode == 0, result.stdout
    assert not runs(node, "trtllm-bench", "build")
    argv = runs(node, "trtllm-bench", "throughput")[0]
    assert argv[argv.index("--backend") + 1] == "pytorch" and "--engine_dir" not in argv
    assert argv[argv.index("--tp") + 1] == "4" and argv[argv.index("--ep") + 1] == "2"
    meta = json.loads((node.results / "bench-acme-tiny" / "run-1" / SMALL_IDS[0] / "metadata.json").read_text())
    assert (meta["flow"], meta["engine_method"], meta["engine"]) == ("pytorch", None, None)
    assert meta["extra_llm_api_options"] == {"kv_cache_config": {"free_gpu_memory_fraction": 0.95}}


def test_pytorch_flow_where_the_help_lists_no_pytorch_backend_is_refused(tmp_path: Path) -> None:
    node = Node(tmp_path, version="0.16.0")
    result = node.run(node.config(experiments=[SWEEP[0]], backend="pytorch", quantization=None))
    assert result.returncode == 4
    assert "lists no --backend pytorch" in result.stdout
    assert not [c for c in node.calls() if "--help" not in c["argv"]]


def test_the_download_skips_original_weights(tmp_path: Path) -> None:
    node = Node(tmp_path)
    original = node.hub / SMALL_MODEL / "original"
    original.mkdir()
    (original / "consolidated.00.pth").write_bytes(b"a second copy of the weights")
    result = node.run(node.config(experiments=[SWEEP[0]]))
    assert result.returncode == 0, result.stdout
    assert runs(node, "download")[0][2:] == ["--exclude", "*original*"]
    checkpoint = node.ssd / "models" / SMALL_MODEL
    assert (checkpoint / "config.json").is_file() and not (checkpoint / "original").exists()


# -- the dry run ----------------------------------------------------------------------------------------------


def _normalise(arg: str) -> str:
    """A real run's attempt folder and build folder, as the dry run's placeholders."""
    arg = re.sub(r"/runs/bench-llama/run-1/[^/]+", "/runs/bench-llama/run-1/<attempt>", arg)
    return re.sub(r"(\.tmp-[a-z0-9.-]+-[0-9a-f]{12})-\d+-\d+$", r"\1-<pid>", arg)


@pytest.mark.parametrize(("version", "overrides"), [
    (OLDEST, {}),
    (NEWEST, {"engine_method": "shared"}),
    (NEWEST, {"backend": "pytorch", "quantization": None}),
])
def test_dry_run_prints_every_command_of_the_run_in_order_and_runs_none(
    tmp_path: Path, version: str, overrides: dict[str, Any]
) -> None:
    node = node_for(tmp_path, version)
    cfg = config(node, "nvidia-sweep", **overrides)
    dry = node.run(cfg, "--dry-run")
    assert dry.returncode == 0, dry.stdout
    assert not node.ssd.exists() and not node.results.exists()  # no download, build, dataset or result
    assert all("--help" in c["argv"] for c in node.calls()), node.calls()  # it only asked for help
    lines = [line for line in dry.stdout.splitlines() if line and not line.startswith("#")]
    commands = [shlex.split(line) for line in lines]
    assert commands[0][0] == str(node.downloader) and commands[0][1] == MODEL

    # the real run executes exactly these commands, in this order
    assert node.run(cfg, timeout=240).returncode == 0
    executed = [c for c in node.calls() if "--help" not in c["argv"]]
    prefix = {"download": str(node.downloader), "trtllm-bench": str(node.bench)}
    real = []
    for call in executed:
        if call["tool"] == "prepare_dataset":
            real.append([sys.executable, str(REPO / "launcher" / "testing" / "prepare_dataset.py"), *call["argv"]])
        else:
            real.append([prefix[call["tool"]], *call["argv"]])
    # the one documented difference: a run adds --enable_chunked_context once the built engine's max_num_tokens
    # is known (here the 20000-token prompts of the shared engine), which a dry run cannot read before the build
    chunked = [argv for argv in real if "--enable_chunked_context" in argv]
    assert all("20000" in argv[argv.index("--dataset") + 1] for argv in chunked)
    assert [[_normalise(a) for a in argv if a != "--enable_chunked_context"] for argv in real] == commands
    kinds = ["download" if c[0] == str(node.downloader) else "dataset" if "token-norm-dist" in c
             else "build" if "build" in c else "throughput" for c in commands]
    n = len(cfg["experiments"])
    if cfg["backend"] == "pytorch":
        assert kinds == ["download"] + ["dataset", "throughput"] * n
    elif overrides.get("engine_method") == "shared":
        assert kinds == ["download", "build"] + ["dataset", "throughput"] * n
    else:
        assert kinds == ["download"] + ["dataset", "build", "throughput"] * n


def test_dry_run_on_a_warm_node_shows_no_download_and_no_build(tmp_path: Path) -> None:
    node = node_for(tmp_path, NEWEST)
    cfg = config(node, "recipe-default")
    assert node.run(cfg).returncode == 0
    dry = node.run(config(node, "recipe-default", run_id="run-2"), "--dry-run")
    assert dry.returncode == 0, dry.stdout
    commands = [shlex.split(line) for line in dry.stdout.splitlines() if line and not line.startswith("#")]
    assert not any("build" in c or c[0] == str(node.downloader) for c in commands), commands
    assert [c.count("throughput") for c in commands] == [0, 1]  # the dataset, then the benchmark
