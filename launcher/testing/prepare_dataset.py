#!/usr/bin/env python3
"""A stand-in for TensorRT-LLM's ``benchmarks/cpp/prepare_dataset.py`` (synthetic ``token-norm-dist``).

Same command line as the real click group (``--tokenizer`` required, ``--output``/``--stdout``,
``--random-seed``, ``--task-id``, ``--rand-task-id``, ``--log-level``; subcommand ``token-norm-dist``
with ``--num-requests``, ``--input-mean``, ``--input-stdev``, ``--output-mean``, ``--output-stdev``),
unknown flags rejected with exit 2. Writes the real line format, one request per line:
``{"task_id": -1, "input_ids": [...], "output_tokens": N}``. The tokenizer must be a local folder with
a ``config.json`` (the real script loads it with AutoTokenizer). ``STANDIN_CALLS`` records invocations.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path


class ClickLikeParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"Error: {message}", file=sys.stderr)
        sys.exit(2)


def parser() -> argparse.ArgumentParser:
    top = ClickLikeParser(prog="prepare_dataset.py", allow_abbrev=False)
    top.add_argument("--tokenizer", required=True)
    top.add_argument("--output", default="preprocessed_dataset.json")
    top.add_argument("--stdout", action="store_true")
    top.add_argument("--random-seed", type=int, default=420)
    top.add_argument("--task-id", type=int, default=-1)
    top.add_argument("--rand-task-id", type=int, nargs=2, default=None)
    top.add_argument("--lora-dir", default=None)
    top.add_argument("--log-level", choices=("info", "debug"), default="info")
    subs = top.add_subparsers(dest="command", required=True, parser_class=ClickLikeParser)
    norm = subs.add_parser("token-norm-dist", allow_abbrev=False)
    norm.add_argument("--num-requests", type=int, required=True)
    norm.add_argument("--input-mean", type=int, required=True)
    norm.add_argument("--input-stdev", type=int, required=True)
    norm.add_argument("--output-mean", type=int, required=True)
    norm.add_argument("--output-stdev", type=int, required=True)
    return top


def main(argv: list[str]) -> int:
    calls = os.environ.get("STANDIN_CALLS")
    if calls:
        with open(calls, "a") as f:
            f.write(json.dumps({"tool": "prepare_dataset", "argv": argv}) + "\n")
    args = parser().parse_args(argv)
    if not (Path(args.tokenizer) / "config.json").is_file():
        print(f"OSError: Can't load tokenizer for '{args.tokenizer}'.", file=sys.stderr)
        return 1
    rng = random.Random(args.random_seed)
    # Prompts are random slices of one pool of random token ids: a 30000-request dataset in about a
    # second (the sandbox replays the recipe's 30000-request run), where a fresh draw per token took three.
    pool = [str(t) for t in rng.choices(range(100, 32000), k=1 << 16)]
    lines = []
    for _ in range(args.num_requests):
        isl = max(1, round(rng.gauss(args.input_mean, args.input_stdev)))
        osl = max(1, round(rng.gauss(args.output_mean, args.output_stdev)))
        while len(pool) <= isl:
            pool += pool
        start = rng.randrange(len(pool) - isl)
        ids = ", ".join(pool[start:start + isl])
        lines.append(f'{{"task_id": {args.task_id}, "input_ids": [{ids}], "output_tokens": {osl}}}')
    text = "\n".join(lines) + "\n"
    if args.stdout:
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
