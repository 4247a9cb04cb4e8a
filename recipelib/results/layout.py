"""The results layout, as the launcher writes it: this module *is* ``launcher/layout.py``, loaded by path.

The launcher runs flat inside the benchmark pod (``python launch.py``), so the contract lives beside it,
standard library only; recipelib reads the same file instead of spelling paths and keys a second time.
Importing this module puts the launcher's module in its place (``sys.modules``), so both names are one object.
"""

from __future__ import annotations

from recipelib.paths import load_launcher_module

globals().update(vars(load_launcher_module("layout", "recipelib.results.layout")))
