"""Notebook parameters, typed strictly: the type annotated in the parameters cell is the contract.

papermill turns ``-p dry_run yes`` into the *string* ``"yes"`` (only ``True``, ``False``, ``None`` and
numbers are converted), and Python treats any non-empty string as true: without a check, ``-p dry_run
false`` would run a real deploy as a dry run's opposite's opposite. So every notebook calls, in the
cell right after its parameters cell::

    from recipelib.views import parameters
    parameters.check(globals(), choices={"backend": ("", "tensorrt", "pytorch")}, bounds={"gpus": (0, 8)})

:func:`check` reads the types from the parameters cell itself (a top-level ``name: type = default`` in a
notebook fills the kernel's ``__annotations__``, the same annotations papermill's ``--help-notebook``
prints), so a parameter's type is written once. Allowed annotations: ``bool``, ``int``, ``float``, ``str``,
``list``, ``dict``, ``None``, unions of them (``int | None``, or a string such as ``"list or str"``), and
``Literal[...]`` for an enumeration (or ``choices=``). A bool is ``True``/``False`` only; an int is never a
bool or a float (``3.0``); a float may be an int, never a bool, always finite. A bad value is a
:class:`~recipelib.errors.ConfigError` naming the parameter, what it got and the papermill spelling that
works, raised before the notebook does anything.
"""

from __future__ import annotations

import ast
import math
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any

from recipelib.errors import ConfigError

__all__ = ["check", "check_values", "declared"]

_NAMES: dict[str, type | None] = {"bool": bool, "int": int, "float": float, "str": str, "list": list,
                                  "dict": dict, "None": None, "NoneType": None}
_SPELLING = {bool: "True or False (a bool)", int: "a whole number (int)", float: "a number (float)",
             str: "text (str)", list: "a list", dict: "a dict", None: "None"}
_PAPERMILL = {bool: "-p {name} True (or False)", int: "-p {name} 8", float: "-p {name} 2.5",
              str: "-p {name} text", list: "-y '{name}: [...]'", dict: "-y '{name}: {{...}}'", None: "-p {name} None"}


def check(namespace: Mapping[str, Any], *, choices: Mapping[str, Collection[Any]] | None = None,
          bounds: Mapping[str, tuple[float | None, float | None]] | None = None) -> dict[str, Any]:
    """Check every annotated parameter in ``namespace`` (a notebook's ``globals()``); return them by name.

    ``choices`` restricts a parameter to listed values (an enumeration); ``bounds`` gives an inclusive
    ``(minimum, maximum)`` to a number (``None``: no limit on that side).
    """
    annotations = namespace.get("__annotations__") or {}
    values = {name: namespace[name] for name in annotations if name in namespace}
    check_values(values, annotations, choices=choices, bounds=bounds)
    return values


def check_values(values: Mapping[str, Any], types_: Mapping[str, Any], *,
                 choices: Mapping[str, Collection[Any]] | None = None,
                 bounds: Mapping[str, tuple[float | None, float | None]] | None = None) -> None:
    """Check ``values`` against declared types (``types_``: name -> annotation); raise for the first bad one."""
    for name in (*(choices or {}), *(bounds or {})):
        if name not in types_:
            raise ConfigError(name, "has choices or bounds but is not a declared parameter (a typo in the notebook?)")
    for name, annotation in types_.items():
        if name not in values:
            continue
        value = values[name]
        allowed, enum = _allowed(annotation, name)
        if choices and name in choices:
            enum = tuple(choices[name])
        if not any(_is(value, t) for t in allowed):
            raise ConfigError(name, _type_message(name, value, allowed))
        if enum is not None and value not in enum:
            raise ConfigError(name, f"{value!r} is not one of {', '.join(repr(v) for v in enum)}")
        if bounds and name in bounds and isinstance(value, int | float) and not isinstance(value, bool):
            low, high = bounds[name]
            if (low is not None and value < low) or (high is not None and value > high):
                limits = f"from {low} to {high}" if low is not None and high is not None else (
                    f"at least {low}" if low is not None else f"at most {high}")
                raise ConfigError(name, f"{value!r} is out of range: allowed {limits}")


def declared(source: str) -> dict[str, str]:
    """The annotations of a parameters cell's source, as written (``{"dry_run": "bool", ...}``).

    For tests and tools that read a notebook without running it; :func:`check_values` accepts these
    strings as it accepts the evaluated annotations.
    """
    out: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            ann = node.annotation
            out[node.target.id] = ann.value if isinstance(ann, ast.Constant) and isinstance(ann.value, str) \
                else ast.unparse(ann)
    return out


def _allowed(annotation: Any, name: str) -> tuple[tuple[type | None, ...], tuple[Any, ...] | None]:
    """The types an annotation allows, and its Literal values if it is an enumeration."""
    if isinstance(annotation, str):
        return _parse(annotation, name)
    if annotation is None or annotation is type(None):
        return (None,), None
    if annotation in _SPELLING:
        return (annotation,), None
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        enum = typing.get_args(annotation)
        return tuple({type(v) for v in enum}), enum
    if origin in (typing.Union, types.UnionType):
        found: list[type | None] = []
        for arg in typing.get_args(annotation):
            found.extend(_allowed(arg, name)[0])
        return tuple(found), None
    raise TypeError(f"parameter {name!r}: annotation {annotation!r} is not one parameters.check knows "
                    "(bool, int, float, str, list, dict, None, unions, Literal)")


def _parse(text: str, name: str) -> tuple[tuple[type | None, ...], tuple[Any, ...] | None]:
    """A string annotation: ``"list or str"``, ``"int | None"``, ``"Literal['a', 'b']"``."""
    text = text.strip()
    if text.startswith(("Literal[", "typing.Literal[")):
        enum = ast.literal_eval(text[text.index("[") + 1: -1] + ",")
        return tuple({type(v) for v in enum}), tuple(enum)
    parts = [p.strip() for p in text.replace(" or ", "|").split("|")]
    if not all(p in _NAMES for p in parts):
        raise TypeError(f"parameter {name!r}: annotation {text!r} is not one parameters.check knows")
    return tuple(_NAMES[p] for p in parts), None


def _is(value: Any, kind: type | None) -> bool:
    if kind is None:
        return value is None
    if kind is bool:
        return type(value) is bool
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, kind)


def _type_message(name: str, value: Any, allowed: tuple[type | None, ...]) -> str:
    wanted = " or ".join(_SPELLING[t] for t in allowed)
    got = f"the string {value!r}" if isinstance(value, str) else f"{type(value).__name__} {value!r}"
    hint = " or ".join(_PAPERMILL[t].format(name=name) for t in allowed)
    why = ""
    if bool in allowed and isinstance(value, str):
        why = " (any non-empty string, even 'false', would count as true)"
    elif int in allowed and isinstance(value, str):
        why = " (papermill passes a number only when the value is written as one)"
    return f"must be {wanted}, got {got}{why}; with papermill: {hint}"
