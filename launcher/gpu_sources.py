"""Where the preflight's measurements come from: live workers on the GPUs, or a recorded report.

:class:`WorkerMeasurements` starts ``gpu_measure.py`` once per GPU and reads back the marked JSON lines
each prints; :class:`ReplayMeasurements` reads a preflight JSON written earlier (``--replay``), for the
local sandbox (no GPU) and for tests. Both hand the checks the same :class:`gpu_measure.Measurements`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import gpu_measure
from gpu_inventory import GpuInfo, Inventory
from gpu_measure import (
    ALLREDUCE_MARK,
    GPU_MARK,
    INFO_MARK,
    WORKER_ENV,
    AllReduceMeasurement,
    GpuMeasurement,
    Measurements,
    Sizes,
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_worker_output(rank: int, text: str) -> tuple[GpuMeasurement | None, AllReduceMeasurement | None,
                                                       dict[str, Any] | None]:
    """The marked JSON lines of one worker's stdout; unmarked lines are NCCL or torch log."""
    gpu = allreduce = info = None
    for line in text.splitlines():
        if line.startswith(GPU_MARK):
            data = json.loads(line[len(GPU_MARK):])
            gpu = GpuMeasurement(**{k: data.get(k) for k in _field_names(GpuMeasurement)})
        elif line.startswith(ALLREDUCE_MARK):
            data = json.loads(line[len(ALLREDUCE_MARK):])
            allreduce = AllReduceMeasurement(**{k: data.get(k) for k in _field_names(AllReduceMeasurement)})
        elif line.startswith(INFO_MARK):
            info = json.loads(line[len(INFO_MARK):])
    if gpu is not None:
        gpu.index = rank
    return gpu, allreduce, info


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _tail(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


class MeasurementSource(Protocol):
    """Where measurements come from: live workers on GPUs, or a recorded report (``--replay``)."""

    def measure(self, n_gpus: int, sizes: Sizes, timeout_s: float) -> Measurements: ...


class WorkerMeasurements:
    """Start one worker process per GPU (``gpu_measure.py``), collect their marked lines, kill stragglers.

    ``script`` is the worker to run (tests give a fake one); it gets ``--rank --world --port --sizes``.
    """

    def __init__(self, python: str = sys.executable, script: str | None = None, require_torch: bool = True) -> None:
        self.python = python
        self.script = script or str(Path(gpu_measure.__file__).resolve())
        self.require_torch = require_torch  # tests run a fake worker script without torch

    def measure(self, n_gpus: int, sizes: Sizes, timeout_s: float) -> Measurements:
        if self.require_torch and importlib.util.find_spec("torch") is None:
            return Measurements(error=f"PyTorch is not installed for {self.python}: the measurements "
                                      "need it (pip install torch, or run inside the benchmark image)")
        if n_gpus < 1:
            return Measurements(error="no GPU to measure")
        port = _free_port()
        env = {**os.environ, **WORKER_ENV, "PYTHONUNBUFFERED": "1"}
        procs = []
        with tempfile.TemporaryDirectory(prefix="preflight-") as tmp:
            for rank in range(n_gpus):
                out = open(Path(tmp, f"{rank}.out"), "w")  # noqa: SIM115 - closed below
                err = open(Path(tmp, f"{rank}.err"), "w")  # noqa: SIM115
                cmd = [self.python, self.script, "--rank", str(rank), "--world", str(n_gpus),
                       "--port", str(port), "--sizes", json.dumps(dataclasses.asdict(sizes))]
                procs.append((subprocess.Popen(cmd, stdout=out, stderr=err, env=env), out, err))
            deadline = time.monotonic() + timeout_s
            timed_out = set()
            for rank, (proc, out, err) in enumerate(procs):
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    timed_out.add(rank)
                out.close()
                err.close()
            return self._collect(n_gpus, sizes, timeout_s, procs, timed_out, tmp)

    def _collect(self, n_gpus: int, sizes: Sizes, timeout_s: float, procs: list[Any], timed_out: set[int],
                 tmp: str) -> Measurements:
        result = Measurements()
        reduces = []
        for rank, (proc, _out, _err) in enumerate(procs):
            stdout = Path(tmp, f"{rank}.out").read_text(errors="replace")
            stderr = Path(tmp, f"{rank}.err").read_text(errors="replace")
            gpu, allreduce, info = parse_worker_output(rank, stdout)
            why = (f"timed out after {timeout_s:.0f} s" if rank in timed_out
                   else f"worker exited with code {proc.returncode}: {_tail(stderr)}")
            if gpu is None:
                gpu = GpuMeasurement(index=rank, error=why)
            result.gpus.append(gpu)
            if info:
                result.p2p = info.pop("p2p", None)
                result.versions.update({k: str(v) for k, v in info.items() if v is not None})
            if n_gpus > 1:
                reduces.append(allreduce or AllReduceMeasurement(world=n_gpus, nbytes=sizes.allreduce_bytes,
                                                                 error=why))
        if reduces:
            failed = [r for r in reduces if r.error]
            result.allreduce = failed[0] if failed else reduces[0]
        return result


class ReplayMeasurements:
    """Measurements read back from a preflight JSON written earlier (``--replay``).

    For the local sandbox (no GPU) and for tests: the decisions, lines and JSON are recomputed from
    recorded figures with the current thresholds, and the report says it is a replay.
    """

    def __init__(self, report: Mapping[str, Any]) -> None:
        self.report = report

    def inventory(self) -> Inventory:
        gpus = [GpuInfo(**{k: g.get(k) for k in _field_names(GpuInfo)}) for g in self.report.get("gpus", [])]
        versions = self.report.get("versions", {})
        inv = Inventory(gpus=gpus, driver_version=versions.get("driver"),
                        cuda_driver_version=versions.get("cuda_driver"), smi_path="replay")
        matrix = self.report.get("link", {}).get("matrix") or []
        if matrix:
            inv.topo_text = "\t".join(["", *[f"GPU{i}" for i in range(len(matrix))]]) + "\n" + "\n".join(
                "\t".join([f"GPU{i}", *row]) for i, row in enumerate(matrix))
        return inv

    def measure(self, n_gpus: int, sizes: Sizes, timeout_s: float) -> Measurements:
        gpus = [GpuMeasurement(**{k: g.get(k) for k in _field_names(GpuMeasurement)})
                for g in self.report.get("gpus", [])]
        ar = self.report.get("allreduce")
        allreduce = AllReduceMeasurement(**{k: ar.get(k) for k in _field_names(AllReduceMeasurement)}) if ar else None
        versions = {k: v for k, v in self.report.get("versions", {}).items()
                    if k in {"torch", "cuda_runtime", "nccl", "python"} and v is not None}
        return Measurements(gpus=gpus, allreduce=allreduce, versions=versions,
                            p2p=self.report.get("link", {}).get("p2p"), error=self.report.get("measure_error"))
