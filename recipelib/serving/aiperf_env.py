"""aiperf's own environment: ``.venv-aiperf``, apart from the notebooks' ``.venv``.

Why a second environment: aiperf 0.13.0 pins ``pandas~=2.3.3`` (among others: pillow, rich, plotly,
dash, optuna, kopf), while the main environment has pandas 3.x for the analysis notebooks; one resolver
cannot satisfy both. The load generator only needs to be an executable we can run, so it lives in its
own virtual environment (locally) and in its own image (the load Job), pinned to one version that is
recorded with every sweep.

Usage::

    python -m recipelib.serving.aiperf_env            # create .venv-aiperf with aiperf==0.13.0 (idempotent)
    python -m recipelib.serving.aiperf_env --check    # say what is installed, create nothing

``$RECIPE_AIPERF`` names an aiperf executable to use instead of the environment (a load pod's image).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from recipelib.errors import RecipelibError

AIPERF_VERSION = "0.13.0"
"""The pinned aiperf release (PyPI ``aiperf``; Python 3.11-3.13). Change it here and nowhere else."""
DEFAULT_VENV = Path(__file__).resolve().parents[2] / ".venv-aiperf"
EXECUTABLE_ENV = "RECIPE_AIPERF"

log = logging.getLogger(__name__)


def executable(venv: Path | None = None) -> Path:
    """The aiperf program to run: ``$RECIPE_AIPERF``, else ``<venv>/bin/aiperf``; it must exist."""
    chosen = os.environ.get(EXECUTABLE_ENV)
    path = Path(chosen) if chosen else (venv or DEFAULT_VENV) / "bin" / "aiperf"
    if not path.is_file():
        where = f"${EXECUTABLE_ENV}={chosen}" if chosen else str(path)
        raise RecipelibError(f"aiperf is not installed ({where} does not exist): run "
                             f"`python -m recipelib.serving.aiperf_env` to create {DEFAULT_VENV.name} "
                             f"with aiperf=={AIPERF_VERSION}")
    return path


def installed_version(program: Path) -> str:
    """What ``aiperf --version`` prints (its last non-empty line), e.g. ``0.13.0``."""
    try:
        done = subprocess.run([str(program), "--version"], capture_output=True, text=True, timeout=120,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RecipelibError(f"could not run {program} --version ({e}); remove its environment and run "
                             "`python -m recipelib.serving.aiperf_env` again") from e
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        raise RecipelibError(f"{program} --version failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    return lines[-1].split()[-1]


def ensure(venv: Path | None = None, *, version: str = AIPERF_VERSION, python: str | None = None) -> Path:
    """Create ``venv`` with ``aiperf==version`` unless it already has exactly that; return the executable.

    Safe to re-run: an environment with the pinned version is left alone; one with another version is
    upgraded in place by pip (the pin wins).
    """
    venv = venv or DEFAULT_VENV
    program = venv / "bin" / "aiperf"
    if program.is_file():
        try:
            if installed_version(program) == version:
                log.info("aiperf %s already in %s", version, venv)
                return program
        except RecipelibError:
            pass  # broken install: pip repairs it below
    if not (venv / "bin" / "python").is_file():
        log.info("creating %s", venv)
        _run([python or sys.executable, "-m", "venv", str(venv)])
    log.info("installing aiperf==%s into %s (a few minutes the first time)", version, venv)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"aiperf=={version}"])
    found = installed_version(program)
    if found != version:
        raise RecipelibError(f"{venv} has aiperf {found} after installing {version}: remove {venv} and re-run")
    return program


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RecipelibError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {done.stderr.strip()[-800:]}; "
                             "check that pip can reach the package index, then re-run")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipelib.serving.aiperf_env", description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"where (default {DEFAULT_VENV})")
    parser.add_argument("--python", help="the interpreter to base it on (3.11-3.13; default: this one)")
    parser.add_argument("--check", action="store_true", help="only report what is installed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.check:
            print(f"aiperf {installed_version(executable(args.venv))} in {args.venv} (pinned: {AIPERF_VERSION})")
        else:
            print(f"aiperf {AIPERF_VERSION}: {ensure(args.venv, python=args.python)}")
    except RecipelibError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
