"""Where the project's non-Python parts live (``manifests/``, ``launcher/``), found once."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manifests_dir() -> Path:
    """``$RECIPELIB_MANIFESTS`` or the checkout's ``manifests/``: a user may keep their own catalog."""
    return Path(os.environ.get("RECIPELIB_MANIFESTS") or ROOT / "manifests")


def launcher_dir() -> Path:
    return Path(os.environ.get("RECIPELIB_LAUNCHER") or ROOT / "launcher")
