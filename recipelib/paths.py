"""Where the project's non-Python parts live (``manifests/``, ``launcher/``), found once."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def manifests_dir() -> Path:
    """``$RECIPELIB_MANIFESTS`` or the checkout's ``manifests/``: a user may keep their own catalog."""
    return Path(os.environ.get("RECIPELIB_MANIFESTS") or ROOT / "manifests")


def launcher_dir() -> Path:
    return Path(os.environ.get("RECIPELIB_LAUNCHER") or ROOT / "launcher")


def load_launcher_module(name: str, module_name: str | None = None) -> ModuleType:
    """``launcher/<name>.py`` of this checkout, loaded by path as ``module_name``: a contract both sides read.

    The launcher runs flat in the benchmark pod (``python launch.py``, siblings imported as ``import x``),
    so it is no package recipelib could import; the few of its modules that recipelib needs too (the results
    layout, the GPU datasheet) are standard library only with no sibling imports, and are loaded from their
    file. Always the checkout's ``launcher/``, not ``$RECIPELIB_LAUNCHER`` (which swaps what ships to pods).
    Loaded once: a second call returns the module already in ``sys.modules`` (a module of that name from
    another file, such as the wrapper ``recipelib.results.layout`` being imported, is replaced).
    """
    module_name = module_name or f"recipelib._launcher.{name}"
    path = ROOT / "launcher" / f"{name}.py"
    loaded = sys.modules.get(module_name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return loaded
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load launcher module {name!r} from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before running it: dataclasses look their module up while defined
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
