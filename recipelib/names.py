"""Kubernetes names: validated when the user chose them, derived (and always valid) when not.

The recipe named releases ``$USER-serving-llama-3-1-405b-model``, which breaks for a user called
``Jane.Doe`` or a long model id. Here a derived name is DNS-1123 valid, at most 63 characters, and
stable: the same user and model always give the same release, so re-running deploy is idempotent.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re

from recipelib.errors import ConfigError

MAX_NAME = 63
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_name(value: str, field: str, max_len: int = MAX_NAME) -> str:
    """Return ``value`` if it is a DNS-1123 label of at most ``max_len`` characters, else raise."""
    if not isinstance(value, str) or not value or len(value) > max_len or not _DNS_LABEL.fullmatch(value):
        suggestion = slug(str(value), max_len) if isinstance(value, str) and value else "my-release"
        raise ConfigError(
            field,
            f"{value!r} is not a valid Kubernetes name: lower-case letters, digits and '-', at most {max_len} "
            f"characters, starting and ending with a letter or digit (for example {suggestion!r})",
        )
    return value


def slug(text: str, max_len: int = MAX_NAME) -> str:
    """Make ``text`` a DNS-1123 label; a hash suffix keeps truncated names distinct and stable."""
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"
    if len(base) <= max_len:
        return base
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return f"{base[: max_len - 7].rstrip('-')}-{digest}"


def current_user() -> str:
    """The login name, from the environment the recipe used (``$USER``); never fails."""
    for var in ("USER", "LOGNAME", "JUPYTERHUB_USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "user"


def release_name(model: str, user: str | None = None, release: str | None = None) -> str:
    """The release (Job and label) name: ``release`` as given (checked), else ``<user>-<model>``."""
    if release:
        return check_name(release, "release")
    if user:
        check_name(user, "user", max_len=30)
    else:
        user = slug(current_user(), 30)
    model_part = model.rsplit("/", 1)[-1]
    return slug(f"{user}-{model_part}")
