"""The text report ``trtllm-bench throughput`` prints, in the layout of the release the stand-in plays.

Why: the launcher keeps the printed report as a result where ``--report_json`` does not exist (before
0.19), and the analysis parses it; a stand-in that printed its own invented layout would test the
parser against itself. Each layout here follows a real sample (``tests/data/reports/``, see SOURCES.md)
section for section and label for label, and ``tests/launcher/test_standins.py`` holds them to it:

- ``0.17`` (before 0.19): the recipe's real 0.17.0.post1 log and NVIDIA's 0.17 docs (``= ENGINE DETAILS``
  or ``= PyTorch backend``; "Token Throughput"). ``--streaming`` adds ``= STREAMING STATISTICS``, which
  no sample shows (kept from reporting.py as the parser describes it; unverified).
- ``0.19`` (0.19, 0.20): NVIDIA's 0.19 docs sample (``REQUEST DETAILS``, ``(tokens/sec/user)``, latency
  breakdown, ``DATASET DETAILS``); streaming lines as the perf-overview sample prints them. The header
  block above ``REQUEST DETAILS`` is in no 0.19 sample: it is the 0.21 one.
- ``0.21``: the 0.21.0rc0 blog sample (``= PYTORCH BACKEND``, ``[w/ ctx] (tps/user)``, ``(tps/gpu)``, GTPS).
- ``1.x``: the format strings of ``reporting.py`` (``TensorRT LLM Version``, ``= MACHINE DETAILS``, titles
  with a trailing space); no real 1.x sample exists, the test compares it with a synthetic one.

The engine header (``= ENGINE DETAILS`` with ``Model Path``) of 0.19+ follows reporting.py (stored id
242561195); no printed 0.19+ engine-flow sample was found.
"""

from __future__ import annotations

from typing import Any

SEP = "===========================================================\n"
_TPOT = "Per-Request Time-per-Output-Token [TPOT] Breakdown (ms)"
_TTFT = "Per-Request Time-to-First-Token [TTFT] Breakdown (ms)"
_BREAKDOWN_KEYS = ("minimum", "maximum", "average", "p50", "p90", "p95", "p99")


def layout(release: tuple[int, int, int]) -> str:
    """Which printed layout a release has."""
    if release < (0, 19, 0):
        return "0.17"
    if release < (0, 21, 0):
        return "0.19"
    if release < (1, 0, 0):
        return "0.21"
    return "1.x"


def _title(name: str, trailing: bool) -> str:
    return SEP + f"= {name}{' ' if trailing else ''}\n" + SEP


def _header(r: dict[str, Any], trt: bool, kind: str) -> str:
    e = r["engine"]
    version = "TensorRT LLM Version" if kind == "1.x" else "TensorRT-LLM Version"
    if trt:
        out = "\n\n" + _title("ENGINE DETAILS", False) + f"Model:\t\t\t{e['model']}\n"
        if kind != "0.17":
            out += f"Model Path:\t\t{e['model_path']}\n"
        return out + (f"Engine Directory:\t{e['engine_dir']}\n{version}:\t{e['version']}\n"
                      f"Dtype:\t\t\t{e['dtype']}\nKV Cache Dtype:\t\t{e['kv_cache_dtype']}\n"
                      f"Quantization:\t\t{e['quantization']}\nMax Input Length:\t{e['max_input_length']}\n"
                      f"Max Sequence Length:\t{e['max_sequence_length']}\n\n")
    title = "PyTorch backend" if kind == "0.17" else "PYTORCH BACKEND"
    return ("\n\n" + _title(title, False) + f"Model:\t\t\t{e['model']}\nModel Path:\t\t{e['model_path']}\n"
            f"{version}:\t{e['version']}\nDtype:\t\t\t{e['dtype']}\nKV Cache Dtype:\t\t{e['kv_cache_dtype']}\n"
            f"Quantization:\t\t{e['quantization']}\n\n")


def _world(w: dict[str, Any], kind: str) -> str:
    trailing = kind == "1.x"
    if kind == "0.17":
        return (_title("WORLD + RUNTIME INFORMATION", False)
                + f"TP Size:\t\t{w['tp_size']}\nPP Size:\t\t{w['pp_size']}\n"
                f"Max Runtime Batch Size:\t{w['max_batch_size']}\nMax Runtime Tokens:\t{w['max_num_tokens']}\n"
                "Scheduling Policy:\tGuaranteed No Evict\n"
                f"KV Memory Percentage:\t{w['kv_cache_percentage'] * 100.0:.2f}%\n"
                f"Issue Rate (req/sec):\t{w['issue_rate']:.4E}\n\n")
    return (_title("WORLD + RUNTIME INFORMATION", trailing)
            + f"TP Size:                {w['tp_size']}\nPP Size:                {w['pp_size']}\n"
            f"EP Size:                {w['ep_size']}\n"
            f"Max Runtime Batch Size: {w['max_batch_size']}\nMax Runtime Tokens:     {w['max_num_tokens']}\n"
            f"Scheduling Policy:      {w['scheduling_policy']}\n"
            f"KV Memory Percentage:   {w['kv_cache_percentage'] * 100.0:.2f}%\n"
            f"Issue Rate (req/sec):   {w['issue_rate']:.4E}\n\n")


def _requests(q: dict[str, Any], kind: str) -> str:
    return (_title("REQUEST DETAILS", kind == "1.x")
            + f"Number of requests:             {q['num_requests']}\n"
            f"Number of concurrent requests:  {q['avg_num_concurrent_requests']:.4f}\n"
            f"Average Input Length (tokens):  {q['avg_input_length']:.4f}\n"
            f"Average Output Length (tokens): {q['avg_output_length']:.4f}\n")


def _line(label: str, value: float) -> str:
    return f"{label}".ljust(50) + f"{value:.4f}\n"


def _breakdown(tag: str, title: str, values: dict[str, float]) -> str:
    rows = "\n".join(f"[{tag}] {k.upper():<7}: {values[k]:.4f}" for k in _BREAKDOWN_KEYS)
    return f"\n-- {title}\n\n{rows}\n"


def _latency(p: dict[str, Any]) -> str:
    lat = p["request_latency_percentiles_ms"]  # printed in the dict's order: P50..P99, then MINIMUM, MAXIMUM, AVERAGE
    rows = "\n".join(f"[Latency] {k.upper():<7}: {lat[k]:.4f}" for k in lat)
    return f"\n-- Request Latency Breakdown (ms) -----------------------\n\n{rows}\n\n"


def _performance(r: dict[str, Any], kind: str) -> str:
    p, sm = r["performance"], r.get("streaming_metrics")
    out = _title("PERFORMANCE OVERVIEW", kind == "1.x")
    if kind == "0.19":
        out += (_line("Request Throughput (req/sec):", p["request_throughput_req_s"])
                + _line("Total Output Throughput (tokens/sec):", p["system_output_throughput_tok_s"])
                + _line("Per User Output Throughput (tokens/sec/user):", p["output_throughput_per_user_tok_s"])
                + _line("Per GPU Output Throughput (tokens/sec/gpu):", p["output_throughput_per_gpu_tok_s"])
                + _line("Total Token Throughput (tokens/sec):", p["system_total_throughput_tok_s"])
                + _line("Total Latency (ms):", p["total_latency_ms"])
                + _line("Average request latency (ms):", p["avg_request_latency_ms"]))
        if sm:
            out += (_line("Per User Output Speed [1/TPOT] (tokens/sec/user):", sm["token_output_speed_tok_s"])
                    + _line("Average time-to-first-token [TTFT] (ms):", sm["avg_ttft_ms"])
                    + _line("Average time-per-output-token [TPOT] (ms):", sm["avg_tpot_ms"])
                    + _breakdown("TPOT", _TPOT, sm["tpot_percentiles"])
                    + _breakdown("TTFT", _TTFT, sm["ttft_percentiles"]))
        return out + _latency(p)
    out += (_line("Request Throughput (req/sec):", p["request_throughput_req_s"])
            + _line("Total Output Throughput (tokens/sec):", p["system_output_throughput_tok_s"])
            + _line("Total Token Throughput (tokens/sec):", p["system_total_throughput_tok_s"])
            + _line("Total Latency (ms):", p["total_latency_ms"])
            + _line("Average request latency (ms):", p["avg_request_latency_ms"])
            + _line("Per User Output Throughput [w/ ctx] (tps/user):", p["output_throughput_per_user_tok_s"])
            + _line("Per GPU Output Throughput (tps/gpu):", p["output_throughput_per_gpu_tok_s"]))
    if sm:
        out += (_line("Average time-to-first-token [TTFT] (ms):", sm["avg_ttft_ms"])
                + _line("Average time-per-output-token [TPOT] (ms):", sm["avg_tpot_ms"])
                + _line("Per User Output Speed (tps/user):", sm["token_output_speed_tok_s"])
                + _breakdown("TPOT", _TPOT, sm["tpot_percentiles"])
                + _breakdown("TTFT", "Per-Request Time-to-First-Token [TTFT] Breakdown (ms) ", sm["ttft_percentiles"])
                + _breakdown("GTPS", "Per-Request Generation Throughput [GTPS] Breakdown (tps/user)",
                             sm["gen_tps_percentiles"]))
    return out + _latency(p)


def dataset_details(d: dict[str, Any]) -> str:
    """``= DATASET DETAILS`` as 0.19+ print it after the report (path, count, ISL/OSL/sequence percentiles)."""
    rows = "".join(
        f"{label + ':':<5}{d['isl_stats'][key]:>11.4f}{d['osl_stats'][key]:>19.4f}{d['seq_len_stats'][key]:>19.4f}\n"
        for label, key in (("MIN", "minimum"), ("MAX", "maximum"), ("AVG", "average"), ("P50", "p50"),
                           ("P90", "p90"), ("P95", "p95"), ("P99", "p99")))
    return (_title("DATASET DETAILS", False)
            + f"Dataset Path:         {d['dataset_path']}\nNumber of Sequences:  {d['num_requests']}\n\n"
            "-- Percentiles statistics ---------------------------------\n\n"
            "        Input              Output           Seq. Length\n"
            "-----------------------------------------------------------\n" + rows + SEP)


def text_report(r: dict[str, Any], *, trt: bool, kind: str) -> str:
    """The whole printed report of one run (what follows the ``[TRT-LLM] [I]`` of its log line)."""
    out = _header(r, trt, kind)
    if kind == "0.17":
        w, q, p = r["world_info"], r["request_info"], r["performance"]
        out += (_world(w, kind) + _title("PERFORMANCE OVERVIEW", False)
                + f"Number of requests:\t\t{q['num_requests']}\n"
                f"Average Input Length (tokens):\t{q['avg_input_length']:.4f}\n"
                f"Average Output Length (tokens):\t{q['avg_output_length']:.4f}\n"
                f"Token Throughput (tokens/sec):\t{p['system_output_throughput_tok_s']:.4f}\n"
                f"Request Throughput (req/sec):\t{p['request_throughput_req_s']:.4f}\n"
                f"Total Latency (ms):\t\t{p['total_latency_ms']:.4f}\n")
        sm = r.get("streaming_metrics")
        if sm:
            out += ("\n" + _title("STREAMING STATISTICS", False)
                    + f"Average request latency (ms):\t\t{p['avg_request_latency_ms']:.4f}\n"
                    f"Average time-to-first-token (ms):\t{sm['avg_ttft_ms']:.4f}\n"
                    f"Average inter-token latency (ms):\t{sm['avg_tpot_ms']:.4f}\n")
        return out + "\n" + SEP
    if kind == "1.x" and "machine" in r:
        m = r["machine"]
        out += (_title("MACHINE DETAILS", True)
                + f"{m['name']}, memory {m['memory.total']:.2f} GB, {m['clocks.mem']:.2f} GHz\n\n")
    out += _requests(r["request_info"], kind) + _world(r["world_info"], kind) + _performance(r, kind)
    return out + dataset_details(r["dataset"])
