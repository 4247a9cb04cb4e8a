"""Figures and the report's tables: drawn only where there is data, legends clear of every label, replays
marked, gaps shown one way, repeated failure reasons grouped."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from helpers import REPORTS
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from recipelib.results import Results, load_examples, load_local
from recipelib.results.analysis import against_speed_of_light
from recipelib.results.html_report import analyse, missing_reasons, table_html, write_report
from recipelib.results.plots import (
    draw_figures,
    figure_png,
    fraction_figure,
    latency_figure,
    latency_note,
    throughput_figure,
)
from recipelib.results.reference import compare_to_published
from recipelib.results.table import MissingReport

REAL_405B = REPORTS / "gpu-recipes_a3ultra_llama405b_trt-0.17.0.post1_h200.txt"
BLOG = "nvidia-blog/llama8b-instruct-pytorch0.21rc0-streaming"
RECIPE = "gpu-recipes-a3ultra/20250528-llama405b-fp8-tp8-trt0.17"


@pytest.fixture(scope="module")
def examples() -> Results:
    return load_examples("all")


def replayed(results: Results, run: str) -> pd.DataFrame:
    frame = results.frame.copy()
    frame.loc[frame["run"] == run, "replay"] = True
    return frame


def all_figures(frame: pd.DataFrame, gpu: str = "H100") -> dict[str, Figure]:
    limits = against_speed_of_light(frame, gpu=gpu)
    published = compare_to_published(frame, gpu=gpu)
    return {"throughput": throughput_figure(frame, published=published, limits=limits),
            "fractions": fraction_figure(limits, published, frame=frame), "latency": latency_figure(frame)}


def titles(fig: Figure) -> str:
    parts = [ax.get_title() for ax in fig.axes]
    if fig._suptitle is not None:
        parts.append(fig._suptitle.get_text())
    return " | ".join(parts)


def overlaps(a: Bbox, b: Bbox) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


# -- only where there is data --------------------------------------------------------------------------------


def test_every_figure_is_drawn_where_the_reports_have_the_data(examples: Results) -> None:
    frame = examples.frame
    figures, notes = draw_figures(frame, limits=against_speed_of_light(frame, gpu="H100"),
                                  published=compare_to_published(frame, gpu="H100"))
    assert set(figures) == {"throughput", "fractions", "latency"} and notes == {}
    for fig in figures.values():
        assert figure_png(fig).startswith(b"\x89PNG\r\n\x1a\n")


def test_no_latency_figure_without_percentiles_and_a_sentence_why() -> None:
    frame = load_local(REAL_405B).frame
    figures, notes = draw_figures(frame, limits=against_speed_of_light(frame, gpu="H200"))
    assert "latency" not in figures and set(figures) == {"throughput", "fractions"}
    assert notes["latency"] == latency_note(frame)
    assert "TensorRT-LLM 0.17.0.post1" in notes["latency"] and "p50/p90/p99" in notes["latency"]


def test_no_limit_figure_when_nothing_can_be_bounded(examples: Results) -> None:
    frame = examples.frame.assign(model="acme/unknown-model")
    figures, notes = draw_figures(frame, limits=against_speed_of_light(frame, gpu="H100"))
    assert "fractions" not in figures and notes["fractions"].startswith("No figure against the limit")
    assert "acme/unknown-model" in notes["fractions"]  # the reason the analysis gave, not a generic one


def test_latency_figure_draws_the_reports_own_percentiles(examples: Results) -> None:
    fig = latency_figure(examples.frame)
    by_title = {ax.get_title(): ax for ax in fig.axes}
    # read off the report text (nvidia-blog example): [Latency] / [TTFT] / [TPOT] P50, P90, P99
    expected = {"end-to-end request latency (ms)": [1091.7905, 1130.7200, 1137.6817],
                "time to first token (ms)": [159.7857, 220.0530, 232.4339],
                "time per output token (ms)": [7.6079, 8.1246, 8.1306]}
    assert set(by_title) == set(expected)
    for title, values in expected.items():
        lines = by_title[title].get_lines()
        assert len(lines) == 1  # only the report that has percentiles; the others print averages only
        assert [str(t) for t in lines[0].get_xdata()] == ["p50", "p90", "p99"]
        assert list(lines[0].get_ydata()) == pytest.approx(values)
    assert BLOG in titles(fig)  # one run: named once in the title, the legend names the experiment


# -- legends clear of labels -----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["one run", "all runs"])
def test_legends_never_overlap_an_axis_label_or_tick(examples: Results, which: str) -> None:
    frame = examples.frame if which == "all runs" else examples.frame[examples.frame["run"] == RECIPE]
    if which == "one run":  # the case that overlapped: one row, so a short figure
        frame = pd.concat([frame, examples.frame[examples.frame["run"] == BLOG]])
    for name, fig in all_figures(frame.reset_index(drop=True)).items():
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
        assert legends, name
        for legend in legends:
            box = legend.get_window_extent(renderer)
            for ax in fig.axes:
                texts = [ax.xaxis.label, ax.yaxis.label, ax.title, *ax.get_xticklabels(), *ax.get_yticklabels()]
                for text in texts:
                    if text.get_text() and text.get_visible():
                        assert not overlaps(box, text.get_window_extent(renderer)), (name, text.get_text())
                assert not overlaps(box, ax.get_window_extent(renderer)), (name, "axes")
            assert box.y0 >= 0 and box.x0 >= 0, (name, "legend outside the figure")


# -- replay marks ----------------------------------------------------------------------------------------


def test_replay_is_marked_in_every_title_and_beside_the_run(examples: Results) -> None:
    frame = replayed(examples, RECIPE)
    figs = all_figures(frame)
    for name in ("throughput", "fractions"):
        assert "(replay)" in titles(figs[name]), name
    labels = [t.get_text() for t in figs["fractions"].axes[0].get_yticklabels()]
    assert any(RECIPE in label and "(replay)" in label for label in labels)
    assert not any("(replay)" in label for label in labels if RECIPE not in label)
    legend = [t.get_text() for t in figs["throughput"].legends[0].get_texts()]
    assert f"{RECIPE} (replay)" in legend
    # the latency figure shows only the blog run (the one with percentiles): marked when that one is a replay
    assert "(replay)" not in titles(figs["latency"])
    assert "(replay)" in titles(latency_figure(replayed(examples, BLOG)))


def test_nothing_is_marked_a_replay_when_no_run_is(examples: Results) -> None:
    for name, fig in all_figures(examples.frame).items():
        assert "replay" not in titles(fig), name


# -- tables ----------------------------------------------------------------------------------------------


def test_tables_show_every_gap_as_an_em_dash_and_scroll() -> None:
    frame = pd.DataFrame({"text": ["a", None], "number": [1.5, float("nan")],
                          "count": pd.array([3, None], dtype="Int64"), "all_none": [None, None]})
    html = table_html(frame)
    assert html.startswith('<div class="table-wrap" style="overflow-x:auto;max-width:100%">')
    cells = re.findall(r"<td>(.*?)</td>", html)
    assert cells == ["a", "1.5", "3", "\u2014", "\u2014", "\u2014", "\u2014", "\u2014"]


def near_identical(count: int) -> list[MissingReport]:
    """What the sandbox wrote for a sweep it had no recording of: one long reason per experiment."""
    out = []
    for k, (isl, osl) in enumerate([(128, 2048), (128, 4096), (500, 2000), (1000, 1000), (2048, 128),
                                    (2048, 2048), (5000, 500), (20000, 2000)][:count]):
        exp = f"isl{isl}-osl{osl}-n3000"
        reason = (f"trtllm-bench exited with code 1; last output: [11/29/2026-09:1{k}:33] [TRT-LLM] [I] Starting "
                  f"benchmark... | replay: no recording for ISL {isl} / OSL {osl}, 3000 requests. This sandbox "
                  "replays one recorded run: meta-llama/Llama-3.1-405B, TP8 PP1 FP8, TensorRT-LLM 0.17.0.post1, "
                  "ISL 128 / OSL 128, 30000 requests (source: gpu-recipes a3ultra trtllm-bench logs) " + "." * 300)
        out.append(MissingReport("demo-llama-3-1-405b/replay-1", exp, reason))
    return out


def test_near_identical_failure_reasons_are_one_line_with_count_and_experiments() -> None:
    missing = near_identical(8)
    other = MissingReport("demo-llama-3-1-405b/replay-1", "isl128-osl128-n30000",
                          "trtllm-bench exited with code 137; last output: Killed")
    table = missing_reasons([*missing, other])
    assert list(table.columns) == ["reason", "count", "runs", "experiments"]
    assert table["count"].tolist() == [8, 1]
    assert table.loc[0, "experiments"].split(", ") == [m.experiment for m in missing]
    assert table.loc[0, "reason"].startswith("trtllm-bench exited with code 1; last output:")
    assert "as worded for isl128-osl2048-n3000" in table.loc[0, "reason"]
    assert len(table.loc[0, "reason"]) < 520 and "\u2026" in table.loc[0, "reason"]  # 600+ characters cut
    assert table.loc[1, "reason"] == other.reason
    # a different exit code is a different reason, even for the same experiment shape
    one = MissingReport("r/1", "isl500-osl500-n10", "trtllm-bench exited with code 1")
    two = MissingReport("r/1", "isl600-osl600-n10", "trtllm-bench exited with code 2")
    assert missing_reasons([one, two])["count"].tolist() == [1, 1]


def test_report_groups_reasons_and_says_why_a_figure_is_missing(tmp_path) -> None:
    results = load_local(REAL_405B)
    results = Results(results.frame, results.runs, tuple(near_identical(8)), results.origin)
    files = write_report(results, tmp_path / "out", analysis=analyse(results, gpu="H200"))
    html = files.html.read_text()
    assert html.count("data:image/png;base64,") == 2 and "latency.png" not in {p.name for p in files.figures.values()}
    assert "No latency figure: these reports (TensorRT-LLM 0.17.0.post1) give no latency percentiles" in html
    assert html.count("no recording for ISL") == 1 and ">8<" in html
    assert ">None<" not in html and ">NaN<" not in html
    tables = html.count("<table")
    assert tables == html.count('<div class="table-wrap"')  # every table inside a box that scrolls
