"""trtllm-bench reports: every published layout read to the exact printed value; bad ones rejected.

Fixtures in tests/data/reports/ are published outputs (sources in SOURCES.md and each file's first
line), plus one synthetic file for the 1.x layout, which no public sample shows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import REPORTS

from recipelib.errors import RecipelibError
from recipelib.results.reports import (
    BenchReport,
    Percentiles,
    ReportError,
    flatten,
    parse_json,
    parse_report,
    parse_text,
)

REAL_405B = REPORTS / "gpu-recipes_a3ultra_llama405b_trt-0.17.0.post1_h200.txt"
BLOG_021 = REPORTS / "nvidia-blog_0.21.0rc0_llama8b_pytorch_streaming.txt"


EXCERPTS = {"nvidia-blog_0.21.0rc0_overview_tabs.txt", "nvidia-blog_deepseek-r1_b200_trailing-spaces.txt",
            "nvidia-docs_0.17_llama8b_pytorch.txt", "nvidia-perf-overview_0.21_streaming-breakdowns.txt"}
"""Published quotes that stop at their last value, before the closing rule trtllm-bench prints."""


def one(path: Path) -> BenchReport:
    reports = parse_text(path.read_text(), source=path.name, excerpt=path.name in EXCERPTS)
    assert len(reports) == 1
    return reports[0]


def test_real_405b_report_from_the_recipe() -> None:
    r = one(REAL_405B)
    assert (r.model, r.backend, r.layout) == ("meta-llama/Llama-3.1-405B", "tensorrt", "0.16-0.17")
    # the run's engine says 0.17.0.post1; the log's first banner (the engine build) says 0.16.0
    assert r.trtllm_version == "0.17.0.post1"
    assert (r.tp_size, r.pp_size, r.quantization, r.kv_cache_dtype, r.dtype) == (8, 1, "FP8", "FP8", "bfloat16")
    assert (r.max_batch_size, r.max_num_tokens, r.max_input_len, r.max_seq_len) == (4096, 8192, 256, 256)
    assert r.kv_cache_percent == 95.0
    assert r.scheduling_policy == "Guaranteed No Evict"
    assert r.engine_dir == "/ssd/meta-llama/Llama-3.1-405B/tp_8_pp_1"
    assert (r.num_requests, r.avg_isl, r.avg_osl) == (30000, 128.0, 128.0)
    assert r.output_throughput == 3914.4509  # printed as "Token Throughput (tokens/sec)" in 0.17
    assert r.request_throughput == 30.5816
    assert r.total_latency_ms == 980980.5121
    # 0.17 does not print these: None, not 0 and not NaN
    assert r.total_token_throughput is None and r.ttft_ms is None and r.tpot_ms is None
    assert r.latency_percentiles_ms is None and r.gpu is None
    assert r.source == REAL_405B.name


def test_real_405b_numbers_agree_with_each_other() -> None:
    """Independent printed values must be consistent: a mis-assigned field would break these."""
    r = one(REAL_405B)
    assert r.request_throughput == pytest.approx(r.num_requests / (r.total_latency_ms / 1000), rel=1e-5)
    assert r.output_throughput == pytest.approx(r.request_throughput * r.avg_osl, rel=1e-5)


def test_docs_0_17_engine_flow_with_log_noise() -> None:
    r = one(REPORTS / "nvidia-docs_0.17_llama8b_trt_throughput.txt")
    assert (r.model, r.trtllm_version, r.backend, r.tp_size) == ("meta-llama/Llama-3.1-8B", "0.17.0", "tensorrt", 1)
    assert (r.num_requests, r.output_throughput, r.request_throughput, r.total_latency_ms) == (
        3000, 28390.4265, 221.8002, 13525.6862)
    assert r.kv_cache_percent == 90.0


def test_docs_0_17_pytorch_backend() -> None:
    r = one(REPORTS / "nvidia-docs_0.17_llama8b_pytorch.txt")
    assert (r.backend, r.model_path, r.kv_cache_dtype, r.quantization) == (
        "pytorch", "/Ckpt/Path/To/Llama-3.1-8B", None, "FP8")
    assert (r.max_batch_size, r.max_num_tokens) == (2048, 4096)
    assert (r.output_throughput, r.request_throughput, r.total_latency_ms) == (20685.5510, 161.6059, 18563.6825)


def test_0_19_request_details_and_latency_breakdown() -> None:
    r = one(REPORTS / "nvidia-docs_0.19_qwen2-vl_pytorch_request-details.txt")
    assert r.layout == "0.19-0.20"
    assert (r.num_requests, r.avg_concurrency, r.avg_isl, r.avg_osl) == (10, 5.3019, 411.6, 128.7)
    assert (r.tp_size, r.pp_size, r.ep_size, r.max_batch_size, r.max_num_tokens) == (1, 1, None, 4, 12288)
    assert r.scheduling_policy == "GUARANTEED_NO_EVICT"
    assert (r.request_throughput, r.output_throughput, r.total_token_throughput) == (1.4439, 185.8351, 780.1607)
    assert (r.per_user_output_throughput, r.per_gpu_output_throughput) == (38.1959, 185.8351)
    assert (r.total_latency_ms, r.avg_request_latency_ms) == (6925.4963, 3671.8441)
    assert r.latency_percentiles_ms == Percentiles(minimum=2397.1047, maximum=5514.4701, average=3671.8441,
                                                   p50=3936.3022, p90=5514.4701, p95=5514.4701, p99=5514.4701)
    assert r.ttft_percentiles_ms is None
    # the DATASET DETAILS table after the overview ("MIN: 167.0000 ...") must not leak into any field
    assert r.backend is None and r.model is None


def test_headers_and_values_with_trailing_spaces() -> None:
    r = one(REPORTS / "nvidia-blog_deepseek-r1_b200_trailing-spaces.txt")
    assert (r.request_throughput, r.output_throughput) == (0.1222, 250.0612)
    assert (r.per_user_output_throughput, r.per_gpu_output_throughput) == (71.5615, 31.2576)
    assert (r.total_latency_ms, r.avg_request_latency_ms) == (81839.9807, 45318.908)
    assert r.total_token_throughput is None  # this early layout has no such line


def test_0_21_ttft_tpot_breakdowns() -> None:
    r = one(REPORTS / "nvidia-perf-overview_0.21_streaming-breakdowns.txt")
    assert (r.output_throughput, r.total_token_throughput, r.per_user_output_speed) == (5530.7382, 94022.5497, 5.4656)
    assert (r.ttft_ms, r.tpot_ms) == (52667.0339, 182.9639)
    assert r.tpot_percentiles_ms == Percentiles(32.8005, 208.4667, 182.9639, 204.0463, 206.3863, 206.5064, 206.5821)
    assert r.ttft_percentiles_ms == Percentiles(3914.7621, 107501.2487, 52667.0339, 52269.7072, 96583.7187,
                                                101978.4566, 106563.4497)
    assert r.latency_percentiles_ms.p99 == 111618.2158 and r.latency_percentiles_ms.minimum == 24189.0838
    assert r.num_requests is None  # printed in REQUEST DETAILS, which this excerpt does not include


def test_0_21_pytorch_backend_with_ctx_and_gtps() -> None:
    r = one(BLOG_021)
    assert (r.layout, r.backend, r.model, r.trtllm_version) == (
        "0.21+", "pytorch", "meta-llama/Llama-3.1-8B-Instruct", "0.21.0rc0")
    assert (r.model_path, r.quantization, r.kv_cache_dtype, r.ep_size) == (None, None, None, None)
    assert (r.num_requests, r.avg_concurrency) == (100, 94.605)
    assert (r.per_user_output_throughput, r.per_gpu_output_throughput, r.per_user_output_speed) == (
        117.1544, 11076.77, 137.1475)
    assert (r.ttft_ms, r.tpot_ms) == (162.6706, 7.3272)
    assert r.gen_tps_percentiles == Percentiles(122.9921, 150.4894, 137.1475, 131.4444, 150.4112, 150.4606, 150.4894)
    assert r.ttft_percentiles_ms.p50 == 159.7857 and r.tpot_percentiles_ms.p90 == 8.1246
    assert r.latency_percentiles_ms.maximum == 1137.6817


def test_tab_separated_overview_reads_like_the_spaced_one() -> None:
    tabs = one(REPORTS / "nvidia-blog_0.21.0rc0_overview_tabs.txt")
    spaced = one(BLOG_021)
    fields = ("request_throughput", "output_throughput", "total_token_throughput", "total_latency_ms",
              "avg_request_latency_ms", "per_user_output_throughput", "per_gpu_output_throughput", "ttft_ms",
              "tpot_ms", "per_user_output_speed")
    assert {f: getattr(tabs, f) for f in fields} == {f: getattr(spaced, f) for f in fields}
    assert all(getattr(tabs, f) is not None for f in fields)


def test_1x_layout_machine_details_and_tabs() -> None:
    r = one(REPORTS / "synthetic_1.x-layout_from-reporting-py.txt")
    assert r.layout == "1.x"
    assert (r.gpu, r.gpu_memory_gb) == ("NVIDIA H100 80GB HBM3", 79.19)
    assert (r.model, r.trtllm_version, r.backend, r.model_path) == (
        "meta-llama/Llama-3.1-8B-Instruct", "1.0.0", "pytorch", None)
    assert (r.output_throughput, r.ttft_ms, r.gen_tps_percentiles.p95) == (11076.77, 162.6706, 150.4606)


def test_every_fixture_parses_and_has_a_source_line() -> None:
    files = sorted(REPORTS.glob("*.txt"))
    assert len(files) >= 9
    for path in files:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# source:") or first.startswith("# SYNTHETIC"), path.name
        for report in parse_text(path.read_text(), source=path.name, excerpt=path.name in EXCERPTS):
            assert report.output_throughput > 0 and report.request_throughput > 0


# --- several runs in one file ------------------------------------------------------------------------


def test_one_report_per_performance_overview_without_leaking_context() -> None:
    text = (REPORTS / "nvidia-docs_0.17_llama8b_trt_throughput.txt").read_text() + "\n" + REAL_405B.read_text() + (
        "\n" + (REPORTS / "nvidia-blog_deepseek-r1_b200_trailing-spaces.txt").read_text())
    first, second, third = parse_text(text, source="sweep.log", excerpt=True)  # the last run is an excerpt
    assert (first.model, first.output_throughput) == ("meta-llama/Llama-3.1-8B", 28390.4265)
    assert (second.model, second.tp_size, second.output_throughput) == ("meta-llama/Llama-3.1-405B", 8, 3914.4509)
    assert second.trtllm_version == "0.17.0.post1"
    # the third run printed no engine section: nothing is inherited from the 405B run before it
    assert third.model is None and third.tp_size is None and third.output_throughput == 250.0612


def test_streaming_statistics_section_of_0_17_belongs_to_its_run() -> None:
    streaming = (
        "\n===========================================================\n= STREAMING STATISTICS \n"
        "===========================================================\n"
        "Average request latency (ms):\t\t812.5000\nAverage time-to-first-token (ms):\t40.2500\n"
        "Average inter-token latency (ms):\t6.1250\n\n===========================================================\n"
    )
    text = REAL_405B.read_text().replace("Total Latency (ms):             980980.5121\n",
                                         "Total Latency (ms):             980980.5121\n" + streaming)
    r = one_text(text)
    assert (r.avg_request_latency_ms, r.ttft_ms, r.tpot_ms) == (812.5, 40.25, 6.125)
    assert r.output_throughput == 3914.4509


def one_text(text: str) -> BenchReport:
    [report] = parse_text(text, source="inline")
    return report


# --- rejected: placeholders, truncation, non-numbers --------------------------------------------------

# Placeholder template published in NVIDIA's DGX Cloud benchmarking recipes (LLMB) READMEs.
PLACEHOLDER = """===========================================================
= PERFORMANCE OVERVIEW
===========================================================
Request Throughput (req/sec):                     <value>
Total Output Throughput (tokens/sec):             <value>
Total Token Throughput (tokens/sec):              <value>
Total Latency (ms):                               <value>
Average request latency (ms):                     <value>
Per User Output Throughput [w/ ctx] (tps/user):   <value>
Per GPU Output Throughput (tps/gpu):              <value>
Average time-to-first-token [TTFT] (ms):          <value>
Average time-per-output-token [TPOT] (ms):        <value>
Per User Output Speed (tps/user):                 <value>
...
"""


def test_placeholder_report_is_rejected_naming_the_field() -> None:
    with pytest.raises(ReportError) as err:
        parse_text(PLACEHOLDER, source="README.md")
    assert err.value.field in {"request_throughput", "output_throughput", "total_token_throughput",
                               "total_latency_ms", "avg_request_latency_ms", "per_user_output_throughput",
                               "per_gpu_output_throughput", "ttft_ms", "tpot_ms", "per_user_output_speed"}
    assert "<value>" in str(err.value) and "README.md" in str(err.value)
    assert isinstance(err.value, RecipelibError)


@pytest.mark.parametrize(
    ("cut_after", "missing"),
    [
        ("Token Throughput (tokens/sec):  3914.4509\n", ["request_throughput", "total_latency_ms"]),
        ("Average Output Length (tokens): 128.0000\n",
         ["request_throughput", "output_throughput", "total_latency_ms"]),
        ("Request Throughput (req/sec):   30.5816\n", ["total_latency_ms"]),
    ],
)
def test_truncated_real_report_is_rejected(cut_after: str, missing: list[str]) -> None:
    text = REAL_405B.read_text()
    truncated = text[: text.index(cut_after) + len(cut_after)]
    with pytest.raises(ReportError) as err:
        parse_text(truncated, source="report.txt")
    assert err.value.field == missing[0]
    assert "missing" in err.value.message
    assert all(name in str(err.value) for name in missing)


def test_report_cut_before_the_overview_is_rejected() -> None:
    text = REAL_405B.read_text()
    with pytest.raises(ReportError, match="no '= PERFORMANCE OVERVIEW' section"):
        parse_text(text[: text.index("= PERFORMANCE OVERVIEW")], source="report.txt")
    with pytest.raises(ReportError):
        parse_text("", source="empty.txt")


def test_value_cut_mid_line_is_rejected() -> None:
    text = REAL_405B.read_text()
    cut = text[: text.index("Total Latency (ms):") + len("Total Latency (ms):")]
    with pytest.raises(ReportError, match="total_latency_ms: has no value"):
        parse_text(cut)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("Token Throughput (tokens/sec):  3914.4509", "Token Throughput (tokens/sec):  nan", "output_throughput"),
        ("Request Throughput (req/sec):   30.5816", "Request Throughput (req/sec):   inf", "request_throughput"),
        ("Request Throughput (req/sec):   30.5816", "Request Throughput (req/sec):   -30.5816", "request_throughput"),
        ("Request Throughput (req/sec):   30.5816", "Request Throughput (req/sec):   0.0000", "request_throughput"),
        ("TP Size:                8", "TP Size:                eight", "tp_size"),
        ("TP Size:                8", "TP Size:                8.5", "tp_size"),
        ("Number of requests:             30000", "Number of requests:             None", "num_requests"),
        ("KV Memory Percentage:   95.00%", "KV Memory Percentage:   ninety%", "kv_cache_percent"),
    ],
)
def test_non_numbers_are_rejected_never_nan(old: str, new: str, field: str) -> None:
    text = REAL_405B.read_text()
    assert old in text
    with pytest.raises(ReportError) as err:
        parse_text(text.replace(old, new), source="report.txt")
    assert err.value.field == field


def test_bad_percentile_names_its_statistic() -> None:
    text = BLOG_021.read_text().replace("[TTFT] P99    : 232.4339", "[TTFT] P99    : n/a")
    with pytest.raises(ReportError) as err:
        parse_text(text)
    assert err.value.field == "ttft_percentiles_ms.p99"


# --- JSON (--report_json) ------------------------------------------------------------------------------


def blog_json() -> dict:
    """A --report_json document with the keys of ReportUtility.get_statistics_dict()
    (NVIDIA/TensorRT-LLM tensorrt_llm/bench/dataclasses/reporting.py @ 0249976575050d2c624a5f285683c66de311a3b7),
    filled with the values the blog sample printed for the same run (test input, not a measurement)."""

    def pct(minimum, maximum, average, p50, p90, p95, p99):
        return {"p50": p50, "p90": p90, "p95": p95, "p99": p99, "minimum": minimum, "maximum": maximum,
                "average": average}

    return {
        "engine": {"model": "meta-llama/Llama-3.1-8B-Instruct", "model_path": "None", "engine_dir": "None",
                   "version": "0.21.0rc0", "backend": "Pytorch", "dtype": "bfloat16", "kv_cache_dtype": None,
                   "quantization": None},
        "world_info": {"tp_size": 1, "pp_size": 1, "ep_size": None, "world_size": 1, "max_batch_size": 3840,
                       "max_num_tokens": 7680, "scheduling_policy": "GUARANTEED_NO_EVICT",
                       "kv_cache_percentage": 0.9, "issue_rate": 1.0526e15},
        "request_info": {"num_requests": 100, "avg_num_concurrent_requests": 94.605, "avg_input_length": 128.0,
                         "avg_output_length": 128.0},
        "performance": {
            "total_latency_ms": 1155.5715, "avg_request_latency_ms": 1093.2284, "request_throughput_req_s": 86.5373,
            "system_output_throughput_tok_s": 11076.77, "system_total_throughput_tok_s": 22153.5399,
            "output_throughput_per_user_tok_s": 117.1544, "output_throughput_per_gpu_tok_s": 11076.77,
            "request_latency_percentiles_ms": pct(1050.1519, 1137.6817, 1093.2284, 1091.7905, 1130.72, 1133.0074,
                                                  1137.6817),
        },
        "streaming_metrics": {
            "token_output_speed_tok_s": 137.1475, "avg_ttft_ms": 162.6706, "avg_tpot_ms": 7.3272,
            "tpot_percentiles": pct(6.645, 8.1306, 7.3272, 7.6079, 8.1246, 8.1289, 8.1306),
            "ttft_percentiles": pct(93.921, 232.4339, 162.6706, 159.7857, 220.053, 226.9148, 232.4339),
            "gen_tps_percentiles": pct(122.9921, 150.4894, 137.1475, 131.4444, 150.4112, 150.4606, 150.4894),
        },
        "dataset": {"num_requests": 100, "avg_isl": 128, "avg_osl": 128},
    }


def test_json_report_reads_like_the_text_of_the_same_run() -> None:
    from_json = parse_json(blog_json(), source="report.json")
    from_text = one(BLOG_021)
    assert from_json.layout == "json" and from_json.source == "report.json"
    assert from_json.kv_cache_percent == pytest.approx(from_text.kv_cache_percent)
    for name, value in flatten(from_text).items():
        if name not in {"report_layout", "source"}:
            assert flatten(from_json)[name] == value, name
    for name in ("backend", "trtllm_version", "model_path", "scheduling_policy", "max_batch_size"):
        assert getattr(from_json, name) == getattr(from_text, name), name


def test_json_text_and_bytes_and_backends() -> None:
    doc = blog_json()
    assert parse_json(json.dumps(doc)).output_throughput == 11076.77
    assert parse_json(json.dumps(doc).encode()).ttft_ms == 162.6706
    doc["engine"]["backend"] = "TRT"
    assert parse_json(doc).backend == "tensorrt"
    doc["engine"]["backend"] = "vllm"
    with pytest.raises(ReportError, match="unknown backend"):
        parse_json(doc)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["performance"].pop("system_output_throughput_tok_s"), "output_throughput"),
        (lambda d: d["performance"].__setitem__("total_latency_ms", None), "total_latency_ms"),
        (lambda d: d["performance"].__setitem__("request_throughput_req_s", "86.5"), "request_throughput"),
        (lambda d: d["performance"].__setitem__("request_throughput_req_s", True), "request_throughput"),
        (lambda d: d["world_info"].__setitem__("tp_size", 1.5), "tp_size"),
        (lambda d: d["streaming_metrics"]["ttft_percentiles"].__setitem__("p99", "x"), "ttft_percentiles_ms.p99"),
        (lambda d: d.pop("performance"), "output_throughput"),
    ],
)
def test_json_missing_or_non_numeric_values_are_rejected(mutate, field: str) -> None:
    doc = blog_json()
    mutate(doc)
    with pytest.raises(ReportError) as err:
        parse_json(doc, source="gs://b/run/report.json")
    assert err.value.field == field
    assert err.value.source == "gs://b/run/report.json"


def test_json_nan_and_garbage_are_rejected() -> None:
    text = json.dumps(blog_json()).replace("11076.77,", "NaN,", 1)
    with pytest.raises(ReportError):
        parse_json(text)
    with pytest.raises(ReportError, match="not valid JSON"):
        parse_json('{"performance": ')
    with pytest.raises(ReportError, match="JSON object"):
        parse_json("[1, 2]")


def test_parse_report_dispatches_on_the_file_name() -> None:
    assert parse_report(json.dumps(blog_json()), name="report.json")[0].layout == "json"
    assert parse_report(REAL_405B.read_bytes(), name="report.txt")[0].output_throughput == 3914.4509


def test_flatten_has_units_in_every_numeric_column() -> None:
    row = flatten(one(BLOG_021))
    numeric = [k for k, v in row.items() if isinstance(v, float)]
    assert numeric and all(k.endswith(("_ms", "_tok_s", "_req_s", "_tokens")) or k == "avg_concurrency"
                           for k in numeric)
    assert not any(isinstance(v, float) and math.isnan(v) for v in row.values())
