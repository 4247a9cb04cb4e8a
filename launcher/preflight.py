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

The file is self-contained on purpose: it is shipped into the pod in a ConfigMap beside the other
``launcher/*.py`` files, so it imports only the standard library, and PyTorch lazily inside the
measuring functions, which run in child processes (``--worker``, one per GPU). Parsing, datasheet
lookup, threshold decisions and reporting are pure functions, tested on CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import dataclasses
import datetime as _dt
import importlib.util
import io
import json
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

SCHEMA = "preflight/1"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_UNHEALTHY = 2

PASS, FAIL, WARN, SKIP, ERROR = "pass", "fail", "warn", "skip", "error"

# Lines the worker processes print for the parent to collect; anything else they print is log.
_GPU_MARK = "PREFLIGHT_GPU "
_ALLREDUCE_MARK = "PREFLIGHT_ALLREDUCE "
_INFO_MARK = "PREFLIGHT_INFO "

# NVLink multicast (NVLS) can take a shared host's GPUs out of service; keep it off in every process
# that runs NCCL, whatever the caller's environment says.
WORKER_ENV = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}


# --------------------------------------------------------------------------------------------------
# Datasheet figures
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSpec:
    """One GPU's datasheet limits: the ceilings every measurement is reported as a fraction of.

    ``link_gbps`` is the GPU-to-GPU bandwidth *per direction* (half the bidirectional figure the
    datasheets print), because that is what nccl-tests' bus bandwidth approaches on a healthy link.
    ``memory_gib``: the datasheets' "80GB"/"141GB" are, as nvidia-smi shows, close to GiB
    (81559 MiB on an H100 SXM, 143771 MiB on an H200), so they are compared as GiB.
    """

    key: str
    model: str
    memory_gib: float
    hbm_tbps: float
    bf16_dense_tflops: float
    link: str
    link_gbps: float
    source: str


# Order matters: the first pattern that matches the nvidia-smi/torch name wins, so the NVL and PCIe
# variants come before the plain SXM names they contain.
DATASHEET: tuple[tuple[str, GpuSpec], ...] = (
    # NVIDIA H100 datasheet (nvidia.com/en-us/data-center/h100/, "H100 NVL" column): 94 GB,
    # 3.9 TB/s, BF16 1,671 TFLOPS with sparsity -> 835.5 dense, NVLink bridge 600 GB/s bidirectional.
    (
        r"\bH100\b.*\bNVL\b",
        GpuSpec("H100-NVL", "H100", 94, 3.9, 835.5, "NVLink4-bridge", 300,
                "NVIDIA H100 datasheet, H100 NVL column"),
    ),
    # Same datasheet, "H100 PCIe" (2023 datasheet revision): 80 GB, 2.0 TB/s, BF16 1,513 sparse ->
    # 756 dense; without a bridge GPUs talk over PCIe Gen5 x16, 64 GB/s per direction.
    (
        r"\bH100\b.*\bPCIe\b",
        GpuSpec("H100-PCIe", "H100", 80, 2.0, 756.0, "PCIe5", 64,
                "NVIDIA H100 datasheet, H100 PCIe column"),
    ),
    # Same datasheet, "H100 SXM" (nvidia-smi: "NVIDIA H100 80GB HBM3"): 80 GB HBM3, 3.35 TB/s,
    # BF16 1,979 TFLOPS with sparsity -> 989.4 dense, NVLink 900 GB/s bidirectional -> 450 per direction.
    (
        r"\bH100\b",
        GpuSpec("H100-SXM", "H100", 80, 3.35, 989.4, "NVLink4", 450,
                "NVIDIA H100 datasheet, H100 SXM column"),
    ),
    # NVIDIA H200 datasheet (nvidia.com/en-us/data-center/h200/, "H200 NVL"): 141 GB, 4.8 TB/s,
    # BF16 1,671 sparse -> 835.5 dense, NVLink bridge 900 GB/s bidirectional -> 450 per direction.
    (
        r"\bH200\b.*\bNVL\b",
        GpuSpec("H200-NVL", "H200", 141, 4.8, 835.5, "NVLink4-bridge", 450,
                "NVIDIA H200 datasheet, H200 NVL column"),
    ),
    # Same datasheet, "H200 SXM" (nvidia-smi: "NVIDIA H200"; GCP A3 Ultra): 141 GB HBM3e, 4.8 TB/s,
    # BF16 1,979 sparse -> 989.4 dense (the H100's SM array), NVLink 900 GB/s -> 450 per direction.
    (
        r"\bH200\b",
        GpuSpec("H200-SXM", "H200", 141, 4.8, 989.4, "NVLink4", 450,
                "NVIDIA H200 datasheet, H200 SXM column"),
    ),
    # NVIDIA HGX B200 specification (nvidia.com/en-us/data-center/hgx/, per GPU = node / 8; GCP A4):
    # 180 GB HBM3e, 8 TB/s, BF16 4.5 PFLOPS with sparsity -> 2,250 dense at 1,000 W,
    # NVLink 5 1.8 TB/s bidirectional -> 900 per direction.
    (
        r"\bB200\b",
        GpuSpec("B200-HGX", "B200", 180, 8.0, 2250.0, "NVLink5", 900,
                "NVIDIA HGX B200 specification, per GPU"),
    ),
    # NVIDIA A100 datasheet (nvidia.com/en-us/data-center/a100/), "A100 80GB SXM": 2,039 GB/s,
    # BF16 312 TFLOPS dense, NVLink 600 GB/s bidirectional -> 300 per direction.
    (
        r"\bA100-SXM4-80GB\b",
        GpuSpec("A100-SXM-80GB", "A100", 80, 2.039, 312.0, "NVLink3", 300,
                "NVIDIA A100 datasheet, A100 80GB SXM column"),
    ),
)


def lookup_spec(name: str) -> GpuSpec | None:
    """The datasheet entry for a GPU name as nvidia-smi or torch prints it; None if unknown.

    >>> lookup_spec("NVIDIA H100 80GB HBM3").key
    'H100-SXM'
    >>> lookup_spec("NVIDIA GH200 480GB") is None   # a different chip, not an H200
    True
    """
    for pattern, spec in DATASHEET:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return spec
    return None


@dataclass(frozen=True)
class NodeType:
    """What a node type promises: ``--node-type a3-ultra`` stands for ``--expect-gpus 8 --expect-model H200``."""

    gpus: int
    model: str


# GCP machine families the toolkit targets (cloud.google.com/compute/docs/gpus).
NODE_TYPES: dict[str, NodeType] = {
    "a3-ultra": NodeType(8, "H200"),  # a3-ultragpu-8g
    "a3-mega": NodeType(8, "H100"),  # a3-megagpu-8g
    "a3-high": NodeType(8, "H100"),  # a3-highgpu-8g
    "a4": NodeType(8, "B200"),  # a4-highgpu-8g
}


def model_matches(name: str, expected: str) -> bool:
    """True when every word of ``expected`` is a word of the GPU's name (case-insensitive).

    Words, not substrings, so that "H20" does not match "NVIDIA H200" and "H200" does not match "GH200".
    """
    words = set(re.split(r"[\s_]+", name.upper().replace("NVIDIA", " ")))
    want = [w for w in re.split(r"[\s_]+", expected.upper()) if w]
    return bool(want) and all(w in words for w in want)


# --------------------------------------------------------------------------------------------------
# Parsing nvidia-smi output (pure)
# --------------------------------------------------------------------------------------------------

_NA = {"", "n/a", "[n/a]", "[not supported]", "not supported", "[unknown error]", "[insufficient permissions]"}

BASIC_FIELDS = ("index", "uuid", "name", "pci.bus_id", "memory.total", "memory.used", "driver_version")
ECC_FIELDS = ("index", "ecc.mode.current", "ecc.errors.uncorrected.volatile.total",
              "ecc.errors.corrected.volatile.total")
REMAP_FIELDS = ("remapped_rows.pending", "remapped_rows.failure")
POWER_FIELDS = ("index", "power.limit", "power.default_limit")


def parse_smi_csv(text: str, fields: Sequence[str]) -> list[dict[str, str | None]]:
    """Rows of ``nvidia-smi --query-gpu=... --format=csv,noheader,nounits``; N/A values become None.

    A header line, if present, is skipped; a row with the wrong number of columns is an error, since
    silently shifting columns would put one GPU's memory into another field.
    """
    rows: list[dict[str, str | None]] = []
    for raw in csv.reader(io.StringIO(text)):
        cells = [c.strip() for c in raw]
        if not cells or all(c == "" for c in cells):
            continue
        if cells[0].lower() == fields[0]:
            continue  # a header line
        if len(cells) != len(fields):
            raise ValueError(f"nvidia-smi row has {len(cells)} columns, expected {len(fields)}: {raw!r}")
        rows.append({f: (None if c.lower() in _NA else c) for f, c in zip(fields, cells, strict=True)})
    return rows


def _to_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.split()[0])
    except (ValueError, IndexError):
        return None


def _to_int(value: str | None) -> int | None:
    number = _to_float(value)
    return None if number is None else int(number)


def _to_bool(value: str | None) -> bool | None:
    if value is None:
        return None
    low = value.strip().lower()
    if low in {"yes", "true", "1"}:
        return True
    if low in {"no", "false", "0"}:
        return False
    return None


def parse_smi_header(text: str) -> tuple[str | None, str | None]:
    """(driver version, CUDA version) from plain ``nvidia-smi`` output's banner."""
    driver = re.search(r"Driver Version:\s*([\d.]+)", text)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", text)
    return (driver.group(1) if driver else None, cuda.group(1) if cuda else None)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_topo(text: str) -> list[list[str]]:
    """The GPU-by-GPU block of ``nvidia-smi topo -m`` as a square matrix of its entries.

    The header carries ANSI underline codes and multi-word columns ("CPU Affinity"), so only the
    leading GPU columns are trusted: ``[["X", "NV18"], ["NV18", "X"]]`` for two NVLinked GPUs.
    """
    lines = [_ANSI.sub("", line) for line in text.splitlines() if line.strip()]
    header: list[str] | None = None
    rows: list[list[str]] = []
    for line in lines:
        tokens = line.split()
        if header is None:
            if tokens and re.fullmatch(r"GPU\d+", tokens[0]):
                header = _leading(tokens, r"GPU\d+")
            continue
        if tokens and re.fullmatch(r"GPU\d+", tokens[0]):
            rows.append(tokens[1 : 1 + len(header)])
    if header is None:
        return []
    return [row for row in rows if len(row) == len(header)][: len(header)]


def _leading(tokens: Sequence[str], pattern: str) -> list[str]:
    out = []
    for token in tokens:
        if not re.fullmatch(pattern, token):
            break
        out.append(token)
    return out


@dataclass(frozen=True)
class LinkInfo:
    """How the GPUs reach each other: ``kind`` is NVLink, PCIe, mixed, single or unknown."""

    kind: str
    detail: str
    matrix: tuple[tuple[str, ...], ...] = ()


# nvidia-smi topo legend: NV# = # bonded NVLinks; PIX/PXB = through PCIe switches; PHB = through a
# host bridge; NODE = across host bridges in one NUMA node; SYS = across the CPU interconnect.
_PCIE_CODES = ("PIX", "PXB", "PHB", "NODE", "SYS")


def classify_link(matrix: Sequence[Sequence[str]], n_gpus: int) -> LinkInfo:
    """Summarise a topo matrix into one link type for the report, naming the weakest pair."""
    frozen = tuple(tuple(row) for row in matrix)
    if n_gpus < 2:
        return LinkInfo("single", f"{n_gpus} GPU: no GPU-to-GPU link", frozen)
    if len(matrix) < 2:
        return LinkInfo("unknown", "nvidia-smi topo -m gave no GPU matrix", frozen)
    pairs = [matrix[i][j] for i in range(len(matrix)) for j in range(len(matrix)) if i != j]
    nv = [p for p in pairs if re.fullmatch(r"NV\d+", p)]
    pcie = [p for p in pairs if p in _PCIE_CODES]
    if nv and len(nv) == len(pairs):
        counts = sorted({int(p[2:]) for p in nv})
        return LinkInfo("NVLink", f"NV{counts[0]} between every pair of {len(matrix)} GPUs"
                        + ("" if len(counts) == 1 else f" (up to NV{counts[-1]})"), frozen)
    if pcie and len(pcie) == len(pairs):
        worst = max(pcie, key=_PCIE_CODES.index)
        return LinkInfo("PCIe", f"no NVLink: worst pair is {worst} (PCIe)", frozen)
    if nv and pcie:
        worst = max(pcie, key=_PCIE_CODES.index)
        return LinkInfo("mixed", f"{len(pcie)} of {len(pairs)} pairs without NVLink (worst {worst})", frozen)
    return LinkInfo("unknown", f"unrecognised topo entries {sorted(set(pairs))}", frozen)


# --------------------------------------------------------------------------------------------------
# Inventory (nvidia-smi, tolerated if absent)
# --------------------------------------------------------------------------------------------------


@dataclass
class GpuInfo:
    """One GPU as nvidia-smi (or, without it, torch) describes it before any measurement."""

    index: int
    name: str
    memory_total_mib: float | None = None
    memory_used_mib: float | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    ecc_mode: str | None = None
    ecc_uncorrected_volatile: int | None = None
    ecc_corrected_volatile: int | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failure: bool | None = None
    power_limit_w: float | None = None
    power_default_limit_w: float | None = None


@dataclass
class Inventory:
    """What the node says about itself; ``smi_error`` is why nvidia-smi gave nothing, if it did."""

    gpus: list[GpuInfo]
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    smi_path: str | None = None
    smi_error: str | None = None
    topo_text: str | None = None
    notes: list[str] = field(default_factory=list)


def gpus_from_smi(basic: str) -> list[GpuInfo]:
    """GpuInfo for each row of the basic query (``BASIC_FIELDS``)."""
    return [
        GpuInfo(
            index=_to_int(row["index"]) or 0,
            name=row["name"] or "unknown",
            memory_total_mib=_to_float(row["memory.total"]),
            memory_used_mib=_to_float(row["memory.used"]),
            uuid=row["uuid"],
            pci_bus_id=row["pci.bus_id"],
        )
        for row in parse_smi_csv(basic, BASIC_FIELDS)
    ]


def merge_power(gpus: Sequence[GpuInfo], text: str) -> None:
    """Fill the enforced and default power limits (``POWER_FIELDS``), by index."""
    by_index = {g.index: g for g in gpus}
    for row in parse_smi_csv(text, POWER_FIELDS):
        gpu = by_index.get(_to_int(row["index"]) or 0)
        if gpu is not None:
            gpu.power_limit_w = _to_float(row["power.limit"])
            gpu.power_default_limit_w = _to_float(row["power.default_limit"])


def merge_ecc(gpus: Sequence[GpuInfo], text: str, fields: Sequence[str]) -> None:
    """Fill ECC and row-remap fields from an ECC query (``ECC_FIELDS`` [+ ``REMAP_FIELDS``]), by index."""
    by_index = {g.index: g for g in gpus}
    for row in parse_smi_csv(text, fields):
        gpu = by_index.get(_to_int(row["index"]) or 0)
        if gpu is None:
            continue
        gpu.ecc_mode = row["ecc.mode.current"]
        gpu.ecc_uncorrected_volatile = _to_int(row["ecc.errors.uncorrected.volatile.total"])
        gpu.ecc_corrected_volatile = _to_int(row["ecc.errors.corrected.volatile.total"])
        if "remapped_rows.pending" in row:
            gpu.remapped_rows_pending = _to_bool(row["remapped_rows.pending"])
            gpu.remapped_rows_failure = _to_bool(row["remapped_rows.failure"])


Runner = Callable[[Sequence[str]], tuple[int, str]]


def run_command(cmd: Sequence[str], timeout: float = 20.0) -> tuple[int, str]:
    """Run a command, returning (exit code, stdout or stderr); never raises for a missing binary."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        return 127, str(exc)
    except subprocess.TimeoutExpired:
        return 124, f"{cmd[0]} timed out after {timeout:.0f} s"
    return proc.returncode, proc.stdout if proc.returncode == 0 else (proc.stdout + proc.stderr)


def find_nvidia_smi() -> str | None:
    """nvidia-smi on PATH, else where GKE's device plugin mounts it (often not on PATH in pods)."""
    found = shutil.which("nvidia-smi")
    if found:
        return found
    for candidate in ("/usr/local/nvidia/bin/nvidia-smi", "/usr/bin/nvidia-smi"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def cuda_driver_version() -> str | None:
    """The CUDA version the driver supports ("13.0"), read from libcuda without initialising CUDA."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(version)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return f"{version.value // 1000}.{(version.value % 1000) // 10}"


def collect_basic_inventory(smi: str | None, runner: Runner = run_command) -> Inventory:
    """Query GPU names, memory and driver: the first step, since it decides how many workers start."""
    if smi is None:
        return Inventory(gpus=[], smi_error="nvidia-smi not found (PATH, /usr/local/nvidia/bin)")
    code, out = runner([smi, "--query-gpu=" + ",".join(BASIC_FIELDS), "--format=csv,noheader,nounits"])
    if code != 0:
        first = next((line for line in out.splitlines() if line.strip()), f"exit code {code}")
        return Inventory(gpus=[], smi_path=smi, smi_error=f"nvidia-smi failed: {first.strip()}")
    rows = parse_smi_csv(out, BASIC_FIELDS)
    gpus = gpus_from_smi(out)
    driver = next((r["driver_version"] for r in rows if r["driver_version"]), None)
    return Inventory(gpus=gpus, driver_version=driver, smi_path=smi)


def complete_inventory(inv: Inventory, runner: Runner = run_command) -> None:
    """Add ECC, row-remapping, topology and the CUDA driver version; every part may be missing."""
    inv.cuda_driver_version = cuda_driver_version()
    if inv.smi_path is None or inv.smi_error:
        return
    smi = inv.smi_path
    fields: tuple[str, ...] = ECC_FIELDS + REMAP_FIELDS
    code, out = runner([smi, "--query-gpu=" + ",".join(fields), "--format=csv,noheader,nounits"])
    if code != 0:  # older drivers do not know the remapped_rows fields and reject the whole query
        fields = ECC_FIELDS
        code, out = runner([smi, "--query-gpu=" + ",".join(fields), "--format=csv,noheader,nounits"])
    if code == 0:
        merge_ecc(inv.gpus, out, fields)
    else:
        inv.notes.append("nvidia-smi ECC query failed; ECC not checked")
    code, out = runner([smi, "--query-gpu=" + ",".join(POWER_FIELDS), "--format=csv,noheader,nounits"])
    if code == 0:
        merge_power(inv.gpus, out)
    if inv.cuda_driver_version is None:
        code, out = runner([smi])
        if code == 0:
            inv.cuda_driver_version = parse_smi_header(out)[1]
    if len(inv.gpus) > 1:
        code, out = runner([smi, "topo", "-m"])
        inv.topo_text = out if code == 0 else None
        if code != 0:
            inv.notes.append("nvidia-smi topo -m failed; link type from peer access only")


def visible_gpus(gpus: list[GpuInfo], cuda_visible: str | None) -> list[GpuInfo]:
    """The GPUs this process's CUDA sees: nvidia-smi ignores CUDA_VISIBLE_DEVICES, torch does not."""
    if cuda_visible is None or cuda_visible.strip() == "":
        return gpus if cuda_visible is None else []
    keep = []
    for item in (s.strip() for s in cuda_visible.split(",")):
        match = next((g for g in gpus if str(g.index) == item or (g.uuid and g.uuid.startswith(item))), None)
        if match is None:
            break  # CUDA stops at the first invalid entry
        keep.append(match)
    return keep


# --------------------------------------------------------------------------------------------------
# Measurements (torch, lazily, in worker processes)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """Problem sizes, chosen so each measurement runs well past launch overhead and L2 (50-60 MB).

    2 GiB per copy buffer is ~40x the H100/H200 L2; an 8192^3 BF16 product is ~1.1 TFLOP (~1.4 ms);
    a 1 GiB all-reduce sits on nccl-tests' bandwidth plateau. All of it finishes in seconds.
    """

    hbm_bytes: int = 2 << 30
    matmul_n: int = 8192
    allreduce_bytes: int = 1 << 30
    warmup_s: float = 0.3
    iters: int = 10
    repeats: int = 5


@dataclass
class GpuMeasurement:
    """One GPU's measured figures as its worker reported them; ``error`` if it could not.

    ``index`` is the CUDA ordinal (the worker's rank). It differs from nvidia-smi's index under
    CUDA_VISIBLE_DEVICES, so measurements pair with the inventory by position, not by index.
    """

    index: int
    hbm_copy_tbps: float | None = None
    bf16_matmul_tflops: float | None = None
    matmul_rel_error: float | None = None
    name: str | None = None
    memory_total_mib: float | None = None
    error: str | None = None


@dataclass
class AllReduceMeasurement:
    """The node's all-reduce figures; nccl-tests definitions: algbw = bytes / time, busbw scales it."""

    world: int
    nbytes: int
    busbw_gbps: float | None = None
    algbw_gbps: float | None = None
    seconds_per_op: float | None = None
    correct: bool | None = None
    error: str | None = None


@dataclass
class Measurements:
    """Everything the workers measured. ``error`` set means nothing could be measured at all."""

    gpus: list[GpuMeasurement] = field(default_factory=list)
    allreduce: AllReduceMeasurement | None = None
    versions: dict[str, str] = field(default_factory=dict)
    p2p: list[list[bool]] | None = None
    error: str | None = None


def busbw_from_algbw(algbw: float, world: int) -> float:
    """nccl-tests' all-reduce bus bandwidth: the per-link traffic a ring needs, comparable to link speed."""
    return algbw * 2 * (world - 1) / world


def _time_per_call(torch: Any, fn: Callable[[], Any], sizes: Sizes) -> float:
    """Median seconds per call, timed with CUDA events in batches after a timed warm-up.

    Warm-up runs for ``sizes.warmup_s`` of wall time so that clocks ramp and cuBLAS/NCCL pick their
    kernels before timing; events time device work, not launch overhead.
    """
    deadline = time.perf_counter() + sizes.warmup_s
    fn()
    torch.cuda.synchronize()
    while time.perf_counter() < deadline:
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
    samples = []
    for _ in range(sizes.repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(sizes.iters):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1000.0 / sizes.iters)
    return statistics.median(samples)


def measure_hbm_copy(device: int, nbytes: int, sizes: Sizes = Sizes()) -> float:
    """HBM bandwidth in TB/s: a device-to-device copy of ``nbytes``, counting bytes read plus written.

    The copy is checked afterwards: a GPU that copies fast but wrong is not healthy.
    """
    import torch

    with torch.cuda.device(device):
        src = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        seconds = _time_per_call(torch, lambda: dst.copy_(src), sizes)
        if not torch.equal(src, dst):
            raise RuntimeError("device-to-device copy produced different bytes")
    return 2 * nbytes / seconds / 1e12


def measure_bf16_matmul(device: int, n: int, sizes: Sizes = Sizes()) -> tuple[float, float]:
    """Dense BF16 matrix-product rate in TFLOP/s (2 n^3 per product) on random data, plus its error.

    Random inputs, never zeros (zeros run faster than real data). The relative error of a row block
    against an FP32 product of the same inputs (~3e-3 expected for a BF16 result) catches a GPU
    that computes wrong numbers fast.
    """
    import torch

    with torch.cuda.device(device):
        a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        c = torch.empty(n, n, device=device, dtype=torch.bfloat16)
        seconds = _time_per_call(torch, lambda: torch.matmul(a, b, out=c), sizes)
        rows = min(n, 256)
        ref = a[:rows].float() @ b.float()
        rel = float(torch.linalg.vector_norm(c[:rows].float() - ref) / torch.linalg.vector_norm(ref))
    return 2 * n**3 / seconds / 1e12, rel


def measure_allreduce(rank: int, world: int, nbytes: int, sizes: Sizes = Sizes()) -> AllReduceMeasurement:
    """NCCL all-reduce (sum, fp32) of ``nbytes`` across ``world`` ranks of an initialised process group.

    Each rank times a batch with CUDA events; the slowest rank's time counts (as the op ends when
    the last rank does). The first result is checked: ranks contribute rank+1, so every element
    must equal n(n+1)/2.
    """
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device())
    count = nbytes // 4
    buf = torch.full((count,), float(rank + 1), dtype=torch.float32, device=device)
    dist.all_reduce(buf)
    expect = world * (world + 1) / 2
    correct = bool(torch.all(buf == expect).item())
    # Timed ops run on zeros so repeated in-place sums stay finite (n^k would overflow fp32 after a few
    # dozen ops); NCCL's reduction kernels have no value-dependent path, unlike a matrix product.
    buf.zero_()
    seconds = _time_per_call(torch, lambda: dist.all_reduce(buf), sizes)
    slowest = torch.tensor([seconds], dtype=torch.float64, device=device)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    seconds = float(slowest.item())
    algbw = nbytes / seconds / 1e9
    return AllReduceMeasurement(world=world, nbytes=count * 4, busbw_gbps=busbw_from_algbw(algbw, world),
                                algbw_gbps=algbw, seconds_per_op=seconds, correct=correct)


def _emit(mark: str, payload: Mapping[str, Any]) -> None:
    print(mark + json.dumps(payload), flush=True)


def worker_main(rank: int, world: int, port: int, sizes: Sizes) -> int:
    """One GPU's worker: measure its HBM and matmul, then join the all-reduce; print marked JSON lines.

    Per-GPU figures are printed before the all-reduce starts, so a hang in NCCL (which the parent
    ends at its deadline) still leaves them.
    """
    import torch

    gpu: dict[str, Any] = {"index": rank}
    try:
        torch.cuda.set_device(rank)
        props = torch.cuda.get_device_properties(rank)
        gpu.update(name=props.name, memory_total_mib=props.total_memory / 2**20)
        if rank == 0:
            nccl = torch.cuda.nccl.version() if hasattr(torch.cuda, "nccl") else None
            info: dict[str, Any] = {
                "torch": torch.__version__,
                "cuda_runtime": torch.version.cuda,
                "nccl": ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl),
                "python": platform.python_version(),
                "p2p": [[i == j or torch.cuda.can_device_access_peer(i, j) for j in range(world)]
                        for i in range(world)],
            }
            _emit(_INFO_MARK, info)
        gpu["hbm_copy_tbps"] = measure_hbm_copy(rank, sizes.hbm_bytes, sizes)
        gpu["bf16_matmul_tflops"], gpu["matmul_rel_error"] = measure_bf16_matmul(rank, sizes.matmul_n, sizes)
    except Exception as exc:  # report it as this GPU's failure; the parent decides
        gpu["error"] = f"{type(exc).__name__}: {exc}"
    _emit(_GPU_MARK, gpu)
    if world < 2:
        return 0
    import datetime

    import torch.distributed as dist

    try:
        kwargs: dict[str, Any] = {"init_method": f"tcp://127.0.0.1:{port}", "rank": rank, "world_size": world,
                                  "timeout": datetime.timedelta(seconds=60)}
        try:  # device_id (torch >= 2.3) binds the communicator to this GPU at once
            dist.init_process_group("nccl", device_id=torch.device("cuda", rank), **kwargs)
        except TypeError:
            dist.init_process_group("nccl", **kwargs)
        result = measure_allreduce(rank, world, sizes.allreduce_bytes, sizes)
        dist.destroy_process_group()
    except Exception as exc:
        result = AllReduceMeasurement(world=world, nbytes=sizes.allreduce_bytes,
                                      error=f"{type(exc).__name__}: {exc}")
    _emit(_ALLREDUCE_MARK, dataclasses.asdict(result))
    return 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_worker_output(rank: int, text: str) -> tuple[GpuMeasurement | None, AllReduceMeasurement | None,
                                                       dict[str, Any] | None]:
    """The marked JSON lines of one worker's stdout; unmarked lines are NCCL or torch log."""
    gpu = allreduce = info = None
    for line in text.splitlines():
        if line.startswith(_GPU_MARK):
            data = json.loads(line[len(_GPU_MARK):])
            gpu = GpuMeasurement(**{k: data.get(k) for k in _field_names(GpuMeasurement)})
        elif line.startswith(_ALLREDUCE_MARK):
            data = json.loads(line[len(_ALLREDUCE_MARK):])
            allreduce = AllReduceMeasurement(**{k: data.get(k) for k in _field_names(AllReduceMeasurement)})
        elif line.startswith(_INFO_MARK):
            info = json.loads(line[len(_INFO_MARK):])
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
    """Start one worker process per GPU (``--worker``), collect their marked lines, kill stragglers.

    Separate processes rather than threads: NCCL wants one process per GPU, and a worker hung in
    NCCL or a driver call can be killed at the deadline without taking the preflight down with it.
    """

    def __init__(self, python: str = sys.executable, script: str | None = None, require_torch: bool = True) -> None:
        self.python = python
        self.script = script or str(Path(__file__).resolve())
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
                cmd = [self.python, self.script, "--worker", "--rank", str(rank), "--world", str(n_gpus),
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


# --------------------------------------------------------------------------------------------------
# Checks and decisions (pure)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """Fractions of the datasheet a healthy node must reach; each one configurable on the CLI.

    Measured on healthy machines (benchmarks/results/preflight-*.txt, 2026-11):
    - HBM copy >= 0.80: a device-to-device copy reaches 0.885-0.895 of the datasheet (H100 SXM
      3.00 of 3.35 TB/s, H200 4.25-4.27 of 4.8), so 0.80 leaves room for noise yet catches a GPU with
      a throttled or degraded memory system.
    - BF16 matmul >= 0.60 of dense peak: measured after a 0.3 s warm-up, i.e. sustained, 0.68-0.70
      (H100 677, H200 676-691 of 989 TFLOP/s): at 700 W the chip hits its power cap and runs ~1.5 GHz
      instead of 1.98 (a burst straight after three warm-ups gives ~0.79, zeros ~0.90). Sustained is
      what a benchmark sees; a GPU with a lowered power limit or poor cooling falls below 0.60.
    - All-reduce >= 0.60 of the per-direction NVLink bandwidth (450 GB/s on H100/H200): nccl-tests
      bus bandwidth of a 1 GiB all-reduce without NVLink multicast is 0.73 on 2 H200s here
      (327 GB/s), 0.73-0.80 on 2-8 H100s (329-361 GB/s, KINDS.md of the device machines); a node
      whose traffic falls back to PCIe (~50 GB/s, ~0.1) or that lost an NVSwitch plane (about a
      quarter of its links, <= ~0.6) lands below. The size matters: 64 MiB reaches only 0.57, 256 MiB
      0.66, 2 GiB 0.75, hence the 1 GiB default.
    - GPU memory >= 0.95 of the datasheet GiB (a smaller card or a MIG slice is not the node we
      asked for); memory already in use <= 0.10 of the total, a maximum (a stale process would
      shrink the KV cache and change the numbers silently).
    """

    hbm_fraction: float = 0.80
    matmul_fraction: float = 0.60
    allreduce_fraction: float = 0.60
    memory_fraction: float = 0.95
    max_memory_used_fraction: float = 0.10
    max_matmul_rel_error: float = 0.02


@dataclass
class Check:
    """One line of the report: a figure against its limit, or a fact against what was expected."""

    name: str
    status: str
    measured: float | str | None = None
    limit: float | str | None = None
    unit: str = ""
    fraction: float | None = None
    threshold: float | None = None
    gpu: int | None = None
    note: str = ""


def ratio_check(name: str, measured: float | None, limit: float | None, unit: str, threshold: float,
                gpu: int | None = None, error: str | None = None) -> Check:
    """measured / limit against a minimum fraction: the shape of every performance check."""
    if error:
        return Check(name, FAIL, measured, limit, unit, None, threshold, gpu, error)
    if measured is None:
        return Check(name, FAIL, None, limit, unit, None, threshold, gpu, "no measurement reported")
    if limit is None or limit <= 0:
        return Check(name, SKIP, measured, None, unit, None, threshold, gpu, "no datasheet figure for this GPU")
    fraction = measured / limit
    status = PASS if fraction >= threshold else FAIL
    note = "" if status == PASS else f"{fraction:.2f} of the datasheet, below the {threshold:.2f} threshold"
    return Check(name, status, measured, limit, unit, fraction, threshold, gpu, note)


def check_gpu_count(found: int | None, expected: int | None, why_unknown: str = "") -> Check:
    """Too few GPUs (a dead one drops off the bus) is the commonest bad-node symptom."""
    if found is None:
        return Check("gpu_count", ERROR, None, expected, "GPUs", note=why_unknown or "GPU count unknown")
    if expected is None:
        status = PASS if found > 0 else FAIL
        return Check("gpu_count", status, found, None, "GPUs",
                     note="" if found else f"no GPU visible{': ' + why_unknown if why_unknown else ''}")
    status = PASS if found == expected else FAIL
    note = "" if status == PASS else f"found {found} GPUs, expected {expected}"
    if found == 0 and why_unknown:
        note += f" ({why_unknown})"
    return Check("gpu_count", status, found, expected, "GPUs", found / expected if expected else None, 1.0,
                 note=note)


def check_gpu_model(names: Sequence[str], expected: str | None) -> Check:
    """Every GPU is the expected model, all the same, and in the datasheet table."""
    distinct = sorted(set(names))
    measured = ", ".join(distinct) if distinct else None
    if not distinct:
        return Check("gpu_model", SKIP, None, expected, note="no GPU name known")
    if len(distinct) > 1:
        return Check("gpu_model", FAIL, measured, expected, note="GPUs of different models on one node")
    if expected and not model_matches(distinct[0], expected):
        return Check("gpu_model", FAIL, measured, expected, note=f"expected {expected}, found {distinct[0]}")
    spec = lookup_spec(distinct[0])
    if spec is None:
        return Check("gpu_model", WARN, measured, expected,
                     note="not in the datasheet table: performance checks skipped")
    return Check("gpu_model", PASS, measured, expected or spec.key, note=spec.key)


def check_memory(gpu: GpuInfo, spec: GpuSpec | None, thresholds: Thresholds) -> list[Check]:
    """Memory size against the datasheet, and memory already taken by someone else."""
    checks = []
    total_gib = None if gpu.memory_total_mib is None else gpu.memory_total_mib / 1024
    if total_gib is None:
        checks.append(Check("memory_total", SKIP, None, None, "GiB", gpu=gpu.index, note="memory size unknown"))
    else:
        checks.append(ratio_check("memory_total", total_gib, spec.memory_gib if spec else None, "GiB",
                                  thresholds.memory_fraction, gpu.index))
    if gpu.memory_used_mib is not None and gpu.memory_total_mib:
        used = gpu.memory_used_mib / gpu.memory_total_mib
        status = PASS if used <= thresholds.max_memory_used_fraction else FAIL
        note = "" if status == PASS else "memory already in use: another process holds this GPU"
        checks.append(Check("memory_used", status, gpu.memory_used_mib / 1024, total_gib, "GiB", used,
                            thresholds.max_memory_used_fraction, gpu.index, note))
    return checks


def check_ecc(gpu: GpuInfo) -> Check:
    """Uncorrected ECC errors since boot, or a failed row remap, mean the memory cannot be trusted.

    Corrected errors and pending remaps are normal wear, noted but not failed; ECC switched off is
    a warning (the node is not configured like production).
    """
    notes = []
    if gpu.ecc_corrected_volatile:
        notes.append(f"{gpu.ecc_corrected_volatile} corrected")
    if gpu.remapped_rows_pending:
        notes.append("row remap pending (takes effect at the next GPU reset)")
    if gpu.remapped_rows_failure:
        return Check("ecc_uncorrected", FAIL, gpu.ecc_uncorrected_volatile, 0, "errors", gpu=gpu.index,
                     note="row remapping failed: the GPU needs service")
    if gpu.ecc_uncorrected_volatile is None:
        mode = (gpu.ecc_mode or "").lower()
        if mode == "disabled":
            return Check("ecc_uncorrected", WARN, None, 0, "errors", gpu=gpu.index, note="ECC is disabled")
        return Check("ecc_uncorrected", SKIP, None, 0, "errors", gpu=gpu.index,
                     note="ECC counters not available (nvidia-smi absent or not supported)")
    status = PASS if gpu.ecc_uncorrected_volatile == 0 else FAIL
    if status == FAIL:
        notes.insert(0, "uncorrected ECC errors since boot")
    return Check("ecc_uncorrected", status, gpu.ecc_uncorrected_volatile, 0, "errors", gpu=gpu.index,
                 note="; ".join(notes))


def check_power(gpu: GpuInfo) -> Check | None:
    """A power limit set below the board's default caps clocks: the commonest cause of a slow matmul.

    A warning, not a failure: the matmul check decides whether the GPU is too slow; this says why.
    (Even at the default 700 W an H100/H200 hits its power cap under sustained dense BF16 and runs
    at ~1.5 GHz instead of 1.98, which is why sustained matmul reaches ~0.68 of the datasheet.)
    """
    if gpu.power_limit_w is None or not gpu.power_default_limit_w:
        return None
    fraction = gpu.power_limit_w / gpu.power_default_limit_w
    status = PASS if fraction >= 0.99 else WARN
    return Check("power_limit", status, gpu.power_limit_w, gpu.power_default_limit_w, "W", fraction, None,
                 gpu.index, "" if status == PASS else "power limit lowered below the board default")


def _version_tuple(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    parts = re.findall(r"\d+", text)
    return tuple(int(p) for p in parts[:3]) if parts else None


def check_cuda_compat(cuda_driver: str | None, cuda_runtime: str | None) -> Check:
    """The driver must support the container's CUDA: a newer major fails at the first kernel.

    An older driver of the same major runs under CUDA minor-version compatibility, but PTX compiled
    for the newer toolkit will not JIT: a warning.
    """
    drv, rt = _version_tuple(cuda_driver), _version_tuple(cuda_runtime)
    if drv is None or rt is None:
        missing = "driver CUDA version" if drv is None else "PyTorch's CUDA runtime version"
        return Check("cuda_compat", SKIP, cuda_driver, cuda_runtime, "version", note=f"{missing} unknown")
    if drv[0] < rt[0]:
        return Check("cuda_compat", FAIL, cuda_driver, cuda_runtime, "version",
                     note=f"driver supports CUDA {cuda_driver}, the container needs {cuda_runtime}: update the "
                          "driver (GKE: the node pool's gpu-driver-version) or use an older image")
    if drv[:2] < rt[:2]:
        return Check("cuda_compat", WARN, cuda_driver, cuda_runtime, "version",
                     note="older driver minor: runs under minor-version compatibility, PTX JIT may fail")
    return Check("cuda_compat", PASS, cuda_driver, cuda_runtime, "version")


def check_driver(driver: str | None, minimum: str | None) -> Check:
    """An explicit minimum driver (``--min-driver``), for known-bad driver branches."""
    have, want = _version_tuple(driver), _version_tuple(minimum)
    if want is None:
        return Check("driver_version", PASS if have else SKIP, driver, None, "version",
                     note="" if have else "driver version unknown")
    if have is None:
        return Check("driver_version", ERROR, None, minimum, "version", note="driver version unknown")
    status = PASS if have >= want else FAIL
    return Check("driver_version", status, driver, minimum, "version",
                 note="" if status == PASS else f"driver {driver} older than the required {minimum}")


def link_from(topo_text: str | None, p2p: Sequence[Sequence[bool]] | None, n_gpus: int) -> LinkInfo:
    """The link type, from ``nvidia-smi topo -m`` first, else from torch's peer-access matrix."""
    if n_gpus < 2:
        return LinkInfo("single", f"{n_gpus} GPU: no GPU-to-GPU link")
    if topo_text:
        info = classify_link(parse_topo(topo_text), n_gpus)
        if info.kind != "unknown":
            return info
    if p2p:
        ok = all(all(row) for row in p2p)
        return LinkInfo("P2P" if ok else "no-P2P",
                        "peer access between every pair (NVLink or PCIe: topo unavailable)" if ok
                        else "some GPU pairs lack peer access: traffic goes through host memory")
    return LinkInfo("unknown", "neither nvidia-smi topo nor peer access available")


def check_link(link: LinkInfo, spec: GpuSpec | None) -> Check:
    """SXM parts only come on NVLink baseboards: finding PCIe between them means a broken fabric."""
    if link.kind == "single":
        return Check("link_type", SKIP, link.kind, None, note=link.detail)
    expects_nvlink = spec is not None and spec.link.startswith("NVLink") and spec.key.endswith(("SXM", "HGX"))
    if link.kind == "NVLink":
        return Check("link_type", PASS, link.kind, spec.link if spec else None, note=link.detail)
    if expects_nvlink and link.kind in {"PCIe", "mixed", "no-P2P"}:
        return Check("link_type", FAIL, link.kind, spec.link if spec else None,
                     note=f"{link.detail}; {spec.key if spec else 'this GPU'} nodes have NVLink between all GPUs")
    return Check("link_type", WARN if link.kind in {"unknown", "P2P"} else PASS, link.kind,
                 spec.link if spec else None, note=link.detail)


def check_allreduce(ar: AllReduceMeasurement | None, n_gpus: int, spec: GpuSpec | None,
                    thresholds: Thresholds) -> Check:
    """Bus bandwidth against the per-direction NVLink figure (skipped with one GPU)."""
    name = "allreduce_busbw"
    if n_gpus < 2:
        return Check(name, SKIP, None, spec.link_gbps if spec else None, "GB/s",
                     note=f"{n_gpus} GPU: all-reduce needs at least 2 GPUs, skipped")
    if ar is None:
        return Check(name, FAIL, None, spec.link_gbps if spec else None, "GB/s", note="no all-reduce result")
    if ar.error is None and ar.correct is False:
        return Check(name, FAIL, ar.busbw_gbps, spec.link_gbps if spec else None, "GB/s",
                     note="all-reduce returned a wrong sum")
    check = ratio_check(name, ar.busbw_gbps, spec.link_gbps if spec else None, "GB/s",
                        thresholds.allreduce_fraction, error=ar.error)
    suffix = f"{n_gpus} GPUs, {ar.nbytes / 2**20:.0f} MiB fp32 sum, NCCL_NVLS_ENABLE=0"
    check.note = f"{check.note}; {suffix}" if check.note else suffix
    return check


@dataclass(frozen=True)
class Expectations:
    """What the caller says the node should be (``--expect-gpus``, ``--expect-model``, ``--min-driver``)."""

    gpus: int | None = None
    model: str | None = None
    min_driver: str | None = None


def evaluate(inv: Inventory, meas: Measurements, expect: Expectations, thresholds: Thresholds) -> list[Check]:
    """Every check, in report order, from what was found and measured. Pure: no I/O."""
    gpus = inv.gpus
    if not gpus and meas.gpus:  # no nvidia-smi: torch's view of the devices is all there is
        gpus = [GpuInfo(index=m.index, name=m.name or "unknown", memory_total_mib=m.memory_total_mib)
                for m in meas.gpus]
    else:
        for gpu, m in zip(gpus, meas.gpus, strict=False):
            if gpu.name == "unknown" and m.name:
                gpu.name = m.name
    found: int | None = len(gpus)
    why = inv.smi_error or ""
    if not gpus and inv.smi_error and meas.error:
        found = None  # neither nvidia-smi nor torch could tell
        why = f"{inv.smi_error}; {meas.error}"
    checks = [check_gpu_count(found, expect.gpus, why)]
    names = [g.name for g in gpus]
    checks.append(check_gpu_model(names, expect.model))
    spec = lookup_spec(names[0]) if names else None
    checks.append(check_driver(inv.driver_version, expect.min_driver))
    checks.append(check_cuda_compat(inv.cuda_driver_version, meas.versions.get("cuda_runtime")))
    for gpu in gpus:
        checks.extend(check_memory(gpu, spec, thresholds))
        checks.append(check_ecc(gpu))
        power = check_power(gpu)
        if power is not None:
            checks.append(power)
    for pos, gpu in enumerate(gpus):
        m = meas.gpus[pos] if pos < len(meas.gpus) else None
        if meas.error:
            for name, unit in (("hbm_copy", "TB/s"), ("bf16_matmul", "TFLOP/s")):
                checks.append(Check(name, ERROR, None, None, unit, gpu=gpu.index, note=meas.error))
            continue
        err = m.error if m else "no result from this GPU's worker"
        checks.append(ratio_check("hbm_copy", m.hbm_copy_tbps if m else None, spec.hbm_tbps if spec else None,
                                  "TB/s", thresholds.hbm_fraction, gpu.index, err))
        mm = ratio_check("bf16_matmul", m.bf16_matmul_tflops if m else None,
                         spec.bf16_dense_tflops if spec else None, "TFLOP/s", thresholds.matmul_fraction,
                         gpu.index, err)
        if m and m.matmul_rel_error is not None and m.matmul_rel_error > thresholds.max_matmul_rel_error:
            mm.status, mm.note = FAIL, f"wrong results: relative error {m.matmul_rel_error:.2g} vs FP32"
        checks.append(mm)
    n = len(gpus)
    link = link_from(inv.topo_text, meas.p2p, n)
    checks.append(check_link(link, spec))
    if meas.error and n > 1:
        checks.append(Check("allreduce_busbw", ERROR, None, spec.link_gbps if spec else None, "GB/s",
                            note=meas.error))
    else:
        checks.append(check_allreduce(meas.allreduce, n, spec, thresholds))
    return checks


@dataclass(frozen=True)
class Decision:
    """The verdict: ``fail`` if any check failed, else ``error`` if one could not run, else ``pass``."""

    status: str
    reasons: tuple[str, ...]


def decide(checks: Sequence[Check]) -> Decision:
    """Failures outrank errors: a node with 7 of 8 GPUs is unhealthy whether or not torch imported."""
    failed = [c for c in checks if c.status == FAIL]
    errors = [c for c in checks if c.status == ERROR]
    if failed:
        return Decision(FAIL, tuple(_reason(c) for c in failed))
    if errors:  # one cause (no torch) errors many checks: one reason per cause
        grouped: dict[str, list[str]] = {}
        for c in errors:
            grouped.setdefault(c.note or "could not run", []).append(c.name)
        return Decision(ERROR, tuple(f"{', '.join(dict.fromkeys(names))}: {note}" for note, names in grouped.items()))
    return Decision(PASS, ())


def _reason(check: Check) -> str:
    where = f"[gpu{check.gpu}]" if check.gpu is not None else ""
    return f"{check.name}{where}: {check.note or f'measured {check.measured}, limit {check.limit}'}"


def exit_code(decision: Decision, mode: str) -> int:
    """0 healthy or warn mode; 2 unhealthy in enforce mode; 1 could not prove health in enforce mode."""
    if mode == "warn" or decision.status == PASS:
        return EXIT_OK
    return EXIT_UNHEALTHY if decision.status == FAIL else EXIT_ERROR


# --------------------------------------------------------------------------------------------------
# Reporting (pure)
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Orchestration and CLI
# --------------------------------------------------------------------------------------------------


def run_preflight(*, mode: str = "enforce", expect: Expectations = Expectations(),
                  thresholds: Thresholds = Thresholds(), sizes: Sizes = Sizes(), timeout_s: float = 45.0,
                  source: MeasurementSource | None = None, inventory: Inventory | None = None,
                  runner: Runner = run_command) -> dict[str, Any]:
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
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--world", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None, *, source: MeasurementSource | None = None,
         inventory: Inventory | None = None) -> int:
    """CLI entry point; returns the exit code (a crash is caught here and reported in one line)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error: that code means "unhealthy" here
        return EXIT_OK if exc.code in (0, None) else EXIT_ERROR
    if args.worker:
        sizes = Sizes(**json.loads(args.sizes)) if args.sizes else Sizes()
        return worker_main(args.rank, args.world, args.port, sizes)
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
