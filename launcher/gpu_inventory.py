"""GPU inventory: what the node says about its GPUs before anything is measured.

``nvidia-smi`` (often not on PATH in a GKE pod: the device plugin mounts it under
``/usr/local/nvidia/bin``) gives names, memory, driver, ECC, row remapping, power limits and the
GPU-to-GPU topology; libcuda gives the driver's CUDA version without initialising CUDA. Every part may
be missing, and says so in ``Inventory.notes`` instead of failing: the checks decide what a gap means.

Parsing is pure and tested against raw outputs recorded on real H100/H200 nodes; the commands run
through an injectable :data:`CommandRunner`.
"""

from __future__ import annotations

import csv
import ctypes
import io
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# -- parsing nvidia-smi output (pure) -------------------------------------------------------------

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


# -- inventory (nvidia-smi, tolerated if absent) --------------------------------------------------


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


CommandRunner = Callable[[Sequence[str]], tuple[int, str]]
"""Runs a command, returns (exit code, output): injected so tests replay recorded nvidia-smi outputs."""


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


def collect_basic_inventory(smi: str | None, runner: CommandRunner = run_command) -> Inventory:
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


def complete_inventory(inv: Inventory, runner: CommandRunner = run_command) -> None:
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

