"""The results layout, as the launcher writes it: this module *is* ``launcher/layout.py``, loaded by path.

The launcher runs flat inside the benchmark pod (``python launch.py``), so the contract lives beside it,
standard library only; recipelib reads the same file instead of spelling paths and keys a second time.
"""

from __future__ import annotations

from recipelib.paths import load_launcher_module

load_launcher_module("layout", "recipelib.results.layout")  # replaces this module in sys.modules

from recipelib.results.layout import *  # noqa: E402, F403  (the module just loaded under this name)
