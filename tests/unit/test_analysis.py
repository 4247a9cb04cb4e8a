"""Analysis: summary, runs side by side, NVIDIA's figures, the speed-of-light bound, plots and export."""

from __future__ import annotations

import csv
import re
from importlib import resources

import pandas as pd
import pytest
from helpers import REPO, REPORTS

from recipelib.results import Results, load_examples, load_local
from recipelib.results import speed_of_light as sol
from recipelib.results.analysis import AnalysisError, against_speed_of_light, compare_runs, export_csv, summary_table
from recipelib.results.html_report import analyse, write_report
from recipelib.results.plots import figure_png, fraction_figure, latency_figure, throughput_figure
from recipelib.results.reference import compare_to_published, model_family, published_figures, version_key

REAL_405B = REPORTS / "gpu-recipes_a3ultra_llama405b_trt-0.17.0.post1_h200.txt"
TRT = "nvidia-docs/20250118-llama8b-fp8-trt0.17"
PYT = "nvidia-docs/llama8b-fp8-pytorch0.17"
RECIPE = "gpu-recipes-a3ultra/20250528-llama405b-fp8-tp8-trt0.17"


@pytest.fixture(scope="module")
def examples() -> Results:
    return load_examples("all")


def published_cell(model: str, gpu: str, tp: int, isl: int, osl: int, version: str) -> float:
    """The figure as the CSV holds it, read with the csv module, not with the code under test."""
    with resources.files("recipelib").joinpath("data", "nvidia_published_throughput.csv").open() as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        for row in rows:
            if (row["model"], row["gpu"], row["tp"], row["isl"], row["osl"]) == (model, gpu, str(tp), str(isl),
                                                                                  str(osl)):
                return float(row[version])
    raise LookupError(model)


# --- speed of light -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-70B",
                                   "meta-llama/Llama-3.1-405B", "nvidia/Llama-3.3-70B-Instruct-FP8"])
def test_parameter_count_from_the_shape_matches_the_model_page(model: str) -> None:
    shape = sol.model_shape(model)
    assert shape.params / 1e9 == pytest.approx(shape.stated_params_b, rel=0.005)


def test_recipe_reaches_about_40_percent_of_the_fp8_compute_bound() -> None:
    from recipelib.results.reports import parse_text

    [report] = parse_text(REAL_405B.read_text())
    bound = sol.throughput_bound(report.model, "H200", report.tp_size * report.pp_size, isl=128, osl=128,
                                 quantization=report.quantization, kv_cache_dtype=report.kv_cache_dtype)
    assert bound.precision == "fp8" and bound.limited_by == "compute"
    assert 0.38 < bound.fraction(report.output_throughput) < 0.42


def test_kv_capacity_agrees_with_trtllm_benchs_own_estimate() -> None:
    """The real log prints 'Estimated max number of requests in KV cache memory: 11076.91' for this setup."""
    printed = float(re.search(r"max number of requests in KV cache memory: ([\d.]+)", REAL_405B.read_text())[1])
    bound = sol.throughput_bound("meta-llama/Llama-3.1-405B", "H200", 8, isl=128, osl=128, quantization="FP8",
                                 kv_cache_dtype="FP8")
    assert bound.max_batch == pytest.approx(printed, rel=0.03)


def test_bounds_scale_the_way_the_hardware_does() -> None:
    def bound(**kw):
        args = {"model": "meta-llama/Llama-3.1-70B", "gpu": "H200", "gpus": 4, "isl": 1000, "osl": 1000,
                "quantization": "FP8", "kv_cache_dtype": "FP8"} | kw
        return sol.throughput_bound(args.pop("model"), args.pop("gpu"), args.pop("gpus"), **args)

    assert bound(gpus=8).compute_tok_s == pytest.approx(2 * bound().compute_tok_s)
    assert bound(quantization=None, kv_cache_dtype=None).compute_tok_s == pytest.approx(bound().compute_tok_s / 2)
    assert bound(gpu="H100").compute_tok_s == pytest.approx(bound().compute_tok_s)  # same Tensor Cores
    assert bound(gpu="H100").memory_tok_s < bound().memory_tok_s  # less HBM, less bandwidth
    # longer prompts cost compute without adding output: fewer output tokens/s at the limit
    assert bound(isl=5000, osl=500).compute_tok_s < bound(isl=500, osl=500).compute_tok_s


def test_bound_errors_are_clear() -> None:
    with pytest.raises(sol.SpeedOfLightError, match="does not fit"):
        sol.throughput_bound("meta-llama/Llama-3.1-405B", "H100", 1, isl=128, osl=128, quantization=None)
    with pytest.raises(sol.SpeedOfLightError, match="no datasheet figures"):
        sol.gpu_spec("MI300X")
    with pytest.raises(sol.SpeedOfLightError, match="no shape"):
        sol.model_shape("Qwen/Qwen3-8B")
    with pytest.raises(sol.SpeedOfLightError, match="unknown quantization"):
        sol.throughput_bound("meta-llama/Llama-3.1-8B", "H100", 1, isl=1, osl=1, quantization="Q4_K_M")


def test_datasheet_file_cites_its_sources() -> None:
    text = (REPO / "launcher" / "gpu_datasheet.py").read_text()
    assert "nvidia.com/en-us/data-center/h100" in text and "nvidia.com/en-us/data-center/h200" in text
    assert sol.gpu_spec("NVIDIA H200").hbm_tb_s == 4.8 and sol.gpu_spec("nvidia-h100-80gb").memory_gb == 80


def test_against_speed_of_light_table(examples: Results) -> None:
    table = against_speed_of_light(examples.frame)
    recipe = table[table["run"] == RECIPE].iloc[0]
    assert recipe["gpu"] == "H200" and recipe["limited_by"] == "compute"
    assert recipe["fraction_of_limit"] == pytest.approx(3914.4509 / recipe["limit_tok_s"])
    # the docs runs do not name their GPU: kept, with the reason, and no numbers
    docs = table[table["run"] == TRT].iloc[0]
    assert pd.isna(docs["fraction_of_limit"]) and "GPU" in docs["note"]
    filled = against_speed_of_light(examples.frame, gpu="H100")
    assert filled[filled["run"] == TRT]["fraction_of_limit"].notna().all()


# --- NVIDIA's published figures -----------------------------------------------------------------------


def test_published_figures_carry_their_sources() -> None:
    text = resources.files("recipelib").joinpath("data", "nvidia_published_throughput.csv").read_text()
    assert "perf-overview" in text and text.startswith("#")
    figures = published_figures()
    assert set(figures["model"]) == {"8B", "70B", "405B"} and not figures["output_tok_s"].isna().any()


def test_recipe_against_nvidias_figure_of_the_same_version(examples: Results) -> None:
    table = compare_to_published(examples.frame)
    [row] = table.to_dict("records")  # only the recipe names its GPU
    expected = published_cell("405B", "H200", 8, 128, 128, "v0.17")
    assert (row["published_version"], row["same_version"]) == ("v0.17", True)
    assert row["published_output_tok_s"] == expected
    assert row["ratio_to_published"] == pytest.approx(3914.4509 / expected)


def test_like_is_compared_with_like(examples: Results) -> None:
    table = compare_to_published(examples.frame, gpu="H100")
    # the streaming, concurrency-limited BF16 blog sample is not NVIDIA's max-throughput FP8 scenario
    assert set(table["run"]) == {RECIPE, TRT, PYT}
    trt = table[table["run"] == TRT].iloc[0]
    assert trt["published_output_tok_s"] == published_cell("8B", "H100", 1, 128, 128, "v0.17")


def test_version_matching() -> None:
    assert version_key("0.17.0.post1") == (0, 17) and version_key("v1.0") == (1, 0) and version_key("x") is None
    assert model_family("nvidia/Llama-3.3-70B-Instruct-FP8") == "70B" and model_family("Qwen/Qwen3-8B") is None
    frame = load_examples(RECIPE).frame.assign(trtllm_version="0.16.0")
    assert compare_to_published(frame)["published_version"].tolist() == ["v0.17"]  # nearest: 0.17 over 0.14
    frame = frame.assign(trtllm_version="0.20.0")  # 405B H200 128/128 has no v0.20 figure
    assert compare_to_published(frame)["same_version"].tolist() == [False]


# --- tables ---------------------------------------------------------------------------------------------


def test_summary_table(examples: Results) -> None:
    table = summary_table(examples.frame)
    assert len(table) == 4 and table["run"].is_monotonic_increasing
    assert table.loc[table["run"] == RECIPE, "output_throughput_tok_s"].tolist() == [3914.4509]
    with pytest.raises(AnalysisError, match="no results"):
        summary_table(examples.frame.iloc[0:0])


def test_compare_runs_side_by_side(examples: Results) -> None:
    table = compare_runs(examples.frame, runs=[TRT, PYT])
    [row] = table.to_dict("records")
    assert (row["model"], row["isl"], row["osl"]) == ("meta-llama/Llama-3.1-8B", 128, 128)
    assert (row[TRT], row[PYT]) == (28390.4265, 20685.551)
    assert row[f"{PYT} / {TRT}"] == pytest.approx(20685.551 / 28390.4265)
    latency = compare_runs(examples.frame, metric="total_latency_ms", runs=[PYT, TRT])
    assert latency.iloc[0][f"{TRT} / {PYT}"] == pytest.approx(13525.6862 / 18563.6825)
    with pytest.raises(AnalysisError, match="unknown metric"):
        compare_runs(examples.frame, metric="speed")
    with pytest.raises(AnalysisError, match="runs not loaded"):
        compare_runs(examples.frame, runs=["nope/nope"])


def test_export_csv_round_trips(examples: Results, tmp_path) -> None:
    path = export_csv(examples.frame, tmp_path / "deep" / "results.csv")
    back = pd.read_csv(path)
    assert back["output_throughput_tok_s"].tolist() == examples.frame["output_throughput_tok_s"].tolist()
    assert list(back.columns) == list(examples.frame.columns)


# --- plots and the HTML report ----------------------------------------------------------------------------


def test_figures_render_headless(examples: Results) -> None:
    frame = examples.frame
    limits = against_speed_of_light(frame, gpu="H100")
    published = compare_to_published(frame, gpu="H100")
    for fig in (throughput_figure(frame, published=published, limits=limits), latency_figure(frame),
                fraction_figure(limits, published)):
        png = figure_png(fig)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    bars = throughput_figure(frame).axes[0].containers
    assert sorted(round(b.get_height(), 4) for c in bars for b in c) == sorted(frame["output_throughput_tok_s"])


def test_latency_figure_says_when_reports_have_no_percentiles() -> None:
    frame = load_local(REAL_405B).frame
    fig = latency_figure(frame)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("0.16/0.17 print averages only" in t for t in texts)


def test_html_report_is_self_contained_and_escaped(examples: Results, tmp_path) -> None:
    frame = examples.frame.copy()
    frame.loc[frame["run"] == PYT, "model"] = "<script>alert(1)</script>"
    frame.loc[frame["run"] == PYT, "replay"] = True
    results = Results(frame, examples.runs, examples.missing, examples.origin)
    files = write_report(results, tmp_path / "out", gpu="H100")
    html = files.html.read_text()
    assert html.count("data:image/png;base64,") == 3
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing to fetch from elsewhere
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "3,914.5" in html and "replay" in html
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"report.html", "results.csv", "throughput.png",
                                                            "fractions.png", "latency.png"}


def test_analyse_one_run_has_no_comparison(tmp_path) -> None:
    analysis = analyse(load_examples(RECIPE))
    assert analysis.comparison is None and len(analysis.summary) == 1
    # plots only where there is data: 0.17 reports have no latency percentiles, and the notes say so
    assert set(analysis.figures) == {"throughput", "fractions"} and "averages only" in analysis.notes["latency"]


# --- methods: is a result measured as NVIDIA measured its figure? ------------------------------------------


def _with_run_keys(results: Results, run: str, **keys: object) -> Results:
    """``results`` whose run ``run`` has ``keys`` in its run.json, as the launcher now writes them."""
    from dataclasses import replace

    runs = tuple(replace(r, document={**r.document, **keys}) if r.key == run else r for r in results.runs)
    return Results(results.frame, runs, results.missing, results.origin)


def test_every_published_version_names_its_method_and_source() -> None:
    from recipelib.results.reference import PUBLISHED_METHODS

    versions = set(published_figures()["version"])
    assert versions <= set(PUBLISHED_METHODS)
    for version, (method, source) in PUBLISHED_METHODS.items():
        assert "perf-overview" in source
        engine = (version_key(version) or (9, 9)) < (0, 19)
        assert (method.flow, method.engine_method) == (("engine", "per-dataset") if engine else ("pytorch", None))
        assert ("--dataset $dataset_file" in source) == engine


def test_results_without_a_recorded_method_say_method_unknown(examples: Results) -> None:
    [row] = compare_to_published(examples.frame, runs=examples.runs).to_dict("records")
    assert row["run"] == RECIPE and row["same_method"] is None
    assert row["method"] == "method unknown (backend tensorrt)" and row["method_note"].startswith("method unknown")
    assert row["published_method"] == "engine flow, per-dataset"


@pytest.mark.parametrize(
    ("keys", "same", "words"),
    [
        ({"flow": "engine", "engine_method": "per-dataset"}, True, "same method"),
        ({"flow": "engine", "engine_method": "shared"}, False, "shared engine"),
        ({"flow": "pytorch", "engine_method": "per-dataset"}, False, "different flow"),
        ({"flow": "engine"}, None, "engine method unknown"),
    ],
)
def test_a_method_difference_is_flagged_in_the_comparison(examples: Results, keys: dict, same: object,
                                                           words: str) -> None:
    results = _with_run_keys(examples, RECIPE, **keys)
    [row] = compare_to_published(examples.frame, runs=results.runs).to_dict("records")
    assert row["same_method"] is same and words in row["method_note"]
    # the ratio is still given: the label says how far to trust it
    assert row["ratio_to_published"] == pytest.approx(3914.4509 / row["published_output_tok_s"])


def test_a_different_backend_is_flagged_even_without_a_recorded_flow(examples: Results) -> None:
    """NVIDIA's docs' PyTorch run (0.17) against the v0.17 figure, which is the engine flow."""
    table = compare_to_published(examples.frame, gpu="H100", runs=examples.runs)
    pyt = table[table["run"] == PYT].iloc[0]
    assert pyt["same_method"] is False and "different backend: this result pytorch" in pyt["method_note"]


def test_method_columns_come_from_the_table_when_it_has_them(examples: Results) -> None:
    frame = examples.frame.assign(flow="engine", engine_method="shared")
    [row] = compare_to_published(frame).to_dict("records")
    assert row["same_method"] is False and row["method"] == "engine flow, shared"


def test_html_report_says_when_methods_differ(examples: Results, tmp_path) -> None:
    results = _with_run_keys(load_examples(RECIPE), RECIPE, flow="engine", engine_method="shared")
    analysis = analyse(results)
    assert analysis.summary["engine_method"].tolist() == ["shared"]
    page = write_report(results, tmp_path / "out", analysis=analysis).html.read_text()
    assert "1 of 1 measured differently, not like for like: shared engine" in page
    assert "v0.17: engine flow, per-dataset" in page
    alike = _with_run_keys(load_examples(RECIPE), RECIPE, flow="engine", engine_method="per-dataset")
    page = write_report(alike, tmp_path / "alike").html.read_text()
    assert "measured the same way" in page and "not like for like" not in page
