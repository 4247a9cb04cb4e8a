"""The model catalog and the experiments of a sweep.

A catalog entry is one YAML file in ``manifests/models/``: adding a model is adding a file. Any other
Hugging Face model id works too, given explicit ``tp_size`` (and optionally pp/quantization/backend).

A file also says which checkpoint and backend each TensorRT-LLM version runs (``flows:``, see
:mod:`recipelib.deploy.flows`) and the architecture facts sizes are checked against (attention heads,
KV heads, layers, from the model's ``config.json``): ``tp_size`` must divide the attention heads,
``pp_size`` the layers (before 1.0), and the weights must fit the GPUs' memory.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

import recipelib.deploy.flows as fl
import recipelib.results.layout as layout
from recipelib.errors import ConfigError
from recipelib.paths import ROOT, manifests_dir

log = logging.getLogger(__name__)

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
    checkpoint: str | None = None
    """What the pod downloads (a pre-quantized checkpoint for the PyTorch flow); None: ``id`` itself."""
    attention_heads: int | None = None
    kv_heads: int | None = None
    layers: int | None = None

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
        if self.checkpoint is not None:
            check_model_id(self.checkpoint, "checkpoint")
        params = self.parameters_billion
        if params is not None and (isinstance(params, bool) or not isinstance(params, int | float) or params <= 0):
            raise ConfigError("parameters_billion", f"must be a positive number, got {params!r}")
        for name in ("attention_heads", "kv_heads", "layers"):
            if getattr(self, name) is not None:
                _positive_int(getattr(self, name), name)
        heads = self.attention_heads
        if heads is not None and heads % self.tp_size:
            allowed = [d for d in range(1, GPUS_PER_NODE + 1) if heads % d == 0]
            raise ConfigError("tp_size", f"{self.tp_size} does not divide the {heads} attention heads of {self.id} "
                                         f"(each GPU must hold whole heads): use one of {allowed}")
        if self.layers is not None and self.pp_size > self.layers:
            raise ConfigError("pp_size", f"{self.pp_size} pipeline stages for the {self.layers} layers of {self.id}")


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
        """Stable and unique within a sweep: the results path of this experiment (the launcher's layout)."""
        return layout.experiment_id(self.isl, self.osl, self.num_requests, self.concurrency, self.streaming)


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


@dataclass(frozen=True)
class _Entry:
    spec: ModelSpec
    flows: tuple[fl.Flow, ...]


@cache
def _catalog(root: Path) -> dict[str, _Entry]:
    out: dict[str, _Entry] = {}
    allowed = {f.name for f in fields(ModelSpec)} | {"flows"}
    for path in sorted((root / "models").glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        unknown = set(data) - allowed
        if unknown:
            raise ConfigError(str(path), f"unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        flows = fl.parse_flows(data.pop("flows", None), str(path), backends=BACKENDS, quantizations=QUANTIZATIONS)
        entry = _Entry(ModelSpec(**data), flows)
        out[entry.spec.id.lower()] = entry
        out[path.stem.lower()] = entry
    return out


def catalog() -> dict[str, ModelSpec]:
    """Every model of ``manifests/models/`` by its Hugging Face id (as its file states, flows not applied)."""
    return {e.spec.id: e.spec for e in _catalog(manifests_dir()).values()}


def resolve_model(
    model: str,
    *,
    tp_size: int | None = None,
    pp_size: int | None = None,
    quantization: str | None = None,
    backend: str | None = None,
    trtllm_version: str | None = None,
    gpu: str | None = None,
    **overrides: Any,
) -> ModelSpec:
    """The catalog entry for ``model`` with explicit values on top, or a new spec for any HF id.

    Zero or empty overrides mean "not given" (notebook parameters default to them). ``trtllm_version``
    (``settings.trtllm_version``) picks the flow: before 1.0 the engine flow on the base checkpoint, from
    1.0 the PyTorch flow on a pre-quantized checkpoint, unless ``backend`` is given. ``gpu`` (default: the
    node of ``manifests/values.yaml``) is what the weights must fit. Sizes that cannot be checked (a model
    outside the catalog) are logged as warnings, each naming what is missing.
    """
    entry = _catalog(manifests_dir()).get(model.lower()) if isinstance(model, str) else None
    if entry is None:
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
    version = fl.parse_version(trtllm_version)
    flows = entry.flows if entry is not None else ()
    if entry is None and "tp_size" not in given:
        raise ConfigError(
            "tp_size",
            f"{model!r} is not in the catalog ({', '.join(sorted(catalog()))}); give tp_size (and pp_size, "
            "quantization, backend as needed), or add a file to manifests/models/",
        )
    base = entry.spec if entry is not None else ModelSpec(id=model, tp_size=given["tp_size"])
    if "backend" not in given:
        given["backend"] = fl.default_backend(flows, version, base.backend)
    spec = replace(base, **given)
    fl.check_backend(spec.backend, version, trtllm_version)
    if "checkpoint" not in given:
        flow = fl.flow_for(flows, spec.backend, version)
        spec = replace(spec, checkpoint=flow.checkpoint_for(spec.quantization) if flow else None)
    notes = _check_fit(spec, version, gpu if gpu is not None else _node_gpu(manifests_dir()), known=entry is not None)
    for note in notes:
        log.warning("%s: %s", spec.id, note)
    if spec.checkpoint and spec.checkpoint != spec.id:
        log.info("%s: the pod downloads %s (%s backend)", spec.id, spec.checkpoint, spec.backend)
    return spec


def _check_fit(spec: ModelSpec, version: fl.Version | None, gpu: str, *, known: bool) -> list[str]:
    """Refuse what cannot run; return what could not be checked, one sentence each."""
    notes = []
    if spec.layers is not None:
        fl.check_layers(spec.pp_size, spec.layers, spec.id, version)
    missing = [n for n in ("attention_heads", "layers") if getattr(spec, n) is None]
    if missing:
        notes.append(f"tp_size/pp_size not checked against the model: {' and '.join(missing)} unknown (give them, or "
                     "add the model to manifests/models/ from its config.json)")
    if spec.parameters_billion is None:
        notes.append("weights not checked against GPU memory: parameters_billion unknown")
    else:
        note = fl.check_memory(spec.id, spec.parameters_billion, spec.quantization, spec.gpus, gpu,
                               spec.attention_heads)
        notes += [note] if note else []
    if spec.backend == "pytorch" and spec.quantization is not None and spec.checkpoint is None:
        if known:
            raise ConfigError("checkpoint", f"the PyTorch flow does not quantize and {spec.id} is not "
                                            f"{spec.quantization}: give checkpoint (a pre-quantized "
                                            f"{spec.quantization} repository), quantization 'none', or backend "
                                            "'tensorrt' (TensorRT-LLM <= 1.2)")
        notes.append(f"the PyTorch flow does not quantize: {spec.id} must hold {spec.quantization} weights itself")
    return notes


@cache
def _node_gpu(root: Path) -> str:
    """The GPU of the node the toolkit deploys to (``accelerator`` in ``values.yaml``, the shipped one if
    ``root`` has none)."""
    path = root / "values.yaml" if (root / "values.yaml").is_file() else ROOT / "manifests" / "values.yaml"
    return str(yaml.safe_load(path.read_text())["accelerator"])


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
    if not isinstance(value, list | tuple):
        raise ConfigError("experiments", f"must be a preset name, a string such as '128/128/30000,2048/128/3000' "
                          f"or a list of {{isl, osl, num_requests}}, got {type(value).__name__} {value!r}")
    items = [_experiment(item, f"experiments[{i}]") for i, item in enumerate(value)]
    if not items:
        raise ConfigError("experiments", "is empty: give at least one {isl, osl, num_requests}")
    seen: set[str] = set()
    for i, e in enumerate(items):
        if e.id in seen:
            raise ConfigError(f"experiments[{i}]", f"duplicates experiment {e.id}")
        seen.add(e.id)
    return items
