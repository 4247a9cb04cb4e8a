"""Reading a tool's ``--help`` (``launcher/tool_cli.py``): what the launcher learns before it uses any option.

The help text below is click's layout, as ``click`` 8 prints it (options with aliases and metavars, a
choice list, an option-group header of click-option-group with its options indented further, a flag pair,
help text wrapped into the help column, a ``Commands:`` list with a long name).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import REPO

sys.path.insert(0, str(REPO / "launcher"))

import bench
import tool_cli
from tool_cli import parse_click_help, read_tools

TESTING = REPO / "launcher" / "testing"


CLICK_HELP = """[TensorRT-LLM] TensorRT-LLM version: 9.9.9
Usage: trtllm-bench throughput [OPTIONS]

  Run a throughput test on a TRT-LLM engine.

Options:
  -tp, --tp_size INTEGER RANGE    Number of tensor parallel shards.  [x>=1]
  --backend [pytorch|_autodeploy|tensorrt]
                                  The backend to use.  [default: pytorch]
  Engine run configuration.:
    --engine_dir PATH             Path to a serialized TRT-LLM engine.
  --single [pytorch]              A choice of one.
  --enable_chunked_context / --disable_chunked_context
                                  Enable chunking. Unlike
                                  --not_an_option wrapped into the help.
  --help                          Show this message and exit.

Commands:
  build       Build engines for benchmarking.
  prepare-dataset
              Prepare a dataset.
"""


def test_click_help_is_read_as_click_prints_it() -> None:
    parsed = parse_click_help(CLICK_HELP)
    assert parsed.options == {"-tp", "--tp_size", "--backend", "--engine_dir", "--single", "--enable_chunked_context",
                              "--disable_chunked_context", "--help"}
    assert parsed.commands == ("build", "prepare-dataset")
    assert parsed.choices["--backend"] == ("pytorch", "_autodeploy", "tensorrt")
    assert parsed.choices["--single"] == ("pytorch",) and "--tp_size" not in parsed.choices
    assert tool_cli.detect_version(CLICK_HELP) == "9.9.9"


def test_the_version_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tool_cli.VERSION_ENV, "1.2.0rc1")
    assert tool_cli.detect_version(CLICK_HELP) == "1.2.0rc1"


def test_a_tool_that_lists_nothing_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "trtllm-bench"
    fake.write_text("#!/bin/sh\necho 'usage: something else'\n")
    fake.chmod(0o755)
    with pytest.raises(bench.BenchError, match="listed no options"):
        read_tools(str(fake), "a/b", sys.executable, TESTING / "prepare_dataset.py")


PREPARE_DATASET_GROUP = """Usage: trtllm-bench prepare-dataset [OPTIONS] COMMAND [ARGS]...

Options:
  --output PATH              Output dataset file.
  --random-seed INTEGER      Random seed.
  --help                     Show this message and exit.

Commands:
  real-dataset
  token-norm-dist
  token-unif-dist
"""


def test_prepare_dataset_subcommand_writes_to_its_output_option() -> None:
    """Where the group lists prepare-dataset (after 1.2; no --tokenizer, no --stdout: README item 18), the
    dataset comes from it, with the tokenizer from the group's --model/--model_path."""
    from config import parse_config

    group = parse_click_help("Options:\n  -m, --model TEXT   A model.\n  --model_path PATH  A checkpoint.\n"
                             "Commands:\n  prepare-dataset  Prepare a dataset.\n  throughput  Run.\n")
    sub = parse_click_help(PREPARE_DATASET_GROUP)
    cli = tool_cli.BenchCli("trtllm-bench", "9.9.9", group, {"prepare-dataset": sub})
    cfg = parse_config({
        "release": "r", "run_id": "run-1", "model": "a/b", "backend": "pytorch", "tp_size": 1, "pp_size": 1,
        "kv_cache_free_gpu_mem_fraction": 0.9, "checkpoint_dir": "/m", "workspace": "/w", "engine_cache_dir": "/e",
        "results": "/r", "experiments": [{"isl": 10, "osl": 20, "num_requests": 3}]})
    argv, to_stdout = bench.dataset_command(tool_cli.DatasetTool("subcommand", sub), cli, cfg, "python3",
                                            cfg.experiments[0], "/m/a/b", "/w/d.jsonl", "/w")
    assert not to_stdout
    assert argv == ["trtllm-bench", "--model", "a/b", "--model_path", "/m/a/b", "prepare-dataset", "--output",
                    "/w/d.jsonl", "token-norm-dist", "--num-requests", "3", "--input-mean", "10", "--output-mean",
                    "20", "--input-stdev", "0", "--output-stdev", "0"]
