"""The ``trtllm-bench`` / ``prepare_dataset.py`` command-line tables (``manifests/trtllm/bench-*.yaml``), loaded.

Why: nothing here can install TensorRT-LLM, so what each release's tools accept was read from NVIDIA's
sources and docs and written down as data, one YAML file per release, each entry naming where it was read.
The test stand-ins (``trtllm_bench.py``, ``prepare_dataset.py``) are generated from these tables, so they
accept exactly what the release they play accepts. This module only reads the tables (stdlib + PyYAML);
``cli_click.py`` turns them into click commands.

A version string picks the nearest table at or below its release number: ``0.17.0`` and ``0.18.2`` play
the 0.17 table, ``1.2.0rc2`` the 1.2 table; anything older than the oldest table is refused. A command
the table marks ``not_read`` plays the entry named by its ``stand_in_from`` (a version whose reading the
table's note argues is the same), recorded in :attr:`Command.inherited_from`. Example::

    table = load_table("0.17.0.post1")
    [o.name for o in table.command("trtllm-bench throughput").options]   # ['--engine_dir', '--backend', ...]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TABLES_ENV = "STANDIN_TABLES"
TABLES_DIR = Path(__file__).resolve().parents[2] / "manifests" / "trtllm"
"""Where the tables live in this repository (``$STANDIN_TABLES`` overrides it)."""

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader: the stand-ins start often


class TableError(LookupError):
    """No table fits the version asked for, or a table is malformed; the message says which file and what."""


@dataclass(frozen=True)
class Option:
    """One click option as a table records it (``type``: str, int, float, path, choice, bool, bool_flag,
    bool_flag_pair)."""

    name: str
    type: str
    aliases: tuple[str, ...] = ()
    default: Any = None
    required: bool = False
    multiple: bool = False
    help: str = ""
    choices: tuple[str, ...] | None = None
    hidden: bool = False
    int_min: int | None = None
    nargs: int = 1
    secondary: str | None = None
    envvar: str | None = None

    @property
    def dest(self) -> str:
        """The Python name click gives the value (``--random-seed`` -> ``random_seed``)."""
        return self.name.lstrip("-").replace("-", "_").lower()

    @property
    def names(self) -> tuple[str, ...]:
        """Every spelling the command line accepts, the secondary of an on/off pair included."""
        return (self.name, *self.aliases, *((self.secondary,) if self.secondary else ()))

    @classmethod
    def from_yaml(cls, raw: dict[str, Any], where: str) -> Option:
        try:
            name, kind = str(raw["name"]), str(raw["type"])
        except KeyError as e:
            raise TableError(f"{where}: an option lacks {e.args[0]!r}") from None
        choices = raw.get("choices")
        return cls(
            name=name, type=kind, aliases=tuple(raw.get("aliases") or ()), default=raw.get("default"),
            required=bool(raw.get("required", False)), multiple=bool(raw.get("multiple", False)),
            help=str(raw.get("help") or ""), choices=tuple(str(c) for c in choices) if choices else None,
            hidden=bool(raw.get("hidden", False)), int_min=(raw.get("int_range") or {}).get("min"),
            nargs=int(raw.get("nargs") or 1), secondary=raw.get("secondary"), envvar=raw.get("envvar"),
        )


@dataclass(frozen=True)
class Command:
    """A command or group of one table: its options and, for a group, its subcommands' names."""

    name: str
    options: tuple[Option, ...] = ()
    subcommands: tuple[str, ...] = ()
    absent: bool = False
    not_read: bool = False
    inherited_from: str | None = None
    source: Any = None
    note: str = ""
    children: dict[str, Command] = field(default_factory=dict)  # prepare_dataset.py's own subcommands

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if name in o.names), None)

    def has(self, name: str) -> bool:
        return self.option(name) is not None


@dataclass(frozen=True)
class Table:
    """One release's table: ``commands`` keyed as the YAML keys them (``"trtllm-bench throughput"``)."""

    version: str
    path: Path
    pinned: bool
    commands: dict[str, Command]

    def command(self, key: str) -> Command:
        try:
            return self.commands[key]
        except KeyError:
            raise TableError(f"{self.path.name} has no entry {key!r}") from None

    def subcommands(self) -> tuple[str, ...]:
        """The subcommands the ``trtllm-bench`` group registers in this release."""
        return self.command("trtllm-bench").subcommands


def release(version: str) -> tuple[int, int, int]:
    """The release number of a version string: ``"0.17.0.post1"`` -> (0, 17, 0), ``"1.2.0rc2"`` -> (1, 2, 0)."""
    match = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", version)
    if not match:
        raise TableError(f"not a TensorRT-LLM version: {version!r} (expected e.g. 0.17.0.post1 or 1.2.0)")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def tables_dir() -> Path:
    return Path(os.environ.get(TABLES_ENV) or TABLES_DIR)


def _raw(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=_Loader)  # the safe loader, C or Python
    if not isinstance(data, dict) or "version" not in data or "commands" not in data:
        raise TableError(f"{path}: not a CLI table (needs 'version' and 'commands')")
    return data


def available(directory: Path | None = None) -> dict[tuple[int, int, int], Path]:
    """Every table in the folder, by the release number its file name carries (``bench-0.17.yaml``)."""
    found: dict[tuple[int, int, int], Path] = {}
    for path in sorted((directory or tables_dir()).glob("bench-*.yaml")):
        found[release(path.stem[len("bench-"):])] = path
    return found


def table_path(version: str, directory: Path | None = None) -> Path:
    """The table that plays ``version``: the nearest at or below its release number."""
    tables = available(directory)
    wanted = release(version)
    fits = [r for r in tables if r <= wanted]
    if not fits:
        known = ", ".join(".".join(map(str, r)) for r in sorted(tables)) or "none"
        raise TableError(f"no CLI table at or below TensorRT-LLM {version} in {directory or tables_dir()} "
                         f"(tables: {known})")
    return tables[max(fits)]


def _command(key: str, raw: dict[str, Any], where: str) -> Command:
    subs = raw.get("subcommands")
    children: dict[str, Command] = {}
    names: tuple[str, ...] = ()
    if isinstance(subs, dict):  # prepare_dataset.py: subcommands with their own options
        names = tuple(subs)
        children = {n: _command(n, v or {}, f"{where} {n}") for n, v in subs.items()}
    elif subs:
        names = tuple(str(s) for s in subs)
    return Command(
        name=key, options=tuple(Option.from_yaml(o, f"{where} {key}") for o in raw.get("options") or ()),
        subcommands=names, absent=bool(raw.get("absent", False)), not_read=bool(raw.get("not_read", False)),
        source=raw.get("source"), note=str(raw.get("note") or ""), children=children,
    )


def load_table(version: str, directory: Path | None = None) -> Table:
    """The table that plays ``version``, with ``not_read`` entries resolved through ``stand_in_from``."""
    path = table_path(version, directory)
    raw = _raw(path)
    commands = {k: _command(k, v or {}, path.name) for k, v in raw["commands"].items()}
    for key, entry in raw["commands"].items():
        donor = (entry or {}).get("stand_in_from")
        if not (entry or {}).get("not_read") or not donor:
            continue
        donor_path = table_path(str(donor), directory)
        if donor_path == path:
            raise TableError(f"{path.name}: {key!r} stands in from its own table")
        other = _command(key, _raw(donor_path)["commands"].get(key) or {}, donor_path.name)
        if other.not_read or other.absent:
            raise TableError(f"{path.name}: {key!r} stands in from {donor_path.name}, which did not read it either")
        commands[key] = Command(name=key, options=other.options, subcommands=other.subcommands,
                                source=other.source, note=commands[key].note, children=other.children,
                                inherited_from=str(donor))
    return Table(version=str(raw["version"]), path=path, pinned=bool(raw.get("pinned", False)), commands=commands)
