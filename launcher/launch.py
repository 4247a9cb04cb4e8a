"""Run a whole benchmark sweep in one pod: checkpoint once, engine once, every result kept.

Usage (inside the TensorRT-LLM container; the deploy step mounts this folder at /workload/launcher)::

    python launch.py --config /workload/config/config.json          # run the sweep
    python launch.py --config config.json --plan                     # print what would be done, run nothing
    python launch.py --config config.json --dry-run                  # print every command, in order, run none

Stdlib only (plus ``yaml`` for a YAML config and ``google.cloud.storage`` for ``gs://`` results, both
imported only when needed): it runs with the container's Python, not with our package. Its sibling
modules: ``config`` (this contract), ``layout`` (results paths and keys, shared with recipelib),
``errors`` (the launcher's errors and exit codes), ``events`` (event lines), ``store`` (create-only
results), ``records`` (what is written there, and when), ``checkpoint`` (download), ``engine`` (engine
cache), ``bench`` (trtllm-bench command lines), ``plan`` (what will be built), ``runner`` (the phases),
``sysinfo``, ``proc``; and the GPU preflight, ``preflight`` with its ``gpu_*`` modules.

Config (one JSON or YAML mapping; unknown keys are errors, every error names its field)
--------------------------------------------------------------------------------------
::

    release: str                  Kubernetes name of the release ([a-z0-9-], <= 63)
    run_id: str                   [a-z0-9-], unique per deploy; a restart with the same id resumes
    model: str                    Hugging Face id, e.g. meta-llama/Llama-3.1-405B
    checkpoint: str | null        the Hugging Face repository downloaded and run (default: model), e.g.
                                  nvidia/Llama-3.1-405B-Instruct-FP8 (pre-quantized) for the PyTorch flow
    backend: tensorrt | pytorch   tensorrt: the engine flow (build, then run the engine); pytorch: the
                                  PyTorch flow (no build; needs a trtllm-bench listing --backend pytorch)
    engine_method: per-dataset | shared | null
                                  engine flow only. per-dataset (default): an engine per experiment, built
                                  by trtllm-bench from that experiment's dataset (NVIDIA's method); shared:
                                  one engine for the sweep at its longest sequence. Engines are cached by
                                  their exact build command, so identical builds and repeats build nothing
    tp_size: int                  tensor parallel size (tp_size x pp_size <= 8)
    pp_size: int                  pipeline parallel size
    ep_size: int | null           expert parallel size (MoE; pytorch backend), must divide tp_size
    quantization: str | null      FP8, NVFP4, INT8, W4A16_AWQ, W4A8_AWQ, W8A16, W4A16 (engine build)
    kv_cache_free_gpu_mem_fraction: float in (0, 1]
    max_batch_size: int | null    runtime limit; with max_num_tokens also the engine's build limit
    max_num_tokens: int | null
    checkpoint_dir: str           absolute; the checkpoint goes to <checkpoint_dir>/<checkpoint>, without
                                  original/ (the recipe's --exclude "*original*"), once per node
    workspace: str                absolute; datasets, reports and logs of each attempt
    engine_cache_dir: str         absolute; engines in <engine_cache_dir>/<key>, shared by pods on the node
    results: str                  gs://BUCKET/PREFIX or an absolute (mounted) path such as /gcs/PREFIX
    experiments:                  non-empty list, ids unique
      - {isl: int, osl: int, num_requests: int, concurrency: int | null, streaming: bool}
    preflight: {enabled: bool, mode: enforce | warn}      optional; default disabled

Experiment id: ``isl{isl}-osl{osl}-n{num_requests}`` + ``-c{concurrency}`` + ``-stream``.

Results (every object created only if absent; nothing is ever overwritten)
-------------------------------------------------------------------------
``<results>/<release>/<run_id>/<experiment_id>/``: ``report.json`` (trtllm-bench ``--report_json``, where
its ``--help`` lists it; otherwise the printed report is the result), ``report.txt`` (trtllm-bench's text
output with its report), ``requests.json`` (per-request output, where listed), ``extra_llm_api_options.yaml``
(PyTorch flow), ``launcher.log``, ``metadata.json`` (status, error, versions, GPUs, the exact command lines,
phase timings, config hash, preflight; ``flow``, ``backend``, ``engine_method``, the engine used, the
options trtllm-bench listed, ``report_source``). The options a run uses are those the installed
trtllm-bench lists in ``--help``; an experiment setting it cannot express (``concurrency`` without
``--concurrency``) fails that experiment with the reason. A failed experiment has no report.json
or report.txt: its output is ``benchmark.log`` and its error is in metadata.json.

``<results>/<release>/<run_id>/run.json`` is written once every experiment has a final record
(settings, per-experiment status and error, times, versions, GPUs, engine, preflight), and
``.attempts/<attempt>/{started.json, preflight.json, result.json, launcher.log}`` once per pod.

An experiment with a metadata.json (or a report.json) is skipped on a restart with the same run id;
a run with a run.json is finished and a new pod does nothing.

Events: one line per phase change on stdout, beside readable output
------------------------------------------------------------------
::

    RECIPE_EVENT {"phase": "benchmark", "state": "finished", "experiment": "isl128-osl128-n30000",
                  "time": "2025-05-28T23:40:59.120Z", "index": 1, "total": 9, "seconds": 982.4}

- ``phase``: preflight | download | build | dataset | benchmark | upload | run
- ``state``: started | finished | skipped | failed
- ``experiment``: the experiment id, or null for run-wide phases (always present)
- ``time``: RFC 3339 UTC; ``index``/``total``: 1-based experiment position and count, present when an
  experiment is concerned (and ``total`` on ``run`` events)
- where known: ``seconds`` (phase duration), ``bytes`` (downloaded / written / uploaded), ``error``
  (on ``failed``), ``reason`` (on ``skipped``), and a few more (``engine``, ``exit_code``, ``status``).

The JSON follows the literal prefix ``RECIPE_EVENT `` on a line of its own; ``events.parse_event``
is the reference parser. The last event of an attempt is ``run`` finished, failed or skipped.

Exit codes: 0 every experiment produced a report; 1 an experiment failed (the others still ran);
2 invalid config; 3 preflight refused (enforce mode); 4 download or engine build failed; 5 results
store unreachable; 143 interrupted (SIGTERM).

Environment: ``HF_TOKEN`` (only read for the download, and by a trtllm-bench without ``--model_path``
that loads the model itself; never printed or written), ``TRTLLM_BENCH``
(the trtllm-bench executable, default ``trtllm-bench``), ``RECIPE_TRTLLM_VERSION`` (override the
detected version), ``RECIPE_PREPARE_DATASET`` (path of prepare_dataset.py), ``RECIPE_DOWNLOADER``
(an executable ``EXE MODEL DEST --exclude PATTERN`` instead of huggingface_hub), ``RECIPE_PREFLIGHT`` (path of the
preflight script, default ``preflight.py`` beside this file), ``STORAGE_EMULATOR_HOST`` (a local GCS),
``RECIPE_REPLAY=1`` (the tools replay a recorded run, as in the local sandbox: every readable line is
prefixed ``[replay] ``, every event carries ``"replay": true``, and so do ``metadata.json``/``run.json``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench
from config import LauncherConfig, load_config
from dryrun import dry_run_commands
from errors import EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_SETUP, EXIT_STORE, BenchError, LauncherConfigError, StoreError
from events import EventLog
from plan import CacheState, plan_setup
from proc import Interrupted, install_signal_handlers
from runner import Runner
from store import open_store
from tool_cli import read_tools


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--config", required=True, help="the launcher config (JSON, or YAML by extension)")
    p.add_argument("--plan", action="store_true", help="print the setup plan as JSON and exit without running")
    p.add_argument("--dry-run", action="store_true",
                   help="read the tools' --help, print every command the run would execute (one per line, "
                        "shell-quoted) and exit without running any")
    return p


def _preview(cfg: LauncherConfig, dry_run: bool) -> int:
    """``--plan`` / ``--dry-run``: the tools are asked what they accept; nothing is downloaded, built or run."""
    try:
        exe = bench.bench_executable()
        if bench.which(exe) is None:
            raise BenchError(f"{exe} not found (set ${bench.BENCH_ENV} to the trtllm-bench executable)")
        tools = read_tools(exe, cfg.checkpoint, sys.executable, bench.prepare_dataset_script(required=False))
        cache = CacheState.scan(cfg)
        plan = plan_setup(cfg, tools, cache)
        if not dry_run:
            print(json.dumps({"trtllm_version": tools.bench.version, **plan.as_dict()}, indent=2))
            return 0
        notes: list[str] = []
        commands = dry_run_commands(cfg, tools, plan, cache, notes)
    except BenchError as e:
        print(f"cannot plan the run: {e}", file=sys.stderr)
        return EXIT_SETUP
    print(f"# TensorRT-LLM {tools.bench.version}; flow {cfg.flow}; engine method {cfg.engine_method}; "
          f"{len(commands)} command(s)", file=sys.stderr)
    for note in notes:
        print(f"# {note}", file=sys.stderr)
    for argv in commands:
        print(shlex.join(argv))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log = EventLog()
    try:
        cfg = load_config(args.config)
    except LauncherConfigError as e:
        log.info(f"invalid config {args.config}:\n{e}")
        log.event("run", "failed", error=f"invalid config: {e}", exit_code=EXIT_CONFIG)
        return EXIT_CONFIG
    if args.plan or args.dry_run:
        return _preview(cfg, args.dry_run)
    install_signal_handlers()
    runner = Runner(cfg, log, open_store(cfg.results))
    try:
        return runner.execute()
    except Interrupted as e:
        log.event("run", "failed", error=f"interrupted: {e}", exit_code=EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except StoreError as e:
        log.info(f"results store error: {e}")
        log.event("run", "failed", error=f"results store: {e}", exit_code=EXIT_STORE)
        return EXIT_STORE
    except Exception as e:  # a launcher bug: say where, scrubbed, and fail the run
        log.info("launcher error:\n" + "".join(traceback.format_exception(type(e), e, e.__traceback__)))
        log.event("run", "failed", error=f"launcher error: {type(e).__name__}: {e}", exit_code=1)
        return 1
    finally:
        log.close()


if __name__ == "__main__":
    sys.exit(main())
