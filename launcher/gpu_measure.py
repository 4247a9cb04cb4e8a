#!/usr/bin/env python3
"""GPU measurements: the kernels the preflight times, run in one worker process per GPU.

Each worker (``python gpu_measure.py --rank R --world N --port P --sizes JSON``, started by
``gpu_sources.WorkerMeasurements``) measures its GPU's HBM bandwidth and dense BF16 matrix-product rate,
prints them as a marked JSON line, then joins an NCCL all-reduce across all GPUs. Separate processes,
not threads: NCCL wants one process per GPU, and a worker hung in NCCL or a driver call can be killed
at the deadline without taking the preflight down with it.

PyTorch is imported lazily inside the measuring functions: the module itself is standard library only,
so the parent (and the tests, on CPU) import its data classes without torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Lines the worker processes print for the parent to collect; anything else they print is log.
GPU_MARK = "PREFLIGHT_GPU "
ALLREDUCE_MARK = "PREFLIGHT_ALLREDUCE "
INFO_MARK = "PREFLIGHT_INFO "

# NVLink multicast (NVLS) can take a shared host's GPUs out of service; keep it off in every process
# that runs NCCL, whatever the caller's environment says.
WORKER_ENV = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}



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
            _emit(INFO_MARK, info)
        gpu["hbm_copy_tbps"] = measure_hbm_copy(rank, sizes.hbm_bytes, sizes)
        gpu["bf16_matmul_tflops"], gpu["matmul_rel_error"] = measure_bf16_matmul(rank, sizes.matmul_n, sizes)
    except Exception as exc:  # report it as this GPU's failure; the parent decides
        gpu["error"] = f"{type(exc).__name__}: {exc}"
    _emit(GPU_MARK, gpu)
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
    _emit(ALLREDUCE_MARK, dataclasses.asdict(result))
    return 0


def worker_cli(argv: Sequence[str] | None = None) -> int:
    """The worker's command line; the parent builds it, so it is not meant for people."""
    parser = argparse.ArgumentParser(prog="gpu_measure.py", description="One GPU's preflight worker.")
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--world", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sizes", help="Sizes as JSON")
    args = parser.parse_args(argv)
    sizes = Sizes(**json.loads(args.sizes)) if args.sizes else Sizes()
    return worker_main(args.rank, args.world, args.port, sizes)


if __name__ == "__main__":
    sys.exit(worker_cli())
