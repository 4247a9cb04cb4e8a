"""The model catalog and the experiments of a sweep.

A catalog entry is one YAML file in ``manifests/models/``: adding a model is adding a file. Any other
Hugging Face model id works too, given explicit ``tp_size`` (and optionally pp/quantization/backend).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from recipelib.errors import ConfigError
from recipelib.paths import manifests_dir

BACKENDS = ("tensorrt", "pytorch")
QUANTIZATIONS = ("FP8", "NVFP4", "INT8", "W4A16_AWQ", "W4A8_AWQ", "W8A16", "W4A16")
GPUS_PER_NODE = 8
_HF_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HF_ID = re.compile(rf"^{_HF_PART}/{_HF_PART}$")


@dataclass(frozen=True)
class ModelSpec:
    """How one model is served and benchmarked on one node."""

    id: str
    tp_size: int = 1
    pp_size: int = 1
    ep_size: int | None = None
    quantization: str | None = None
    backend: str = "tensorrt"
    kv_cache_free_gpu_mem_fraction: float = 0.95
    max_batch_size: int | None = None
    max_num_tokens: int | None = None
    parameters_billion: float | None = None

    @property
    def gpus(self) -> int:
        return self.tp_size * self.pp_size

    def __post_init__(self) -> None:
        check_model_id(self.id)
        for name in ("tp_size", "pp_size"):
            _positive_int(getattr(self, name), name)
        for name in ("ep_size", "max_batch_size", "max_num_tokens"):
            if getattr(self, name) is not None:
                _positive_int(getattr(self, name), name)
        if self.gpus > GPUS_PER_NODE:
            raise ConfigError(
                "tp_size",
                f"tp_size x pp_size = {self.tp_size} x {self.pp_size} = {self.gpus} GPUs, but one node has 1-"
                f"{GPUS_PER_NODE}: lower tp_size or pp_size",
            )
        if self.backend not in BACKENDS:
            raise ConfigError("backend", f"{self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            raise ConfigError(
                "quantization", f"{self.quantization!r} is not one of {', '.join(QUANTIZATIONS)} (or empty for none)"
            )
        frac = self.kv_cache_free_gpu_mem_fraction
        if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0 < frac <= 1:
            raise ConfigError("kv_cache_free_gpu_mem_fraction", f"must be a number in (0, 1], got {frac!r}")


@dataclass(frozen=True)
class Experiment:
    """One trtllm-bench throughput run: synthetic requests of ``isl`` input and ``osl`` output tokens."""

    isl: int
    osl: int
    num_requests: int
    concurrency: int | None = None
    streaming: bool = False

    @property
    def id(self) -> str:
        """Stable and unique within a sweep: the results path of this experiment."""
        out = f"isl{self.isl}-osl{self.osl}-n{self.num_requests}"
        if self.concurrency:
            out += f"-c{self.concurrency}"
        return out + ("-stream" if self.streaming else "")


def _positive_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(field, f"must be a positive integer, got {value!r}")
    return value


def check_model_id(model: str, field: str = "model") -> str:
    """A Hugging Face id ``org/name``; anything else (spaces, ``;``, ``$``, ``..``) is refused."""
    if not isinstance(model, str) or not _HF_ID.fullmatch(model) or ".." in model:
        raise ConfigError(
            field,
            f"{model!r} is not a Hugging Face model id: 'organisation/name' using letters, digits, '.', '_' "
            "and '-' only (for example 'meta-llama/Llama-3.1-405B')",
        )
    return model


@cache
def _catalog(root: Path) -> dict[str, ModelSpec]:
    out: dict[str, ModelSpec] = {}
    allowed = {f.name for f in fields(ModelSpec)}
    for path in sorted((root / "models").glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        unknown = set(data) - allowed
        if unknown:
            raise ConfigError(str(path), f"unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        spec = ModelSpec(**data)
        out[spec.id.lower()] = spec
        out[path.stem.lower()] = spec
    return out


def catalog() -> dict[str, ModelSpec]:
    """Every model of ``manifests/models/`` by its Hugging Face id."""
    return {s.id: s for s in _catalog(manifests_dir()).values()}


def resolve_model(
    model: str,
    *,
    tp_size: int | None = None,
    pp_size: int | None = None,
    quantization: str | None = None,
    backend: str | None = None,
    **overrides: Any,
) -> ModelSpec:
    """The catalog entry for ``model`` with explicit values on top, or a new spec for any HF id.

    Zero or empty overrides mean "not given" (notebook parameters default to them).
    """
    known = _catalog(manifests_dir()).get(model.lower()) if isinstance(model, str) else None
    if known is None:
        check_model_id(model)
    given = {
        k: v
        for k, v in dict(
            tp_size=tp_size, pp_size=pp_size, quantization=quantization, backend=backend, **overrides
        ).items()
        if v not in (None, "", 0)
    }
    if str(given.get("quantization", "")).lower() == "none":
        given["quantization"] = None
    if known is not None:
        return replace(known, **given)
    if "tp_size" not in given:
        raise ConfigError(
            "tp_size",
            f"{model!r} is not in the catalog ({', '.join(sorted(catalog()))}); give tp_size (and pp_size, "
            "quantization, backend as needed), or add a file to manifests/models/",
        )
    return ModelSpec(id=model, **given)


EXPERIMENT_KEYS = tuple(f.name for f in fields(Experiment))


def _experiment(item: Any, where: str) -> Experiment:
    if isinstance(item, Experiment):
        item = asdict(item)
    if not isinstance(item, Mapping):
        raise ConfigError(where, f"must be a mapping with isl, osl, num_requests; got {item!r}")
    unknown = set(item) - set(EXPERIMENT_KEYS)
    if unknown:
        raise ConfigError(where, f"unknown keys {sorted(unknown)}; allowed: {', '.join(EXPERIMENT_KEYS)}")
    for key in ("isl", "osl", "num_requests"):
        if key not in item:
            raise ConfigError(f"{where}.{key}", "is missing")
        _positive_int(item[key], f"{where}.{key}")
    if item.get("concurrency") is not None:
        _positive_int(item["concurrency"], f"{where}.concurrency")
    if not isinstance(item.get("streaming", False), bool):
        raise ConfigError(f"{where}.streaming", f"must be true or false, got {item['streaming']!r}")
    return Experiment(**item)


def _from_string(text: str) -> list[dict[str, Any]]:
    items = []
    for i, part in enumerate(p.strip() for p in text.split(",")):
        numbers = part.split("/")
        if len(numbers) != 3:
            raise ConfigError(
                f"experiments[{i}]", f"{part!r} is not ISL/OSL/NUM_REQUESTS (for example '128/128/30000')"
            )
        values = []
        for key, n in zip(("isl", "osl", "num_requests"), numbers, strict=True):
            if not re.fullmatch(r"\s*[0-9]+\s*", n):
                raise ConfigError(f"experiments[{i}].{key}", f"must be a positive integer, got {n.strip()!r}")
            values.append(int(n))
        items.append(dict(zip(("isl", "osl", "num_requests"), values, strict=True)))
    return items


def presets() -> dict[str, list[Experiment]]:
    """Named sweeps from ``manifests/experiments/``: ``recipe-default`` and ``nvidia-sweep``."""
    return {
        p.stem: parse_experiments(yaml.safe_load(p.read_text()))
        for p in sorted((manifests_dir() / "experiments").glob("*.yaml"))
    }


def parse_experiments(value: str | Iterable[Any] | None) -> list[Experiment]:
    """A sweep from a preset name, ``"128/128/30000,2048/128/3000"``, or a list of dicts.

    Duplicates are refused: two experiments with one id would write to the same results path.
    """
    if value is None or value == "":
        value = "recipe-default"
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[a-z][a-z0-9-]*", text):
            found = presets()
            if text not in found:
                raise ConfigError("experiments", f"unknown preset {text!r}; presets: {', '.join(found)}")
            return found[text]
        value = _from_string(text)
    items = [_experiment(item, f"experiments[{i}]") for i, item in enumerate(value)]
    if not items:
        raise ConfigError("experiments", "is empty: give at least one {isl, osl, num_requests}")
    seen: set[str] = set()
    for i, e in enumerate(items):
        if e.id in seen:
            raise ConfigError(f"experiments[{i}]", f"duplicates experiment {e.id}")
        seen.add(e.id)
    return items
