#!/usr/bin/env python3
"""A stand-in for ``trtllm-bench`` (build + throughput), for testing the launcher without GPUs.

It accepts the command lines of the TensorRT-LLM version it pretends to be (``STANDIN_VERSION``,
default ``0.17.0.post1``), with parsers mirroring the real click options of that version, and rejects
unknown flags with exit code 2 as click does. It checks what the real tool checks before running
(an engine must exist and cover the dataset's longest sequence; a prompt longer than the engine's
``max_num_tokens`` needs ``--enable_chunked_context``; build options are mutually exclusive), and
writes real-format output:

- ``build``: ``<workspace>/<model>/tp_<tp>_pp_<pp>/`` with an engine ``config.json``
  (``pretrained_config``/``build_config``) and rank files, and the "ENGINE BUILD INFO" log;
- ``throughput``: the text report of that version (0.16-0.18 "ENGINE DETAILS ... Token Throughput",
  the layout of the recipe's real 0.17.0.post1 log; 0.19-0.20 "REQUEST DETAILS ... Total Output
  Throughput"; 0.21 "[w/ ctx]" and TTFT/TPOT/GTPS breakdowns; 1.x "MACHINE DETAILS"), the
  ``--report_json`` JSON (``engine``/``world_info``/``request_info``/``performance``/
  ``streaming_metrics``/``dataset``, as ``ReportUtility.get_statistics_dict``), ``--output_json``
  (0.19+) and ``--request_json`` (1.x). The numbers are synthetic and deterministic; the benchmark
  takes milliseconds.

Simulations (environment variables):
  STANDIN_VERSION        the TensorRT-LLM version to pretend to be
  STANDIN_CALLS          append one JSON line per invocation (argv, subcommand) to this file
  STANDIN_FAIL_ISL       comma-separated ISLs whose throughput run raises (exit 1)
  STANDIN_OOM_ISL        comma-separated ISLs whose run hits CUDA OOM and exits 0 with no report
  STANDIN_SLEEP_ISL      ``ISL:SECONDS,...``: sleep before benchmarking (for kill tests)
  STANDIN_BUILD_SLEEP    seconds a build takes (for concurrent-build tests)
  STANDIN_BUILD_FAIL     ``1``: the build fails
  STANDIN_ECHO_ENV       print ``env NAME=<value>|<unset>`` for this variable on every run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

VERSION = os.environ.get("STANDIN_VERSION", "0.17.0.post1")
QUANT_ALGOS = ("W8A16", "W4A16", "W4A16_AWQ", "W4A8_AWQ", "W4A16_GPTQ", "FP8", "INT8", "NVFP4", "FP8_BLOCK_SCALES")
LOG_LEVELS = ("internal_error", "error", "warning", "info", "verbose", "debug", "trace")
SEP = "===========================================================\n"


def _v() -> tuple[int, int, int]:
    nums = [int(p) for p in "".join(c if c.isdigit() else " " for c in VERSION).split()[:3]]
    return tuple([*nums, 0, 0, 0][:3])  # type: ignore[return-value]


def log(message: str, level: str = "I") -> None:
    stamp = datetime.now().strftime("%m/%d/%Y-%H:%M:%S")
    print(f"[{stamp}] [TRT-LLM] [{level}] {message}", flush=True)


def record_call(argv: list[str]) -> None:
    path = os.environ.get("STANDIN_CALLS")
    if path:
        sub = next((a for a in argv if a in ("build", "throughput", "latency")), None)
        with open(path, "a") as f:
            f.write(json.dumps({"tool": "trtllm-bench", "subcommand": sub, "argv": argv, "pid": os.getpid()}) + "\n")


def _isls(name: str) -> set[int]:
    return {int(x) for x in os.environ.get(name, "").split(",") if x.strip()}


# -- the command line, per version ------------------------------------------------------------------


class ClickLikeParser(argparse.ArgumentParser):
    """argparse that fails like click: ``Error: No such option`` and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"Error: {message}", file=sys.stderr)
        sys.exit(2)


def parser() -> argparse.ArgumentParser:
    v = _v()
    top = ClickLikeParser(prog="trtllm-bench", allow_abbrev=False)
    top.add_argument("--model", "-m", required=True)
    top.add_argument("--model_path", default=None)
    top.add_argument("--workspace", "-w", default="/tmp")
    top.add_argument("--log_level", choices=LOG_LEVELS, default="info")
    subs = top.add_subparsers(dest="command", required=True, parser_class=ClickLikeParser)

    b = subs.add_parser("build", allow_abbrev=False)
    b.add_argument("--tp_size", "-tp", type=int, default=1)
    b.add_argument("--pp_size", "-pp", type=int, default=1)
    b.add_argument("--quantization", "-q", choices=QUANT_ALGOS, default=None)
    b.add_argument("--max_seq_len", type=int, default=None)
    b.add_argument("--no_weights_loading", type=bool, default=False)
    if v >= (0, 19, 0):
        b.add_argument("--trust_remote_code", type=bool, default=False)
    b.add_argument("--dataset", default=None)
    b.add_argument("--max_batch_size", type=int, default=None)
    b.add_argument("--max_num_tokens", type=int, default=None)
    b.add_argument("--target_input_len", type=int, default=None)
    b.add_argument("--target_output_len", type=int, default=None)

    t = subs.add_parser("throughput", allow_abbrev=False)
    t.add_argument("--engine_dir", default=None)
    if v >= (0, 21, 0):
        t.add_argument("--backend", choices=("pytorch", "_autodeploy", "tensorrt"), default="pytorch")
    elif v >= (0, 19, 0):
        t.add_argument("--backend", choices=("pytorch", "autodeploy"), default=None)
    t.add_argument("--extra_llm_api_options", default=None)
    t.add_argument("--max_batch_size", type=int, default=None)
    t.add_argument("--max_num_tokens", type=int, default=None)
    if v >= (0, 19, 0):
        t.add_argument("--max_seq_len", type=int, default=None)
    t.add_argument("--beam_width", type=int, default=1)
    t.add_argument("--kv_cache_free_gpu_mem_fraction", type=float, default=0.90)
    t.add_argument("--dataset", default=None)
    t.add_argument("--eos_id", type=int, default=-1)
    t.add_argument("--num_requests", type=int, default=0)
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("--target_input_len", type=int, default=None)
    t.add_argument("--target_output_len", type=int, default=None)
    if v >= (0, 19, 0):
        t.add_argument("--modality", choices=("image", "video"), default=None)
        t.add_argument("--max_input_len", type=int, default=4096)
        t.add_argument("--tp", type=int, default=1)
        t.add_argument("--pp", type=int, default=1)
        t.add_argument("--ep", type=int, default=None)
    if v >= (0, 21, 0):
        t.add_argument("--cluster_size", type=int, default=None)
        t.add_argument("--scheduler_policy", choices=("guaranteed_no_evict", "max_utilization"),
                       default="guaranteed_no_evict")
    t.add_argument("--concurrency", type=int, default=-1)
    t.add_argument("--streaming", action="store_true")
    t.add_argument("--report_json", default=None)
    t.add_argument("--iteration_log", default=None)
    if v >= (0, 19, 0):
        t.add_argument("--output_json", default=None)
    if v >= (1, 0, 0):
        t.add_argument("--request_json", default=None)
    t.add_argument("--enable_chunked_context", action="store_true")
    return top


def fail(message: str, code: int = 1) -> None:
    """What an uncaught exception in the real tool looks like: a traceback's last line, exit 1."""
    print("Traceback (most recent call last):", file=sys.stderr)
    print(f"RuntimeError: {message}", file=sys.stderr)
    sys.exit(code)


def usage_error(message: str) -> None:
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(2)


def _existing_path(value: str | None, option: str) -> Path | None:
    if value is None:
        return None
    p = Path(value)
    if not p.exists():
        usage_error(f"Invalid value for '{option}': Path '{value}' does not exist.")
    return p.resolve()


def _checkpoint(args: argparse.Namespace) -> Path:
    path = Path(args.model_path) if args.model_path else None
    if path is None or not (path / "config.json").is_file():
        fail(f"Can't load the configuration of '{args.model_path or args.model}' (no config.json; offline stand-in)")
    return path  # type: ignore[return-value]


# -- build --------------------------------------------------------------------------------------------


def _read_dataset(path: Path, cap: int = 0) -> dict[str, Any]:
    isl: list[int] = []
    osl: list[int] = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            item = json.loads(line)
            tokens = item.get("input_ids")
            isl.append(len(tokens) if tokens is not None else len(str(item.get("prompt", "")).split()))
            osl.append(int(item["output_tokens"]))
            if cap and len(isl) >= cap:
                break
    if not isl:
        fail(f"Dataset {path} is empty.")
    return {
        "num_requests": len(isl),
        "avg_isl": round(sum(isl) / len(isl)), "avg_osl": round(sum(osl) / len(osl)),
        "max_isl": max(isl), "max_osl": max(osl),
        "max_sequence_length": max(i + o for i, o in zip(isl, osl, strict=True)),
        "avg_sequence_length": round(sum(i + o for i, o in zip(isl, osl, strict=True)) / len(isl)),
    }


def _dataset_details(meta: dict[str, Any]) -> str:
    return (
        "\n" + SEP + "= DATASET DETAILS\n" + SEP
        + f"Max Input Sequence Length:\t{meta['max_isl']}\n"
        f"Max Output Sequence Length:\t{meta['max_osl']}\n"
        f"Max Sequence Length:\t{meta['max_sequence_length']}\n"
        f"Target (Average) Input Sequence Length:\t{meta['avg_isl']}\n"
        f"Target (Average) Output Sequence Length:\t{meta['avg_osl']}\n"
        f"Number of Sequences:\t{meta['num_requests']}\n" + SEP + "\n"
    )


def build(args: argparse.Namespace) -> int:
    modes = [args.dataset, args.max_batch_size, args.target_input_len]
    if sum(bool(m) for m in modes) > 1:
        fail("Multiple engine build options detected, please choose only one engine build option. Exiting.")
    if bool(args.max_batch_size) != bool(args.max_num_tokens):
        usage_error("Missing option: --max_batch_size and --max_num_tokens must be given together.")
    if bool(args.target_input_len) != bool(args.target_output_len):
        usage_error("Missing option: --target_input_len and --target_output_len must be given together.")
    if args.tp_size * args.pp_size > 8:
        fail(f"Parallelism mapping of TP{args.tp_size}-PP{args.pp_size} is currently unsupported.")
    dataset = _existing_path(args.dataset, "--dataset")
    if not dataset and not args.max_seq_len:
        fail("Unspecified max_seq_len for engine build. Exiting.")
    checkpoint = _checkpoint(args)
    max_seq_len = args.max_seq_len
    target = (args.target_input_len, args.target_output_len)
    if dataset:
        log("Found dataset.")
        meta = _read_dataset(dataset)
        max_seq_len, target = meta["max_sequence_length"], (meta["avg_isl"], meta["avg_osl"])
        log(_dataset_details(meta))
    if args.max_batch_size:
        batch, tokens = args.max_batch_size, args.max_num_tokens
        log("Use user-provided max batch size and max num tokens for engine build and benchmark.")
    elif target[0]:
        log("Max batch size and max num tokens are not provided, use tuning heuristics or pre-defined setting "
            "from trtllm-bench.")
        batch = 4096 if sum(target) <= 4096 else 512
        tokens = 8192
        log(f"Estimated max batch size (after fine-tune): {batch}")
        log(f"Estimated max num tokens (after fine-tune): {tokens}")
    else:
        log("No engine build option is selected, use TRT-LLM default max_batch_size and max_num_tokens "
            "to build the engine.", "W")
        batch, tokens = 2048, 8192
    if os.environ.get("STANDIN_BUILD_FAIL") == "1":
        fail("[TensorRT-LLM][ERROR] Assertion failed: engine build failed (simulated)")
    quant = args.quantization
    kv = "FP8" if quant in ("FP8", "NVFP4") else None
    engine_dir = Path(args.workspace) / args.model / f"tp_{args.tp_size}_pp_{args.pp_size}"
    log(f"start MpiSession with {args.tp_size * args.pp_size} workers")
    print("Loading Model: [1/2]\tLoading HF model to memory", flush=True)
    time.sleep(float(os.environ.get("STANDIN_BUILD_SLEEP", "0") or 0))
    print("Time: 0.012s\nLoading Model: [2/2]\tBuilding TRT-LLM engine\nTime: 0.008s\nLoading model done.", flush=True)
    engine_dir.mkdir(parents=True, exist_ok=True)
    world = args.tp_size * args.pp_size
    config = {
        "version": VERSION,
        "pretrained_config": {
            "architecture": "LlamaForCausalLM", "dtype": "bfloat16",
            "quantization": {"quant_algo": quant, "kv_cache_quant_algo": kv},
            "mapping": {"world_size": world, "tp_size": args.tp_size, "pp_size": args.pp_size},
        },
        "build_config": {"max_input_len": max_seq_len, "max_seq_len": max_seq_len, "max_batch_size": batch,
                         "max_num_tokens": tokens, "checkpoint": str(checkpoint)},
    }
    (engine_dir / "config.json").write_text(json.dumps(config, indent=4))
    for rank in range(world):
        (engine_dir / f"rank{rank}.engine").write_bytes(b"stand-in engine\n")
    log(
        "\n" + SEP + "= ENGINE BUILD INFO\n" + SEP
        + f"Model Name:\t\t{args.model}\nModel Path:\t\t{args.model_path}\n"
        f"Workspace Directory:\t{args.workspace}\nEngine Directory:\t{engine_dir}\n\n"
        + SEP + "= ENGINE CONFIGURATION DETAILS\n" + SEP
        + f"Max Sequence Length:\t\t{max_seq_len}\nMax Batch Size:\t\t\t{batch}\nMax Num Tokens:\t\t\t{tokens}\n"
        f"Quantization:\t\t\t{quant}\nKV Cache Dtype:\t\t\t{kv}\n" + SEP
    )
    log("\n\n" + SEP + f"ENGINE SAVED: {engine_dir}\n" + SEP)
    return 0


# -- throughput ---------------------------------------------------------------------------------------


def _stats(meta: dict[str, Any], concurrency: int, world: int) -> dict[str, float]:
    """Deterministic, plausible-looking figures derived from the workload (not a model of anything)."""
    n, isl, osl = meta["num_requests"], meta["avg_isl"], meta["avg_osl"]
    parallel = concurrency if concurrency > 0 else min(n, 1024)
    req_ms = 5.0 + isl * 0.02 + osl * 12.0 / max(1, world)
    total_ms = req_ms * n / parallel
    seconds = total_ms / 1000
    return {
        "total_latency_ms": total_ms, "avg_request_latency_ms": req_ms,
        "request_throughput_req_s": n / seconds, "output_tok_s": n * osl / seconds,
        "total_tok_s": n * (isl + osl) / seconds, "per_user_tok_s": osl / (req_ms / 1000),
        "ttft_ms": 5.0 + isl * 0.02, "tpot_ms": 12.0 / max(1, world), "concurrent": float(min(parallel, n)),
        "issue_rate": 3.186e14,
    }


def _percentiles(avg: float) -> dict[str, float]:
    return {"minimum": avg * 0.9, "maximum": avg * 1.2, "average": avg, "p50": avg, "p90": avg * 1.1,
            "p95": avg * 1.12, "p99": avg * 1.18}


def _report_dict(args: argparse.Namespace, meta: dict[str, Any], s: dict[str, float], engine: dict[str, Any] | None,
                 trt: bool) -> dict[str, Any]:
    v = _v()
    pre = (engine or {}).get("pretrained_config", {})
    build_cfg = (engine or {}).get("build_config", {})
    mapping = pre.get("mapping", {"tp_size": getattr(args, "tp", 1), "pp_size": getattr(args, "pp", 1)})
    world = int(mapping.get("tp_size", 1)) * int(mapping.get("pp_size", 1))
    out: dict[str, Any] = {"engine": {"model": args.model, "engine_dir": str(args.engine_dir), "version": VERSION}}
    if v >= (0, 19, 0):
        out["engine"]["model_path"] = str(args.model_path)
    if trt:
        out["engine"] |= {"backend": "TRT", "dtype": pre.get("dtype"),
                          "kv_cache_dtype": pre.get("quantization", {}).get("kv_cache_quant_algo"),
                          "quantization": pre.get("quantization", {}).get("quant_algo"),
                          "max_input_length": build_cfg.get("max_input_len"),
                          "max_sequence_length": build_cfg.get("max_seq_len")}
    else:
        out["engine"] |= {"backend": "Pytorch", "dtype": "bfloat16", "kv_cache_dtype": None, "quantization": None}
    if v >= (1, 0, 0):
        out["machine"] = {"name": "NVIDIA H200", "memory.total": 139.81, "clocks.mem": 3.2}
    out["world_info"] = {
        "tp_size": mapping.get("tp_size"), "pp_size": mapping.get("pp_size"),
        **({"ep_size": getattr(args, "ep", None) or 1} if v >= (0, 19, 0) else {}),
        "world_size": world,
        "max_batch_size": args.max_batch_size or build_cfg.get("max_batch_size", 2048),
        "max_num_tokens": args.max_num_tokens or build_cfg.get("max_num_tokens", 8192),
        "scheduling_policy": "GUARANTEED_NO_EVICT",
        "kv_cache_percentage": args.kv_cache_free_gpu_mem_fraction,
        "issue_rate": s["issue_rate"],
    }
    out["request_info"] = {"num_requests": meta["num_requests"], "avg_num_concurrent_requests": s["concurrent"],
                           "avg_input_length": float(meta["avg_isl"]), "avg_output_length": float(meta["avg_osl"])}
    out["performance"] = {
        "total_latency_ms": s["total_latency_ms"], "avg_request_latency_ms": s["avg_request_latency_ms"],
        "request_throughput_req_s": s["request_throughput_req_s"],
        "system_output_throughput_tok_s": s["output_tok_s"], "system_total_throughput_tok_s": s["total_tok_s"],
        "output_throughput_per_user_tok_s": s["per_user_tok_s"],
        "output_throughput_per_gpu_tok_s": s["output_tok_s"] / world,
        "request_latency_percentiles_ms": _percentiles(s["avg_request_latency_ms"]),
    }
    if args.streaming:
        out["streaming_metrics"] = {
            "token_output_speed_tok_s": 1000 / s["tpot_ms"], "avg_ttft_ms": s["ttft_ms"], "avg_tpot_ms": s["tpot_ms"],
            "tpot_percentiles": _percentiles(s["tpot_ms"]), "ttft_percentiles": _percentiles(s["ttft_ms"]),
            "gen_tps_percentiles": _percentiles(1000 / s["tpot_ms"]),
        }
    out["dataset"] = {"isl_stats": {"average": meta["avg_isl"], "maximum": meta["max_isl"]},
                      "osl_stats": {"average": meta["avg_osl"], "maximum": meta["max_osl"]},
                      "seq_len_stats": {"average": meta["avg_sequence_length"], "maximum": meta["max_sequence_length"]},
                      "num_requests": meta["num_requests"]}
    return out


def _breakdown(tag: str, p: dict[str, float]) -> str:
    return "\n".join(f"[{tag}] {k.upper():<7}: {p[k]:.4f}" for k in
                     ("minimum", "maximum", "average", "p50", "p90", "p95", "p99"))


def _text_report(r: dict[str, Any], trt: bool) -> str:
    """The report block in the layout of the pretended version."""
    v = _v()
    e, w, q, p = r["engine"], r["world_info"], r["request_info"], r["performance"]
    name = "TensorRT LLM Version" if v >= (1, 2, 0) else "TensorRT-LLM Version"
    if v < (0, 19, 0):  # 0.16-0.18: the recipe's real 0.17.0.post1 log
        out = ("\n\n" + SEP + "= ENGINE DETAILS\n" + SEP
               + f"Model:\t\t\t{e['model']}\nEngine Directory:\t{e['engine_dir']}\n{name}:\t{e['version']}\n"
               f"Dtype:\t\t\t{e['dtype']}\nKV Cache Dtype:\t\t{e['kv_cache_dtype']}\n"
               f"Quantization:\t\t{e['quantization']}\nMax Input Length:\t{e['max_input_length']}\n"
               f"Max Sequence Length:\t{e['max_sequence_length']}\n\n"
               + SEP + "= WORLD + RUNTIME INFORMATION \n" + SEP
               + f"TP Size:\t\t{w['tp_size']}\nPP Size:\t\t{w['pp_size']}\n"
               f"Max Runtime Batch Size:\t{w['max_batch_size']}\nMax Runtime Tokens:\t{w['max_num_tokens']}\n"
               f"Scheduling Policy:\tGuaranteed No Evict\n"
               f"KV Memory Percentage:\t{w['kv_cache_percentage'] * 100.0:.2f}%\n"
               f"Issue Rate (req/sec):\t{w['issue_rate']:.4E}\n\n"
               + SEP + "= PERFORMANCE OVERVIEW \n" + SEP
               + f"Number of requests:\t\t{q['num_requests']}\n"
               f"Average Input Length (tokens):\t{q['avg_input_length']:.4f}\n"
               f"Average Output Length (tokens):\t{q['avg_output_length']:.4f}\n"
               f"Token Throughput (tokens/sec):\t{p['system_output_throughput_tok_s']:.4f}\n"
               f"Request Throughput (req/sec):\t{p['request_throughput_req_s']:.4f}\n"
               f"Total Latency (ms):\t\t{p['total_latency_ms']:.4f}\n")
        if "streaming_metrics" in r:
            sm = r["streaming_metrics"]
            out += ("\n" + SEP + "= STREAMING STATISTICS \n" + SEP
                    + f"Average request latency (ms):\t\t{p['avg_request_latency_ms']:.4f}\n"
                    f"Average time-to-first-token (ms):\t{sm['avg_ttft_ms']:.4f}\n"
                    f"Average inter-token latency (ms):\t{sm['avg_tpot_ms']:.4f}\n")
        return out + "\n" + SEP
    if trt:
        out = ("\n\n" + SEP + "= ENGINE DETAILS\n" + SEP
               + f"Model:\t\t\t{e['model']}\nModel Path:\t\t{e['model_path']}\nEngine Directory:\t{e['engine_dir']}\n"
               f"{name}:\t{e['version']}\nDtype:\t\t\t{e['dtype']}\nKV Cache Dtype:\t\t{e['kv_cache_dtype']}\n"
               f"Quantization:\t\t{e['quantization']}\nMax Input Length:\t{e['max_input_length']}\n"
               f"Max Sequence Length:\t{e['max_sequence_length']}\n\n")
    else:
        out = ("\n\n" + SEP + "= PYTORCH BACKEND\n" + SEP
               + f"Model:\t\t\t{e['model']}\nModel Path:\t\t{e['model_path']}\n{name}:\t{e['version']}\n"
               f"Dtype:\t\t\t{e['dtype']}\nKV Cache Dtype:\t\t{e['kv_cache_dtype']}\n"
               f"Quantization:\t\t{e['quantization']}\n\n")
    if "machine" in r:
        m = r["machine"]
        out += SEP + "= MACHINE DETAILS \n" + SEP + f"{m['name']}, memory {m['memory.total']:.2f} GB, " \
                                                    f"{m['clocks.mem']:.2f} GHz\n\n"
    out += (SEP + "= WORLD + RUNTIME INFORMATION \n" + SEP
            + f"TP Size:                {w['tp_size']}\nPP Size:                {w['pp_size']}\n"
            + (f"EP Size:                {w['ep_size']}\n" if v >= (1, 0, 0) else "")
            + f"Max Runtime Batch Size: {w['max_batch_size']}\nMax Runtime Tokens:     {w['max_num_tokens']}\n"
            f"Scheduling Policy:      {w['scheduling_policy']}\n"
            f"KV Memory Percentage:   {w['kv_cache_percentage'] * 100.0:.2f}%\n"
            f"Issue Rate (req/sec):   {w['issue_rate']:.4E}\n\n"
            + SEP + "= PERFORMANCE OVERVIEW \n" + SEP
            + f"Request Throughput (req/sec):                     {p['request_throughput_req_s']:.4f}\n"
            f"Total Output Throughput (tokens/sec):             {p['system_output_throughput_tok_s']:.4f}\n"
            f"Total Token Throughput (tokens/sec):              {p['system_total_throughput_tok_s']:.4f}\n"
            f"Total Latency (ms):                               {p['total_latency_ms']:.4f}\n"
            f"Average request latency (ms):                     {p['avg_request_latency_ms']:.4f}\n")
    ctx = " [w/ ctx]" if v >= (0, 21, 0) else ""
    out += (f"Per User Output Throughput{ctx} (tps/user):".ljust(50) + f"{p['output_throughput_per_user_tok_s']:.4f}\n"
            + "Per GPU Output Throughput (tps/gpu):".ljust(50) + f"{p['output_throughput_per_gpu_tok_s']:.4f}\n")
    if "streaming_metrics" in r:
        sm = r["streaming_metrics"]
        out += ("Average time-to-first-token [TTFT] (ms):".ljust(50) + f"{sm['avg_ttft_ms']:.4f}\n"
                + "Average time-per-output-token [TPOT] (ms):".ljust(50) + f"{sm['avg_tpot_ms']:.4f}\n"
                + "Per User Output Speed (tps/user):".ljust(50) + f"{sm['token_output_speed_tok_s']:.4f}\n")
        if v >= (0, 21, 0):
            out += ("\n-- Per-Request Time-per-Output-Token [TPOT] Breakdown (ms)\n\n"
                    + _breakdown("TPOT", sm["tpot_percentiles"])
                    + "\n\n-- Per-Request Time-to-First-Token [TTFT] Breakdown (ms) \n\n"
                    + _breakdown("TTFT", sm["ttft_percentiles"])
                    + "\n\n-- Per-Request Generation Throughput [GTPS] Breakdown (tps/user)\n\n"
                    + _breakdown("GTPS", sm["gen_tps_percentiles"]) + "\n")
    lat = p["request_latency_percentiles_ms"]
    out += ("\n-- Request Latency Breakdown (ms) -----------------------\n\n"
            + "\n".join(f"[Latency] {k.upper():<7}: {lat[k]:.4f}" for k in lat) + "\n\n" + SEP)
    out = out.replace("= PERFORMANCE OVERVIEW \n", "= REQUEST DETAILS \n" + SEP
                      + f"Number of requests:             {q['num_requests']}\n"
                      f"Number of concurrent requests:  {q['avg_num_concurrent_requests']:.4f}\n"
                      f"Average Input Length (tokens):  {q['avg_input_length']:.4f}\n"
                      f"Average Output Length (tokens): {q['avg_output_length']:.4f}\n"
                      + SEP + "= PERFORMANCE OVERVIEW \n", 1)
    return out


def throughput(args: argparse.Namespace) -> int:
    v = _v()
    backend = getattr(args, "backend", None)
    trt = backend in (None, "tensorrt")
    if v < (0, 19, 0) and args.engine_dir is None:
        usage_error("Missing option '--engine_dir'.")
    engine_dir = _existing_path(args.engine_dir, "--engine_dir")
    dataset = _existing_path(args.dataset, "--dataset")
    for option in ("report_json", "output_json", "request_json", "iteration_log"):
        target = getattr(args, option, None)
        if target and not Path(target).resolve().parent.is_dir():
            usage_error(f"Invalid value for '--{option}': Directory '{Path(target).parent}' does not exist.")
    if dataset is None:
        usage_error("no dataset given (stand-in: reading a dataset from stdin is not simulated)")
    log("Preparing to run throughput benchmark...")
    meta = _read_dataset(dataset, args.num_requests)
    log(_dataset_details(meta))
    engine: dict[str, Any] | None = None
    if trt:
        if engine_dir is None:
            fail("An engine directory is required for the TensorRT backend (--engine_dir).")
        try:
            engine = json.loads((engine_dir / "config.json").read_text())
        except (OSError, ValueError):
            fail(f"No engine config.json in {engine_dir}.")
        build_cfg = engine["build_config"]  # type: ignore[index]
        if meta["max_sequence_length"] > build_cfg["max_seq_len"]:
            fail(f"Engine supports a max sequence of {build_cfg['max_seq_len']}. Provided dataset contains a "
                 f"maximum sequence of {meta['max_sequence_length']}. Please rebuild a new engine to support this "
                 "dataset.")
        if meta["max_isl"] > build_cfg["max_num_tokens"] and not args.enable_chunked_context:
            fail(f"[TensorRT-LLM][ERROR] Prompt length ({meta['max_isl']}) exceeds the engine's max_num_tokens "
                 f"({build_cfg['max_num_tokens']}); enable chunked context.")
    else:
        _checkpoint(args)
    isl = meta["avg_isl"]
    world = 1
    if engine:
        mapping = engine["pretrained_config"]["mapping"]
        world = mapping["tp_size"] * mapping["pp_size"]
    elif v >= (0, 19, 0):
        world = args.tp * args.pp
    log("Setting up throughput benchmark.")
    log("Setting up for warmup...")
    log("Running warmup.")
    log("Warmup done.")
    log("Starting benchmarking async task.")
    log("Starting benchmark...")
    for item in os.environ.get("STANDIN_SLEEP_ISL", "").split(","):
        if item.strip() and int(item.split(":")[0]) == isl:
            time.sleep(float(item.split(":")[1]))
    if isl in _isls("STANDIN_OOM_ISL"):
        log("Executor worker returned error", "E")
        print("[TensorRT-LLM][ERROR] CUDA runtime error in cudaMallocAsync: out of memory "
              "(/src/tensorrt_llm/runtime/tllmBuffers.h:123)", flush=True)
        log("MPI worker exited; stopping the benchmark.", "W")
        return 0  # as observed: the process exits 0, no report is written
    if isl in _isls("STANDIN_FAIL_ISL"):
        fail(f"Simulated failure of the benchmark for ISL {isl}.")
    log(f"Request submission complete. [count={meta['num_requests']}, time=0.0121s, rate=2484491.39 req/s]")
    log("Benchmark complete.")
    log("Benchmark done. Reporting results...")
    stats = _stats(meta, args.concurrency, world)
    report = _report_dict(args, meta, stats, engine, trt)
    if args.report_json:
        log(f"Writing report to '{Path(args.report_json).resolve()}'.")
        Path(args.report_json).write_text(json.dumps(report, indent=4))
    if getattr(args, "output_json", None):
        Path(args.output_json).write_text(json.dumps({str(i): "" for i in range(meta["num_requests"])}, indent=4))
    if getattr(args, "request_json", None):
        reqs = [{"id": i, "num_input_tokens": meta["avg_isl"], "output_tokens": meta["avg_osl"],
                 "end_to_end_latency_ms": stats["avg_request_latency_ms"]} for i in range(meta["num_requests"])]
        Path(args.request_json).write_text(json.dumps(reqs, indent=4))
    if args.iteration_log:
        Path(args.iteration_log).write_text("")
    log(_text_report(report, trt))
    log("Thread proxy_dispatch_result_thread stopped.")
    return 0


def main(argv: list[str]) -> int:
    # Importing tensorrt_llm prints this banner: it is how the launcher learns the version.
    print(f"[TensorRT-LLM] TensorRT-LLM version: {VERSION}", flush=True)
    record_call(argv)
    echo = os.environ.get("STANDIN_ECHO_ENV")
    if echo:
        print(f"env {echo}={os.environ.get(echo, '<unset>')}", flush=True)
    args = parser().parse_args(argv)
    if args.command == "build":
        return build(args)
    return throughput(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
