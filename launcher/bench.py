"""trtllm-bench and dataset command lines built from what the installed tool lists, and report checks.

No version table lives here: every option is used only when the tool's own ``--help`` lists it
(``tool_cli.py`` reads it). Where a setting cannot be expressed, it is not dropped silently:

- a setting the run needs and the tool lacks (``--engine_dir``, ``--dataset``, the PyTorch backend)
  stops the run before any work, naming the option;
- an experiment setting the tool cannot apply (``concurrency`` without ``--concurrency``, streaming
  without ``--streaming``) fails that experiment with the reason, and the others still run;
- an option that only refines a default (``--report_json``, ``--enable_chunked_context``,
  ``--backend tensorrt``) is left out, and the launcher keeps what the tool does by default: the
  printed report is the result, chunking is the release's default, the engine path is the default
  where ``--backend`` offers no ``tensorrt`` choice (0.19-0.21: "unspecified for TensorRT").

Every command is an argument list: nothing is ever passed through a shell.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import layout
from config import Experiment, LauncherConfig
from errors import BenchError
from tool_cli import BenchCli, DatasetTool

BENCH_ENV = "TRTLLM_BENCH"
PREPARE_DATASET_ENV = "RECIPE_PREPARE_DATASET"
# Where TensorRT-LLM release containers keep the benchmark helpers (the recipe's image included).
PREPARE_DATASET_PATHS = (
    "/app/tensorrt_llm/benchmarks/cpp/prepare_dataset.py",
    "/workspace/TensorRT-LLM/benchmarks/cpp/prepare_dataset.py",
    "/opt/TensorRT-LLM/benchmarks/cpp/prepare_dataset.py",
)
# The LLM API's max_num_tokens default (tensorrt_llm/llmapi/llm_args.py, BaseLlmArgs: ``max_num_tokens ...
# default=8192``; stored file id 1090804222, commit unknown): the PyTorch flow's token budget when none is set.
LLM_API_MAX_NUM_TOKENS = 8192


class UnsupportedOptionError(BenchError):
    """An experiment asks for something this trtllm-bench cannot express: the experiment fails with this reason."""


def bench_executable() -> str:
    """``$TRTLLM_BENCH`` (tests point it at the stand-in) or ``trtllm-bench`` on PATH."""
    return os.environ.get(BENCH_ENV) or "trtllm-bench"


def prepare_dataset_script(required: bool = True) -> Path | None:
    """``$RECIPE_PREPARE_DATASET`` or the first container path that exists (``None`` if not ``required``)."""
    forced = os.environ.get(PREPARE_DATASET_ENV)
    if forced:
        if not Path(forced).is_file():
            raise BenchError(f"prepare_dataset.py not found at {forced}; set {PREPARE_DATASET_ENV} to its path")
        return Path(forced)
    for candidate in PREPARE_DATASET_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    if not required:
        return None
    raise BenchError("prepare_dataset.py not found at " + ", ".join(PREPARE_DATASET_PATHS)
                     + f"; set {PREPARE_DATASET_ENV} to its path")


def which(executable: str) -> str | None:
    return shutil.which(executable) if os.sep not in executable else (executable if Path(executable).exists() else None)


def _need(cli: BenchCli, sub: str | None, option: str, why: str) -> None:
    if not cli.has(sub, option):
        where = f"trtllm-bench {sub}" if sub else "trtllm-bench"
        raise BenchError(f"{where} (TensorRT-LLM {cli.version}) does not list {option} in its --help, "
                         f"which {why}: use an image whose trtllm-bench has it")


def group_args(cli: BenchCli, cfg: LauncherConfig, workspace: str, checkpoint: str) -> list[str]:
    """``trtllm-bench --model REPO [--model_path DIR] [--workspace DIR]``.

    Without ``--model_path`` (0.16) the tool loads ``--model`` by its Hugging Face name itself.
    """
    argv = [cli.executable, "--model", cfg.checkpoint]
    if cli.has(None, "--model_path"):
        argv += ["--model_path", checkpoint]
    if cli.has(None, "--workspace"):
        argv += ["--workspace", workspace]
    return argv


def dataset_command(tool: DatasetTool, cli: BenchCli, cfg: LauncherConfig, python: str, exp: Experiment,
                    checkpoint: str, output: str, workspace: str) -> tuple[list[str], bool]:
    """The recipe's synthetic dataset (token-norm-dist, stdev 0); returns ``(argv, writes_to_stdout)``.

    ``--stdout`` where listed (the caller writes the file itself, no shell redirection), else ``--output``.
    """
    dist = ["token-norm-dist", "--num-requests", str(exp.num_requests), "--input-mean", str(exp.isl),
            "--output-mean", str(exp.osl), "--input-stdev", "0", "--output-stdev", "0"]
    if tool.kind == "subcommand":
        head = [*group_args(cli, cfg, workspace, checkpoint), "prepare-dataset"]
    else:
        if not tool.help.has("--tokenizer"):
            raise BenchError(f"{tool.script} --help lists no --tokenizer: not a prepare_dataset.py the launcher knows")
        head = [python, str(tool.script), "--tokenizer", checkpoint]
    if tool.help.has("--stdout"):
        return [*head, "--stdout", *dist], True
    if tool.help.has("--output"):
        return [*head, "--output", output, *dist], False
    raise BenchError("the dataset tool lists neither --stdout nor --output: cannot tell where the dataset goes")


@dataclass(frozen=True)
class BuildTuning:
    """A shared engine's limits: long enough for the sweep's longest request."""

    max_seq_len: int
    max_batch_size: int | None = None
    max_num_tokens: int | None = None
    target_input_len: int | None = None
    target_output_len: int | None = None

    @classmethod
    def for_config(cls, cfg: LauncherConfig, experiments: tuple[Experiment, ...] | None = None) -> BuildTuning:
        """Pinned ``max_batch_size``/``max_num_tokens`` when both are given; else trtllm-bench's heuristics
        tuned for the shortest experiment (the largest batch limits; longer ones are bounded by KV capacity)."""
        exps = experiments or cfg.experiments
        longest = max(e.max_seq_len for e in exps)
        if cfg.max_batch_size and cfg.max_num_tokens:
            return cls(longest, max_batch_size=cfg.max_batch_size, max_num_tokens=cfg.max_num_tokens)
        shortest = min(exps, key=lambda e: (e.max_seq_len, e.isl))
        return cls(longest, target_input_len=shortest.isl, target_output_len=shortest.osl)


def build_command(cli: BenchCli, cfg: LauncherConfig, *, workspace: str, checkpoint: str,
                  dataset: str | None = None, tuning: BuildTuning | None = None) -> list[str]:
    """``trtllm-bench build``: from a dataset (its own tuning) or from ``tuning``; lands in
    ``<workspace>/<--model>/tp_<tp>_pp_<pp>``."""
    _need(cli, "build", "--tp_size", "shards the engine")
    argv = [*group_args(cli, cfg, workspace, checkpoint), "build", "--tp_size", str(cfg.tp_size)]
    if cli.has("build", "--pp_size"):
        argv += ["--pp_size", str(cfg.pp_size)]
    elif cfg.pp_size != 1:
        _need(cli, "build", "--pp_size", f"sets pipeline parallelism {cfg.pp_size}")
    if cfg.quantization:
        _need(cli, "build", "--quantization", f"quantizes to {cfg.quantization}")
        argv += ["--quantization", cfg.quantization]
    if dataset is not None:
        _need(cli, "build", "--dataset", "tunes an engine to its experiment's dataset (engine_method per-dataset)")
        return [*argv, "--dataset", dataset]
    if tuning is None:
        raise BenchError("a build needs a dataset or a max sequence length")
    seq = next((o for o in ("--max_seq_len", "--max_seq_length") if cli.has("build", o)), None)
    if seq is None:
        _need(cli, "build", "--max_seq_len", "sets the engine's longest request (engine_method shared)")
    argv += [str(seq), str(tuning.max_seq_len)]
    if tuning.max_batch_size and tuning.max_num_tokens:
        _need(cli, "build", "--max_num_tokens", "pins the engine's limits")
        argv += ["--max_batch_size", str(tuning.max_batch_size), "--max_num_tokens", str(tuning.max_num_tokens)]
    elif tuning.target_input_len and cli.has("build", "--target_input_len") and cli.has("build", "--target_output_len"):
        argv += ["--target_input_len", str(tuning.target_input_len),
                 "--target_output_len", str(tuning.target_output_len)]
    return argv


def built_engine_dir(workspace: Path, cfg: LauncherConfig) -> Path:
    """Where ``trtllm-bench build`` saves the engine (``ENGINE SAVED: ...`` in its log)."""
    return workspace / cfg.checkpoint / f"tp_{cfg.tp_size}_pp_{cfg.pp_size}"


@dataclass(frozen=True)
class BenchOutputs:
    """The files one throughput run writes, in a folder of its own, named as they are uploaded."""

    folder: Path

    @property
    def report_json(self) -> Path:
        return self.folder / layout.REPORT_JSON

    @property
    def report_txt(self) -> Path:
        return self.folder / layout.REPORT_TXT

    @property
    def requests_json(self) -> Path:
        return self.folder / layout.REQUESTS_FILE

    @property
    def dataset(self) -> Path:
        return self.folder / "dataset.jsonl"

    @property
    def extra_options(self) -> Path:
        return self.folder / "extra_llm_api_options.yaml"


def extra_llm_api_options(cfg: LauncherConfig, exp: Experiment) -> dict[str, Any]:
    """The PyTorch flow's LLM API settings (``--extra_llm_api_options``), keys of ``BaseLlmArgs``.

    Read in tensorrt_llm/llmapi/llm_args.py (stored id 1090804222): ``kv_cache_config: KvCacheConfig``,
    ``enable_chunked_prefill: bool = False``, ``max_num_tokens`` default 8192; ``free_gpu_memory_fraction``
    is KvCacheConfig's field (TensorRT-LLM docs, "How to Change KV Cache Behavior"). Chunked prefill is
    asked for only when a prompt is longer than the token budget.
    """
    options: dict[str, Any] = {"kv_cache_config": {"free_gpu_memory_fraction": cfg.kv_cache_free_gpu_mem_fraction}}
    if exp.isl > (cfg.max_num_tokens or LLM_API_MAX_NUM_TOKENS):
        options["enable_chunked_prefill"] = True
    return options


def options_yaml(options: dict[str, Any]) -> str:
    """YAML for a mapping of scalars and mappings (JSON scalars are YAML); stdlib only."""
    def lines(data: dict[str, Any], indent: int) -> list[str]:
        out: list[str] = []
        for key, value in data.items():
            if isinstance(value, dict):
                out += [" " * indent + f"{key}:", *lines(value, indent + 2)]
            else:
                out.append(" " * indent + f"{key}: {json.dumps(value)}")
        return out

    return "# written by the recipelib launcher for trtllm-bench --extra_llm_api_options\n" + "\n".join(
        lines(options, 0)) + "\n"


def throughput_command(cli: BenchCli, cfg: LauncherConfig, exp: Experiment, out: BenchOutputs, *,
                       workspace: str, checkpoint: str, engine_dir: str | None = None,
                       engine_max_num_tokens: int | None = None) -> list[str]:
    """``trtllm-bench throughput`` for one experiment, with the options this tool lists.

    Raises :class:`UnsupportedOptionError` for an experiment setting it cannot apply, :class:`BenchError` for a
    flow it cannot run.
    """
    t = "throughput"
    argv = [*group_args(cli, cfg, workspace, checkpoint), t]
    choices = cli.sub(t).choices.get("--backend", ())
    if cfg.flow == "engine":
        if engine_dir is None:
            raise BenchError("the engine flow needs an engine directory")
        _need(cli, t, "--engine_dir", "runs a built engine")
        if cli.has(t, "--backend") and (not choices or "tensorrt" in choices):
            argv += ["--backend", "tensorrt"]  # 1.x defaults to pytorch
        argv += ["--engine_dir", engine_dir]
        if engine_max_num_tokens and exp.isl > engine_max_num_tokens and cli.has(t, "--enable_chunked_context"):
            argv += ["--enable_chunked_context"]  # where absent, chunking is the release's default
    else:
        if not cli.has(t, "--backend") or (choices and "pytorch" not in choices):
            raise BenchError(f"trtllm-bench throughput (TensorRT-LLM {cli.version}) lists no --backend pytorch "
                             "in its --help: this image has no PyTorch flow; use backend tensorrt")
        argv += ["--backend", "pytorch"]
        for option, value, default in (("--tp", cfg.tp_size, 1), ("--pp", cfg.pp_size, 1), ("--ep", cfg.ep_size, None)):
            if value is None or (value == default and not cli.has(t, option)):
                continue
            _need(cli, t, option, f"sets {option[2:]} = {value}")
            argv += [option, str(value)]
        if cli.has(t, "--extra_llm_api_options"):
            argv += ["--extra_llm_api_options", str(out.extra_options)]
    _need(cli, t, "--dataset", "feeds the experiment's requests")
    argv += ["--dataset", str(out.dataset)]
    if cli.has(t, "--num_requests"):
        argv += ["--num_requests", str(exp.num_requests)]
    if cli.has(t, "--kv_cache_free_gpu_mem_fraction"):
        argv += ["--kv_cache_free_gpu_mem_fraction", f"{cfg.kv_cache_free_gpu_mem_fraction:g}"]
    for option, value in (("--max_batch_size", cfg.max_batch_size), ("--max_num_tokens", cfg.max_num_tokens)):
        if value and cli.has(t, option):
            argv += [option, str(value)]
    if exp.concurrency:
        if not cli.has(t, "--concurrency"):
            raise UnsupportedOptionError(f"concurrency {exp.concurrency} cannot be applied: trtllm-bench "
                                         f"throughput (TensorRT-LLM {cli.version}) does not list --concurrency")
        argv += ["--concurrency", str(exp.concurrency)]
    if exp.streaming:
        if not cli.has(t, "--streaming"):
            raise UnsupportedOptionError(f"streaming cannot be applied: trtllm-bench throughput "
                                         f"(TensorRT-LLM {cli.version}) does not list --streaming")
        argv += ["--streaming"]
    if cli.has(t, "--report_json"):
        argv += ["--report_json", str(out.report_json)]
    per_request = next((o for o in ("--request_json", "--output_json") if cli.has(t, o)), None)
    if per_request:
        argv += [per_request, str(out.requests_json)]
    return argv


def engine_limits(engine_dir: Path) -> dict[str, Any]:
    """``build_config`` of a TensorRT engine (``config.json``), or ``{}`` when unreadable."""
    try:
        data = json.loads((engine_dir / "config.json").read_text())
        build = data.get("build_config", {})
        return build if isinstance(build, dict) else {}
    except (OSError, ValueError):
        return {}


_TEXT_REPORT = re.compile(r"^=\s*PERFORMANCE OVERVIEW", re.MULTILINE)
# Every real text report we hold prints it (tests/data/reports: 0.17 through 1.x samples).
_TEXT_REQUESTS = re.compile(r"^Request Throughput \(req/sec\):\s*(\S+)", re.MULTILINE)
_OOM = re.compile(r"out of memory|CUDA_ERROR_OUT_OF_MEMORY|OutOfMemoryError|std::bad_alloc", re.IGNORECASE)


def _check_text(text: str, name: str, oom: str) -> str | None:
    overview = _TEXT_REPORT.search(text)
    if not overview:
        return f"trtllm-bench printed no PERFORMANCE OVERVIEW{oom}"
    found = _TEXT_REQUESTS.search(text, overview.end())
    try:
        value = float(found.group(1)) if found else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        return f"{name} has no numeric 'Request Throughput (req/sec)' after PERFORMANCE OVERVIEW"
    return None


def check_report(report_json: Path | None, report_txt: Path, returncode: int, tail: tuple[str, ...]) -> str | None:
    """``None`` when the run produced a usable report, else why not (an error message).

    trtllm-bench can exit 0 without a report (an MPI rank killed by an out-of-memory error), so the exit
    code alone is not trusted. With ``--report_json`` (``report_json`` given) the JSON must hold numeric
    performance figures; the printed report must always be there, with a numeric request throughput.
    """
    text = report_txt.read_text(errors="replace") if report_txt.is_file() else ""
    oom = " (out of memory)" if _OOM.search(text) else ""
    last = "; last output: " + " | ".join(line for line in tail[-5:] if line.strip()) if tail else ""
    if returncode != 0:
        return f"trtllm-bench exited with code {returncode}{oom}{last}"
    if report_json is None:
        problem = _check_text(text, report_txt.name, oom)
        return f"trtllm-bench exited 0 but {problem.removeprefix('trtllm-bench ')}{last}" if problem else None
    if not report_json.is_file():
        return f"trtllm-bench exited 0 but wrote no report{oom}{last}"
    try:
        data = json.loads(report_json.read_text())
    except (OSError, ValueError) as e:
        return f"{report_json.name} is not valid JSON: {e}"
    perf = data.get("performance") if isinstance(data, dict) else None
    if not isinstance(perf, dict) or not perf:
        return f"{report_json.name} has no 'performance' section"
    bad = [k for k, v in perf.items() if isinstance(v, int | float) and (isinstance(v, bool) or not math.isfinite(v))]
    numbers = [v for v in perf.values() if isinstance(v, int | float) and not isinstance(v, bool)]
    if bad or not numbers:
        return f"{report_json.name} has non-numeric performance values: {', '.join(bad) or 'none numeric'}"
    if not _TEXT_REPORT.search(text):
        return f"trtllm-bench wrote {report_json.name} but printed no PERFORMANCE OVERVIEW{oom}"
    return None
