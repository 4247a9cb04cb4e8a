#!/usr/bin/env python3
"""A replay of a recorded real ``trtllm-bench`` run, standing in for ``trtllm-bench`` in the local sandbox.

The sandbox has no GPU, so its benchmark pod cannot measure anything. Instead the launcher runs as it
would on an A3 Ultra node, and this program answers its ``trtllm-bench`` calls with what the real tool
printed in a recorded run (``recordings/``: the recipe's Llama 3.1 405B FP8 TP8 run on 8 x H200, as
``kubectl logs`` showed it):

- ``--help``: the version banner of the recorded run, which is how the launcher learns the version;
- ``build``: the recorded build log, paced by its own timestamps and ``Time: ...s`` lines, then an
  engine folder (``config.json`` from the recorded engine details; rank files are placeholders);
- ``throughput``: the recorded benchmark log and report, paced likewise, and ``--report_json``
  derived from the recorded report (only figures the text prints; ``"replay"`` says where it came from).

An hour-long recording plays in seconds: ``RECIPE_REPLAY_SPEED`` (default 360: an hour in ten seconds).
It replays only what was recorded: another model, parallelism, quantization or experiment fails with a
message that says so, instead of inventing numbers. Every run announces itself as a replay on stderr;
the launcher (``RECIPE_REPLAY=1``) labels every log line and its ``metadata.json``/``run.json``.

Environment:
  RECIPE_REPLAY_LOG         the recorded log (default: the 405B recording beside this file)
  RECIPE_REPLAY_SPEED       how many recorded seconds pass per real second (default 360)
  RECIPE_REPLAY_SPEED_FILE  a file holding a speed that overrides the above, re-read while playing
                            (the sandbox's control to slow a run down or hurry it up mid-way)
  RECIPE_REPLAY_FAIL        ``build`` or ``benchmark``: that step fails part way, as a real failure would
  STANDIN_CALLS             append one JSON line per invocation to this file (tests)

Stdlib only, started with ``python -S``: it must start in milliseconds.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_LOG = HERE / "recordings" / "gpu-recipes_a3ultra_llama405b_trt-0.17.0.post1_h200.txt"
DEFAULT_SPEED = 360.0
_BANNER = re.compile(r"^\[TensorRT-LLM\] TensorRT-LLM version: (\S+)")
_STAMP = re.compile(r"^\[(\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d)\]")
_DURATION = re.compile(r"^Time: ([0-9.]+)s\s*$")
_FIELD = re.compile(r"^([A-Za-z][A-Za-z ()/+\-]*?):\s+(.+?)\s*$")


@dataclass
class Recording:
    """A recorded ``kubectl logs`` of the recipe: a build segment, then a throughput segment."""

    path: Path
    source: str
    build: list[str]
    throughput: list[str]
    version: str
    fields: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Recording:
        lines = path.read_text(encoding="utf-8").splitlines()
        source = lines[0][len("# source:"):].strip() if lines and lines[0].startswith("# source:") else str(path)
        body = lines[1:] if lines and lines[0].startswith("#") else lines
        banners = [i for i, line in enumerate(body) if _BANNER.match(line)]
        if not banners:
            raise SystemExit(f"replay: {path} has no 'TensorRT-LLM version' banner: not a trtllm-bench log")
        split = banners[-1]
        version = _BANNER.match(body[split]).group(1)  # type: ignore[union-attr]
        fields: dict[str, str] = {}
        for line in body[split:]:
            match = _FIELD.match(line)
            if match:
                fields.setdefault(match.group(1).strip(), match.group(2))
        return cls(path, source, body[:split], body[split:], version, fields)

    def number(self, name: str) -> float:
        value = self.fields.get(name, "").rstrip("%")
        try:
            return float(value)
        except ValueError:
            raise SystemExit(f"replay: the recorded report has no number for {name!r}") from None

    @property
    def model(self) -> str:
        return self.fields.get("Model", "")

    @property
    def experiment(self) -> tuple[int, int, int]:
        n = self.number
        return (round(n("Average Input Length (tokens)")), round(n("Average Output Length (tokens)")),
                round(n("Number of requests")))


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


def _record_call(argv: list[str]) -> None:
    path = os.environ.get("STANDIN_CALLS")
    if path:
        sub = next((a for a in argv if a in ("build", "throughput")), None)
        with open(path, "a") as f:
            f.write(json.dumps({"tool": "trtllm-bench", "subcommand": sub, "argv": argv, "replay": True}) + "\n")


def _options(argv: list[str]) -> dict[str, str]:
    """``--name value`` pairs and ``--flag`` switches (value ``""``); enough to check a replayable call."""
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                out[arg[2:]] = argv[i + 1]
                i += 2
                continue
            out[arg[2:]] = ""
        i += 1
    return out


def _refuse(rec: Recording, what: str) -> int:
    isl, osl, n = rec.experiment
    print(f"replay: no recording for {what}. This sandbox replays one recorded run: {rec.model}, "
          f"TP{rec.fields.get('TP Size')} PP{rec.fields.get('PP Size')} {rec.fields.get('Quantization')}, "
          f"TensorRT-LLM {rec.version}, ISL {isl} / OSL {osl}, {n} requests (source: {rec.source})", file=sys.stderr)
    return 1


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


def _check_model(rec: Recording, opts: dict[str, str]) -> str | None:
    if opts.get("model") != rec.model:
        return f"model {opts.get('model')}"
    return None


def build(rec: Recording, opts: dict[str, str], pacer: Pacer) -> int:
    tp, pp = opts.get("tp_size", "1"), opts.get("pp_size", "1")
    wrong = _check_model(rec, opts)
    if wrong is None and (tp, pp) != (rec.fields.get("TP Size"), rec.fields.get("PP Size")):
        wrong = f"TP{tp} PP{pp}"
    if wrong is None and opts.get("quantization") != rec.fields.get("Quantization"):
        wrong = f"quantization {opts.get('quantization')}"
    if wrong:
        return _refuse(rec, wrong)
    failing = os.environ.get("RECIPE_REPLAY_FAIL") == "build"
    if failing:
        play(_until_last(rec.build, "Loading Model: [2/2]"), pacer)
        return _fail("build", pacer)
    play(rec.build, pacer)
    engine = Path(opts.get("workspace", "/tmp")) / rec.model / f"tp_{tp}_pp_{pp}"
    engine.mkdir(parents=True, exist_ok=True)
    quant = rec.fields.get("Quantization")
    config = {
        "version": rec.version,
        "replay": {"source": rec.source, "note": "placeholder engine of a replayed build; no GPU ran"},
        "pretrained_config": {
            "architecture": "LlamaForCausalLM", "dtype": rec.fields.get("Dtype", "bfloat16"),
            "quantization": {"quant_algo": quant, "kv_cache_quant_algo": rec.fields.get("KV Cache Dtype")},
            "mapping": {"world_size": int(tp) * int(pp), "tp_size": int(tp), "pp_size": int(pp)},
        },
        "build_config": {
            "max_input_len": round(rec.number("Max Input Length")),
            "max_seq_len": round(rec.number("Max Sequence Length")),
            "max_batch_size": round(rec.number("Max Runtime Batch Size")),
            "max_num_tokens": round(rec.number("Max Runtime Tokens")),
        },
    }
    (engine / "config.json").write_text(json.dumps(config, indent=4))
    for rank in range(int(tp) * int(pp)):
        (engine / f"rank{rank}.engine").write_bytes(b"replayed engine: a placeholder\n")
    return 0


def _dataset_shape(path: Path) -> tuple[int, int] | None:
    """(ISL, OSL) of the first request: the sweep's datasets have fixed lengths (stdev 0)."""
    try:
        with open(path) as f:
            first = json.loads(f.readline())
        return len(first["input_ids"]), int(first["output_tokens"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


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


def throughput(rec: Recording, opts: dict[str, str], pacer: Pacer) -> int:
    dataset = Path(opts.get("dataset", ""))
    if not dataset.is_file():
        print(f"Error: Invalid value for '--dataset': Path '{dataset}' does not exist.", file=sys.stderr)
        return 2
    isl, osl, n = rec.experiment
    shape = _dataset_shape(dataset)
    asked = int(opts.get("num_requests", "0") or 0)
    wrong = _check_model(rec, opts)
    if wrong is None and (shape, asked) != ((isl, osl), n):
        got = f"ISL {shape[0]} / OSL {shape[1]}" if shape else "an unreadable dataset"
        wrong = f"{got}, {asked} requests"
    if wrong:
        return _refuse(rec, wrong)
    failing = os.environ.get("RECIPE_REPLAY_FAIL") == "benchmark"
    if failing:
        play(_until_last(rec.throughput, "Benchmark complete."), pacer)
        return _fail("benchmark", pacer)
    play(rec.throughput, pacer)
    if opts.get("report_json"):
        Path(opts["report_json"]).write_text(json.dumps(report_json(rec, opts, pacer.speed()), indent=4))
    return 0


def main(argv: list[str]) -> int:
    rec = Recording.load(Path(os.environ.get("RECIPE_REPLAY_LOG") or DEFAULT_LOG))
    _record_call(argv)
    opts = _options(argv)
    command = next((a for a in argv if a in ("build", "throughput")), None)
    if command is None:
        print(f"[TensorRT-LLM] TensorRT-LLM version: {rec.version}", flush=True)
        print("Usage: trtllm-bench [OPTIONS] COMMAND [ARGS]... (a replay of a recorded run; see replay_bench.py)")
        return 0
    pacer = Pacer()
    print(f"replay: trtllm-bench {command} replays {rec.path.name} at {pacer.speed():g}x (source: {rec.source})",
          file=sys.stderr, flush=True)
    return build(rec, opts, pacer) if command == "build" else throughput(rec, opts, pacer)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
