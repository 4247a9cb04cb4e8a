#!/usr/bin/env python3
"""Is the serving measurement exact? aiperf against the trtllm-serve stand-in set to known latencies.

Why: a latency-throughput curve is only worth reading if the chain that draws it (load generator,
parsing, summary) reports what the server did. The stand-in keeps a configured time to first token and
inter-token gap; this drives it with the real aiperf at concurrency 1, 16, 64 and 256 and prints, per
point, configured and measured TTFT and inter-token latency (p50, from our summary of aiperf's export)
with their ratio. It also measures the load generator's own ceiling: the requests/s aiperf sustains
against the stand-in with zero latency and the same ISL/OSL/streaming, set against the highest rate the
sweep drives. Targets: every ratio within 0.98-1.02; the ceiling at least 10x the driven rate.

Everything runs on this machine, the server and aiperf sharing its cores, so the ceiling is that of the
pair; the CPU seconds each spent per request are printed to show which one bounds it.

Usage: .venv/bin/python benchmarks/serving_accuracy.py [--ttft-ms 3000 --itl-ms 300 --osl 16 --duration 8]
Needs aiperf's environment (``python -m recipelib.serving.aiperf_env``). About 2 minutes.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recipelib.serving import aiperf_env, load, results  # noqa: E402

STANDIN = REPO / "launcher" / "testing" / "trtllm_serve.py"
TOKENIZER = REPO / "launcher" / "testing" / "tokenizer"
CONCURRENCY = (1, 16, 64, 256)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_standin(ttft_ms: float, itl_ms: float, capacity: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The stand-in on a free loopback port, returned once /health answers 200."""
    port = free_port()
    env = {**os.environ, "STANDIN_SERVE_TTFT_MS": str(ttft_ms), "STANDIN_SERVE_ITL_MS": str(itl_ms)}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(STANDIN), "tiny", "--host", "127.0.0.1", "--port", str(port),
                                 "--max_batch_size", str(capacity)], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the stand-in did not become ready; see {log}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def run(args: argparse.Namespace, work: Path, name: str, ttft_ms: float, itl_ms: float, **sweep_args: object
        ) -> tuple[list[results.LoadPoint], float, float, float]:
    """One aiperf run against a fresh stand-in: points, wall seconds, aiperf and server CPU seconds."""
    proc, url = start_standin(ttft_ms, itl_ms, 4096, work / f"{name}-server.log")
    try:
        sweep = load.LoadSweep.create(model="tiny", url=url, tokenizer=str(TOKENIZER), isl=args.isl, osl=args.osl,
                                      **sweep_args)  # type: ignore[arg-type]
        server_cpu, client_cpu, start = cpu_seconds(proc.pid), children_cpu(), time.monotonic()
        load.run_sweep(sweep, work / name, program=args.aiperf, timeout_s=300)
        wall = time.monotonic() - start
        return (results.read_sweep(work / name), wall, children_cpu() - client_cpu, cpu_seconds(proc.pid) - server_cpu)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ttft-ms", type=float, default=3000.0)
    parser.add_argument("--itl-ms", type=float, default=300.0)
    parser.add_argument("--isl", type=int, default=32)
    parser.add_argument("--osl", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds each sweep point issues requests")
    parser.add_argument("--ramp", type=float, default=4.0, help="seconds over which concurrency reaches its target")
    parser.add_argument("--ceiling-concurrency", type=int, default=64)
    parser.add_argument("--ceiling-requests", type=int, default=3000)
    parser.add_argument("--keep", type=Path, help="keep aiperf's files in this new folder")
    args = parser.parse_args()
    args.aiperf = aiperf_env.executable()
    version = aiperf_env.installed_version(args.aiperf)
    work = args.keep or Path(tempfile.mkdtemp(prefix="serving-accuracy-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"aiperf {version}; stand-in TTFT {args.ttft_ms:g} ms, ITL {args.itl_ms:g} ms; ISL {args.isl}, "
          f"OSL {args.osl}, streaming; {os.cpu_count()} CPUs; files in {work}", flush=True)

    ceiling_points, wall, client, server = run(args, work, "ceiling", 0, 0, concurrency=args.ceiling_concurrency,
                                               requests=args.ceiling_requests)
    ceiling = ceiling_points[0]
    print(f"\nload generator ceiling (zero-latency stand-in, concurrency {args.ceiling_concurrency}, "
          f"{ceiling.requests} requests): {ceiling.requests_per_s:.0f} requests/s; CPU per request: aiperf "
          f"{client / ceiling.requests * 1e3:.2f} ms (incl. its start-up), "
          f"stand-in {server / ceiling.requests * 1e3:.2f} ms; "
          f"{wall:.0f} s", flush=True)

    points, wall, client, server = run(args, work, "sweep", args.ttft_ms, args.itl_ms, concurrency=CONCURRENCY,
                                       duration_s=args.duration, ramp_s=args.ramp)
    print(f"\n{'concurrency':>11} {'requests':>8} {'req/s':>7} | {'TTFT cfg':>8} {'TTFT p50':>9} {'ratio':>6} | "
          f"{'ITL cfg':>7} {'ITL p50':>8} {'ratio':>6}")
    ok = True
    for p in points:
        r_ttft, r_itl = p.ttft_p50_ms / args.ttft_ms, p.itl_p50_ms / args.itl_ms  # type: ignore[operator]
        ok &= 0.98 <= r_ttft <= 1.02 and 0.98 <= r_itl <= 1.02
        print(f"{p.value:>11g} {p.requests:>8} {p.requests_per_s:>7.2f} | {args.ttft_ms:>8g} {p.ttft_p50_ms:>9.2f} "
              f"{r_ttft:>6.4f} | {args.itl_ms:>7g} {p.itl_p50_ms:>8.2f} {r_itl:>6.4f}")
    measured = max(p.requests_per_s for p in points)
    expected = max(CONCURRENCY) / ((args.ttft_ms + (args.osl - 1) * args.itl_ms) / 1e3)
    driven = max(measured, expected)  # the steady rate at the top point, or what was seen if higher
    margin = ceiling.requests_per_s / driven
    ok &= margin >= 10
    print(f"\nhighest driven rate: {expected:.1f} requests/s at concurrency {max(CONCURRENCY)} in steady state "
          f"({measured:.1f} measured over the whole point, ramp and drain included); "
          f"ceiling / driven = {margin:.1f}x (target >= 10x); sweep {wall:.0f} s, "
          f"aiperf CPU {client:.0f} s, stand-in CPU {server:.0f} s")
    print("PASS: every ratio within 0.98-1.02 and the ceiling >= 10x" if ok else "FAIL: a target was missed")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
