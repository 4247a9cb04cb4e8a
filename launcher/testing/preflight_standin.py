#!/usr/bin/env python3
"""A stand-in for ``launcher/preflight.py`` with the same command line (``--json FILE --mode MODE``).

``STANDIN_PREFLIGHT=healthy`` (default) writes a passing result and exits 0; ``unhealthy`` writes a
failing check and exits 2 in enforce mode (0 in warn mode), as the real script does; ``crash`` exits 1
without writing anything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="preflight.py", allow_abbrev=False)
    p.add_argument("--json", required=True)
    p.add_argument("--mode", choices=("enforce", "warn"), required=True)
    args = p.parse_args(argv)
    outcome = os.environ.get("STANDIN_PREFLIGHT", "healthy")
    if outcome == "crash":
        print("preflight: no CUDA device found", file=sys.stderr)
        return 1
    healthy = outcome == "healthy"
    result = {
        "status": "pass" if healthy else "fail",
        "mode": args.mode,
        "checks": [{"name": "hbm_bandwidth", "value": 4.1e12 if healthy else 1.2e12, "threshold": 3.5e12,
                    "unit": "B/s", "passed": healthy}],
    }
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"preflight: {result['status']}")
    return 0 if healthy or args.mode == "warn" else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
