"""The report ``replay_bench`` prints for a replay of NVIDIA's published figure, in the played version's layout.

Why: the launcher keeps what ``trtllm-bench throughput`` prints as ``report.txt`` and the analysis parses it
(``recipelib.results.reports.parse_text``), so a replay must print a real layout (``report_layouts``: the
section titles and labels of that release's samples). But only one number was published per experiment:
the output throughput. So the report holds that figure, what follows from it by arithmetic (total latency =
output tokens / throughput, the time the run takes; request throughput = requests / total latency), and the
run's own description (model, version, TP/PP, request count and lengths). Per-request latencies,
percentiles, batch sizes and memory figures were not published and are left out, never invented. A line
outside the report's sections says so and names the table row, before and after the report.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import report_layouts
from cli_tables import release
from published_replay import LABEL, TABLE_NAME, Published, Wanted
from report_layouts import SEP


def figures(source: Published, want: Wanted) -> dict[str, float]:
    """The published output throughput, and what follows from it for this many requests."""
    total_s = want.num_requests * want.osl / source.output_tok_s
    return {"system_output_throughput_tok_s": source.output_tok_s, "total_latency_ms": total_s * 1000.0,
            "request_throughput_req_s": want.num_requests / total_s}


def label(source: Published) -> str:
    return (f"replay: a {LABEL}: {source.row} ({source.source}). Output throughput is that figure; request "
            "throughput and total latency follow from it and the request count; NVIDIA published no latencies, "
            "so none is printed. No GPU ran.")


def _log(message: str) -> str:
    return f"[{datetime.now().strftime('%m/%d/%Y-%H:%M:%S')}] [TRT-LLM] [I] {message}"


def log_before(want: Wanted) -> list[str]:
    """The lines a run prints before its report (what the launcher's log shows while it 'runs')."""
    return [_log("Preparing to run throughput benchmark..."),
            _log("Starting benchmark..."), _log("Benchmark complete."), _log("Benchmark done. Reporting results...")]


def _title(name: str, trailing: bool) -> str:
    return SEP + f"= {name}{' ' if trailing else ''}\n" + SEP


def _header(want: Wanted, backend: str, kind: str, env: dict[str, Any], p: dict[str, Any],
            limits: dict[str, Any]) -> str:
    version = "TensorRT LLM Version" if kind == "1.x" else "TensorRT-LLM Version"
    trt = backend == "tensorrt"
    title = "ENGINE DETAILS" if trt else ("PyTorch backend" if kind == "0.17" else "PYTORCH BACKEND")
    out = _title(title, False) + f"Model:\t\t\t{want.model}\n"
    if kind != "0.17" or not trt:
        out += f"Model Path:\t\t{env.get('model_path')}\n"
    if trt:
        out += f"Engine Directory:\t{p.get('engine_dir')}\n"
    out += f"{version}:\t{want.version}\n"
    if want.quantization:
        out += f"Quantization:\t\t{want.quantization}\n"
    if trt and limits.get("max_input_len") and limits.get("max_seq_len"):
        out += f"Max Input Length:\t{limits['max_input_len']}\nMax Sequence Length:\t{limits['max_seq_len']}\n"
    return out + "\n"


def text(source: Published, want: Wanted, f: dict[str, float], *, backend: str, limits: dict[str, Any],
         env: dict[str, Any], p: dict[str, Any]) -> str:
    """The printed report, between two label lines (outside every section, so a parser reads past them)."""
    kind = report_layouts.layout(release(want.version))
    out = "\n" + label(source) + "\n\n" + _header(want, backend, kind, env, p, limits)
    if kind == "0.17":
        out += (_title("WORLD + RUNTIME INFORMATION", False) + f"TP Size:\t\t{want.tp}\nPP Size:\t\t{want.pp}\n\n"
                + _title("PERFORMANCE OVERVIEW", False)
                + f"Number of requests:\t\t{want.num_requests}\n"
                f"Average Input Length (tokens):\t{want.isl:.4f}\n"
                f"Average Output Length (tokens):\t{want.osl:.4f}\n"
                f"Token Throughput (tokens/sec):\t{f['system_output_throughput_tok_s']:.4f}\n"
                f"Request Throughput (req/sec):\t{f['request_throughput_req_s']:.4f}\n"
                f"Total Latency (ms):\t\t{f['total_latency_ms']:.4f}\n\n" + SEP)
    else:
        trailing = kind == "1.x"
        out += (_title("REQUEST DETAILS", trailing) + f"Number of requests:             {want.num_requests}\n"
                f"Average Input Length (tokens):  {want.isl:.4f}\n"
                f"Average Output Length (tokens): {want.osl:.4f}\n"
                + _title("WORLD + RUNTIME INFORMATION", trailing)
                + f"TP Size:                {want.tp}\nPP Size:                {want.pp}\n\n"
                + _title("PERFORMANCE OVERVIEW", trailing)
                + report_layouts._line("Request Throughput (req/sec):", f["request_throughput_req_s"])
                + report_layouts._line("Total Output Throughput (tokens/sec):", f["system_output_throughput_tok_s"])
                + report_layouts._line("Total Latency (ms):", f["total_latency_ms"]) + "\n" + SEP)
    return out + "\n" + label(source)


def as_json(source: Published, want: Wanted, f: dict[str, float], *, backend: str, env: dict[str, Any],
            speed: float) -> dict[str, Any]:
    """``--report_json`` where the version has it: the sections of ``get_statistics_dict()`` with only what is
    known; ``replay`` names the table row."""
    return {
        "replay": {"label": LABEL, "row": source.row, "table": TABLE_NAME, "column": source.column,
                   "source": source.source, "speed": speed,
                   "note": "output throughput as published; request throughput and total latency follow from it; "
                           "no latency was published; no GPU ran in the sandbox"},
        "engine": {"model": want.model, "model_path": env.get("model_path"), "version": want.version,
                   "backend": backend, "quantization": want.quantization},
        "world_info": {"tp_size": want.tp, "pp_size": want.pp, "world_size": want.tp * want.pp},
        "request_info": {"num_requests": want.num_requests, "avg_input_length": float(want.isl),
                         "avg_output_length": float(want.osl)},
        "performance": dict(f),
    }
