#!/usr/bin/env python3
"""GPU preflight: prove the node is healthy in a minute before a benchmark spends an hour on it.

A 405B run holds an 8-GPU node for about an hour before its first number. A GPU with a bad memory
stack, a link that fell back to PCIe, a stale process holding memory or a driver too old for the
container all produce either a crash forty minutes in or, worse, plausible but wrong numbers. This
script runs in the benchmark container before the launcher's first phase (and alone, from a notebook
cell or a shell) and checks, against the datasheet of the GPU it finds:

- inventory: GPU count, model and memory as expected for the node type, memory already in use;
- versions: driver, the driver's CUDA version against the container's CUDA runtime;
- ECC: uncorrected volatile errors and row-remapping failures (``nvidia-smi``; tolerated if absent);
- three measurements through PyTorch, each on every GPU at once, one process per GPU:
  HBM bandwidth (a large device-to-device copy, bytes read plus written), the dense BF16 matrix
  product rate, and the NCCL all-reduce bus bandwidth across all GPUs (``busbw = algbw * 2(n-1)/n``
  as nccl-tests defines it), with the GPU-to-GPU link type found by ``nvidia-smi topo -m``.

CLI contract (the launcher calls exactly this)::

    python preflight.py --json OUT.json --mode enforce|warn [--expect-gpus N] [--expect-model H200]

Exit codes: 0 healthy, or any outcome in warn mode; 2 a check failed in enforce mode; 1 the
preflight could not do its job (no PyTorch, or a crash) in enforce mode, or crashed in warn mode.
Every check prints one line ``NAME measured=X limit=Y fraction=Z unit=U threshold=T status=S`` and
OUT.json holds the same figures (see ``build_report``).

This module is the report and the CLI; the rest lives beside it, one concern per module, shipped
into the pod with the other ``launcher/*.py`` files (standard library only; PyTorch is imported only
by the workers):

- ``gpu_datasheet``: the datasheet figures and their sources (also read by recipelib);
- ``gpu_inventory``: nvidia-smi and libcuda, parsed;
- ``gpu_measure``: the timed kernels, one worker process per GPU;
- ``gpu_sources``: starting those workers, or replaying a recorded report;
- ``gpu_checks``: thresholds, checks and the verdict.

Every name they define that this module used to hold is importable from here too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import importlib.util
import json
import os
import re
import shlex
import socket
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the siblings, however this file was loaded

from gpu_checks import (
    ERROR,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_UNHEALTHY,
    FAIL,
    PASS,
    SKIP,
    WARN,
    Check,
    Decision,
    Expectations,
    Thresholds,
    check_allreduce,
    check_cuda_compat,
    check_driver,
    check_ecc,
    check_gpu_count,
    check_gpu_model,
    check_link,
    check_memory,
    check_power,
    decide,
    evaluate,
    exit_code,
    link_from,
    ratio_check,
)
from gpu_datasheet import DATASHEET, NODE_TYPES, GpuSpec, NodeType, lookup_spec, model_matches
from gpu_inventory import (
    BASIC_FIELDS,
    ECC_FIELDS,
    POWER_FIELDS,
    REMAP_FIELDS,
    CommandRunner,
    GpuInfo,
    Inventory,
    LinkInfo,
    classify_link,
    collect_basic_inventory,
    complete_inventory,
    cuda_driver_version,
    find_nvidia_smi,
    gpus_from_smi,
    merge_ecc,
    merge_power,
    parse_smi_csv,
    parse_smi_header,
    parse_topo,
    run_command,
    visible_gpus,
)
from gpu_measure import (
    WORKER_ENV,
    AllReduceMeasurement,
    GpuMeasurement,
    Measurements,
    Sizes,
    busbw_from_algbw,
    measure_allreduce,
    measure_bf16_matmul,
    measure_hbm_copy,
    worker_main,
)
from gpu_sources import MeasurementSource, ReplayMeasurements, WorkerMeasurements, parse_worker_output

__all__ = [
    "BASIC_FIELDS", "DATASHEET", "ECC_FIELDS", "ERROR", "EXIT_ERROR", "EXIT_OK", "EXIT_UNHEALTHY", "FAIL",
    "NODE_TYPES", "PASS", "POWER_FIELDS", "REMAP_FIELDS", "SCHEMA", "SKIP", "WARN", "WORKER_ENV",
    "AllReduceMeasurement", "Check", "CommandRunner", "Decision", "Expectations", "GpuInfo", "GpuMeasurement",
    "GpuSpec", "Inventory", "LinkInfo", "MeasurementSource", "Measurements", "NodeType", "ReplayMeasurements",
    "Sizes", "Thresholds", "WorkerMeasurements", "build_parser", "build_report", "busbw_from_algbw",
    "check_allreduce", "check_cuda_compat", "check_driver", "check_ecc", "check_gpu_count", "check_gpu_model",
    "check_link", "check_memory", "check_power", "check_to_dict", "classify_link", "collect_basic_inventory",
    "complete_inventory", "cuda_driver_version", "decide", "evaluate", "exit_code", "find_nvidia_smi",
    "format_line", "gpus_from_smi", "link_from", "lookup_spec", "main", "measure_allreduce",
    "measure_bf16_matmul", "measure_hbm_copy", "merge_ecc", "merge_power", "model_matches", "parse_smi_csv",
    "parse_smi_header", "parse_topo", "parse_worker_output", "ratio_check", "render_text", "run_command",
    "run_preflight", "visible_gpus", "worker_main", "write_json",
]

SCHEMA = "preflight/1"
NO_EXPECTATIONS = Expectations()
DEFAULT_THRESHOLDS = Thresholds()
DEFAULT_SIZES = Sizes()


# -- the report (pure) ----------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    text = str(value)
    return shlex.quote(text) if re.search(r"[\s\"'=]", text) or not text else text


def format_line(check: Check) -> str:
    """``NAME measured=X limit=Y fraction=Z unit=U threshold=T status=S [note=...]``: one line, greppable."""
    name = check.name + (f"[gpu{check.gpu}]" if check.gpu is not None else "")
    parts = [name, f"measured={_fmt(check.measured)}", f"limit={_fmt(check.limit)}",
             f"fraction={'-' if check.fraction is None else f'{check.fraction:.3f}'}",
             f"unit={_fmt(check.unit or '-')}", f"threshold={_fmt(check.threshold)}", f"status={check.status}"]
    if check.note:
        parts.append(f"note={_fmt(check.note)}")
    return " ".join(parts)


def check_to_dict(check: Check) -> dict[str, Any]:
    data = dataclasses.asdict(check)
    if isinstance(data["fraction"], float):
        data["fraction"] = round(data["fraction"], 4)
    for key in ("measured", "limit"):
        if isinstance(data[key], float):
            data[key] = round(data[key], 4)
    return data


def build_report(*, inv: Inventory, meas: Measurements, checks: Sequence[Check], decision: Decision, mode: str,
                 expect: Expectations, thresholds: Thresholds, sizes: Sizes, seconds: float,
                 started_at: str, host: str, replay: bool = False) -> dict[str, Any]:
    """The JSON document: schema, decision, versions, link, per-GPU figures and every check."""
    names = [g.name for g in inv.gpus] or [m.name for m in meas.gpus if m.name]
    spec = lookup_spec(names[0]) if names else None
    n = max(len(inv.gpus), len(meas.gpus))
    link = link_from(inv.topo_text, meas.p2p, n)
    gpus = []
    for pos in range(n):
        entry: dict[str, Any] = dataclasses.asdict(inv.gpus[pos]) if pos < len(inv.gpus) else {}
        if pos < len(meas.gpus):
            m = dataclasses.asdict(meas.gpus[pos])
            entry["cuda_index"] = m.pop("index")
            for key, value in m.items():
                if entry.get(key) is None or key not in {"name", "memory_total_mib"}:
                    entry[key] = value  # nvidia-smi's view wins for identity fields
        entry.setdefault("index", entry.get("cuda_index", pos))
        gpus.append(entry)
    return {
        "schema": SCHEMA,
        "decision": decision.status,
        "reasons": list(decision.reasons),
        "mode": mode,
        "exit_code": exit_code(decision, mode),
        "seconds": round(seconds, 2),
        "started_at": started_at,
        "host": host,
        "replay": replay,
        "expected": dataclasses.asdict(expect),
        "thresholds": dataclasses.asdict(thresholds),
        "sizes": dataclasses.asdict(sizes),
        "datasheet": dataclasses.asdict(spec) if spec else None,
        "versions": {
            "driver": inv.driver_version,
            "cuda_driver": inv.cuda_driver_version,
            "cuda_runtime": meas.versions.get("cuda_runtime"),
            "torch": meas.versions.get("torch"),
            "nccl": meas.versions.get("nccl"),
            "python": meas.versions.get("python"),
        },
        "link": {"type": link.kind, "detail": link.detail, "matrix": [list(r) for r in link.matrix],
                 "p2p": meas.p2p},
        "gpus": gpus,
        "allreduce": dataclasses.asdict(meas.allreduce) if meas.allreduce else None,
        "measure_error": meas.error,
        "checks": [check_to_dict(c) for c in checks],
        "notes": list(inv.notes),
    }


def render_text(report: Mapping[str, Any]) -> list[str]:
    """The human-readable lines: a header, one line per check, and the decision last."""
    versions = report["versions"]
    names = sorted({g.get("name") or "?" for g in report["gpus"]})
    lines = [
        f"preflight host={_fmt(report['host'])} gpus={len(report['gpus'])} model={_fmt(', '.join(names) or '-')} "
        f"mode={report['mode']}" + (" replay=true" if report.get("replay") else ""),
        "versions " + " ".join(f"{k}={_fmt(v)}" for k, v in versions.items()),
        f"link type={report['link']['type']} detail={_fmt(report['link']['detail'])}",
    ]
    for check in report["checks"]:
        lines.append(format_line(Check(**check)))
    for note in report.get("notes", []):
        lines.append(f"note {_fmt(note)}")
    reasons = "; ".join(report["reasons"])
    lines.append(f"decision={report['decision']} exit_code={report['exit_code']} seconds={report['seconds']}"
                 + (f" reasons={_fmt(reasons)}" if reasons else ""))
    return lines


def write_json(path: Path, report: Mapping[str, Any]) -> None:
    """Write atomically: the launcher reads this file, and must never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


# -- orchestration and CLI ------------------------------------------------------------------------


def run_preflight(*, mode: str = "enforce", expect: Expectations = NO_EXPECTATIONS,
                  thresholds: Thresholds = DEFAULT_THRESHOLDS, sizes: Sizes = DEFAULT_SIZES, timeout_s: float = 45.0,
                  source: MeasurementSource | None = None, inventory: Inventory | None = None,
                  runner: CommandRunner = run_command) -> dict[str, Any]:
    """Inventory, measure, check, decide; returns the report (also the entry point for a notebook).

    ``source`` and ``inventory`` are injectable so that tests and the sandbox can run it without GPUs.
    """
    t0 = time.monotonic()
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    replay = isinstance(source, ReplayMeasurements)
    if inventory is None:
        inventory = collect_basic_inventory(find_nvidia_smi(), runner)
        visible = visible_gpus(inventory.gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
        if len(visible) != len(inventory.gpus):
            inventory.notes.append(f"CUDA_VISIBLE_DEVICES limits this process to {len(visible)} of "
                                   f"{len(inventory.gpus)} GPUs")
            inventory.gpus = visible
        complete_inventory(inventory, runner)
    n = len(inventory.gpus)
    if inventory.smi_error and n == 0:
        n = _torch_device_count()
    if n > 0 or replay:
        meas = (source or WorkerMeasurements()).measure(n, sizes, timeout_s)
    else:  # nothing to measure; say whether torch could have
        meas = Measurements(error=None if importlib.util.find_spec("torch") else "PyTorch is not installed")
    checks = evaluate(inventory, meas, expect, thresholds)
    decision = decide(checks)
    host = os.environ.get("NODE_NAME") or socket.gethostname()
    return build_report(inv=inventory, meas=meas, checks=checks, decision=decision, mode=mode, expect=expect,
                        thresholds=thresholds, sizes=sizes, seconds=time.monotonic() - t0, started_at=started,
                        host=host, replay=replay)


def _torch_device_count() -> int:
    """Without nvidia-smi, ask torch how many GPUs there are (0 if torch or CUDA is missing)."""
    if importlib.util.find_spec("torch") is None:
        return 0
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preflight.py",
        description="Check a GPU node against its datasheet before a long benchmark.",
        epilog="Exit codes: 0 healthy or warn mode; 2 a check failed (enforce); 1 could not run (enforce), "
               "crashed, or bad arguments.")
    parser.add_argument("--json", type=Path, help="write the report here (a JSON object)")
    parser.add_argument("--mode", choices=("enforce", "warn"), default="enforce",
                        help="enforce: exit 2 on a failed check; warn: report only, exit 0")
    parser.add_argument("--expect-gpus", type=int, help="number of GPUs the node must have")
    parser.add_argument("--expect-model", help="GPU model every GPU must be, e.g. H200 or H100")
    parser.add_argument("--node-type", choices=sorted(NODE_TYPES),
                        help="shorthand for --expect-gpus/--expect-model (e.g. a3-ultra = 8 x H200)")
    parser.add_argument("--min-driver", help="minimum NVIDIA driver version, e.g. 550.54.15")
    defaults = Thresholds()
    parser.add_argument("--min-hbm-fraction", type=float, default=defaults.hbm_fraction)
    parser.add_argument("--min-matmul-fraction", type=float, default=defaults.matmul_fraction)
    parser.add_argument("--min-allreduce-fraction", type=float, default=defaults.allreduce_fraction)
    parser.add_argument("--min-memory-fraction", type=float, default=defaults.memory_fraction)
    parser.add_argument("--max-memory-used-fraction", type=float, default=defaults.max_memory_used_fraction)
    size = Sizes()
    parser.add_argument("--hbm-mib", type=int, default=size.hbm_bytes >> 20, help="copy buffer size")
    parser.add_argument("--matmul-n", type=int, default=size.matmul_n, help="square matrix size")
    parser.add_argument("--allreduce-mib", type=int, default=size.allreduce_bytes >> 20)
    parser.add_argument("--timeout", type=float, default=45.0, help="seconds before workers are killed")
    parser.add_argument("--replay", type=Path, help="recompute decisions from a recorded report (no GPU)")
    parser.add_argument("--debug", action="store_true", help="print tracebacks on a crash")
    return parser


def main(argv: Sequence[str] | None = None, *, source: MeasurementSource | None = None,
         inventory: Inventory | None = None) -> int:
    """CLI entry point; returns the exit code (a crash is caught here and reported in one line)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error: that code means "unhealthy" here
        return EXIT_OK if exc.code in (0, None) else EXIT_ERROR
    t0 = time.monotonic()
    try:
        node = NODE_TYPES.get(args.node_type) if args.node_type else None
        expect = Expectations(gpus=args.expect_gpus if args.expect_gpus is not None else (node.gpus if node else None),
                              model=args.expect_model or (node.model if node else None), min_driver=args.min_driver)
        thresholds = Thresholds(hbm_fraction=args.min_hbm_fraction, matmul_fraction=args.min_matmul_fraction,
                                allreduce_fraction=args.min_allreduce_fraction,
                                memory_fraction=args.min_memory_fraction,
                                max_memory_used_fraction=args.max_memory_used_fraction)
        sizes = Sizes(hbm_bytes=args.hbm_mib << 20, matmul_n=args.matmul_n, allreduce_bytes=args.allreduce_mib << 20)
        if args.replay is not None:
            replay = ReplayMeasurements(json.loads(args.replay.read_text()))
            source, inventory = replay, replay.inventory()
        report = run_preflight(mode=args.mode, expect=expect, thresholds=thresholds, sizes=sizes,
                               timeout_s=args.timeout, source=source, inventory=inventory)
    except Exception as exc:
        message = f"preflight: crashed: {type(exc).__name__}: {exc}"
        print(message, file=sys.stderr)
        if args.debug:
            traceback.print_exc()
        if args.json:
            with contextlib.suppress(OSError):
                write_json(args.json, {"schema": SCHEMA, "decision": "crash", "reasons": [message],
                                       "mode": args.mode, "exit_code": EXIT_ERROR,
                                       "seconds": round(time.monotonic() - t0, 2), "checks": [], "gpus": []})
        return EXIT_ERROR
    for line in render_text(report):
        print(line, flush=True)
    if args.json:
        write_json(args.json, report)
    if report["decision"] != PASS:
        verdict = {"fail": "node is unhealthy", "error": "could not prove the node healthy"}[report["decision"]]
        action = "continuing (warn mode)" if args.mode == "warn" else "stopping the run"
        print(f"preflight: {verdict}, {action}: " + "; ".join(report["reasons"]), file=sys.stderr)
    return int(report["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
