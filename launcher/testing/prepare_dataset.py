#!/usr/bin/env python3
"""A stand-in for TensorRT-LLM's ``benchmarks/cpp/prepare_dataset.py``, generated from the CLI table.

Why: the launcher prepares every experiment's dataset with this script, and must call it as the release in
the container accepts. ``STANDIN_VERSION`` picks the table (``cli_tables``); its ``prepare_dataset.py``
entry gives the group's options (``--tokenizer`` required, ``--output``/``--stdout``, ``--random-seed`` ...,
all before the subcommand) and ``token-norm-dist``'s (``--num-requests``, ``--input-mean``, ``--input-stdev``,
``--output-mean``, ``--output-stdev``, all required); ``cli_click`` builds the real click group from them, so
help and errors are click's. Subcommands the table names without options (``token-unif-dist``,
``dataset``) exist and say they are not simulated.

It writes the real line format, one request a line: ``{"task_id": -1, "input_ids": [...], "output_tokens": N}``
(to stdout with ``--stdout``, else to ``--output``). A tokenizer that is a local folder must hold a
``config.json`` (the real script loads it with AutoTokenizer); a hub name is not fetched (offline).
``STANDIN_CALLS`` records invocations. ``trtllm-bench prepare-dataset`` (releases whose table has it) is the
same generator, with the tokenizer taken from the parent group's ``--model_path``/``--model``.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import cli_click
from cli_click import click
from cli_tables import Command, load_table

VERSION = os.environ.get("STANDIN_VERSION", "0.17.0.post1")


def dataset_lines(seed: int, task_id: int, num_requests: int, input_mean: int, input_stdev: int, output_mean: int,
                  output_stdev: int) -> str:
    """Synthetic requests with normally distributed lengths, as token-norm-dist writes them."""
    rng = random.Random(seed)
    # Prompts are random slices of one pool of random token ids: a 30000-request dataset in about a
    # second (the sandbox replays the recipe's 30000-request run), where a fresh draw per token took three.
    pool = [str(t) for t in rng.choices(range(100, 32000), k=1 << 16)]
    lines = []
    for _ in range(num_requests):
        isl = max(1, round(rng.gauss(input_mean, input_stdev)))
        osl = max(1, round(rng.gauss(output_mean, output_stdev)))
        while len(pool) <= isl:
            pool += pool
        start = rng.randrange(len(pool) - isl)
        ids = ", ".join(pool[start:start + isl])
        lines.append(f'{{"task_id": {task_id}, "input_ids": [{ids}], "output_tokens": {osl}}}')
    return "\n".join(lines) + "\n"


def _check_tokenizer(tokenizer: str) -> None:
    path = Path(tokenizer)
    if path.is_dir() and not (path / "config.json").is_file():
        print(f"OSError: Can't load tokenizer for '{tokenizer}'.", file=sys.stderr)
        sys.exit(1)
    if not path.exists():
        print(f"(stand-in) tokenizer {tokenizer} would be fetched from the Hugging Face hub; not simulated.",
              file=sys.stderr)


def cli(spec: Command, *, name: str = "prepare_dataset.py", tokenizer_from_parent: bool = False) -> click.Group:
    """The click group of ``spec`` (a table's ``prepare_dataset.py`` or ``trtllm-bench prepare-dataset``)."""

    def group(ctx: click.Context, **params: Any) -> None:
        ctx.obj = {**(ctx.obj or {}), "dataset_options": params}

    def token_norm_dist(ctx: click.Context, **p: Any) -> None:
        top = ctx.obj["dataset_options"]
        if tokenizer_from_parent:
            env = ctx.obj["env"]
            tokenizer = env.get("model_path") or env["model"]
        else:
            tokenizer = top["tokenizer"]
        _check_tokenizer(str(tokenizer))
        text = dataset_lines(top.get("random_seed", 420), top.get("task_id", -1), p["num_requests"], p["input_mean"],
                             p["input_stdev"], p["output_mean"], p["output_stdev"])
        if top.get("stdout"):
            sys.stdout.write(text)
        else:
            Path(top.get("output") or "preprocessed_dataset.json").write_text(text)

    subs: dict[str, click.Command] = {}
    for sub in spec.subcommands:
        child = spec.children.get(sub)
        if sub == "token-norm-dist" and child is not None and child.options:
            subs[sub] = cli_click.command(sub, child, token_norm_dist)
        else:
            subs[sub] = cli_click.unsimulated(sub, "options not recorded in the CLI table")
    about = None if tokenizer_from_parent else "This script generates dataset input for gptManagerBenchmark."
    return cli_click.group(name, spec, group, subs, help=about)


def main(argv: list[str]) -> int:
    calls = os.environ.get("STANDIN_CALLS")
    if calls:
        with open(calls, "a") as f:
            row = {"tool": "prepare_dataset", "argv": argv, **({"subcommand": "--help"} if "--help" in argv else {})}
            f.write(json.dumps(row) + "\n")
    spec = load_table(VERSION).command("prepare_dataset.py")
    try:
        cli(spec).main(args=argv, prog_name="prepare_dataset.py", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
