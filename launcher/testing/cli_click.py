"""Real click commands built from a CLI table (``cli_tables``), so a stand-in parses as the real tool does.

Why click itself: ``trtllm-bench`` and ``prepare_dataset.py`` are click programs, so the stand-ins' ``--help``
is click's own layout, and a wrong command line fails with click's own message and exit code 2
(``Error: No such option: --x``, ``Error: Missing option '--engine_dir'.``, ``Invalid value for ...``),
exactly what the launcher meets on a real node. Nothing here adds a rule of its own: every option, alias,
type, choice list, default, required flag and multiplicity comes from the table.

One fact is not in the tables and is applied here: ``--engine_dir`` and ``--dataset`` of ``trtllm-bench``
are ``click.Path(exists=True, readable=True, resolve_path=True)`` (read in throughput.py, stored id
1957681895), so a missing path is click's usage error, not a crash later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    import click
except ImportError:  # started with ``python -S`` (the harness does, for speed): find site-packages
    import site

    site.main()
    import click

from cli_tables import Command, Option

EXISTING_PATHS = frozenset({"--engine_dir", "--dataset"})
"""Options whose click.Path has ``exists=True`` in the real trtllm-bench (throughput.py, stored id 1957681895)."""


def _type(option: Option, existing: bool) -> Any:
    kind = option.type
    if kind == "int":
        return click.IntRange(min=option.int_min) if option.int_min is not None else click.INT
    if kind == "float":
        return click.FLOAT
    if kind == "bool":
        return click.BOOL
    if kind == "path":
        return click.Path(exists=existing, readable=existing, resolve_path=existing)
    if kind == "choice":
        # A choice list the table could not resolve (e.g. VALID_QUANT_ALGOS at 0.16/0.17) accepts any text:
        # refusing a value the real tool may take would be a rule it does not have.
        return click.Choice(option.choices) if option.choices else click.STRING
    if kind == "str":
        return click.STRING
    raise ValueError(f"option {option.name}: unknown table type {kind!r}")


def click_option(option: Option, *, existing_paths: frozenset[str] = frozenset()) -> click.Option:
    """The click option a table entry describes."""
    extra: dict[str, Any] = {"help": option.help or None, "hidden": option.hidden, "required": option.required}
    if option.envvar:
        extra["envvar"] = option.envvar
    if option.type == "bool_flag":
        return click.Option([option.name, *option.aliases], is_flag=True, default=bool(option.default), **extra)
    if option.type == "bool_flag_pair":
        pair = f"{option.name}/{option.secondary}"
        return click.Option([pair, *option.aliases], default=bool(option.default), **extra)
    if option.default is not None:  # an explicit None would count as a value (click >= 8.2): required would not bite
        extra["default"] = option.default
    return click.Option(
        [option.name, *option.aliases], type=_type(option, option.name in existing_paths),
        multiple=option.multiple, nargs=option.nargs, **extra,
    )


def command(name: str, table: Command, callback: Callable[..., Any], *, help: str | None = None,
            existing_paths: frozenset[str] = frozenset(), pass_context: bool = True) -> click.Command:
    """A click command whose options are exactly ``table``'s; ``callback(ctx, **params)`` runs it."""
    params = [click_option(o, existing_paths=existing_paths) for o in table.options]
    wrapped = click.pass_context(callback) if pass_context else callback
    return click.Command(name, params=params, callback=wrapped, help=help)


def group(name: str, table: Command, callback: Callable[..., Any], subcommands: dict[str, click.Command], *,
          help: str | None = None, show_default: bool = False) -> click.Group:
    """A click group with ``table``'s options and the given subcommands (only those the table registers)."""
    unknown = set(subcommands) - set(table.subcommands)
    if unknown:
        raise ValueError(f"{name}: subcommands {sorted(unknown)} are not in the table")
    settings = {"show_default": True} if show_default else {}
    grp = click.Group(name, params=[click_option(o) for o in table.options], callback=click.pass_context(callback),
                      help=help, context_settings=settings)
    for sub in table.subcommands:
        if sub in subcommands:
            grp.add_command(subcommands[sub], sub)
    return grp


def unsimulated(name: str, note: str) -> click.Command:
    """A subcommand the table registers but records no options for: it exists, and says it is not simulated."""

    def run(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"'{name}' exists in this release but is not simulated by the stand-in ({note})")

    return click.Command(name, callback=run, help=f"(Stand-in: options not recorded in the CLI table; {note})",
                         params=[click.Argument(["args"], nargs=-1)],
                         context_settings={"ignore_unknown_options": True})
