"""Reports cut anywhere, or malformed in any way, give a ReportError or the full correct parse: never a wrong number.

The fuzz cuts every published sample in tests/data/reports/ at every line end and inside every number
(after its first character, and before its last), then parses the piece. A complete sample is one that ends
with its closing rule line (what trtllm-bench prints last); the others are published excerpts, read with
``excerpt=True``, where a cut exactly at a line end reads as a shorter excerpt (a subset of the full
values, each one right) and a cut inside a line is refused.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from helpers import REPORTS

from recipelib.errors import ReportError
from recipelib.results import load_examples, load_local
from recipelib.results.reports import flatten, parse_json, parse_report, parse_text

SAMPLES = sorted(REPORTS.glob("*.txt"))
_RULE = re.compile(r"^\s*={10,}\s*$")
_NOISE = re.compile(r"^\[(\d\d/\d\d/\d{4}|TensorRT-LLM\])")  # "[01/18/2025-01:01:42] [TRT-LLM] ..."
_NUMBER = re.compile(r"\d[\d.,E+-]*\d")


def complete(text: str) -> bool:
    """Whether the sample's last line, log lines aside, is a rule: the closing rule trtllm-bench prints last."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not _NOISE.match(line.strip())]
    return bool(lines) and bool(_RULE.match(lines[-1]))


def cuts(text: str) -> list[tuple[int, bool]]:
    """(offset, at a line end) for every line end and two points inside every number of the text."""
    ends = [(m.end(), True) for m in re.finditer(r"\n", text)]
    inside = []
    for m in _NUMBER.finditer(text):
        inside += [(m.start() + 1, False), (m.end() - 1, False)]
    return sorted(set(ends + inside))


def rows(text: str, excerpt: bool) -> list[dict]:
    return [{k: v for k, v in flatten(r).items() if k != "source"} for r in parse_text(text, excerpt=excerpt)]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_cut_gives_the_full_parse_or_a_report_error(path: Path) -> None:
    text = path.read_text()
    excerpt = not complete(text)
    full = rows(text, excerpt)
    refused = accepted = 0
    for offset, at_line_end in cuts(text):
        piece = text[:offset]
        try:
            got = rows(piece, excerpt)
        except ReportError:
            refused += 1
            continue
        accepted += 1
        if not excerpt or not at_line_end:
            # a complete report parses only whole; an excerpt never reads a line cut mid-way
            assert not excerpt or at_line_end, f"cut at {offset} inside a line was read: {piece[-40:]!r}"
            assert got == full, f"cut at {offset} ({piece[-40:]!r}) read differently from the whole file"
            continue
        # an excerpt cut at a line end: every value it reads is the full file's value for that run
        assert len(got) <= len(full)
        for part, whole in zip(got, full, strict=False):
            wrong = {k: (v, whole[k]) for k, v in part.items() if v is not None and k != "report_layout"
                     and v != whole[k]}
            assert not wrong, f"cut at {offset}: {wrong}"
    assert refused > 0 and accepted > 0


def test_the_issue_example_a_report_cut_in_its_last_number_is_refused() -> None:
    text = (REPORTS / "gpu-recipes_a3ultra_llama405b_trt-0.17.0.post1_h200.txt").read_text()
    cut = text[: text.index("980980.5121") + 5]  # "98098": ten times too small
    with pytest.raises(ReportError) as err:
        parse_text(cut, source="report.txt")
    assert err.value.field == "total_latency_ms" and "cut off" in err.value.message
    with pytest.raises(ReportError):
        parse_text(cut, source="report.txt", excerpt=True)  # a line cut mid-way, even in an excerpt


def test_samples_without_a_closing_rule_are_excerpts() -> None:
    excerpts = {p.name for p in SAMPLES if not complete(p.read_text())}
    assert excerpts == {"nvidia-blog_0.21.0rc0_overview_tabs.txt", "nvidia-blog_deepseek-r1_b200_trailing-spaces.txt",
                        "nvidia-docs_0.17_llama8b_pytorch.txt", "nvidia-perf-overview_0.21_streaming-breakdowns.txt"}
    for name in excerpts:
        with pytest.raises(ReportError, match="closing rule"):
            parse_text((REPORTS / name).read_text(), source=name)
        assert parse_text((REPORTS / name).read_text(), source=name, excerpt=True)


def test_the_shipped_examples_still_load() -> None:
    results = load_examples()
    assert len(results.frame) == 4 and not results.missing


def test_parse_text_takes_utf8_bytes_and_refuses_the_rest() -> None:
    path = REPORTS / "nvidia-docs_0.17_llama8b_trt_throughput.txt"
    assert parse_text(path.read_bytes()) == parse_text(path.read_text())
    assert parse_report(path.read_bytes(), name="report.txt") == parse_text(path.read_text(), source="report.txt")
    for bad in (b"\xff" + path.read_bytes(), None, 42, ["a"]):
        with pytest.raises(ReportError) as err:
            parse_text(bad, source="report.txt")  # type: ignore[arg-type]
        assert err.value.field == "report_text" and err.value.source == "report.txt"


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


BASE = {"performance": {"total_latency_ms": 1000.0, "request_throughput_req_s": 10.0,
                        "system_output_throughput_tok_s": 1280.0}}


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({**BASE, "performance": {**BASE["performance"], "total_latency_ms": 10**400}}, "total_latency_ms"),
        ({**BASE, "performance": {**BASE["performance"], "total_latency_ms": _nested(10_000)}}, "total_latency_ms"),
        ({**BASE, "world_info": {"tp_size": 2**60}}, "tp_size"),
        ({**BASE, "world_info": {"tp_size": float("inf")}}, "tp_size"),
        ({**BASE, "engine": "x"}, "engine"),
        ({**BASE, "engine": {"model": _nested(10_000)}}, "model"),
        ({**BASE, "performance": {**BASE["performance"], "request_latency_percentiles_ms": {"p50": "1"}}},
         "latency_percentiles_ms.p50"),
    ],
)
def test_malformed_json_objects_name_their_field(doc: dict, field: str) -> None:
    with pytest.raises(ReportError) as err:
        parse_json(doc, source="report.json")
    assert err.value.field == field and err.value.source == "report.json"
    assert len(str(err.value)) < 400  # a huge value is described, not printed


@pytest.mark.parametrize(
    "text",
    ["[" * 200_000, "[" * 100_000 + "]" * 100_000, '{"a": ' * 100_000 + "1" + "}" * 100_000,
     "1" * 10_000, json.dumps(BASE).replace("1000.0", "1e400"), json.dumps(BASE).replace("1000.0", "-Infinity")],
    ids=["unclosed", "deep-array", "deep-object", "huge-int", "overflow-float", "minus-infinity"],
)
def test_json_text_that_once_crashed_is_a_report_error(text: str) -> None:
    with pytest.raises(ReportError) as err:
        parse_json(text, source="report.json")
    assert err.value.source == "report.json"
    with pytest.raises(ReportError):
        parse_json(text.encode(), source="report.json")


def test_strict_false_skips_every_bad_file_with_a_warning_and_keeps_the_good(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = (REPORTS / "nvidia-docs_0.17_llama8b_trt_throughput.txt").read_bytes()
    files = {
        "good/report.txt": good,
        "cut/report.txt": good[: good.index(b"13525.68")],
        "deep/report.json": b"[" * 100_000 + b"]" * 100_000,
        "huge/report.json": json.dumps({**BASE, "world_info": {"tp_size": 10**400}}).encode(),
        "wrongtype/report.json": json.dumps({**BASE, "streaming_metrics": [1]}).encode(),
        "latin1/report.txt": good.replace(b"Token", b"T\xf6ken"),
        "deepmeta/report.txt": good,
        "deepmeta/metadata.json": b"[" * 100_000 + b"]" * 100_000,
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    caplog.set_level(logging.WARNING, logger="recipelib")
    results = load_local(tmp_path, strict=False)
    assert list(results.frame["experiment"]) == ["good"]
    assert results.frame["total_latency_ms"].tolist() == [13525.6862]
    missing = {m.experiment: m.reason for m in results.missing}
    assert set(missing) == {"cut", "deep", "huge", "wrongtype", "latin1", "deepmeta"}
    assert "total_latency_ms" in missing["cut"] and "streaming_metrics" in missing["wrongtype"]
    assert "tp_size" in missing["huge"] and "too deeply" in missing["deepmeta"]
    assert sum("no report" in r.getMessage() for r in caplog.records) == 6
    with pytest.raises(ReportError):
        load_local(tmp_path / "cut", strict=True)
