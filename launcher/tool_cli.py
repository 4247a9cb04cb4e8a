"""What the installed tools accept, read from their own ``--help`` (feature detection, not version guessing).

``trtllm-bench`` changed its options between releases (``--report_json``, ``--concurrency`` and
``--backend`` are absent from 0.16; ``--backend`` lost its engine choice later; ``prepare-dataset``
became a subcommand after 1.2). A table of versions would be a guess about the image that runs; the
tool's help is not. So the launcher asks, as a person would:

- ``trtllm-bench --help``: the group's options and its ``Commands:`` list (and, printed as
  tensorrt_llm is imported, the ``TensorRT-LLM version: X`` banner);
- ``trtllm-bench --model M <sub> --help`` for ``build``, ``throughput`` and ``prepare-dataset`` where
  the group lists them (the group's ``--model`` is required: click checks it before a subcommand's
  ``--help`` runs; its default ``--workspace`` is left alone so that asking creates nothing);
- ``prepare_dataset.py --help`` (only the group: its subcommands load the tokenizer first).

The help is click's format (``Options:`` then two-space indented declarations such as
``-tp, --tp_size INTEGER RANGE``, ``--backend [pytorch|_autodeploy|tensorrt]`` or
``--enable_chunked_context / --disable_chunked_context``, help text aligned in a column; ``Commands:``
then two-space indented names). Options grouped by click-option-group are indented two more.

Stdlib only: this runs in the TensorRT-LLM container.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from errors import BenchError

VERSION_ENV = "RECIPE_TRTLLM_VERSION"
SUBCOMMANDS = ("build", "throughput", "prepare-dataset")
_VERSION_BANNER = re.compile(r"TensorRT-LLM version:\s*(\S+)")
_OPTION = re.compile(r"^--?[A-Za-z0-9][\w-]*$")
_SECTION = re.compile(r"^(\S[^:]*):\s*$")
_SECRETS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")  # asking for help needs no token
_CHOICES = re.compile(r"^\[([^\]]+)\]$")


@dataclass(frozen=True)
class CommandHelp:
    """The options (every spelling) and subcommands one ``--help`` lists; ``choices`` where a metavar has them."""

    options: frozenset[str] = frozenset()
    commands: tuple[str, ...] = ()
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def has(self, option: str) -> bool:
        return option in self.options

    def lists(self, command: str) -> bool:
        return command in self.commands


def parse_click_help(text: str) -> CommandHelp:
    """Read click's help text: option declarations in any options section, names under ``Commands:``.

    A declaration is the part of a line before the help column (two spaces or more), indented at most
    four columns; help text that wraps is indented to the help column, so it is never mistaken for one.
    """
    options: set[str] = set()
    commands: list[str] = []
    choices: dict[str, tuple[str, ...]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        header = _SECTION.match(line)
        if header:
            section = header.group(1).strip().lower()
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0 or indent > 4:
            continue
        decl = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        if section == "commands":
            if re.match(r"^[A-Za-z][\w-]*$", decl):
                commands.append(decl)
            continue
        names: list[str] = []
        metavar = ""
        for piece in re.split(r",\s*|\s+/\s+", decl):
            first, _, rest = piece.strip().partition(" ")
            if not _OPTION.match(first):
                names = []
                break
            names.append(first)
            metavar = rest.strip() or metavar
        options.update(names)
        found = _CHOICES.match(metavar)
        if names and found:
            for name in names:
                choices[name] = tuple(c.strip() for c in found.group(1).split("|"))
    return CommandHelp(frozenset(options), tuple(commands), choices)


def _ask(argv: list[str], timeout: float) -> tuple[int, str]:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                             check=False, env={k: v for k, v in os.environ.items() if k not in _SECRETS})
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BenchError(f"cannot run {' '.join(argv)}: {e}") from None
    return out.returncode, out.stdout + out.stderr


def read_help(argv: list[str], timeout: float = 600) -> tuple[CommandHelp, str]:
    """Run ``argv`` (ending in ``--help``) and parse it; a non-zero exit or no options at all is an error."""
    code, text = _ask(argv, timeout)
    parsed = parse_click_help(text)
    if code != 0 or not parsed.options:
        tail = " | ".join(line for line in text.splitlines()[-4:] if line.strip())
        raise BenchError(f"`{' '.join(argv)}` exited with code {code} and listed no options: {tail or 'no output'}")
    return parsed, text


@dataclass(frozen=True)
class BenchCli:
    """``trtllm-bench`` as this image has it: its version and the options of the group and subcommands."""

    executable: str
    version: str
    group: CommandHelp
    subcommands: Mapping[str, CommandHelp]

    def sub(self, name: str) -> CommandHelp:
        """The help of ``name`` (empty when the group does not list it)."""
        return self.subcommands.get(name, CommandHelp())

    def has(self, subcommand: str | None, option: str) -> bool:
        return (self.group if subcommand is None else self.sub(subcommand)).has(option)

    def as_dict(self) -> dict[str, object]:
        """What was detected, for metadata.json: a reader can tell which options this run could use."""
        def one(h: CommandHelp) -> dict[str, object]:
            return {"options": sorted(h.options), "commands": list(h.commands)}

        return {"executable": self.executable, "version": self.version, "group": one(self.group),
                "subcommands": {k: one(v) for k, v in self.subcommands.items()}}


@dataclass(frozen=True)
class DatasetTool:
    """How datasets are made: ``trtllm-bench prepare-dataset`` where the group lists it, else the script."""

    kind: str  # "subcommand" | "script"
    help: CommandHelp
    script: Path | None = None


def detect_version(help_text: str) -> str:
    """``$RECIPE_TRTLLM_VERSION``, else the banner importing tensorrt_llm prints, else the package metadata."""
    forced = os.environ.get(VERSION_ENV)
    if forced:
        return forced.strip()
    match = _VERSION_BANNER.search(help_text)
    if match:
        return match.group(1)
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("tensorrt_llm")
    except (ImportError, PackageNotFoundError):
        return "unknown"


def read_bench_cli(executable: str, model: str, timeout: float = 600) -> BenchCli:
    """Ask ``executable`` for its group help and for each subcommand the launcher may use."""
    group, text = read_help([executable, "--help"], timeout)
    subs: dict[str, CommandHelp] = {}
    for name in SUBCOMMANDS:
        if group.lists(name):
            subs[name], _ = read_help([executable, "--model", model, name, "--help"], timeout)
    if "throughput" not in subs:
        raise BenchError(f"{executable} --help lists no throughput subcommand (commands: "
                         f"{', '.join(group.commands) or 'none'}): this is not a trtllm-bench the launcher can use")
    return BenchCli(executable, detect_version(text), group, subs)


def read_dataset_tool(cli: BenchCli, python: str, script: Path | None, timeout: float = 600) -> DatasetTool:
    """``prepare-dataset`` where ``cli`` lists it; otherwise ``prepare_dataset.py``, whose help is read too."""
    if "prepare-dataset" in cli.subcommands:
        return DatasetTool("subcommand", cli.sub("prepare-dataset"))
    if script is None:
        raise BenchError("trtllm-bench lists no prepare-dataset subcommand and prepare_dataset.py was not found")
    parsed, _ = read_help([python, str(script), "--help"], timeout)
    return DatasetTool("script", parsed, script)


@dataclass(frozen=True)
class Tools:
    """The tools a run uses, as their ``--help`` describes them."""

    bench: BenchCli
    dataset: DatasetTool
    python: str

    def as_dict(self) -> dict[str, object]:
        return {**self.bench.as_dict(), "dataset_tool": {
            "kind": self.dataset.kind, "script": str(self.dataset.script) if self.dataset.script else None,
            "options": sorted(self.dataset.help.options), "commands": list(self.dataset.help.commands)}}


def read_tools(executable: str, model: str, python: str, script: Path | None, timeout: float = 600) -> Tools:
    """Everything :func:`read_bench_cli` and :func:`read_dataset_tool` learn, in one object."""
    cli = read_bench_cli(executable, model, timeout)
    return Tools(cli, read_dataset_tool(cli, python, script, timeout), python)
