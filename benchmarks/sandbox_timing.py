"""How long the local sandbox takes, once built: start to ready, and the whole ``make demo`` pipeline.

Targets (issue 5): start to ready under 10 s; the demo (setup -> deploy -> monitor -> analyze -> cleanup,
sandbox start and stop included, the first build excluded) under 90 s on a 2-core machine.

Usage::

    .venv/bin/python benchmarks/sandbox_timing.py              # 3 starts, 1 demo
    .venv/bin/python benchmarks/sandbox_timing.py --starts 5 --demos 0

Both use throw-away folders (never ``~/.cache/recipelib/sandbox``, and a settings overlay of their own
instead of ``~/.config/recipelib/overlay.yaml``), so a sandbox of yours is left alone; the kube binaries must
already be cached (``make kube``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recipelib.sandbox import Sandbox  # noqa: E402
from recipelib.sandbox.kube import ensure_binaries  # noqa: E402


def time_starts(n: int) -> list[tuple[float, float]]:
    """(start to ready, stop) seconds for ``n`` cold starts of a sandbox in a fresh folder each time."""
    out = []
    for _ in range(n):
        with tempfile.TemporaryDirectory(prefix="sandbox-timing-") as root:
            box = Sandbox(Path(root), overlay=Path(root) / "overlay.yaml")
            began = time.monotonic()
            box.start()
            ready = time.monotonic() - began
            began = time.monotonic()
            box.stop()
            out.append((ready, time.monotonic() - began))
    return out


def time_restart() -> float:
    """Start to ready of a restart in a folder used before (certificates exist, ports are free to reuse)."""
    with tempfile.TemporaryDirectory(prefix="sandbox-timing-") as root:
        box = Sandbox(Path(root), overlay=Path(root) / "overlay.yaml").start()
        box.stop()
        began = time.monotonic()
        box.start()
        ready = time.monotonic() - began
        box.stop()
    return ready


def time_demo() -> tuple[float, Path, int]:
    """Wall time of ``python -m recipelib.sandbox.demo`` (a fresh sandbox, every notebook, the sandbox stopped)."""
    with tempfile.TemporaryDirectory(prefix="demo-timing-") as work:
        env = {**os.environ, "RECIPELIB_SANDBOX": str(Path(work) / "sandbox"),
               "RECIPELIB_OVERLAY": str(Path(work) / "overlay.yaml")}
        began = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "recipelib.sandbox.demo", "--out", str(Path(work) / "out"),
                               "--sandbox", str(Path(work) / "sandbox")],
                              cwd=REPO, env=env, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - began
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        return seconds, Path(work), proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--demos", type=int, default=1)
    args = parser.parse_args()
    ensure_binaries(build=False)
    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, load average {os.getloadavg()[0]:.2f}")
    if args.starts:
        runs = time_starts(args.starts)
        ready = [r for r, _ in runs]
        print(f"sandbox start to ready (fresh folder): {', '.join(f'{r:.1f}' for r in ready)} s; "
              f"median {statistics.median(ready):.1f} s, max {max(ready):.1f} s (target < 10 s)")
        print(f"sandbox stop: median {statistics.median(s for _, s in runs):.1f} s")
        print(f"sandbox restart to ready (folder reused): {time_restart():.1f} s")
    for _ in range(args.demos):
        seconds, _, code = time_demo()
        print(f"demo pipeline (sandbox start, setup, deploy, monitor, analyze, cleanup, stop): {seconds:.0f} s"
              f"{'' if code == 0 else f' FAILED (exit {code})'} (target < 90 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
