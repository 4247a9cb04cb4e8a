"""Speed of light: the most output tokens/s a model could reach on the GPUs it ran on, from datasheets.

Two ceilings for trtllm-bench's offline throughput scenario, both upper bounds (each ignores costs the
real run pays, so the true limit is lower):

- **compute**: every token, input or output, costs about ``2 x parameters`` FLOPs (one multiply-add per
  weight; attention's own FLOPs are left out, which only raises the bound). A request of ``isl`` input
  and ``osl`` output tokens costs ``2 P (isl + osl)``; output tokens/s <= GPUs x dense TFLOPS x osl /
  (2 P (isl + osl)). FP8 models use the FP8 Tensor Core rate, everything else BF16.
- **memory**: each decode step reads every weight once and each sequence's KV cache. The batch can be
  no larger than the KV cache that fits beside the weights in HBM; at that batch, output tokens/s <=
  batch x HBM bandwidth / (weight bytes + batch x KV bytes of a sequence at its average decode length).

The limit is the smaller of the two; a result is shown as a fraction of it. For the recipe (Llama 3.1
405B, FP8, 8 x H200, 128/128) the compute bound is about 9,750 tokens/s, and the recipe's 3,914 tokens/s
is about 40% of it. GPU figures come from the launcher's datasheet (``launcher/gpu_datasheet.py``, the
table the GPU preflight measures against), model shapes from ``recipelib/data``; both cite their sources.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import ModuleType

import pandas as pd

from recipelib.errors import SpeedOfLightError
from recipelib.paths import load_launcher_module

__all__ = ["Bound", "GpuSpec", "ModelShape", "SpeedOfLightError", "gpu_spec", "model_shape", "throughput_bound"]

WEIGHT_BYTES = {
    None: 2.0, "": 2.0, "NONE": 2.0, "BF16": 2.0, "BFLOAT16": 2.0, "FP16": 2.0, "FLOAT16": 2.0,
    "FP8": 1.0, "FP8_BLOCK_SCALES": 1.0, "FP8_PER_CHANNEL_PER_TOKEN": 1.0, "INT8": 1.0, "W8A16": 1.0,
    "W8A8_SQ_PER_CHANNEL": 1.0, "W4A16": 0.5, "W4A16_AWQ": 0.5, "W4A8_AWQ": 0.5, "NVFP4": 0.5, "FP4": 0.5,
}
"""Bytes per weight for each quantization trtllm-bench reports (scales are left out: a looser bound)."""
FP8_COMPUTE = frozenset({"FP8", "FP8_BLOCK_SCALES", "FP8_PER_CHANNEL_PER_TOKEN", "W4A8_AWQ"})
"""Quantizations whose matrix multiplies run on FP8 Tensor Cores; the rest run at the BF16 rate."""
KV_BYTES = {None: 2.0, "": 2.0, "NONE": 2.0, "AUTO": 2.0, "BF16": 2.0, "FP16": 2.0, "FP8": 1.0, "INT8": 1.0,
            "NVFP4": 0.5}


@dataclass(frozen=True)
class GpuSpec:
    """The datasheet figures the bounds use (dense Tensor Core rates; decimal GB and TB/s).

    A view of one entry of ``launcher/gpu_datasheet.py``, not a second table: ``name`` is its model
    (``H200``), ``memory_gb`` the datasheet's "141GB" read as decimal GB.
    """

    name: str
    memory_gb: float
    hbm_tb_s: float
    fp8_dense_tflops: float | None  # None: no FP8 Tensor Cores (A100)
    bf16_dense_tflops: float


@dataclass(frozen=True)
class ModelShape:
    """A dense decoder's shape, enough to count its weights and its KV cache."""

    family: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    stated_params_b: float

    @property
    def params(self) -> float:
        """Weights counted from the shape: embeddings, untied LM head, attention and gated MLP per layer."""
        attention = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        mlp = 3 * self.hidden * self.intermediate
        norms = 2 * self.hidden
        return 2 * self.vocab * self.hidden + self.layers * (attention + mlp + norms) + self.hidden

    def kv_bytes_per_token(self, kv_bytes: float) -> float:
        return 2 * self.layers * self.kv_heads * self.head_dim * kv_bytes


@dataclass(frozen=True)
class Bound:
    """The two ceilings for one configuration, in output tokens/s for the whole system."""

    compute_tok_s: float
    memory_tok_s: float
    max_batch: int  # sequences whose KV cache fits beside the weights
    precision: str  # "fp8" | "bf16": the Tensor Core rate used
    gpus: int

    @property
    def limit_tok_s(self) -> float:
        return min(self.compute_tok_s, self.memory_tok_s)

    @property
    def limited_by(self) -> str:
        return "compute" if self.compute_tok_s <= self.memory_tok_s else "memory"

    def fraction(self, measured_tok_s: float) -> float:
        """``measured / limit``: 0.4 means the run reached 40% of what the hardware could do."""
        return measured_tok_s / self.limit_tok_s


def _datasheet() -> ModuleType:
    return load_launcher_module("gpu_datasheet")


@cache
def _models() -> tuple[tuple[re.Pattern[str], ModelShape], ...]:
    frame = _read_csv("model_specs.csv")
    return tuple(
        (re.compile(str(r.match), re.IGNORECASE),
         ModelShape(str(r.family), int(r.layers), int(r.hidden), int(r.intermediate), int(r.heads),
                    int(r.kv_heads), int(r.head_dim), int(r.vocab), float(r.params_b)))
        for r in frame.itertuples()
    )


def _read_csv(name: str) -> pd.DataFrame:
    with resources.files("recipelib").joinpath("data", name).open() as f:
        return pd.read_csv(f, comment="#")


def gpu_spec(name: str) -> GpuSpec:
    """``H200``, ``NVIDIA H200``, ``nvidia-h200-141gb`` -> the H200's datasheet figures.

    A bare model name means its SXM part, the one GKE's A3/A4 machines carry.
    """
    sheet = _datasheet()
    spec = sheet.lookup_spec(name or "")
    if spec is None:
        known = ", ".join(dict.fromkeys(entry.model for _, entry in sheet.DATASHEET))
        raise SpeedOfLightError(f"no datasheet figures for GPU {name!r}; known: {known} "
                                "(add an entry to launcher/gpu_datasheet.py with its source)")
    fp8 = None if spec.fp8_dense_tflops is None else float(spec.fp8_dense_tflops)
    return GpuSpec(spec.model, float(spec.memory_gib), float(spec.hbm_tbps), fp8, float(spec.bf16_dense_tflops))


def model_shape(model: str) -> ModelShape:
    """The shape of a known model from its name (``meta-llama/Llama-3.1-405B``, ``nvidia/Llama-3.3-70B-...``)."""
    for pattern, shape in _models():
        if pattern.search(model or ""):
            return shape
    raise SpeedOfLightError(f"no shape for model {model!r}; add it to recipelib/data/model_specs.csv")


def throughput_bound(
    model: str | ModelShape,
    gpu: str | GpuSpec,
    gpus: int,
    *,
    isl: int,
    osl: int,
    quantization: str | None,
    kv_cache_dtype: str | None = None,
) -> Bound:
    """Compute and memory ceilings for ``gpus`` GPUs serving ``model`` at ``isl``/``osl`` (see module doc)."""
    shape = model if isinstance(model, ModelShape) else model_shape(model)
    spec = gpu if isinstance(gpu, GpuSpec) else gpu_spec(gpu)
    if gpus < 1 or isl < 0 or osl < 1:
        raise SpeedOfLightError(f"need gpus >= 1, isl >= 0 and osl >= 1; got {gpus}, {isl}, {osl}")
    quant = (quantization or "").upper()
    if quant not in WEIGHT_BYTES:
        raise SpeedOfLightError(f"unknown quantization {quantization!r}; known: "
                                f"{', '.join(sorted(k for k in WEIGHT_BYTES if k))}")
    kv_key = (kv_cache_dtype or "").upper()
    if kv_key not in KV_BYTES:
        raise SpeedOfLightError(f"unknown KV cache dtype {kv_cache_dtype!r}")
    fp8 = quant in FP8_COMPUTE
    if fp8 and spec.fp8_dense_tflops is None:
        raise SpeedOfLightError(f"{spec.name} has no FP8 Tensor Cores: a {quantization} model has no FP8 rate "
                                "to bound it with on this GPU")
    tflops = spec.fp8_dense_tflops if fp8 and spec.fp8_dense_tflops is not None else spec.bf16_dense_tflops
    params = shape.params
    compute = gpus * tflops * 1e12 * osl / (2.0 * params * (isl + osl))

    weight_bytes = params * WEIGHT_BYTES[quant]
    kv_token = shape.kv_bytes_per_token(KV_BYTES[kv_key])
    free = gpus * spec.memory_gb * 1e9 - weight_bytes
    max_batch = math.floor(free / (kv_token * (isl + osl))) if free > 0 else 0
    if max_batch < 1:
        raise SpeedOfLightError(
            f"{shape.family} at {quantization or 'BF16'} ({weight_bytes / 1e9:.0f} GB of weights) plus one "
            f"{isl + osl}-token sequence does not fit {gpus} x {spec.name} ({gpus * spec.memory_gb:.0f} GB)"
        )
    step_bytes = weight_bytes + max_batch * kv_token * (isl + osl / 2.0)
    memory = max_batch * gpus * spec.hbm_tb_s * 1e12 / step_bytes
    return Bound(compute_tok_s=compute, memory_tok_s=memory, max_batch=max_batch,
                 precision="fp8" if fp8 else "bf16", gpus=gpus)
