"""The Cloud Build config (``cloudbuild.yaml``) and its substitutions, checked as Cloud Build would.

Cloud Build refuses a build whose ``${_X}`` substitutions and given values do not match (MUST_MATCH), but
only after the upload; these checks run first, so a typo costs nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from recipelib.errors import ConfigError
from recipelib.image.trtllm_versions import image_source
from recipelib.settings import Settings

CONFIG_FILE = "cloudbuild.yaml"
USER_SUBSTITUTION = re.compile(r"^_[A-Z0-9_]+$")
"""A user substitution's name, as Cloud Build allows it: ``_`` then upper case, digits and ``_``."""
_REFERENCE = re.compile(r"\$\{(?P<braced>[A-Za-z0-9_]+)\}|\$(?P<bare>[A-Za-z0-9_]+)")


def recipe_substitutions(settings: Settings) -> dict[str, str]:
    """The build's substitutions: the recipe's registry, image and version, and the base image they imply.

    ``_BASE_IMAGE`` replaces the recipe's ``_TRITON_SERVER_VERSION``: for 0.1x it is
    ``nvcr.io/nvidia/tritonserver:<TRITON_SERVER_VERSION>``, for 1.x NVIDIA's TensorRT-LLM release image of
    that version (:mod:`recipelib.image.trtllm_versions`). A version that cannot be built is a ConfigError
    naming ``TRTLLM_VERSION``.
    """
    source = image_source(settings.trtllm_version)
    return {
        "_ARTIFACT_REGISTRY": str(settings.artifact_registry),
        "_TRTLLM_IMAGE": settings.trtllm_image,
        "_TRTLLM_VERSION": settings.trtllm_version,
        "_BASE_IMAGE": source.base_image(settings.triton_server_version),
    }


def load_config(path: Path) -> dict[str, Any]:
    """The Cloud Build config as a mapping, with its steps checked for the minimum Cloud Build needs."""
    if not path.is_file():
        raise ConfigError("config", f"Cloud Build config {path} does not exist")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError("config", f"{path} is not valid YAML: {e}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("steps"), list) or not cfg["steps"]:
        raise ConfigError("config", f"{path} must be a mapping with a non-empty 'steps' list")
    for i, step in enumerate(cfg["steps"]):
        if not isinstance(step, dict) or not step.get("name"):
            raise ConfigError(f"config.steps[{i}]", f"in {path}: each step needs a 'name' (the builder image)")
    return cfg


def parse_build(cfg: Mapping[str, Any], path: Path) -> Any:
    """The config as a ``cloudbuild_v1.Build``; unknown or mistyped fields are a ConfigError."""
    from google.cloud.devtools import cloudbuild_v1

    try:
        return cloudbuild_v1.Build.from_json(json.dumps(cfg))
    except Exception as e:  # google.protobuf.json_format.ParseError, and TypeError for odd YAML values
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError("config", f"{path} is not a Cloud Build config: {message}") from None


def config_defaults(cfg: Mapping[str, Any]) -> dict[str, str]:
    """The config's own ``substitutions:`` defaults, which need no value from us."""
    subs = cfg.get("substitutions") or {}
    return {str(k): str(v) for k, v in subs.items()} if isinstance(subs, dict) else {}


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def referenced_substitutions(cfg: Mapping[str, Any]) -> set[str]:
    """User substitutions (``$_X`` / ``${_X}``) the config uses, outside its own ``substitutions`` defaults."""
    names: set[str] = set()
    for key, value in cfg.items():
        if key == "substitutions":
            continue
        for text in _strings(value):
            for m in _REFERENCE.finditer(text.replace("$$", "")):
                name = m["braced"] or m["bare"]
                if name.startswith("_"):
                    names.add(name)
    return names


def check_substitutions(cfg: Mapping[str, Any], given: Mapping[str, str], path: Path) -> None:
    """Every ``${_X}`` of the config has a value, and every value we pass is used: Cloud Build's MUST_MATCH."""
    used = referenced_substitutions(cfg)
    defaults = config_defaults(cfg)
    missing = sorted(used - set(given) - set(defaults))
    if missing:
        raise ConfigError(f"substitutions.{missing[0]}", f"{path} uses {', '.join(missing)} but no value is given")
    unknown = sorted(set(given) - used)
    if unknown:
        raise ConfigError(f"substitutions.{unknown[0]}", f"{path} does not use {', '.join(unknown)}; it uses "
                                                         f"{', '.join(sorted(used)) or 'no substitutions'}")
    for name, value in given.items():
        if not value or value == "None":
            raise ConfigError(f"substitutions.{name}", "is empty")


def apply_substitutions(text: str, values: Mapping[str, str]) -> str:
    """``text`` with ``$_X``/``${_X}`` replaced as Cloud Build does (``$$`` is a literal ``$``)."""
    def repl(m: re.Match[str]) -> str:
        name = m["braced"] or m["bare"]
        return values.get(name, m[0])

    return "$".join(_REFERENCE.sub(repl, part) for part in text.split("$$"))


def check_user_substitution(key: str, value: Any) -> None:
    """An extra substitution the caller passes: a Cloud Build user substitution name and a one-line string."""
    if not USER_SUBSTITUTION.match(key):
        raise ConfigError(f"substitutions.{key}", "user substitutions are named _UPPER_CASE (a leading '_', then "
                                                  "A-Z, 0-9 and '_')")
    if not isinstance(value, str) or "\n" in value:
        raise ConfigError(f"substitutions.{key}", "must be a one-line string")
