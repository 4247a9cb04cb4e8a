"""Hugging Face tokens out of everything recipelib says: messages, logs, notebook outputs.

The token lives in the environment (or a hidden prompt) and in the cluster's ``hf-secret``; any other
place it shows up is a leak, whatever the path that carried it there (a token pasted as a release name,
into ``overrides``, as a papermill parameter). One pattern, applied where text leaves recipelib.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")
"""A Hugging Face user access token (``hf_`` and 34 letters and digits today; 20+ to be safe)."""
MASK = "hf_***"


def redact(text: str) -> str:
    return TOKEN.sub(MASK, text)


def holds_token(value: Any) -> bool:
    """True if a token-shaped string is anywhere in ``value`` (strings, mappings, sequences, nested)."""
    return any(TOKEN.search(s) for s in _strings(value))


def _strings(value: Any, depth: int = 0) -> Iterator[str]:
    if depth > 20:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k, depth + 1)
            yield from _strings(v, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _strings(v, depth + 1)


def install_log_redaction() -> None:
    """Mask tokens in every log record recipelib's loggers create.

    A filter on the ``recipelib`` logger would not see its children's records (logging consults a logger's
    filters only for records made by that logger), so the record factory does it, for our loggers only.
    """
    current = logging.getLogRecordFactory()
    if getattr(current, "_recipelib_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        if record.name.startswith("recipelib"):
            message = record.getMessage()
            if TOKEN.search(message):
                record.msg, record.args = redact(message), None
        return record

    factory._recipelib_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
