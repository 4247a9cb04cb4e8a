"""What the trtllm-bench stand-in computes and writes: dataset statistics, engine folders, synthetic figures,
the ``--report_json`` dict. Kept apart from ``trtllm_bench.py`` (the command line and its checks).

The figures are deterministic functions of the workload, plausible in size, not a model of anything: tests
compare what the launcher stored with what the stand-in printed, never with a performance claim.
The JSON keys are those of ``ReportUtility.get_statistics_dict()`` (reporting.py, stored id 242561195).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli_tables import Command, release
from report_layouts import SEP

_PCT = ("p50", "p90", "p95", "p99", "minimum", "maximum", "average")  # the printed order of [Latency] rows


def isls(name: str) -> set[int]:
    return {int(x) for x in os.environ.get(name, "").split(",") if x.strip()}


def read_dataset(path: Path, cap: int = 0) -> dict[str, Any]:
    """Lengths of a prepared dataset (one JSON request a line: ``input_ids`` or ``prompt``, ``output_tokens``)."""
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
        raise SystemExit(f"Dataset {path} is empty.")
    seq = [i + o for i, o in zip(isl, osl, strict=True)]
    return {
        "num_requests": len(isl), "isl": isl, "osl": osl, "seq": seq,
        "avg_isl": round(sum(isl) / len(isl)), "avg_osl": round(sum(osl) / len(osl)),
        "max_isl": max(isl), "max_osl": max(osl), "max_sequence_length": max(seq),
        "avg_sequence_length": round(sum(seq) / len(seq)),
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def rank(q: float) -> float:
        return float(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)])

    return {"p50": rank(50), "p90": rank(90), "p95": rank(95), "p99": rank(99), "minimum": float(ordered[0]),
            "maximum": float(ordered[-1]), "average": sum(ordered) / len(ordered)}


def dataset_stats(meta: dict[str, Any], path: str) -> dict[str, Any]:
    """The JSON ``dataset`` object (and the source of the printed ``= DATASET DETAILS``, 0.19+)."""
    return {"dataset_path": str(path), "num_requests": meta["num_requests"],
            "isl_stats": _percentiles(meta["isl"]), "osl_stats": _percentiles(meta["osl"]),
            "seq_len_stats": _percentiles(meta["seq"]), "avg_isl": meta["avg_isl"], "avg_osl": meta["avg_osl"]}


def build_dataset_details(meta: dict[str, Any]) -> str:
    """``= DATASET DETAILS`` as ``build`` (and 0.16/0.17 ``throughput``) log it: the recipe's real log."""
    return ("\n" + SEP + "= DATASET DETAILS\n" + SEP
            + f"Max Input Sequence Length:\t{meta['max_isl']}\nMax Output Sequence Length:\t{meta['max_osl']}\n"
            f"Max Sequence Length:\t{meta['max_sequence_length']}\n"
            f"Target (Average) Input Sequence Length:\t{meta['avg_isl']}\n"
            f"Target (Average) Output Sequence Length:\t{meta['avg_osl']}\n"
            f"Number of Sequences:\t{meta['num_requests']}\n" + SEP + "\n")


def build_plan(p: dict[str, Any], max_seq_len: int | None, log: Callable[..., None]) -> dict[str, Any]:
    """Engine limits the way build chooses them: from the dataset, the user's values, or the heuristics."""
    target = (p.get("target_input_len"), p.get("target_output_len"))
    if p.get("dataset"):
        log("Found dataset.")
        meta = read_dataset(Path(p["dataset"]))
        max_seq_len, target = meta["max_sequence_length"], (meta["avg_isl"], meta["avg_osl"])
        log(build_dataset_details(meta))
    if p.get("max_batch_size"):
        log("Use user-provided max batch size and max num tokens for engine build and benchmark.")
        return {"max_seq_len": max_seq_len, "max_batch_size": p["max_batch_size"],
                "max_num_tokens": p["max_num_tokens"]}
    if target[0]:
        log("Max batch size and max num tokens are not provided, use tuning heuristics or pre-defined setting "
            "from trtllm-bench.")
        batch = 4096 if sum(target) <= 4096 else 512
        log(f"Estimated max batch size (after fine-tune): {batch}")
        log("Estimated max num tokens (after fine-tune): 8192")
        return {"max_seq_len": max_seq_len, "max_batch_size": batch, "max_num_tokens": 8192}
    log("No engine build option is selected, use TRT-LLM default max_batch_size and max_num_tokens to build the "
        "engine.", "W")
    return {"max_seq_len": max_seq_len, "max_batch_size": 2048, "max_num_tokens": 8192}


def write_engine(engine_dir: Path, version: str, tp: int, pp: int, quant: str | None, plan: dict[str, Any],
                 checkpoint: Path | None) -> None:
    """The engine folder the real build writes: ``config.json`` and one ``rank<N>.engine`` per rank."""
    kv = "FP8" if quant in ("FP8", "NVFP4") else None
    engine_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "version": version,
        "pretrained_config": {"architecture": "LlamaForCausalLM", "dtype": "bfloat16",
                              "quantization": {"quant_algo": quant, "kv_cache_quant_algo": kv},
                              "mapping": {"world_size": tp * pp, "tp_size": tp, "pp_size": pp}},
        "build_config": {"max_input_len": plan["max_seq_len"], "max_seq_len": plan["max_seq_len"],
                         "max_batch_size": plan["max_batch_size"], "max_num_tokens": plan["max_num_tokens"],
                         "checkpoint": str(checkpoint) if checkpoint else None},
    }
    (engine_dir / "config.json").write_text(json.dumps(config, indent=4))
    for rank in range(tp * pp):
        (engine_dir / f"rank{rank}.engine").write_bytes(b"stand-in engine\n")


def build_info(env: dict[str, Any], engine_dir: Path, plan: dict[str, Any], quant: str | None) -> str:
    kv = "FP8" if quant in ("FP8", "NVFP4") else None
    return ("\n" + SEP + "= ENGINE BUILD INFO\n" + SEP
            + f"Model Name:\t\t{env['model']}\nModel Path:\t\t{env.get('model_path')}\n"
            f"Workspace Directory:\t{env['workspace']}\nEngine Directory:\t{engine_dir}\n\n"
            + SEP + "= ENGINE CONFIGURATION DETAILS\n" + SEP
            + f"Max Sequence Length:\t\t{plan['max_seq_len']}\nMax Batch Size:\t\t\t{plan['max_batch_size']}\n"
            f"Max Num Tokens:\t\t\t{plan['max_num_tokens']}\nQuantization:\t\t\t{quant}\nKV Cache Dtype:\t\t\t{kv}\n"
            + SEP)


def stats(meta: dict[str, Any], concurrency: int, world: int) -> dict[str, float]:
    """Deterministic, plausible-looking figures derived from the workload (not a model of anything)."""
    n, isl, osl = meta["num_requests"], meta["avg_isl"], meta["avg_osl"]
    parallel = concurrency if concurrency > 0 else min(n, 1024)
    req_ms = 5.0 + isl * 0.02 + osl * 12.0 / max(1, world)
    seconds = req_ms * n / parallel / 1000
    return {
        "total_latency_ms": seconds * 1000, "avg_request_latency_ms": req_ms, "request_throughput_req_s": n / seconds,
        "output_tok_s": n * osl / seconds, "total_tok_s": n * (isl + osl) / seconds,
        "per_user_tok_s": osl / (req_ms / 1000),
        "ttft_ms": 5.0 + isl * 0.02, "tpot_ms": 12.0 / max(1, world), "concurrent": float(min(parallel, n)),
        "issue_rate": 3.186e14,
    }


def _spread(avg: float) -> dict[str, float]:
    values = {"p50": avg, "p90": avg * 1.1, "p95": avg * 1.12, "p99": avg * 1.18, "minimum": avg * 0.9,
              "maximum": avg * 1.2, "average": avg}
    return {k: values[k] for k in _PCT}


def report_dict(version: str, env: dict[str, Any], p: dict[str, Any], meta: dict[str, Any], s: dict[str, float],
                engine: dict[str, Any] | None, trt: bool, world: int) -> dict[str, Any]:
    """The ``--report_json`` content, with the keys of ``ReportUtility.get_statistics_dict()``."""
    pre = (engine or {}).get("pretrained_config", {})
    build_cfg = (engine or {}).get("build_config", {})
    mapping = pre.get("mapping", {"tp_size": p.get("tp") or 1, "pp_size": p.get("pp") or 1})
    out: dict[str, Any] = {"engine": {"model": env["model"], "model_path": env.get("model_path"),
                                      "engine_dir": p.get("engine_dir"), "version": version}}
    if trt:
        quant = pre.get("quantization", {})
        out["engine"] |= {"backend": "TRT", "dtype": pre.get("dtype"),
                          "kv_cache_dtype": quant.get("kv_cache_quant_algo"),
                          "quantization": quant.get("quant_algo"), "max_input_length": build_cfg.get("max_input_len"),
                          "max_sequence_length": build_cfg.get("max_seq_len")}
    else:
        out["engine"] |= {"backend": "Pytorch", "dtype": "bfloat16", "kv_cache_dtype": None, "quantization": None}
    if release(version) >= (1, 0, 0):
        out["machine"] = {"name": "NVIDIA H200", "memory.total": 139.81, "clocks.mem": 3.2}
    policy = str(p.get("scheduler_policy") or "guaranteed_no_evict").upper()
    out["world_info"] = {
        "tp_size": mapping.get("tp_size"), "pp_size": mapping.get("pp_size"), "ep_size": p.get("ep"),
        "world_size": world,
        "max_batch_size": p.get("max_batch_size") or build_cfg.get("max_batch_size", 2048),
        "max_num_tokens": p.get("max_num_tokens") or build_cfg.get("max_num_tokens", 8192),
        "scheduling_policy": policy, "kv_cache_percentage": p.get("kv_cache_free_gpu_mem_fraction", 0.9),
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
        "request_latency_percentiles_ms": _spread(s["avg_request_latency_ms"]),
    }
    if p.get("streaming"):
        out["streaming_metrics"] = {
            "token_output_speed_tok_s": 1000 / s["tpot_ms"], "avg_ttft_ms": s["ttft_ms"], "avg_tpot_ms": s["tpot_ms"],
            "tpot_percentiles": _spread(s["tpot_ms"]), "ttft_percentiles": _spread(s["ttft_ms"]),
            "gen_tps_percentiles": _spread(1000 / s["tpot_ms"]),
        }
    out["dataset"] = dataset_stats(meta, p.get("dataset") or "")
    return out


def requests(meta: dict[str, Any], s: dict[str, float]) -> list[dict[str, Any]]:
    """``--request_json`` (1.x): one timing record per request."""
    return [{"id": i, "num_input_tokens": meta["isl"][i], "output_tokens": meta["osl"][i],
             "end_to_end_latency_ms": s["avg_request_latency_ms"]} for i in range(meta["num_requests"])]


def prepare_dataset_group(spec: Command) -> Any:
    """``trtllm-bench prepare-dataset`` for a release whose table has it (the tokenizer is the group's model)."""
    import prepare_dataset  # the same generator as the standalone script

    return prepare_dataset.cli(spec, name="prepare-dataset", tokenizer_from_parent=True)
