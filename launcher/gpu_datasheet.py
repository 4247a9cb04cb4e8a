"""GPU datasheet figures, with their sources: the one table both the GPU preflight and recipelib read.

The preflight (in the pod) reports each measurement as a fraction of these figures; recipelib's
speed-of-light analysis (``recipelib.results.speed_of_light``, which loads this file by path) bounds a
model's throughput with them. Standard library only and no sibling imports, so either side can load it.

Conventions:

- Tensor Core rates are **dense** TFLOP/s. NVIDIA's datasheets quote them "with sparsity" (2:4
  structured sparsity doubles the quoted rate; LLM inference runs dense), so the dense figure is half,
  taken from the architecture whitepaper where it states one. For H100/H200 SXM the datasheet's
  "1,979 TFLOPS*" BF16 is 1978.9 rounded: the whitepaper's dense figure is **989.4** (132 SMs x 4
  Tensor Cores x 1,024 BF16 FLOP/clock x 1.83 GHz = 989.43), not 1979 / 2 = 989.5.
- ``memory_gib``: the datasheets' "80GB"/"141GB". nvidia-smi shows them close to GiB (81559 MiB on an
  H100 SXM, 143771 MiB on an H200), so the preflight compares them as GiB; the speed-of-light bound
  reads them as decimal GB (a slightly smaller memory: a looser upper bound).
- ``fp8_dense_tflops`` is twice the BF16 rate on every GPU here, as the hardware runs it (the whitepaper's
  1,978.9 for H100 SXM is 2 x 989.43 rounded): written as ``2 x`` the BF16 figure so that the two stay
  in that ratio after rounding.
- ``hbm_tbps``: decimal TB/s, as printed.
- ``link_gbps``: GPU-to-GPU bandwidth *per direction* (half the bidirectional figure the datasheets
  print), because that is what nccl-tests' all-reduce bus bandwidth approaches on a healthy link.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

H100_PAGE = "https://www.nvidia.com/en-us/data-center/h100/"
H200_PAGE = "https://www.nvidia.com/en-us/data-center/h200/"
HGX_PAGE = "https://www.nvidia.com/en-us/data-center/hgx/"
A100_PAGE = "https://www.nvidia.com/en-us/data-center/a100/"
HOPPER_WHITEPAPER = ("NVIDIA H100 Tensor Core GPU Architecture whitepaper, table 'NVIDIA H100 Tensor Core GPU "
                     "specifications', dense/sparse Tensor Core TFLOPS "
                     "(https://resources.nvidia.com/en-us-tensor-core/gtc22-whitepaper-hopper)")


@dataclass(frozen=True)
class GpuSpec:
    """One GPU's datasheet limits: the ceilings every measurement and every bound is a fraction of.

    ``fp8_dense_tflops`` is ``None`` for a GPU without FP8 Tensor Cores (A100).
    """

    key: str
    model: str
    memory_gib: float
    hbm_tbps: float
    bf16_dense_tflops: float
    link: str
    link_gbps: float
    source: str
    fp8_dense_tflops: float | None = None


# Order matters: the first pattern that matches the nvidia-smi/torch name wins, so the NVL and PCIe
# variants come before the plain SXM names they contain.
DATASHEET: tuple[tuple[str, GpuSpec], ...] = (
    # H100 datasheet, "H100 NVL" column: 94 GB, 3.9 TB/s, BF16 1,671 / FP8 3,341 TFLOPS with sparsity,
    # NVLink bridge 600 GB/s bidirectional.
    (r"\bH100\b.*\bNVL\b",
     GpuSpec("H100-NVL", "H100", 94, 3.9, 835.5, "NVLink4-bridge", 300,
             f"NVIDIA H100 datasheet, H100 NVL column ({H100_PAGE})", fp8_dense_tflops=2 * 835.5)),
    # Same datasheet, "H100 PCIe" (2023 revision): 80 GB, 2.0 TB/s, BF16 1,513 / FP8 3,026 with sparsity
    # (whitepaper: 756.5 / 1,513 dense); without a bridge, PCIe Gen5 x16 is 64 GB/s per direction.
    (r"\bH100\b.*\bPCIe\b",
     GpuSpec("H100-PCIe", "H100", 80, 2.0, 756.5, "PCIe5", 64,
             f"NVIDIA H100 datasheet, H100 PCIe column ({H100_PAGE}); {HOPPER_WHITEPAPER}",
             fp8_dense_tflops=2 * 756.5)),
    # Same datasheet, "H100 SXM" (nvidia-smi: "NVIDIA H100 80GB HBM3"; GCP A3 High/Mega): 80 GB HBM3,
    # 3.35 TB/s, BF16 1,979 / FP8 3,958 with sparsity (whitepaper: 989.4 / 1,978.9 dense),
    # NVLink 900 GB/s bidirectional.
    (r"\bH100\b",
     GpuSpec("H100-SXM", "H100", 80, 3.35, 989.4, "NVLink4", 450,
             f"NVIDIA H100 datasheet, H100 SXM column ({H100_PAGE}); {HOPPER_WHITEPAPER}",
             fp8_dense_tflops=2 * 989.4)),
    # H200 datasheet, "H200 NVL": 141 GB, 4.8 TB/s, BF16 1,671 / FP8 3,341 with sparsity, NVLink bridge
    # 900 GB/s bidirectional.
    (r"\bH200\b.*\bNVL\b",
     GpuSpec("H200-NVL", "H200", 141, 4.8, 835.5, "NVLink4-bridge", 450,
             f"NVIDIA H200 datasheet, H200 NVL column ({H200_PAGE})", fp8_dense_tflops=2 * 835.5)),
    # Same datasheet, "H200 SXM" (nvidia-smi: "NVIDIA H200"; GCP A3 Ultra): 141 GB HBM3e, 4.8 TB/s,
    # BF16 1,979 / FP8 3,958 with sparsity: the H100 SXM's SM array and clocks, so 989.4 / 1,978.9 dense;
    # NVLink 900 GB/s bidirectional.
    (r"\bH200\b",
     GpuSpec("H200-SXM", "H200", 141, 4.8, 989.4, "NVLink4", 450,
             f"NVIDIA H200 datasheet, H200 SXM column ({H200_PAGE}); {HOPPER_WHITEPAPER}",
             fp8_dense_tflops=2 * 989.4)),
    # HGX B200 specification, per GPU = node / 8 (GCP A4): 180 GB HBM3e, 8 TB/s, BF16 4.5 / FP8 9 PFLOPS
    # with sparsity at 1,000 W, NVLink 5 1.8 TB/s bidirectional.
    (r"\bB200\b",
     GpuSpec("B200-HGX", "B200", 180, 8.0, 2250.0, "NVLink5", 900,
             f"NVIDIA HGX B200 specification, per GPU ({HGX_PAGE})", fp8_dense_tflops=2 * 2250.0)),
    # A100 datasheet, "A100 80GB SXM": 2,039 GB/s, BF16 312 TFLOPS dense, no FP8 Tensor Cores,
    # NVLink 600 GB/s bidirectional.
    (r"\bA100-SXM4-80GB\b",
     GpuSpec("A100-SXM-80GB", "A100", 80, 2.039, 312.0, "NVLink3", 300,
             f"NVIDIA A100 datasheet, A100 80GB SXM column ({A100_PAGE})")),
)


def lookup_spec(name: str) -> GpuSpec | None:
    """The datasheet entry for a GPU name as nvidia-smi, torch or a GKE accelerator label writes it.

    >>> lookup_spec("NVIDIA H100 80GB HBM3").key
    'H100-SXM'
    >>> lookup_spec("nvidia-h200-141gb").key
    'H200-SXM'
    >>> lookup_spec("NVIDIA GH200 480GB") is None   # a different chip, not an H200
    True
    """
    for pattern, spec in DATASHEET:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return spec
    return None


@dataclass(frozen=True)
class NodeType:
    """What a node type promises: ``--node-type a3-ultra`` stands for ``--expect-gpus 8 --expect-model H200``."""

    gpus: int
    model: str


# GCP machine families the toolkit targets (cloud.google.com/compute/docs/gpus).
NODE_TYPES: dict[str, NodeType] = {
    "a3-ultra": NodeType(8, "H200"),  # a3-ultragpu-8g
    "a3-mega": NodeType(8, "H100"),  # a3-megagpu-8g
    "a3-high": NodeType(8, "H100"),  # a3-highgpu-8g
    "a4": NodeType(8, "B200"),  # a4-highgpu-8g
}


def model_matches(name: str, expected: str) -> bool:
    """True when every word of ``expected`` is a word of the GPU's name (case-insensitive).

    Words, not substrings, so that "H20" does not match "NVIDIA H200" and "H200" does not match "GH200".
    """
    words = set(re.split(r"[\s_]+", name.upper().replace("NVIDIA", " ")))
    want = [w for w in re.split(r"[\s_]+", expected.upper()) if w]
    return bool(want) and all(w in words for w in want)
