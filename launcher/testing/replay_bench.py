#!/usr/bin/env python3
"""The sandbox's ``trtllm-bench``: a replay of a recorded real run, or of NVIDIA's published figure.

The sandbox has no GPU, so its benchmark pod cannot measure anything. The launcher runs there as it would
on an A3 Ultra node, and this program answers its ``trtllm-bench`` calls:

- ``--help`` of the group and of every subcommand, ``prepare-dataset`` where the release has it, and any
  wrong command line: exactly as the click stand-in of the version played (``trtllm_bench.cli``, generated
  from ``manifests/trtllm/bench-*.yaml``); only ``build`` and ``throughput`` are replaced by the replay;
- ``build``/``throughput`` of the experiment recorded in ``recordings/`` (the recipe's Llama 3.1 405B FP8
  TP8 run on 8 x H200, as ``kubectl logs`` showed it): the recorded logs and report, paced by their own
  timestamps and ``Time: ...s`` lines;
- ``throughput`` of any other experiment NVIDIA published a figure for (``published_replay``: model, GPU,
  TP, ISL/OSL, the version's column): a report in the played version's layout whose output throughput is
  that figure, labelled "replay of NVIDIA's published figure" (the row named) before and after it. Request
  throughput and total latency follow from the figure and the request count; no latency was published, so
  none is printed. Its ``build`` writes a placeholder engine (no build was recorded for it);
- anything else fails with what exists, instead of inventing numbers.

The version played: ``RECIPE_REPLAY_VERSION`` (the image's tag; a recording's exact version where one was
made with that release), else the recording's. An hour of recorded time plays in ten seconds at the default
speed. Every run announces itself as a replay on stderr, and a ``RECIPE_REPLAY_SOURCE {json}`` line names
what was played; the launcher (``RECIPE_REPLAY=1``) labels every log line and its ``metadata.json``.

Environment:
  RECIPE_REPLAY_VERSION     the TensorRT-LLM version of the image (e.g. v0.17.0)
  RECIPE_REPLAY_GPU         the node's GPU (``H200``: the sandbox's A3 Ultra node)
  RECIPE_REPLAY_SPEED       how many recorded seconds pass per real second (default 360)
  RECIPE_REPLAY_SPEED_FILE  a file holding a speed that overrides the above, re-read while playing
                            (the sandbox's control to slow a run down or hurry it up mid-way)
  RECIPE_REPLAY_FAIL        ``build`` or ``benchmark``: that step fails part way, as a real failure would
  STANDIN_CALLS             append one JSON line per invocation to this file (tests)

Started with ``python -S``; click and PyYAML come from site-packages (``cli_click`` finds them).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import published_replay as catalog
from published_replay import LABEL, Published, Recording, Wanted

DEFAULT_SPEED = 360.0
DEFAULT_GPU = "H200"  # the sandbox's node is an A3 Ultra (8 x H200 141 GB)
SOURCE_PREFIX = "RECIPE_REPLAY_SOURCE "
_STAMP = re.compile(r"^\[(\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d)\]")
_DURATION = re.compile(r"^Time: ([0-9.]+)s\s*$")


class Pacer:
    """Sleeps recorded seconds divided by the speed; the speed may change while playing."""

    def __init__(self) -> None:
        self.speed_file = os.environ.get("RECIPE_REPLAY_SPEED_FILE")
        self.default = _positive(os.environ.get("RECIPE_REPLAY_SPEED"), DEFAULT_SPEED)

    def speed(self) -> float:
        if self.speed_file:
            try:
                return _positive(Path(self.speed_file).read_text().strip(), self.default)
            except OSError:
                pass
        return self.default

    def wait(self, recorded_seconds: float) -> None:
        left = recorded_seconds
        while left > 0:
            speed = self.speed()
            step = min(left, 0.1 * speed)  # at most 0.1 s of real time between looks at the speed
            time.sleep(step / speed)
            left -= step


def _positive(text: str | None, default: float) -> float:
    try:
        value = float(text or "")
    except ValueError:
        return default
    return value if value > 0 else default


def play(lines: list[str], pacer: Pacer) -> None:
    """Print ``lines`` as recorded, waiting between them as long as the recording did (scaled).

    The recorded clock moves forward only: a timestamp earlier than the last one (the recipe's log holds
    a stray line from an older run) is printed without waiting. ``Time: 1663.266s`` lines (the build's
    own timings) advance the clock by their duration.
    """
    clock: datetime | None = None
    for line in lines:
        stamp = _STAMP.match(line)
        duration = _DURATION.match(line)
        if stamp:
            when = datetime.strptime(stamp.group(1), "%m/%d/%Y-%H:%M:%S")
            if clock is not None and when > clock:
                pacer.wait((when - clock).total_seconds())
            if clock is None or when > clock:
                clock = when
        elif duration and clock is not None:
            seconds = float(duration.group(1))
            pacer.wait(seconds)
            clock = datetime.fromtimestamp(clock.timestamp() + seconds)
        print(line, flush=True)


def _until_last(lines: list[str], marker: str) -> list[str]:
    """The lines before the last one containing ``marker``: where a simulated failure strikes."""
    at = max((i for i, line in enumerate(lines) if marker in line), default=len(lines))
    return lines[:at]


def _fail(step: str, pacer: Pacer) -> int:
    pacer.wait(60)  # a recorded minute into the step
    print(f"replay: simulated failure of the {step} (RECIPE_REPLAY_FAIL={step}), as a real run may fail here",
          file=sys.stderr)
    print("[TensorRT-LLM][ERROR] Assertion failed: simulated failure in the local sandbox", file=sys.stderr)
    return 1


def report_json(rec: Recording, opts: dict[str, str], speed: float) -> dict[str, object]:
    """``--report_json`` in ``ReportUtility.get_statistics_dict()``'s layout, from the recorded text only."""
    n = rec.number
    return {
        "replay": {"source": rec.source, "recording": rec.path.name, "speed": speed,
                   "note": "derived from the recorded text report; no GPU ran in the sandbox"},
        "engine": {"model": rec.model, "engine_dir": opts.get("engine_dir"), "version": rec.version,
                   "backend": "TRT", "dtype": rec.fields.get("Dtype"),
                   "kv_cache_dtype": rec.fields.get("KV Cache Dtype"),
                   "quantization": rec.fields.get("Quantization"), "max_input_length": round(n("Max Input Length")),
                   "max_sequence_length": round(n("Max Sequence Length"))},
        "world_info": {"tp_size": round(n("TP Size")), "pp_size": round(n("PP Size")),
                       "world_size": round(n("TP Size") * n("PP Size")),
                       "max_batch_size": round(n("Max Runtime Batch Size")),
                       "max_num_tokens": round(n("Max Runtime Tokens")),
                       "scheduling_policy": rec.fields.get("Scheduling Policy"),
                       "kv_cache_percentage": n("KV Memory Percentage") / 100.0,
                       "issue_rate": n("Issue Rate (req/sec)")},
        "request_info": {"num_requests": round(n("Number of requests")),
                         "avg_input_length": n("Average Input Length (tokens)"),
                         "avg_output_length": n("Average Output Length (tokens)")},
        "performance": {"total_latency_ms": n("Total Latency (ms)"),
                        "request_throughput_req_s": n("Request Throughput (req/sec)"),
                        "system_output_throughput_tok_s": n("Token Throughput (tokens/sec)")},
    }


# -- what is asked, and what answers it ---------------------------------------------------------------


def played_version() -> str:
    asked = os.environ.get("RECIPE_REPLAY_VERSION", "").strip()
    return catalog.played_version(asked) if asked else catalog.recordings()[0].version


def banner(version: str) -> None:
    """What importing tensorrt_llm prints first: how the launcher learns the version."""
    print(f"[TensorRT-LLM] TensorRT-LLM version: {version}", flush=True)


def gpu() -> str:
    return catalog.gpu_name(os.environ.get("RECIPE_REPLAY_GPU", "")) or DEFAULT_GPU


def _dataset(path: str | None, cap: int) -> tuple[int, int, int] | None:
    """(ISL, OSL, requests) of a prepared dataset: the first request's lengths (the sweep's datasets have
    stdev 0) and the number of requests, capped by ``--num_requests`` as trtllm-bench caps it."""
    if not path:
        return None
    try:
        with open(path) as f:
            first = json.loads(f.readline())
            count = 1 + sum(1 for line in f if line.strip())
        return len(first["input_ids"]), int(first["output_tokens"]), min(count, cap) if cap > 0 else count
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _announce(command: str, what: str, speed: float) -> None:
    print(f"replay: trtllm-bench {command} is a {what} at {speed:g}x: no GPU ran (local sandbox)",
          file=sys.stderr, flush=True)


def _source_line(source: Recording | Published, want: Wanted) -> None:
    """One machine-readable line naming what was played (the launcher may keep it in metadata.json)."""
    if isinstance(source, Published):
        data: dict[str, Any] = {"kind": "published", "label": LABEL, "row": source.row, "table": catalog.TABLE_NAME,
                                "column": source.column, "output_tok_s": source.output_tok_s,
                                "source": source.source}
    else:
        data = {"kind": "recording", "label": catalog.RECORDED_LABEL, "recording": source.path.name,
                "source": source.source}
    print(SOURCE_PREFIX + json.dumps({**data, "experiment": want.describe()}), file=sys.stderr, flush=True)


def _refuse(want: Wanted) -> int:
    print(f"replay: {catalog.refusal(want)}", file=sys.stderr, flush=True)
    return 1


# -- build --------------------------------------------------------------------------------------------


def replay_build(p: dict[str, Any], env: dict[str, Any], version: str, pacer: Pacer) -> int:
    """The recorded build where it is this engine (same model, TP, PP, quantization, version, and dataset or
    ``--max_seq_len``); else a placeholder engine where NVIDIA published figures for it; else refused."""
    model, workspace = env["model"], env.get("workspace") or "/tmp"
    tp, pp, quant = p.get("tp_size") or 1, p.get("pp_size") or 1, p.get("quantization")
    shape = _dataset(p.get("dataset"), 0)
    isl, osl, n = shape or (0, 0, 0)
    want = Wanted(model, gpu(), tp, pp, quant, isl, osl, n, version)
    rec = catalog.recordings()[0]
    engine_known = rec.engine == (model, tp, pp, quant) and catalog.minor(rec.version) == catalog.minor(version)
    recorded = catalog.recording_for(want) if shape else (
        rec if engine_known and p.get("max_seq_len") == round(rec.number("Max Sequence Length")) else None)
    figures = [f for f in catalog.published_table()[0] if (f.family, f.gpu, f.tp, f.column) == (
        catalog.family(model), want.gpu, tp, catalog.column(version))] if pp == 1 and quant in (None, "FP8") else []
    if recorded is None and not engine_known and not figures:
        banner(version)
        return _refuse(want)
    engine = Path(workspace) / model / f"tp_{tp}_pp_{pp}"
    if recorded is not None:
        _announce("build", f"replay of {recorded.path.name} ({recorded.source})", pacer.speed())
        if os.environ.get("RECIPE_REPLAY_FAIL") == "build":
            play(_until_last(recorded.build, "Loading Model: [2/2]"), pacer)
            return _fail("build", pacer)
        play(recorded.build, pacer)  # it begins with its own version banner
        limits = {"max_input_len": round(rec.number("Max Input Length")),
                  "max_seq_len": round(rec.number("Max Sequence Length")),
                  "max_batch_size": round(rec.number("Max Runtime Batch Size")),
                  "max_num_tokens": round(rec.number("Max Runtime Tokens"))}
        note = {"source": recorded.source, "note": "placeholder engine of a replayed build; no GPU ran"}
    else:
        banner(version)
        _announce("build", "placeholder build (no build of this engine was recorded)", pacer.speed())
        if os.environ.get("RECIPE_REPLAY_FAIL") == "build":
            return _fail("build", pacer)
        print("replay: no recorded build of this engine, so none is replayed: a placeholder engine is written "
              "(its benchmark replays NVIDIA's published figure)", flush=True)
        seq = p.get("max_seq_len") or (isl + osl)
        limits = {"max_input_len": isl or seq, "max_seq_len": seq}
        note = {"source": LABEL, "note": "placeholder engine: no build was recorded and no GPU ran"}
    engine.mkdir(parents=True, exist_ok=True)
    config = {"version": version, "replay": note, "build_config": limits, "pretrained_config": {
        "architecture": "LlamaForCausalLM", "quantization": {"quant_algo": quant},
        "mapping": {"world_size": tp * pp, "tp_size": tp, "pp_size": pp}}}
    (engine / "config.json").write_text(json.dumps(config, indent=4))
    for rank in range(tp * pp):
        (engine / f"rank{rank}.engine").write_bytes(b"replayed engine: a placeholder\n")
    print(f"replay: engine saved to {engine}", file=sys.stderr, flush=True)
    return 0


# -- throughput ---------------------------------------------------------------------------------------


def _engine_shape(p: dict[str, Any]) -> tuple[int, int, str | None, dict[str, Any]]:
    """(TP, PP, quantization, build_config) of the engine the run uses; the PyTorch flow's from its options."""
    if not p.get("engine_dir"):
        return p.get("tp") or 1, p.get("pp") or 1, None, {}
    try:
        config = json.loads((Path(p["engine_dir"]) / "config.json").read_text())
        mapping = config["pretrained_config"]["mapping"]
        quant = (config["pretrained_config"].get("quantization") or {}).get("quant_algo")
        return int(mapping["tp_size"]), int(mapping["pp_size"]), quant, config.get("build_config") or {}
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0, None, {}


def replay_throughput(p: dict[str, Any], env: dict[str, Any], version: str, pacer: Pacer) -> int:
    shape = _dataset(p.get("dataset"), p.get("num_requests") or 0)
    if shape is None:
        banner(version)
        print(f"replay: cannot read the dataset {p.get('dataset')!r} (one JSON request a line with input_ids "
              "and output_tokens)", file=sys.stderr)
        return 1
    tp, pp, quant, limits = _engine_shape(p)
    limit = p.get("concurrency")  # <= 0: no concurrency limit (the option's help says so)
    want = Wanted(env["model"], gpu(), tp, pp, quant, *shape, version,
                  concurrency=limit if limit and limit > 0 else None, streaming=bool(p.get("streaming")))
    source = catalog.find(want)
    if not isinstance(source, Recording):
        banner(version)  # a recorded log holds its own
    if source is None:
        return _refuse(want)
    failing = os.environ.get("RECIPE_REPLAY_FAIL") == "benchmark"
    if isinstance(source, Recording):
        _announce("throughput", f"replay of {source.path.name} ({source.source})", pacer.speed())
        _source_line(source, want)
        if failing:
            play(_until_last(source.throughput, "Benchmark complete."), pacer)
            return _fail("benchmark", pacer)
        play(source.throughput, pacer)
        if p.get("report_json"):
            Path(p["report_json"]).write_text(json.dumps(report_json(source, p, pacer.speed()), indent=4))
        return 0
    _announce("throughput", f"{LABEL} ({source.row})", pacer.speed())
    _source_line(source, want)
    import published_report  # click-free and small, but only this path needs it

    for line in published_report.log_before(want):
        print(line, flush=True)
    figures = published_report.figures(source, want)
    if failing:
        pacer.wait(min(60.0, figures["total_latency_ms"] / 1000))
        return _fail("benchmark", pacer)
    pacer.wait(figures["total_latency_ms"] / 1000)  # as long as the published throughput would take
    backend = "pytorch" if not p.get("engine_dir") else "tensorrt"
    print(published_report.text(source, want, figures, backend=backend, limits=limits, env=env, p=p), flush=True)
    if p.get("report_json"):
        data = published_report.as_json(source, want, figures, backend=backend, env=env, speed=pacer.speed())
        Path(p["report_json"]).write_text(json.dumps(data, indent=4))
    return 0


# -- the command line: the version's click stand-in, with build and throughput replayed -----------------


def _record_call(argv: list[str]) -> None:
    path = os.environ.get("STANDIN_CALLS")
    if path:
        sub = next((a for a in argv if a in ("build", "throughput", "prepare-dataset")), None)
        row = {"tool": "trtllm-bench", "subcommand": "--help" if "--help" in argv else sub, "argv": argv,
               "replay": True, **({"help_of": sub} if "--help" in argv else {})}
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def main(argv: list[str]) -> int:
    version = played_version()
    if not ({"build", "throughput"} & set(argv)) or "--help" in argv:
        banner(version)  # a replayed step prints it itself: a recorded log holds its own
    _record_call(argv)
    import trtllm_bench  # the click stand-in of the version played (cli_tables, cli_click)
    from cli_click import click

    trtllm_bench.VERSION = version
    group = trtllm_bench.cli(trtllm_bench.load_table(version))
    pacer = Pacer()
    for name, replay in (("build", replay_build), ("throughput", replay_throughput)):
        command = group.commands.get(name)
        if command is not None and command.callback is not None:
            def run(ctx: Any, _replay: Any = replay, **params: Any) -> None:
                ctx.exit(_replay(params, ctx.obj["env"], version, pacer))
            command.callback = click.pass_context(run)
    try:
        group.main(args=argv, prog_name="trtllm-bench", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
