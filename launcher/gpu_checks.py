"""GPU checks: what was found and measured, against the datasheet and thresholds, decided pass or fail.

Pure functions, no I/O: each check turns a figure or a fact into one :class:`Check` (a line of the
report), :func:`evaluate` runs them all in report order, :func:`decide` gives the verdict and
:func:`exit_code` the preflight's exit code for it. Tested on CPU with fake measurements.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gpu_datasheet import GpuSpec, lookup_spec, model_matches
from gpu_inventory import GpuInfo, Inventory, LinkInfo, classify_link, parse_topo
from gpu_measure import AllReduceMeasurement, Measurements

PASS, FAIL, WARN, SKIP, ERROR = "pass", "fail", "warn", "skip", "error"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_UNHEALTHY = 2



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
