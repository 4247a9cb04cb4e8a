"""The results layout, as the launcher writes it: this module *is* ``launcher/layout.py``, loaded by path.

The launcher runs flat inside the benchmark pod (``python launch.py``), so the contract lives beside it,
standard library only; recipelib reads the same file instead of spelling paths and keys a second time.
"""

from __future__ import annotations

import importlib.util
import sys

from recipelib.paths import ROOT

_NAME = "recipelib.results.layout"
_spec = importlib.util.spec_from_file_location(_NAME, ROOT / "launcher" / "layout.py")
if _spec is None or _spec.loader is None:
    raise ImportError(f"cannot load the results layout from {ROOT / 'launcher' / 'layout.py'}")
_module = importlib.util.module_from_spec(_spec)
sys.modules[_NAME] = _module
_spec.loader.exec_module(_module)

from recipelib.results.layout import *  # noqa: E402, F403  (the module just loaded under this name)
