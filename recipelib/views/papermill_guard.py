"""Papermill refuses a Hugging Face token as a notebook parameter, before anything runs or is written.

Papermill writes every parameter into the output notebook (the injected cell and its metadata), so a
token passed with ``-p`` would be stored in plain text. Papermill offers no hook on its parameters, but it
imports every ``papermill.engine`` entry point when it starts; recipelib's entry point (this module, see
pyproject.toml) registers a Python parameter translator that checks the parameters first. The check runs
in papermill's own process while the parameters are turned into code, which is before the output
notebook exists: a refused run writes nothing. ``--engine recipelib`` also works, as the plain nbclient
engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from papermill.engines import NBClientEngine
from papermill.translators import PythonTranslator, papermill_translators

from recipelib.errors import SecretError
from recipelib.redaction import holds_token

_TOKEN_NAMES = ("token", "hf_token", "huggingface_token", "hugging_face_hub_token")


def check_parameters(parameters: Mapping[str, Any]) -> None:
    """Refuse a token-shaped value in any parameter, and any parameter named for a token."""
    for name, value in parameters.items():
        lowered = name.lower()
        if lowered in _TOKEN_NAMES or lowered.endswith("_token") or holds_token(value):
            raise SecretError(
                f"papermill parameter {name!r} holds a Hugging Face token (or is named for one): refused, since "
                "papermill would store it in the output notebook. Set HF_TOKEN in the environment instead "
                "(export HF_TOKEN=hf_...), or let setup.ipynb prompt for it"
            )


class GuardedPythonTranslator(PythonTranslator):
    @classmethod
    def codify(cls, parameters: dict[str, Any], comment: str = "Parameters") -> str:
        check_parameters(parameters)
        return super().codify(parameters, comment)


class RecipelibEngine(NBClientEngine):
    """papermill's default nbclient engine, under the name ``recipelib`` (the entry point's target)."""


def install() -> None:
    papermill_translators.register("python", GuardedPythonTranslator)


install()
