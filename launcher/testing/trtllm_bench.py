#!/usr/bin/env python3
"""A stand-in for ``trtllm-bench``, generated from the CLI table of the release it plays, for testing without GPUs.

Why: the launcher must speak each release's real command line, and the only way to hold it to that here
is a stand-in that accepts exactly what the release accepts. So the command line is not written here:
``STANDIN_VERSION`` (default ``0.17.0.post1``) picks the nearest table in ``manifests/trtllm/`` at or below
it, and ``cli_click`` builds the real click group and subcommands from it. ``--help`` is click's own, with
exactly that release's options and subcommands; anything else fails as click fails (exit 2). Like the
real tool, every run first prints the ``[TensorRT-LLM] TensorRT-LLM version: X`` banner that importing
tensorrt_llm prints (how the launcher learns the version), and the group's required ``--model`` comes
before the subcommand, even for ``trtllm-bench --model M throughput --help``.

What each subcommand checks is what the real tool checks (from its sources; see ``cli_click`` and the
tables): build modes (0.16: exactly one of ``--dataset``/``--max_seq_length``; 0.17+: at most one of
dataset, batch/tokens, target lengths, with ``--max_seq_len`` unless ``--dataset``), TP x PP <= 8; the
engine path (``--backend`` absent, unset, or ``tensorrt``) needs ``--engine_dir`` with a ``config.json``
covering the dataset's longest sequence and takes no ``--max_seq_len``; where the release has
``--enable_chunked_context`` and it is off, a prompt longer than the engine's ``max_num_tokens`` fails.
Files the run writes: ``build`` makes ``<workspace>/<model>/tp_<tp>_pp_<pp>/`` (``config.json`` with
``pretrained_config``/``build_config``, one ``rank<N>.engine`` a rank) and logs "ENGINE BUILD INFO";
``throughput`` writes ``--report_json``/``--output_json``/``--request_json``/``--iteration_log`` where the
release has them (a missing folder fails at write time, as ``open`` does), then prints the text report in
that release's layout (``report_layouts``). The numbers are synthetic and deterministic.

Simulations (environment variables):
  STANDIN_VERSION        the TensorRT-LLM version to play (picks the table; printed in the banner)
  STANDIN_TABLES         another folder of tables (tests)
  STANDIN_CALLS          append one JSON line per invocation (argv, subcommand) to this file
  STANDIN_FAIL_ISL       comma-separated ISLs whose throughput run raises (exit 1)
  STANDIN_OOM_ISL        comma-separated ISLs whose run hits CUDA OOM and exits 0 with no report
  STANDIN_SLEEP_ISL      ``ISL:SECONDS,...``: sleep before benchmarking (for kill tests)
  STANDIN_BUILD_SLEEP    seconds a build takes (for concurrent-build tests)
  STANDIN_BUILD_FAIL     ``1``: the build fails
  STANDIN_ECHO_ENV       print ``env NAME=<value>|<unset>`` for this variable on every run
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import cli_click
import report_layouts
import standin_run
from cli_click import click
from cli_tables import Table, load_table, release

VERSION = os.environ.get("STANDIN_VERSION", "0.17.0.post1")


def log(message: str, level: str = "I") -> None:
    stamp = datetime.now().strftime("%m/%d/%Y-%H:%M:%S")
    print(f"[{stamp}] [TRT-LLM] [{level}] {message}", flush=True)


def fail(message: str, kind: str = "RuntimeError") -> None:
    """What an uncaught exception in the real tool looks like: a traceback's last line, exit 1."""
    print("Traceback (most recent call last):", file=sys.stderr)
    print(f"{kind}: {message}", file=sys.stderr)
    sys.exit(1)


def record_call(argv: list[str], subcommands: tuple[str, ...]) -> None:
    """One JSON line per run; a ``--help`` run is recorded as subcommand ``--help`` (``help_of``: which one),
    so that counting ``build`` calls counts builds."""
    path = os.environ.get("STANDIN_CALLS")
    if path:
        sub = next((a for a in argv if a in subcommands), None)
        row: dict[str, Any] = {"tool": "trtllm-bench", "subcommand": sub, "argv": argv, "pid": os.getpid()}
        if "--help" in argv:
            row |= {"subcommand": "--help", "help_of": sub}
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def _checkpoint(env: dict[str, Any]) -> Path | None:
    """The checkpoint folder, if the command line names one; the real tool downloads ``--model`` otherwise."""
    path = env.get("model_path")
    if path is None and Path(env["model"]).is_dir():
        path = env["model"]
    if path is None:
        log(f"(stand-in) {env['model']} would be fetched from the Hugging Face hub; not simulated.")
        return None
    if not (Path(path) / "config.json").is_file():
        fail(f"Can't load the configuration of '{path}'. Make sure it is a local directory holding a config.json "
             "(offline stand-in).", "OSError")
    return Path(path)


def _write(path: str | None, text: str) -> None:
    if not path:
        return
    try:
        Path(path).write_text(text)
    except OSError as e:
        fail(f"[Errno {e.errno}] {e.strerror}: '{path}'", type(e).__name__)


# -- build --------------------------------------------------------------------------------------------


def build(ctx: click.Context, **p: Any) -> None:
    env, table = ctx.obj["env"], ctx.obj["table"]
    spec = table.command("trtllm-bench build")
    if spec.has("--max_seq_length"):  # 0.16: RequiredMutuallyExclusiveOptionGroup(--dataset, --max_seq_length)
        if bool(p.get("dataset")) == bool(p.get("max_seq_length")):
            raise click.UsageError("exactly one of the mutually exclusive options --dataset, --max_seq_length "
                                   "is required", ctx)
        max_seq_len = p.get("max_seq_length")
    else:
        max_seq_len = p.get("max_seq_len")
        modes = [p.get("dataset"), p.get("max_batch_size") or p.get("max_num_tokens"),
                 p.get("target_input_len") or p.get("target_output_len")]
        if sum(bool(m) for m in modes) > 1:
            fail("Multiple engine build options detected, please choose only one engine build option. Exiting.",
                 "ValueError")
    for a, b in (("max_batch_size", "max_num_tokens"), ("target_input_len", "target_output_len")):
        if spec.has(f"--{a}") and bool(p.get(a)) != bool(p.get(b)):  # AllOptionGroup: both or neither
            raise click.UsageError(f"All options from the group of --{a}/--{b} should be specified or none "
                                   "should be specified.", ctx)
    tp, pp = p.get("tp_size", 1), p.get("pp_size", 1)
    if tp * pp > 8:
        fail(f"Parallelism mapping of TP{tp}-PP{pp} is currently unsupported.", "ValueError")
    if not p.get("dataset") and not max_seq_len:
        fail("Unspecified max_seq_len for engine build. Exiting.", "ValueError")
    checkpoint = _checkpoint(env)
    plan = standin_run.build_plan(p, max_seq_len, log)
    if os.environ.get("STANDIN_BUILD_FAIL") == "1":
        fail("[TensorRT-LLM][ERROR] Assertion failed: engine build failed (simulated)")
    engine_dir = Path(env["workspace"]) / env["model"] / f"tp_{tp}_pp_{pp}"
    log(f"start MpiSession with {tp * pp} workers")
    print("Loading Model: [1/2]\tLoading HF model to memory", flush=True)
    time.sleep(float(os.environ.get("STANDIN_BUILD_SLEEP", "0") or 0))
    print("Time: 0.012s\nLoading Model: [2/2]\tBuilding TRT-LLM engine\nTime: 0.008s\nLoading model done.", flush=True)
    standin_run.write_engine(engine_dir, VERSION, tp, pp, p.get("quantization"), plan, checkpoint)
    log(standin_run.build_info(env, engine_dir, plan, p.get("quantization")))
    log("\n\n" + report_layouts.SEP + f"ENGINE SAVED: {engine_dir}\n" + report_layouts.SEP)


# -- throughput ---------------------------------------------------------------------------------------


def _engine(p: dict[str, Any], spec: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """The engine's config, after the checks the engine path makes before running."""
    if p.get("max_seq_len") is not None:
        fail("max_seq_len is not a runtime parameter for C++ backend", "AssertionError")
    if not p.get("engine_dir"):
        fail("The TensorRT engine path needs --engine_dir (a serialized TRT-LLM engine).", "TypeError")
    try:
        engine = json.loads((Path(p["engine_dir"]) / "config.json").read_text())
    except (OSError, ValueError):
        fail(f"[Errno 2] No such file or directory: '{Path(p['engine_dir']) / 'config.json'}'", "FileNotFoundError")
    build_cfg = engine["build_config"]
    if meta["max_sequence_length"] > build_cfg["max_seq_len"]:
        fail(f"Engine supports a max sequence of {build_cfg['max_seq_len']}. Provided dataset contains a maximum "
             f"sequence of {meta['max_sequence_length']}. Please rebuild a new engine to support this dataset.")
    tokens = p.get("max_num_tokens") or build_cfg["max_num_tokens"]
    if spec.has("--enable_chunked_context") and not p.get("enable_chunked_context") and meta["max_isl"] > tokens:
        fail(f"The sum of prompt length ({meta['max_isl']}) and query length (0) should not exceed max_num_tokens "
             f"({tokens})", "ValueError")
    return engine


def throughput(ctx: click.Context, **p: Any) -> None:
    env, table = ctx.obj["env"], ctx.obj["table"]
    spec = table.command("trtllm-bench throughput")
    trt = p.get("backend") in (None, "tensorrt")
    log("Preparing to run throughput benchmark...")
    if not p.get("dataset"):
        fail("no --dataset: reading requests from stdin is not simulated by the stand-in", "NotImplementedError")
    meta = standin_run.read_dataset(Path(p["dataset"]), p.get("num_requests") or 0)
    log(report_layouts.dataset_details(standin_run.dataset_stats(meta, p["dataset"])) if release(VERSION) >= (0, 19)
        else standin_run.build_dataset_details(meta))
    engine = _engine(p, spec, meta) if trt else None
    if not trt:
        _checkpoint(env)
    world = 1
    if engine:
        mapping = engine["pretrained_config"]["mapping"]
        world = mapping["tp_size"] * mapping["pp_size"]
    else:
        world = (p.get("tp") or 1) * (p.get("pp") or 1)
    for line in ("Setting up throughput benchmark.", "Setting up for warmup...", "Running warmup.", "Warmup done.",
                 "Starting benchmarking async task.", "Starting benchmark..."):
        log(line)
    isl = meta["avg_isl"]
    for item in os.environ.get("STANDIN_SLEEP_ISL", "").split(","):
        if item.strip() and int(item.split(":")[0]) == isl:
            time.sleep(float(item.split(":")[1]))
    if isl in standin_run.isls("STANDIN_OOM_ISL"):
        log("Executor worker returned error", "E")
        print("[TensorRT-LLM][ERROR] CUDA runtime error in cudaMallocAsync: out of memory "
              "(/src/tensorrt_llm/runtime/tllmBuffers.h:123)", flush=True)
        log("MPI worker exited; stopping the benchmark.", "W")
        sys.exit(0)  # as observed: the process exits 0, no report is written
    if isl in standin_run.isls("STANDIN_FAIL_ISL"):
        fail(f"Simulated failure of the benchmark for ISL {isl}.")
    log(f"Request submission complete. [count={meta['num_requests']}, time=0.0121s, rate=2484491.39 req/s]")
    log("Benchmark complete.")
    log("Benchmark done. Reporting results...")
    stats = standin_run.stats(meta, p.get("concurrency") or -1, world)
    report = standin_run.report_dict(VERSION, env, p, meta, stats, engine, trt, world)
    if p.get("report_json"):
        log(f"Writing report to '{p['report_json']}'.")
        _write(p["report_json"], json.dumps(report, indent=4))
    if p.get("output_json"):
        log(f"Writing output to {p['output_json']}.")
        _write(p["output_json"], json.dumps({str(i): "" for i in range(meta["num_requests"])}, indent=4))
    if p.get("request_json"):
        _write(p["request_json"], json.dumps(standin_run.requests(meta, stats), indent=4))
    if p.get("iteration_log"):
        _write(p["iteration_log"], "")
    log(report_layouts.text_report(report, trt=trt, kind=report_layouts.layout(release(VERSION))))
    log("Thread proxy_dispatch_result_thread stopped.")


# -- the command line ---------------------------------------------------------------------------------


def cli(table: Table) -> click.Group:
    """The trtllm-bench click group of ``table``'s release: only the subcommands it registers."""

    def group(ctx: click.Context, **params: Any) -> None:
        ctx.obj = {"env": params, "table": table}

    subs: dict[str, click.Command] = {}
    for name in table.subcommands():
        key = f"trtllm-bench {name}"
        spec = table.commands.get(key)
        if name == "build" and spec is not None and not spec.not_read:
            subs[name] = cli_click.command(name, spec, build, help="Build engines for benchmarking.",
                                           existing_paths=cli_click.EXISTING_PATHS)
        elif name == "throughput" and spec is not None and not spec.not_read:
            subs[name] = cli_click.command(name, spec, throughput, help="Run a throughput test on a TRT-LLM engine.",
                                           existing_paths=cli_click.EXISTING_PATHS)
        elif name == "prepare-dataset" and spec is not None and not (spec.absent or spec.not_read):
            subs[name] = standin_run.prepare_dataset_group(spec)
        else:
            subs[name] = cli_click.unsimulated(name, "no options recorded for this release")
    return cli_click.group("trtllm-bench", table.command("trtllm-bench"), group, subs, show_default=True)


def main(argv: list[str], version: str | None = None) -> int:
    """Run one command line; ``version`` overrides ``STANDIN_VERSION`` (so the sandbox's replay can answer
    ``--help`` with the generated CLI of its recording's version: ``trtllm_bench.main(argv, version=...)``)."""
    global VERSION
    VERSION = version or VERSION
    # Importing tensorrt_llm prints this banner before click runs: it is how the launcher learns the version.
    print(f"[TensorRT-LLM] TensorRT-LLM version: {VERSION}", flush=True)
    table = load_table(VERSION)
    record_call(argv, table.subcommands())
    echo = os.environ.get("STANDIN_ECHO_ENV")
    if echo:
        print(f"env {echo}={os.environ.get(echo, '<unset>')}", flush=True)
    try:
        cli(table).main(args=argv, prog_name="trtllm-bench", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
