"""A recipelib error in a notebook shows as its message, not a 200-line traceback.

Our errors already say which field or object is at fault and what to do; the traceback only hides that.
IPython's custom exception hook replaces the traceback shown for these classes alone, while the cell
still fails: IPython calls the hook instead of showing the traceback (the hook shows our lines as the cell's
error output) and the kernel replies ``error``, so papermill stops and exits non-zero as before.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from recipelib.errors import RecipelibError


def _short(shell: Any, etype: type[BaseException], value: BaseException, tb: TracebackType | None,
           tb_offset: int | None = None) -> list[str]:
    stb = [f"{etype.__name__}: {value}",
           "(a recipelib error: the line above says what to change; %tb shows the full traceback)"]
    show = getattr(shell, "_showtraceback", None)  # ipykernel's: sends the cell's one "error" output
    if show is not None:
        show(etype, value, stb)
    else:
        print(*stb, sep="\n", file=sys.stderr)
    return stb


def install_error_display() -> bool:
    """Install the hook in the running IPython kernel, if there is one; True when installed."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    shell.set_custom_exc((RecipelibError,), _short)
    return True
