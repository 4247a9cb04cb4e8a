"""trtllm-bench and prepare_dataset.py command lines, per TensorRT-LLM version, and report checks.

``trtllm-bench``'s flags moved between releases, so the command lines are built from the version that
is actually installed:

- 0.16-0.18 (engine flow, the recipe's 0.17.0.post1): ``build`` writes an engine to
  ``<workspace>/<model>/tp_<tp>_pp_<pp>``; ``throughput --engine_dir`` runs it (the C++ runtime is the
  default; ``--backend pytorch`` is the PyTorch flow); ``--report_json`` writes the JSON report.
- 0.19-0.20: the same, plus ``--output_json`` (the generated tokens of every request).
- 0.21 and 1.x: ``--backend`` defaults to ``pytorch``, so an engine needs ``--backend tensorrt``;
  1.x adds ``--request_json`` (per-request timings), preferred over ``--output_json``.

Every command is an argument list: nothing is ever passed through a shell.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import layout
from config import Experiment, LauncherConfig
from errors import BenchError

BENCH_ENV = "TRTLLM_BENCH"
VERSION_ENV = "RECIPE_TRTLLM_VERSION"
PREPARE_DATASET_ENV = "RECIPE_PREPARE_DATASET"
# Where TensorRT-LLM release containers keep the benchmark helpers (the recipe's image included).
PREPARE_DATASET_PATHS = (
    "/app/tensorrt_llm/benchmarks/cpp/prepare_dataset.py",
    "/workspace/TensorRT-LLM/benchmarks/cpp/prepare_dataset.py",
    "/opt/TensorRT-LLM/benchmarks/cpp/prepare_dataset.py",
)
_VERSION_BANNER = re.compile(r"TensorRT-LLM version:\s*(\S+)")


@dataclass(frozen=True)
class TrtllmVersion:
    """A TensorRT-LLM version string and what its ``trtllm-bench`` accepts."""

    text: str

    @property
    def parts(self) -> tuple[int, int, int]:
        nums = [int(n) for n in re.findall(r"\d+", self.text)[:3]]
        while len(nums) < 3:
            nums.append(0)
        return nums[0], nums[1], nums[2]

    @property
    def known(self) -> bool:
        return bool(re.match(r"^\d+\.\d+", self.text))

    @property
    def pytorch_is_default(self) -> bool:
        """0.21 and later default to the PyTorch flow; an engine needs ``--backend tensorrt``."""
        return not self.known or self.parts >= (0, 21, 0)

    @property
    def has_output_json(self) -> bool:
        return not self.known or self.parts >= (0, 19, 0)

    @property
    def has_request_json(self) -> bool:
        return not self.known or self.parts >= (1, 0, 0)


def bench_executable() -> str:
    """``$TRTLLM_BENCH`` (tests point it at the stand-in) or ``trtllm-bench`` on PATH."""
    return os.environ.get(BENCH_ENV) or "trtllm-bench"


def detect_version(executable: str | None = None, timeout: float = 600) -> TrtllmVersion:
    """The TensorRT-LLM version that will run the benchmark.

    ``$RECIPE_TRTLLM_VERSION`` wins; otherwise ask the tool itself (importing tensorrt_llm prints a
    ``TensorRT-LLM version: X`` banner, so ``trtllm-bench --help`` names the version that will run);
    failing that, the installed package's metadata. The version is part of the engine cache key: an
    engine built by one release must never be run by another.
    """
    forced = os.environ.get(VERSION_ENV)
    if forced:
        return TrtllmVersion(forced.strip())
    exe = executable or bench_executable()
    try:
        out = subprocess.run(
            [exe, "--help"], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
        )
        match = _VERSION_BANNER.search(out.stdout + out.stderr)
        if match:
            return TrtllmVersion(match.group(1))
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        from importlib.metadata import PackageNotFoundError, version

        return TrtllmVersion(version("tensorrt_llm"))
    except (ImportError, PackageNotFoundError):
        pass
    return TrtllmVersion("unknown")


def prepare_dataset_script() -> Path:
    """``$RECIPE_PREPARE_DATASET`` or the first container path that exists."""
    forced = os.environ.get(PREPARE_DATASET_ENV)
    if forced:
        if not Path(forced).is_file():
            raise BenchError(f"prepare_dataset.py not found at {forced}; set {PREPARE_DATASET_ENV} to its path")
        return Path(forced)
    for candidate in PREPARE_DATASET_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise BenchError(
        "prepare_dataset.py not found at " + ", ".join(PREPARE_DATASET_PATHS)
        + f"; set {PREPARE_DATASET_ENV} to its path"
    )


def dataset_command(python: str, script: Path, tokenizer: Path, exp: Experiment) -> list[str]:
    """The recipe's synthetic dataset: fixed lengths (token-norm-dist, stdev 0), one JSON line a request.

    The dataset goes to stdout (``--stdout``, in every version we support); the caller writes it to a
    file itself rather than through a shell redirection.
    """
    return [
        python, str(script), "--stdout", "--tokenizer", str(tokenizer),
        "token-norm-dist",
        "--num-requests", str(exp.num_requests),
        "--input-mean", str(exp.isl), "--output-mean", str(exp.osl),
        "--input-stdev", "0", "--output-stdev", "0",
    ]


def _global(exe: str, cfg: LauncherConfig, workspace: Path) -> list[str]:
    return [exe, "--model", cfg.model, "--model_path", str(cfg.checkpoint_path), "--workspace", str(workspace)]


@dataclass(frozen=True)
class BuildTuning:
    """How the engine's batch limits are chosen; part of the engine cache key."""

    max_seq_len: int
    max_batch_size: int | None = None
    max_num_tokens: int | None = None
    target_input_len: int | None = None
    target_output_len: int | None = None

    @classmethod
    def for_config(cls, cfg: LauncherConfig) -> BuildTuning:
        """One engine for the whole sweep: long enough for its longest request.

        With both ``max_batch_size`` and ``max_num_tokens`` given, the engine uses them. Otherwise
        trtllm-bench's heuristics are tuned for the sweep's shortest experiment: that yields the largest
        batch limits, and they are upper bounds (longer experiments are bounded by KV-cache capacity,
        and their prompts are chunked when longer than ``max_num_tokens``).
        """
        if cfg.max_batch_size and cfg.max_num_tokens:
            return cls(cfg.max_seq_len, max_batch_size=cfg.max_batch_size, max_num_tokens=cfg.max_num_tokens)
        shortest = min(cfg.experiments, key=lambda e: (e.max_seq_len, e.isl))
        return cls(cfg.max_seq_len, target_input_len=shortest.isl, target_output_len=shortest.osl)


def build_command(exe: str, cfg: LauncherConfig, workspace: Path, tuning: BuildTuning) -> list[str]:
    """``trtllm-bench build``: the engine lands in ``<workspace>/<model>/tp_<tp>_pp_<pp>``."""
    argv = [*_global(exe, cfg, workspace), "build", "--tp_size", str(cfg.tp_size), "--pp_size", str(cfg.pp_size)]
    if cfg.quantization:
        argv += ["--quantization", cfg.quantization]
    argv += ["--max_seq_len", str(tuning.max_seq_len)]
    if tuning.max_batch_size and tuning.max_num_tokens:
        argv += ["--max_batch_size", str(tuning.max_batch_size), "--max_num_tokens", str(tuning.max_num_tokens)]
    elif tuning.target_input_len and tuning.target_output_len:
        argv += ["--target_input_len", str(tuning.target_input_len),
                 "--target_output_len", str(tuning.target_output_len)]
    return argv


def built_engine_dir(workspace: Path, cfg: LauncherConfig) -> Path:
    """Where ``trtllm-bench build`` saves the engine (``ENGINE SAVED: ...`` in its log)."""
    return workspace / cfg.model / f"tp_{cfg.tp_size}_pp_{cfg.pp_size}"


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


def throughput_command(
    exe: str,
    cfg: LauncherConfig,
    version: TrtllmVersion,
    exp: Experiment,
    out: BenchOutputs,
    engine_dir: Path | None,
    engine_max_num_tokens: int | None = None,
) -> list[str]:
    """``trtllm-bench throughput`` for one experiment, in the dialect of ``version``."""
    argv = [*_global(exe, cfg, Path(cfg.workspace)), "throughput"]
    if cfg.backend == "tensorrt":
        if engine_dir is None:
            raise BenchError("the tensorrt backend needs an engine directory")
        if version.pytorch_is_default:
            argv += ["--backend", "tensorrt"]
        argv += ["--engine_dir", str(engine_dir)]
        if engine_max_num_tokens and exp.isl > engine_max_num_tokens:
            # Prompts longer than the engine's token budget are processed in chunks.
            argv += ["--enable_chunked_context"]
    else:
        argv += ["--backend", "pytorch", "--tp", str(cfg.tp_size), "--pp", str(cfg.pp_size)]
        if cfg.ep_size:
            argv += ["--ep", str(cfg.ep_size)]
    argv += [
        "--dataset", str(out.dataset),
        "--num_requests", str(exp.num_requests),
        "--kv_cache_free_gpu_mem_fraction", f"{cfg.kv_cache_free_gpu_mem_fraction:g}",
    ]
    if cfg.max_batch_size:
        argv += ["--max_batch_size", str(cfg.max_batch_size)]
    if cfg.max_num_tokens:
        argv += ["--max_num_tokens", str(cfg.max_num_tokens)]
    if exp.concurrency:
        argv += ["--concurrency", str(exp.concurrency)]
    if exp.streaming:
        argv += ["--streaming"]
    argv += ["--report_json", str(out.report_json)]
    if version.has_request_json:
        argv += ["--request_json", str(out.requests_json)]
    elif version.has_output_json:
        argv += ["--output_json", str(out.requests_json)]
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
_OOM = re.compile(r"out of memory|CUDA_ERROR_OUT_OF_MEMORY|OutOfMemoryError|std::bad_alloc", re.IGNORECASE)


def check_report(report_json: Path, report_txt: Path, returncode: int, tail: tuple[str, ...]) -> str | None:
    """``None`` when the run produced a usable report, else why not (an error message).

    trtllm-bench can exit 0 without a report (an MPI rank killed by an out-of-memory error, for
    instance), so the exit code alone is not trusted: the JSON report must exist with numeric
    performance figures, and the text output must contain the report block.
    """
    text = report_txt.read_text(errors="replace") if report_txt.is_file() else ""
    oom = " (out of memory)" if _OOM.search(text) else ""
    last = "; last output: " + " | ".join(line for line in tail[-5:] if line.strip()) if tail else ""
    if returncode != 0:
        return f"trtllm-bench exited with code {returncode}{oom}{last}"
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


def which(executable: str) -> str | None:
    return shutil.which(executable) if os.sep not in executable else (executable if Path(executable).exists() else None)
