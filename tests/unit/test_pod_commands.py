"""The deploy dry run shows the commands the pod would run, built against the recorded CLI of the version."""

from __future__ import annotations

import shlex

import pytest

import recipelib
from recipelib.deploy.pod_commands import pod_commands


def _plan(version: str, experiments: str = "recipe-default") -> recipelib.BenchmarkPlan:
    settings = recipelib.Settings(gcs_bucket="my-bucket", artifact_registry="us-docker.pkg.dev/p/r",
                                  trtllm_version=version)
    return recipelib.plan_benchmark(settings, "meta-llama/Llama-3.1-405B", experiments, dry_run=True)


def _tool_lines(result, tool: str) -> list[list[str]]:
    return [argv for argv in map(shlex.split, result.commands) if argv[0] == tool]


def test_engine_flow_on_0_17_uses_only_what_its_cli_lists():
    result = pod_commands(_plan("v0.17.0"), "v0.17.0")
    argvs = [shlex.split(c) for c in result.commands]  # every line is one whole command
    subcommands = [next(a for a in argv if a in ("build", "throughput")) for argv in argvs if argv[0] == "trtllm-bench"]
    assert subcommands == ["build", "throughput"]
    joined = " ".join(result.commands)
    assert "'*original*'" in result.commands[0]  # the download skips the second copy of the weights
    assert "--report_json" not in joined and "--backend" not in joined and "--enable_chunked_context" not in joined
    assert any(a == "--dataset" for a in _tool_lines(result, "trtllm-bench")[0])  # per-dataset build


def test_pytorch_flow_on_1_2_builds_nothing_and_asks_for_the_json_report():
    result = pod_commands(_plan("1.2.0"), "1.2.0")
    (throughput,) = _tool_lines(result, "trtllm-bench")
    assert "build" not in throughput and throughput[throughput.index("--backend") + 1] == "pytorch"
    assert "--report_json" in throughput and "nvidia/Llama-3.1-405B-Instruct-FP8" in throughput


def test_a_version_without_a_table_is_refused_naming_the_setting():
    with pytest.raises(recipelib.ConfigError) as e:
        pod_commands(_plan("v0.17.0"), "0.9.0")
    assert e.value.field == "TRTLLM_VERSION"
