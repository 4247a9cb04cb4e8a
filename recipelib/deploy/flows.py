"""Which TensorRT-LLM flow runs a model, and whether its weights fit the GPUs: the catalog's rules, as data.

Two flows exist (``manifests/trtllm/README.md`` has the per-version CLI tables):

- **engine** (backend ``tensorrt``): ``trtllm-bench build`` quantizes the *base* Hugging Face checkpoint
  (``--quantization FP8``) into a TensorRT engine, then ``throughput --engine_dir`` runs it. The 0.1x
  default; ``--backend tensorrt`` is still listed by 1.0-1.2 (``manifests/trtllm/bench-1.2.yaml``) and is
  gone from the 1.3.0rc26 docs (``pytorch | _autodeploy`` only).
- **pytorch** (backend ``pytorch``): no build; the weights are loaded as they are, so a quantized run needs
  a checkpoint quantized beforehand with ModelOpt ("TensorRT LLM can directly run pre-quantized models",
  nvidia.github.io/TensorRT-LLM/1.0.0/features/quantization.html). Available "in version 0.17 and later"
  (nvidia.github.io/TensorRT-LLM/0.19.0/torch.html); the default of ``trtllm-bench throughput`` from 1.0.

A catalog file lists its flows under ``flows:``, each with the TensorRT-LLM ``versions`` it is the default
for, its ``backend``, the ``checkpoint`` the pod downloads (absent: the model id) and, for a checkpoint
that is already quantized, ``prequantized`` (the quantization its weights hold).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recipelib.errors import ConfigError
from recipelib.paths import load_launcher_module

Version = tuple[int, int]

PYTORCH_FIRST: Version = (0, 17)
"""The PyTorch backend exists from 0.17 (nvidia.github.io/TensorRT-LLM/0.19.0/torch.html)."""
ENGINE_LAST: Version = (1, 2)
"""``--backend tensorrt`` is listed through 1.2 (manifests/trtllm/bench-1.2.yaml); 1.3.0rc26's docs drop it."""
PYTORCH_DEFAULT_FROM: Version = (1, 0)
"""From 1.0 ``trtllm-bench throughput --backend`` defaults to pytorch (manifests/trtllm/bench-1.0.yaml)."""
EVEN_PP_BEFORE: Version = (1, 0)
"""Before 1.0 pipeline stages must split the layers evenly (see :func:`check_layers`)."""
USABLE_MEMORY_FRACTION = 0.9
"""recipelib's limit, not TensorRT-LLM's: weights may fill at most 90% of GPU memory, leaving the rest for
the CUDA context, NCCL and activation buffers and some KV cache (trtllm-bench sizes the cache from what is
free after the weights load, ``--kv_cache_free_gpu_mem_fraction``)."""
WEIGHT_BYTES: dict[str | None, float] = {
    None: 2.0, "FP8": 1.0, "INT8": 1.0, "W8A16": 1.0, "NVFP4": 0.5, "W4A16_AWQ": 0.5, "W4A8_AWQ": 0.5, "W4A16": 0.5,
}
"""Bytes per weight for each quantization the catalog allows (None: BF16); scales left out."""

_COMPARISON = re.compile(r"^\s*(<=|>=|==|<|>)\s*v?(\d+)\.(\d+)\s*$")
_RELEASE = re.compile(r"^v?(\d+)\.(\d+)(?:[.\-+a-z0-9]*)$", re.IGNORECASE)


def parse_version(value: str | None, field: str = "TRTLLM_VERSION") -> Version | None:
    """``v0.17.0`` / ``0.17.0.post1`` / ``1.2.0rc8`` -> ``(major, minor)``; empty or None -> None."""
    if value is None or value == "":
        return None
    m = _RELEASE.match(value) if isinstance(value, str) else None
    if not m:
        raise ConfigError(field, f"{value!r} is not a TensorRT-LLM release number (for example v0.17.0 or 1.2.0): "
                                 "the catalog picks the engine or PyTorch flow from it")
    return int(m.group(1)), int(m.group(2))


def in_range(version: Version, spec: str) -> bool:
    """Whether ``version`` is in ``spec``, comma-separated comparisons such as ``">=1.0,<1.3"``."""
    ops = {"<": version.__lt__, "<=": version.__le__, ">": version.__gt__, ">=": version.__ge__,
           "==": version.__eq__}
    for part in spec.split(","):
        m = _COMPARISON.match(part)
        if not m:
            raise ValueError(part)
        if not ops[m.group(1)]((int(m.group(2)), int(m.group(3)))):
            return False
    return True


@dataclass(frozen=True)
class Flow:
    """One catalog entry of ``flows:``: the default for ``versions``; how that backend gets its weights."""

    versions: str
    backend: str
    checkpoint: str | None = None
    prequantized: str | None = None

    def checkpoint_for(self, quantization: str | None) -> str | None:
        """The checkpoint to download for ``quantization``; None: the model id (the base weights)."""
        if self.prequantized is not None and self.prequantized != quantization:
            return None
        return self.checkpoint


def parse_flows(
    items: Any, where: str, *, backends: tuple[str, ...], quantizations: tuple[str, ...]
) -> tuple[Flow, ...]:
    """A catalog file's ``flows:`` list, every key checked; errors name the file and ``flows[i].key``."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ConfigError(f"{where}: flows", "must be a list of {versions, backend, checkpoint, prequantized}")
    out = []
    allowed = ("versions", "backend", "checkpoint", "prequantized")
    for i, item in enumerate(items):
        at = f"{where}: flows[{i}]"
        if not isinstance(item, Mapping) or set(item) - set(allowed):
            raise ConfigError(at, f"must be a mapping with keys {', '.join(allowed)}; got {item!r}")
        try:
            in_range((0, 0), str(item.get("versions", "")))
        except ValueError:
            raise ConfigError(f"{at}.versions", f"{item.get('versions')!r} is not a version range such as '<1.0' or "
                                                "'>=1.0,<1.3'") from None
        if item.get("backend") not in backends:
            raise ConfigError(f"{at}.backend", f"{item.get('backend')!r} is not one of {', '.join(backends)}")
        if item.get("prequantized") is not None and item["prequantized"] not in quantizations:
            raise ConfigError(f"{at}.prequantized",
                              f"{item['prequantized']!r} is not one of {', '.join(quantizations)}")
        out.append(Flow(str(item["versions"]), item["backend"], item.get("checkpoint"), item.get("prequantized")))
    return tuple(out)


def default_backend(flows: tuple[Flow, ...], version: Version | None, fallback: str) -> str:
    """The backend a version runs when none is asked: the first flow whose range holds it, else by version."""
    if version is None:
        return fallback
    for flow in flows:
        if in_range(version, flow.versions):
            return flow.backend
    return "pytorch" if version >= PYTORCH_DEFAULT_FROM else "tensorrt"


def flow_for(flows: tuple[Flow, ...], backend: str, version: Version | None) -> Flow | None:
    """The flow of ``backend``: the one whose range holds ``version`` if any, else the first of that backend."""
    mine = [f for f in flows if f.backend == backend]
    held = [f for f in mine if version is not None and in_range(version, f.versions)]
    return (held or mine or [None])[0]


def check_backend(backend: str, version: Version | None, raw: str | None) -> None:
    """Refuse a backend the version does not have (the sources are in the module docstring)."""
    if version is None:
        return
    if backend == "tensorrt" and version > ENGINE_LAST:
        raise ConfigError("backend", f"TensorRT-LLM {raw} has no TensorRT engine backend (listed through 1.2, "
                                     "manifests/trtllm/bench-1.2.yaml): use backend 'pytorch' or a version <= 1.2")
    if backend == "pytorch" and version < PYTORCH_FIRST:
        raise ConfigError("backend", f"TensorRT-LLM {raw} has no PyTorch backend (it exists from 0.17): use "
                                     "backend 'tensorrt' or a version >= 0.17")


def check_layers(pp_size: int, layers: int, model: str, version: Version | None) -> None:
    """Before 1.0 pipeline stages must split the layers evenly.

    The 0.1x ``tensorrt_llm/mapping.py`` gives each stage ``num_layers // pp_size`` layers (read in a stored
    pre-1.0 version of that file; not pinned to a release commit), so an uneven split would silently lose the
    remainder. 1.x splits unevenly, the first stages taking one layer more (``torch.tensor_split`` in
    NVIDIA/TensorRT-LLM@b35ac1b6, 1.2.0rc2), so there only ``pp_size <= layers`` is required.
    """
    if pp_size > layers:
        raise ConfigError("pp_size", f"{pp_size} pipeline stages for the {layers} layers of {model}: use at most "
                                     f"{layers}")
    if (version is None or version < EVEN_PP_BEFORE) and layers % pp_size:
        allowed = [d for d in range(1, 9) if layers % d == 0]
        raise ConfigError("pp_size", f"{pp_size} does not divide the {layers} layers of {model} (TensorRT-LLM "
                                     f"before 1.0 needs equal pipeline stages): use one of {allowed}")


def gpu_memory_bytes(gpu: str) -> float | None:
    """The GPU's memory from ``launcher/gpu_datasheet.py`` (its ``memory_gib``), None for an unknown GPU."""
    spec = load_launcher_module("gpu_datasheet").lookup_spec(gpu or "")
    return None if spec is None else float(spec.memory_gib) * 2**30


def check_memory(model: str, parameters_billion: float, quantization: str | None, gpus: int, gpu: str,
                 heads: int | None) -> str | None:
    """Refuse weights that do not fit ``gpus`` x ``gpu``; a note (not an error) when the GPU is unknown.

    Memory is the datasheet's figure read as GiB, as nvidia-smi shows it (143,771 MiB on an H200): the
    larger reading, so that nothing that would fit is refused.
    """
    per_gpu = gpu_memory_bytes(gpu)
    if per_gpu is None:
        return f"weights not checked against GPU memory: no datasheet figures for GPU {gpu!r}"
    weights = parameters_billion * 1e9 * WEIGHT_BYTES[quantization]
    usable = per_gpu * USABLE_MEMORY_FRACTION
    if weights <= gpus * usable:
        return None
    need = math.ceil(weights / usable)
    fits = [n for n in range(need, 9) if heads is None or heads % n == 0]
    if need <= 8:
        fix = f"use tp_size x pp_size >= {need}" + (f" (tp_size {fits[0]})" if fits else "")
    else:
        fix = "it needs more than one node"
    gib = 2**30
    raise ConfigError("tp_size", f"{model} at {quantization or 'BF16'} has {weights / gib:,.0f} GiB of weights; "
                                 f"{gpus} x {gpu} hold {gpus * usable / gib:,.0f} GiB for weights "
                                 f"({USABLE_MEMORY_FRACTION:.0%} of {per_gpu / gib:,.0f} GiB each): {fix}, or a "
                                 "smaller quantization such as FP8")
