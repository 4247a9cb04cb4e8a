"""aiperf export -> LoadPoint: figures copied unchanged; missing, non-numeric or re-united figures refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from recipelib.errors import ReportError
from recipelib.serving.results import read_point, read_sweep, write_summary


def stat(unit: str, **values: float) -> dict[str, Any]:
    return {"unit": unit, **values}


EXPORT: dict[str, Any] = {
    "aiperf_version": "0.13.0",
    "request_count": stat("requests", avg=40.0),
    "request_throughput": stat("requests/sec", avg=12.5),
    "output_token_throughput": stat("tokens/sec", avg=800.0),
    "request_latency": stat("ms", p50=320.0, p99=410.0, avg=330.0),
    "time_to_first_token": stat("ms", p50=101.0, p99=150.0),
    "inter_token_latency": stat("ms", p50=10.2, p99=12.9),
    "input_sequence_length": stat("tokens", avg=32.0),
    "output_sequence_length": stat("tokens", avg=16.0),
    "goodput": stat("requests/sec", avg=9.5),
    "good_request_fraction": stat("ratio", avg=0.76),
    "input_config": {"endpoint": {"streaming": True},
                     "phases": [{"kind": "warmup", "concurrency": 1}, {"kind": "profiling", "concurrency": 16}],
                     "slos": {"time_to_first_token": 120.0}},
}


def write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_point_fields_come_from_the_export(tmp_path: Path) -> None:
    p = read_point(write(tmp_path / "profile_export_aiperf.json", EXPORT))
    assert (p.mode, p.value, p.requests, p.errors) == ("concurrency", 16.0, 40, 0)
    assert (p.requests_per_s, p.output_tokens_per_s) == (12.5, 800.0)
    assert (p.ttft_p50_ms, p.ttft_p99_ms, p.itl_p50_ms, p.itl_p99_ms, p.e2e_p50_ms, p.e2e_p99_ms) == (
        101.0, 150.0, 10.2, 12.9, 320.0, 410.0)
    assert (p.goodput_rps, p.good_fraction, p.slos) == (9.5, 0.76, {"time_to_first_token": 120.0})
    assert (p.isl, p.osl, p.aiperf_version) == (32.0, 16.0, "0.13.0")


def test_rate_point(tmp_path: Path) -> None:
    data = copy.deepcopy(EXPORT)
    data["input_config"]["phases"] = [{"kind": "profiling", "rate": 2.5}]
    assert read_point(write(tmp_path / "x.json", data)).mode == "request_rate"


@pytest.mark.parametrize(("field", "change"), [
    ("time_to_first_token", lambda d: d.pop("time_to_first_token")),
    ("request_latency.p99", lambda d: d["request_latency"].update(p99="n/a")),
    ("request_latency.p50", lambda d: d["request_latency"].update(p50=float("nan"))),
    ("inter_token_latency", lambda d: d["inter_token_latency"].update(unit="s")),
    ("goodput", lambda d: d.pop("goodput")),  # SLOs were given, so goodput must be there
    ("input_config.phases", lambda d: d["input_config"].update(phases=[])),
])
def test_missing_or_bad_figures_name_file_and_field(tmp_path: Path, field: str, change: Any) -> None:
    data = copy.deepcopy(EXPORT)
    change(data)
    path = write(tmp_path / "profile_export_aiperf.json", data)
    with pytest.raises(ReportError) as e:
        read_point(path)
    assert e.value.field == field
    assert str(path) in str(e.value)


def test_unstreamed_sweep_has_no_ttft(tmp_path: Path) -> None:
    data = copy.deepcopy(EXPORT)
    data["input_config"]["endpoint"]["streaming"] = False
    data["input_config"]["slos"] = {}
    for name in ("time_to_first_token", "inter_token_latency", "goodput"):
        data.pop(name)
    p = read_point(write(tmp_path / "e.json", data))
    assert p.ttft_p50_ms is None and p.itl_p99_ms is None and p.goodput_rps is None


def test_sweep_skips_aggregates_and_orders_points(tmp_path: Path) -> None:
    for value in (64, 4):
        data = copy.deepcopy(EXPORT)
        data["input_config"]["phases"] = [{"kind": "profiling", "concurrency": value}]
        write(tmp_path / "concurrency" / f"concurrency_{value}" / "profile_export_aiperf.json", data)
    write(tmp_path / "concurrency" / "aggregate" / "c" / "profile_export_aiperf.json", {"not": "a point"})
    points = read_sweep(tmp_path)
    assert [p.value for p in points] == [4.0, 64.0]
    assert points[0].source == "concurrency/concurrency_4/profile_export_aiperf.json"
    with pytest.raises(ReportError):
        read_sweep(tmp_path / "concurrency" / "aggregate" / "missing")


def test_summary_is_create_only(tmp_path: Path) -> None:
    path = write(tmp_path / "concurrency_4" / "profile_export_aiperf.json", EXPORT)
    points = read_sweep(path.parent)
    out = write_summary(points, tmp_path / "load_summary.json", aiperf_version="0.13.0")
    assert json.loads(out.read_text())["points"][0]["ttft_p50_ms"] == 101.0
    with pytest.raises(FileExistsError):
        write_summary(points, out)
