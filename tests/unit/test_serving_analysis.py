"""Serving analysis: summaries (written by the load step's own writer) -> one row per load point; the
frontier, offline beside online, MLPerf's server point; figures only where there is data, legends clear
of labels, stand-in marked; bad summaries named by file and field, or skipped with strict=False."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.transforms import Bbox

from recipelib.errors import ResultsError
from recipelib.results import examples_dir, layout, load_examples
from recipelib.results.html_report import write_report
from recipelib.results.reference import compare_to_mlperf, mlperf_server_points
from recipelib.results.serving import load_serving, load_serving_local
from recipelib.results.serving_analysis import analyse_serving, offline_vs_online, pareto_front
from recipelib.results.serving_plots import draw_serving_figures
from recipelib.serving import results as serving_results
from recipelib.serving.results import LoadPoint, write_summary

MODEL = "meta-llama/Llama-3.1-405B-Instruct-FP8"


def point(mode: str = "concurrency", value: float = 1, tput: float = 100.0, ttft: tuple = (50.0, 60.0),
          itl: tuple = (10.0, 12.0), goodput: float | None = 1.0, **changes) -> LoadPoint:
    base = LoadPoint(mode=mode, value=float(value), requests=64, errors=0, output_tokens_per_s=tput,
                     requests_per_s=tput / 32, e2e_p50_ms=400.0, e2e_p99_ms=500.0, ttft_p50_ms=ttft[0],
                     ttft_p99_ms=ttft[1], itl_p50_ms=itl[0], itl_p99_ms=itl[1], goodput_rps=goodput,
                     good_fraction=None if goodput is None else 0.5,
                     slos={"time_to_first_token": 200.0} if goodput is not None else {}, isl=64.0, osl=32.0,
                     aiperf_version="0.13.0", source="concurrency/concurrency_1/profile_export_aiperf.json")
    return replace(base, **changes)


def write_run(root: Path, release: str, run_id: str, points: list[LoadPoint], **about) -> Path:
    run_dir = root / release / run_id
    for p in points:
        conc = int(p.value) if p.mode == "concurrency" else None
        rate = p.value if p.mode == "request_rate" else None
        folder = run_dir / layout.load_point_id(conc, rate, isl=int(p.isl), osl=int(p.osl))
        folder.mkdir(parents=True)
        (folder / layout.LOAD_EXPORT).write_text("{}")  # aiperf's export sits beside ours (not read here)
        write_summary([p], folder / layout.LOAD_SUMMARY, **about)
    return run_dir


SWEEP = [point(value=1, tput=90, ttft=(50, 55)), point(value=8, tput=680, ttft=(52, 60)),
         point(value=32, tput=700, ttft=(1100, 1400), goodput=0.2),
         point("request_rate", 10, tput=300, ttft=(51, 58))]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_run(tmp_path, "standin", "run-a", SWEEP, model="tiny", standin=True, started="2025-11-29T10:00:00Z",
              server="stand-in, --max_batch_size 8")
    write_run(tmp_path, "standin", "run-b", [point(value=8, tput=690, ttft=(51, 58))], model="tiny",
              standin=True, started="2025-11-29T11:00:00Z")
    return tmp_path


# -- the contract between the load step and analysis -----------------------------------------------------


def test_layout_names_are_the_ones_the_load_step_writes() -> None:
    assert layout.LOAD_SUMMARY == serving_results.SUMMARY
    assert layout.LOAD_EXPORT == serving_results.EXPORT
    assert layout.load_point_id(16, isl=128, osl=128) == "isl128-osl128-c16"
    assert layout.load_point_id(request_rate=2.5, isl=128, osl=64) == "isl128-osl64-r2.5"
    assert layout.load_point_id(request_rate=10.0, isl=1, osl=1) == "isl1-osl1-r10"
    for name, parsed in (("isl128-osl128-c16", {"isl": 128, "osl": 128, "concurrency": 16, "request_rate": None}),
                         ("isl1-osl1-r2.5", {"isl": 1, "osl": 1, "concurrency": None, "request_rate": 2.5})):
        assert layout.parse_load_point_id(name) == parsed
        assert layout.parse_experiment_id(name) is None  # never mistaken for a throughput experiment
    for bad in ({}, {"concurrency": 1, "request_rate": 1.0}, {"concurrency": 0}, {"request_rate": -1.0}):
        with pytest.raises(ValueError):
            layout.load_point_id(**bad, isl=1, osl=1)


# -- loading ---------------------------------------------------------------------------------------------


def test_one_row_per_point_with_the_figures_the_summary_holds(root: Path) -> None:
    serving = load_serving_local(root)
    frame = serving.frame
    assert serving.runs == ("standin/run-a", "standin/run-b")  # oldest first
    a = frame[frame["run"] == "standin/run-a"].set_index("point")
    assert list(a.index) == ["isl64-osl32-c1", "isl64-osl32-c8", "isl64-osl32-c32", "isl64-osl32-r10"]
    assert a.loc["isl64-osl32-c32", ["output_throughput_tok_s", "ttft_p50_ms", "ttft_p99_ms", "goodput_req_s"]
                 ].tolist() == [700.0, 1100.0, 1400.0, 0.2]
    assert a.loc["isl64-osl32-c8", "concurrency"] == 8 and pd.isna(a.loc["isl64-osl32-c8", "request_rate"])
    assert a.loc["isl64-osl32-r10", "request_rate"] == 10.0 and pd.isna(a.loc["isl64-osl32-r10", "concurrency"])
    assert a.loc["isl64-osl32-c1", "slos"] == "time_to_first_token <= 200 ms"
    assert frame["standin"].all() and serving.standin and not serving.replay
    assert a.loc["isl64-osl32-c1", "server"] == "stand-in, --max_batch_size 8"
    assert a.loc["isl64-osl32-c1", "source"].endswith("run-a/isl64-osl32-c1/load_summary.json")


def test_runs_latest_and_by_id(root: Path) -> None:
    assert load_serving_local(root, "latest").runs == ("standin/run-b",)
    assert load_serving_local(root, "run-a").runs == ("standin/run-a",)
    assert load_serving_local(root / "standin" / "run-a").runs == ("standin/run-a",)  # one run's folder
    with pytest.raises(ResultsError, match=r"serving run 'nope' is not one.*standin/run-a"):
        load_serving_local(root, "nope")


def test_throughput_runs_are_not_serving_runs(tmp_path: Path) -> None:
    copy = tmp_path / "throughput-only"
    shutil.copytree(examples_dir() / "gpu-recipes-a3ultra", copy / "gpu-recipes-a3ultra")
    with pytest.raises(ResultsError, match="no serving runs"):
        load_serving_local(copy)


def test_a_point_folder_without_the_summary_is_named(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    lost = root / "standin" / "run-a" / "isl64-osl32-c8" / layout.LOAD_SUMMARY
    lost.unlink()
    with pytest.raises(ResultsError) as e:
        load_serving_local(root)
    assert str(lost) in str(e.value) and "no such file" in str(e.value)
    with caplog.at_level(logging.WARNING):
        serving = load_serving_local(root, strict=False)
    assert "isl64-osl32-c8" not in set(serving.frame.loc[serving.frame["run"] == "standin/run-a", "point"])
    assert [(m.run, m.experiment) for m in serving.missing] == [("standin/run-a", "isl64-osl32-c8")]
    assert "skipping load point standin/run-a/isl64-osl32-c8" in caplog.text


@pytest.mark.parametrize(("field", "change"), [
    ("points[0].ttft_p99_ms", lambda p: p.update(ttft_p99_ms="fast")),
    ("points[0].output_tokens_per_s", lambda p: p.update(output_tokens_per_s=None)),
    ("points[0].requests_per_s", lambda p: p.pop("requests_per_s")),
    ("points[0].e2e_p50_ms", lambda p: p.update(e2e_p50_ms=float("nan"))),
    ("points[0].mode", lambda p: p.update(mode="burst")),
    ("points[0].value", lambda p: p.update(value=0)),
    ("points[0].slos", lambda p: p.update(slos={"time_to_first_token": "soon"})),
])
def test_malformed_numbers_name_the_file_and_field(root: Path, field: str, change) -> None:
    path = root / "standin" / "run-b" / "isl64-osl32-c8" / layout.LOAD_SUMMARY
    doc = json.loads(path.read_text())
    change(doc["points"][0])
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultsError) as e:
        load_serving_local(root)
    assert str(path) in str(e.value) and field in str(e.value)
    assert load_serving_local(root, strict=False).runs == ("standin/run-a",)


def test_a_summary_of_another_schema_or_without_points_is_refused(root: Path) -> None:
    path = root / "standin" / "run-b" / "isl64-osl32-c8" / layout.LOAD_SUMMARY
    for doc, says in (({"schema": 2, "points": []}, "schema 2"), ({"schema": 1}, "points: missing"),
                      ({"schema": 1, "points": [], "tp_size": "8"}, "points: must be a non-empty list")):
        path.write_text(json.dumps(doc))
        with pytest.raises(ResultsError, match=says):
            load_serving_local(root)


def test_the_examples_are_a_stand_in_measurement() -> None:
    serving = load_serving()  # nothing configured: the shipped examples, no cloud
    assert serving.origin == "recipelib examples" and serving.standin
    assert len(serving.runs) >= 2 and serving.frame["server"].str.contains("STAND-IN").all()
    assert (serving.frame["requests"] > 0).all() and (serving.frame["errors"] == 0).all()


# -- tables ----------------------------------------------------------------------------------------------


def test_pareto_front_keeps_only_unbeaten_points(root: Path) -> None:
    frame = load_serving_local(root).frame
    front = pareto_front(frame, latency="ttft_p99_ms")
    # c1 (90 tok/s, 55 ms) is best at its latency; run-b's c8 (690, 58) beats run-a's c8 (680, 60) and r10
    # (300, 58); c32 (700, 1400) is the fastest; nothing else survives
    assert list(zip(front["run"], front["point"], strict=True)) == [
        ("standin/run-a", "isl64-osl32-c1"), ("standin/run-b", "isl64-osl32-c8"),
        ("standin/run-a", "isl64-osl32-c32")]


def serving_405b(tmp_path: Path, gpu: str | None = "H200") -> pd.DataFrame:
    points = [point(value=64, tput=250, ttft=(2000, 5000), itl=(60, 100)),
              point(value=256, tput=400, ttft=(4000, 9000), itl=(90, 150)),
              replace(point(value=16, tput=120, ttft=(500, 900), itl=(30, 40)), isl=128.0, osl=128.0)]
    write_run(tmp_path, "bob-405b", "serve-1", points, model=MODEL, tp_size=8, gpu=gpu, gpu_count=8,
              trtllm_version="1.0.0")
    return load_serving_local(tmp_path).frame


def test_offline_throughput_of_the_same_model_and_tp_beside_the_online_maximum(tmp_path: Path) -> None:
    offline = load_examples().frame  # the recipe's 405B TP8 run: 3,914.5 output tokens/s at 128/128
    table = offline_vs_online(serving_405b(tmp_path), offline).set_index(["isl", "osl"])
    same = table.loc[(128.0, 128.0)]
    assert same["online_max_tok_s"] == 120.0 and same["offline_tok_s"] == pytest.approx(3914.5, abs=0.1)
    assert same["same_isl_osl"] and same["offline_run"] == "gpu-recipes-a3ultra/20250528-llama405b-fp8-tp8-trt0.17"
    other = table.loc[(64.0, 32.0)]  # no offline run at 64/32: the nearest workload, and it says so
    assert other["online_max_tok_s"] == 400.0 and other["at_point"] == "isl64-osl32-c256"
    assert other["same_isl_osl"] is False or not other["same_isl_osl"]
    tiny = offline_vs_online(pd.concat([serving_405b(tmp_path / "x")]).assign(model="tiny"), offline)
    assert tiny["offline_tok_s"].isna().all()


def test_mlperf_point_is_the_verified_v5_0_h200_result() -> None:
    ref = mlperf_server_points()
    row = ref[(ref.model_family == "405B") & (ref.gpu == "H200")].iloc[0]
    assert (row.output_tok_s, row.ttft_limit_ms, row.tpot_limit_ms, row.gpu_count) == (291.37, 6000, 175, 8)
    assert row.ttft_p99_ms <= row.ttft_limit_ms and row.tpot_p99_ms <= row.tpot_limit_ms
    assert row.version == "v5.0" and row.division == "closed" and "mlperf_log_summary.txt" in row.source


def test_mlperf_compared_only_where_model_gpu_and_count_match(tmp_path: Path) -> None:
    table = compare_to_mlperf(serving_405b(tmp_path))
    assert len(table) == 1
    row = table.iloc[0]  # c256 is faster but its p99 TTFT (9 s) is past MLPerf's 6 s: c64 is the best within
    assert row["best_point_in_limits"] == "isl64-osl32-c64" and row["output_tok_s_in_limits"] == 250.0
    assert row["ratio_to_mlperf"] == pytest.approx(250 / 291.37)
    assert compare_to_mlperf(serving_405b(tmp_path / "h100", gpu="H100")).empty
    assert not compare_to_mlperf(serving_405b(tmp_path / "nogpu", gpu=None), gpu="h200").empty
    assert compare_to_mlperf(serving_405b(tmp_path / "t", gpu=None).assign(model="tiny"), gpu="H200").empty


# -- figures ---------------------------------------------------------------------------------------------


def overlaps(a: Bbox, b: Bbox) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_every_figure_where_there_is_data_with_legends_clear_and_the_stand_in_marked(root: Path,
                                                                                      tmp_path: Path) -> None:
    analysis = analyse_serving(load_serving_local(root), offline=None)
    frame = load_serving_local(root).frame
    figures, notes = draw_serving_figures(frame, offline=analysis.offline, mlperf=analysis.mlperf)
    assert set(figures) == {"serving_latency", "serving_goodput", "serving_frontier"}
    assert notes["serving_offline"].startswith("No offline-against-online figure")
    for name, fig in figures.items():
        assert "(stand-in measurement)" in fig._suptitle.get_text(), name
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        (legend,) = fig.legends
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            texts = [ax.xaxis.label, ax.yaxis.label, ax.title, *ax.get_xticklabels(), *ax.get_yticklabels(),
                     *ax.texts]
            for text in texts:
                if text.get_text() and text.get_visible():
                    assert not overlaps(box, text.get_window_extent(renderer)), (name, text.get_text())
            assert not overlaps(box, ax.get_window_extent(renderer)), (name, "axes")
        assert "(stand-in)" in " ".join(t.get_text() for t in legend.get_texts()) or name == "serving_latency"
    labels = {t.get_text() for ax in figures["serving_latency"].axes for t in ax.texts}
    assert {"c1", "c8", "c32", "10/s"} <= labels  # every point labelled with its load


def test_no_latency_or_goodput_figure_without_streaming_or_slos(root: Path) -> None:
    frame = load_serving_local(root).frame
    bare = frame.assign(**{c: None for c in ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms",
                                             "goodput_req_s")})
    figures, notes = draw_serving_figures(bare.astype({"ttft_p99_ms": float}))
    assert not figures
    assert "streamed responses only" in notes["serving_latency"] and "SLOs" in notes["serving_goodput"]


def test_offline_and_mlperf_in_the_figures_and_the_html_report(tmp_path: Path) -> None:
    serving = load_serving_local(_one_405b_run(tmp_path))
    examples = load_examples()
    analysis = analyse_serving(serving, offline=examples.frame)
    assert set(analysis.figures) == {"serving_latency", "serving_goodput", "serving_frontier", "serving_offline"}
    assert not analysis.standin
    files = write_report(examples, tmp_path / "report", serving=analysis)
    html = files.html.read_text()
    for png in analysis.figures:
        assert (tmp_path / "report" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    assert html.count("data:image/png;base64,") == 3 + 4
    assert "Online serving" in html and "291.4" in html and "MLPerf Inference v5.0 closed" in html
    assert "3,914.5" in html  # the offline figure beside the online maximum


def _one_405b_run(tmp_path: Path) -> Path:
    serving_405b(tmp_path)
    return tmp_path / "bob-405b" / "serve-1"


def test_a_failed_point_is_listed_with_the_load_steps_reason(root: Path) -> None:
    folder = root / "standin" / "run-a" / "isl64-osl32-c64"
    folder.mkdir()
    (folder / layout.LOAD_ERROR).write_text("aiperf exited with code 1 (its log: aiperf.log in the point's folder)\n")
    serving = load_serving_local(root)  # strict: a point the load step says failed is not a malformed one
    assert [(m.experiment, m.reason) for m in serving.missing] == [
        ("isl64-osl32-c64", "aiperf exited with code 1 (its log: aiperf.log in the point's folder)")]
    assert len(serving.frame) == 5


def test_the_run_record_and_the_accelerator_name_the_load_job_writes(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "bob-405b", "load-1", [point(value=64, tput=250, ttft=(2000, 5000), itl=(60, 100))],
                        tp_size=8, gpu="nvidia-h200-141gb", gpu_count=8, started="2025-06-01T10:00:00Z")
    run = {"schema": 1, "release": "bob-405b", "run_id": "load-1", "model": MODEL, "mode": "serving",
           "status": "succeeded", "exit_code": 0, "started": "2025-06-01T10:00:00Z", "finished": None,
           "experiments": [{"id": "isl64-osl32-c64", "isl": 64, "osl": 32, "num_requests": 64, "concurrency": 64,
                            "request_rate": None}], "standin": False}
    (run_dir / layout.RUN_FILE).write_text(json.dumps(run))
    frame = load_serving_local(tmp_path).frame
    assert (frame.loc[0, "model"], frame.loc[0, "gpu"]) == (MODEL, "H200")  # model from run.json
    assert compare_to_mlperf(frame).loc[0, "best_point_in_limits"] == "isl64-osl32-c64"
