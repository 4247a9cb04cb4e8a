"""Read trtllm-bench's printed summary (a ``report.txt``, or a log holding one or several runs).

trtllm-bench has printed its summary in several layouts (each verified against a published sample,
see ``tests/data/reports/SOURCES.md``):

- 0.16/0.17: ``= ENGINE DETAILS`` (or ``= PyTorch backend``), ``= WORLD + RUNTIME INFORMATION``, and a
  ``= PERFORMANCE OVERVIEW`` that holds the request count and lengths and calls output tokens/s
  "Token Throughput"; ``--streaming`` adds ``= STREAMING STATISTICS`` (TTFT, inter-token latency).
  The code prints tab separators; logs copied from a terminal or a README have spaces.
- ~0.19/0.20: ``= REQUEST DETAILS``; "Total Output Throughput", per-user/per-GPU throughput in
  ``tokens/sec/user``, a request-latency percentile breakdown, TTFT/TPOT breakdowns when streaming.
- ~0.21: ``= PYTORCH BACKEND``, ``[w/ ctx] (tps/user)``, ``(tps/gpu)``, a GTPS breakdown.
- ~1.x: ``= MACHINE DETAILS`` (the GPU), "TensorRT LLM Version" without the hyphen, ``Revision``.

Headers may carry trailing spaces and values may follow tabs, spaces or both. A file may hold several
runs (a launcher log of a sweep): every ``PERFORMANCE OVERVIEW`` section is one report, described by the
sections printed before it (engine, world, request details) and completed by those printed after it
(streaming statistics, dataset details) up to the next run's first section.

**Complete or cut off.** trtllm-bench ends every section with a rule line of ``=`` (every full output in
``tests/data/reports/`` does, and so do the format strings of ``reporting.py``): a body is the lines between
the title's rule and the next one. A text that ends inside a section (no closing rule after its last
line) was cut off: its last number may itself be cut (``980980.5121`` read as ``98098``), so it is a
:class:`ReportError`, never a report. Published excerpts (docs and blogs that quote a report up to its last
value) are read with ``excerpt=True``: the closing rule may then be missing, but a last line without its
line break (a file cut mid-line) is still refused; an excerpt cut exactly at a line end cannot be told
from a shorter excerpt, which is why the default is strict.

Example::

    from recipelib.results.reports import parse_text
    [report] = parse_text(Path("report.txt").read_text(), source="report.txt")
    report.output_throughput   # output tokens/s
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from recipelib.errors import ReportError
from recipelib.results.bench_report import (
    INT_FIELDS,
    NONE_WORDS,
    NULLABLE,
    STATS,
    STR_FIELDS,
    BenchReport,
    Percentiles,
    checked,
    number,
    shown,
    whole,
)

__all__ = ["parse_text"]

# Printed label (lower case, whitespace collapsed) -> BenchReport attribute. One table for all layouts.
_LABELS: dict[str, str] = {
    "model": "model",
    "model path": "model_path",
    "engine directory": "engine_dir",
    "tensorrt-llm version": "trtllm_version",
    "tensorrt llm version": "trtllm_version",
    "dtype": "dtype",
    "kv cache dtype": "kv_cache_dtype",
    "quantization": "quantization",
    "max input length": "max_input_len",
    "max sequence length": "max_seq_len",
    "tp size": "tp_size",
    "pp size": "pp_size",
    "ep size": "ep_size",
    "max runtime batch size": "max_batch_size",
    "max runtime tokens": "max_num_tokens",
    "scheduling policy": "scheduling_policy",
    "kv memory percentage": "kv_cache_percent",
    "number of requests": "num_requests",
    "number of concurrent requests": "avg_concurrency",
    "average input length (tokens)": "avg_isl",
    "average output length (tokens)": "avg_osl",
    "request throughput (req/sec)": "request_throughput",
    "token throughput (tokens/sec)": "output_throughput",  # 0.16/0.17: output tokens/s
    "total output throughput (tokens/sec)": "output_throughput",
    "total token throughput (tokens/sec)": "total_token_throughput",
    "per user output throughput (tokens/sec/user)": "per_user_output_throughput",
    "per user output throughput [w/ ctx] (tps/user)": "per_user_output_throughput",
    "per gpu output throughput (tokens/sec/gpu)": "per_gpu_output_throughput",
    "per gpu output throughput (tps/gpu)": "per_gpu_output_throughput",
    "per user output speed [1/tpot] (tokens/sec/user)": "per_user_output_speed",
    "per user output speed (tps/user)": "per_user_output_speed",
    "total latency (ms)": "total_latency_ms",
    "average request latency (ms)": "avg_request_latency_ms",
    "average time-to-first-token (ms)": "ttft_ms",
    "average time-to-first-token [ttft] (ms)": "ttft_ms",
    "average inter-token latency (ms)": "tpot_ms",  # 0.16/0.17: (last - first token) / generated tokens
    "average time-per-output-token [tpot] (ms)": "tpot_ms",
}
_LAYOUT_HINTS = {
    "token throughput (tokens/sec)": "0.16-0.17",
    "per user output throughput (tokens/sec/user)": "0.19-0.20",
    "per user output throughput [w/ ctx] (tps/user)": "0.21+",
}
_PERCENTILE_TAGS = {
    "latency": "latency_percentiles_ms",
    "ttft": "ttft_percentiles_ms",
    "tpot": "tpot_percentiles_ms",
    "gtps": "gen_tps_percentiles",
}

# Sections that describe the run printed *before* its PERFORMANCE OVERVIEW, and those that complete it.
_CONTEXT = frozenset({"ENGINE DETAILS", "PYTORCH BACKEND", "MACHINE DETAILS", "REQUEST DETAILS",
                      "WORLD + RUNTIME INFORMATION"})
_AFTER = frozenset({"STREAMING STATISTICS", "DATASET DETAILS"})
_PERFORMANCE = "PERFORMANCE OVERVIEW"

_RULE = re.compile(r"^={10,}$")
_TITLE = re.compile(r"^=\s+(\S.*?)$")
_PCT_LINE = re.compile(r"^\[(\w+)\]\s+(MINIMUM|MAXIMUM|AVERAGE|P\d+)\s*:\s*(.*)$", re.IGNORECASE)
_BANNER = re.compile(r"\[TensorRT-LLM\]\s+TensorRT-LLM version:\s*(\S+)")
_WS = re.compile(r"\s+")
_MACHINE = re.compile(r"^(?P<name>.+?),\s*memory\s+(?P<mem>[^,]+?)\s*GB\b", re.IGNORECASE)


@dataclass
class _Section:
    title: str
    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Open:
    """Where the text ends inside a section: its title, its last line, and whether that line is whole."""

    title: str
    last_line: str
    line_complete: bool


def _sections(text: str) -> Iterator[_Section | str | _Open]:
    """Yield each ``= TITLE`` section (its body: the lines up to the next rule) and version banners.

    A section is a title line between two rules of ``=``; its body ends at the next rule. Lines outside
    sections are log noise, except the ``[TensorRT-LLM] TensorRT-LLM version:`` banner, yielded as str.
    If the text ends inside a section, that section is yielded and then an :class:`_Open` saying so.
    """
    current: _Section | None = None
    in_body = False
    for raw in text.splitlines():
        line = raw.strip()
        if _RULE.match(line):
            if current is not None and in_body:
                yield current
                current, in_body = None, False
            elif current is not None:
                in_body = True
            continue
        title = _TITLE.match(line)
        if title and not line.startswith("=="):
            if current is not None:
                yield current
            current, in_body = _Section(_WS.sub(" ", title.group(1)).upper()), False
            continue
        if current is not None:
            current.lines.append(line)
            in_body = True
            continue
        banner = _BANNER.search(line)
        if banner:
            yield banner.group(1)
    if current is not None:
        yield current
        last = next((line for line in reversed(current.lines) if line), f"= {current.title}")
        yield _Open(current.title, last, text.endswith(("\n", "\r")))


def _kind(title: str) -> str:
    if title == _PERFORMANCE:
        return "performance"
    if title in _CONTEXT:
        return "context"
    if title in _AFTER or title.startswith("DECODING STATISTICS"):
        return "after"
    return "other"  # build-time sections (ENGINE BUILD INFO, ...): not part of a report


@dataclass
class _Draft:
    """Raw strings collected for one report before they are converted and checked."""

    values: dict[str, str] = field(default_factory=dict)
    percentiles: dict[str, dict[str, str]] = field(default_factory=dict)
    layout: str | None = None
    banner_version: str | None = None

    def take(self, section: _Section) -> None:
        if section.title == "ENGINE DETAILS":
            self.values.setdefault("backend", "tensorrt")
        elif section.title == "PYTORCH BACKEND":
            self.values.setdefault("backend", "pytorch")
        elif section.title == "MACHINE DETAILS":
            self.layout = "1.x"
        for line in section.lines:
            if not line or line.startswith("--"):
                continue
            pct = _PCT_LINE.match(line)
            if pct:
                target = _PERCENTILE_TAGS.get(pct.group(1).lower())
                if target is not None:
                    self.percentiles.setdefault(target, {})[pct.group(2).lower()] = pct.group(3).strip()
                continue
            label, sep, value = line.partition(":")
            if not sep:
                if section.title == "MACHINE DETAILS":
                    self._machine(line)
                continue
            key = _WS.sub(" ", label).strip().lower()
            attr = _LABELS.get(key)
            if attr is None:
                continue
            if key == "tensorrt llm version":
                self.layout = "1.x"
            elif key in _LAYOUT_HINTS and self.layout != "1.x":
                self.layout = _LAYOUT_HINTS[key]
            self.values[attr] = value.strip()

    def _machine(self, line: str) -> None:
        if line.lower().startswith("no gpu info"):
            return
        m = _MACHINE.match(line)
        if m:
            self.values["gpu"] = m.group("name").strip()
            self.values["gpu_memory_gb"] = m.group("mem").strip()
        else:
            self.values["gpu"] = line.split(",")[0].strip()


def parse_text(text: str | bytes, *, source: str | None = None, excerpt: bool = False) -> list[BenchReport]:
    """Every run in a trtllm-bench text report or log, one :class:`BenchReport` per PERFORMANCE OVERVIEW.

    ``text`` may be bytes (UTF-8). Raises :class:`ReportError` if the text holds no PERFORMANCE OVERVIEW at
    all, if any run's values are missing or not numbers, or if the text ends inside a section (cut off; see
    the module's docstring, and ``excerpt`` for quoted excerpts).
    """
    text = _as_text(text, source)
    reports: list[BenchReport] = []
    context = _Draft()
    current: _Draft | None = None
    banner: str | None = None
    ended_open: _Open | None = None
    for item in _sections(text):
        if isinstance(item, _Open):
            ended_open = item
            continue
        if isinstance(item, str):
            banner = item
            continue
        kind = _kind(item.title)
        if kind == "performance":
            if current is not None:
                reports.append(_finish(current, source, len(reports)))
            current, context = context, _Draft()
            current.banner_version = banner
            current.take(item)
        elif kind == "after" and current is not None:
            current.take(item)
        elif kind in ("context", "other"):
            if current is not None:
                reports.append(_finish(current, source, len(reports)))
                current = None
            if kind == "context":
                context.take(item)
    if current is not None:
        reports.append(_finish(current, source, len(reports)))
    if not reports:
        raise ReportError(
            "output_throughput",
            "no '= PERFORMANCE OVERVIEW' section: not a trtllm-bench throughput report, or cut off before it",
            source=source,
        )
    if ended_open is not None and not (excerpt and ended_open.line_complete):
        _cut_off(ended_open, source)
    return reports


def _as_text(text: object, source: str | None) -> str:
    if isinstance(text, str):
        return text
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            return bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ReportError("report_text", f"is not UTF-8 text ({e.reason} at byte {e.start})",
                              source=source) from None
    raise ReportError("report_text", f"must be text (str) or UTF-8 bytes, got {type(text).__name__}",
                      source=source)


def _cut_off(where: _Open, source: str | None) -> None:
    """Raise the ReportError for a text that ends inside a section, naming the field of its last line."""
    line = where.last_line
    pct = _PCT_LINE.match(line)
    label = _WS.sub(" ", line.partition(":")[0]).strip().lower()
    if pct and pct.group(1).lower() in _PERCENTILE_TAGS:
        name = f"{_PERCENTILE_TAGS[pct.group(1).lower()]}.{pct.group(2).lower()}"
    else:
        name = _LABELS.get(label, where.title)
    how = ("ends mid-line" if not where.line_complete
           else "ends without the section's closing rule line of '='")
    raise ReportError(
        name,
        f"the text {how} inside '= {where.title}' (last line {shown(line)}): the report is cut off, and its "
        "last value may be cut too. Use the complete file; a published excerpt that stops before the rule is "
        "read with excerpt=True",
        source=source,
    )


def _finish(draft: _Draft, source: str | None, index: int) -> BenchReport:
    where = source if index == 0 or source is None else f"{source} (run {index + 1})"
    values: dict[str, Any] = {}
    for attr, raw in draft.values.items():
        values[attr] = _convert(attr, raw, where)
    if values.get("trtllm_version") is None and draft.banner_version:
        values["trtllm_version"] = draft.banner_version
    for attr, stats in draft.percentiles.items():
        values[attr] = Percentiles(
            **{STATS[k]: number(f"{attr}.{k}", v, where) for k, v in stats.items() if k in STATS}
        )
    values["layout"] = draft.layout or "unknown"
    values["source"] = source
    return checked(values, where)


def _convert(attr: str, raw: str, where: str | None) -> Any:
    if attr in STR_FIELDS:
        return None if raw.strip().lower() in NONE_WORDS else raw.strip()
    if attr in NULLABLE and raw.strip().lower() in NONE_WORDS:
        return None
    if attr == "kv_cache_percent":
        raw = raw.strip().removesuffix("%")
    value = number(attr, raw, where)
    if attr in INT_FIELDS:
        return whole(attr, value, raw, where)
    return value
