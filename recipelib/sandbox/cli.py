"""``python -m recipelib.sandbox start|stop|status``: the sandbox from a terminal."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from recipelib.errors import RecipelibError
from recipelib.sandbox.control import Sandbox, sandbox_root
from recipelib.sandbox.node import Controls
from recipelib.settings import overlay_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipelib.sandbox",
                                     description="The local sandbox: a cluster, a node and a bucket on loopback.")
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--root", default=None, help=f"the sandbox's folder (default {sandbox_root()})")
    parser.add_argument("--replay-speed", type=float, default=Controls.replay_speed,
                        help="recorded seconds per real second (default %(default)g: an hour in ten seconds)")
    parser.add_argument("--overlay", default=None,
                        help=f"where to offer its settings to recipelib while it runs (default {overlay_path()})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sandbox = Sandbox(Path(args.root) if args.root else sandbox_root(), replay_speed=args.replay_speed,
                      overlay=Path(args.overlay) if args.overlay else overlay_path())
    try:
        if args.command == "start":
            sandbox.start()
        elif args.command == "stop":
            print("Stopped." if sandbox.stop() else f"No sandbox was running in {sandbox.root}.")
            return 0
    except RecipelibError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\n".join(sandbox.status().lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
