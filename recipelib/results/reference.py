"""NVIDIA's published trtllm-bench throughput, to put each of our results beside.

``recipelib/data/nvidia_published_throughput.csv`` holds the output tokens/s that NVIDIA's
``perf-overview`` pages give for Llama 3.x 8B/70B/405B on H100/H200, per TensorRT-LLM version, with the
pages it was read from in its header. A result is matched on model size, GPU, TP, ISL and OSL; the
published figure of the same TensorRT-LLM minor version is used when there is one, otherwise the
nearest version (the chosen one is named in the output, as the engine flow of 0.14/0.17 and the PyTorch
flow of 0.19+ are different things).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import pandas as pd

__all__ = ["compare_to_published", "model_family", "published_figures", "version_key"]

_VERSION = re.compile(r"v?(\d+)\.(\d+)")


@cache
def _published_wide() -> pd.DataFrame:
    with resources.files("recipelib").joinpath("data", "nvidia_published_throughput.csv").open() as f:
        return pd.read_csv(f, comment="#")


def published_figures() -> pd.DataFrame:
    """Long form: ``model`` (8B/70B/405B), ``gpu``, ``tp``, ``isl``, ``osl``, ``version``, ``output_tok_s``."""
    wide = _published_wide()
    versions = [c for c in wide.columns if c.startswith("v")]
    long = wide.melt(id_vars=["model", "gpu", "tp", "isl", "osl"], value_vars=versions, var_name="version",
                     value_name="output_tok_s").dropna(subset=["output_tok_s"])
    return long.reset_index(drop=True)


def version_key(version: str | None) -> tuple[int, int] | None:
    """``0.17.0.post1`` -> ``(0, 17)``; ``v1.0`` -> ``(1, 0)``."""
    m = _VERSION.match(str(version or "").strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def model_family(model: str | None) -> str | None:
    """The published table's model key for a Llama 3.x model name (``...Llama-3.1-405B...`` -> ``405B``)."""
    m = re.search(r"llama[-_ ]?3(?:\.\d)?[-_ ](\d+)b", str(model or ""), re.IGNORECASE)
    return f"{m.group(1)}B" if m else None


def compare_to_published(frame: pd.DataFrame, gpu: str | None = None) -> pd.DataFrame:
    """One row per result that NVIDIA published a figure for: measured, published, ratio, version used.

    ``gpu`` fills in the GPU where the results do not say (reports before 1.x do not print it). Only
    like is compared with like: NVIDIA's figures are FP8 models at maximum throughput (no concurrency
    limit, no streaming), so other results are left out.
    """
    published = published_figures()
    rows = []
    for r in frame.itertuples(index=False):
        family = model_family(r.model if isinstance(r.model, str) else None)
        the_gpu = r.gpu if isinstance(r.gpu, str) and r.gpu else gpu
        if family is None or not the_gpu or pd.isna(r.tp_size) or pd.isna(r.isl) or pd.isna(r.osl):
            continue
        if r.quantization != "FP8" or not pd.isna(r.concurrency) or bool(r.streaming):
            continue
        match = published[(published.model == family) & (published.gpu == str(the_gpu).upper())
                          & (published.tp == int(r.tp_size)) & (published.isl == int(r.isl))
                          & (published.osl == int(r.osl))]
        if match.empty:
            continue
        chosen = _closest(match, version_key(r.trtllm_version))
        rows.append({
            "run": r.run, "experiment": r.experiment, "model": r.model, "gpu": str(the_gpu).upper(),
            "tp_size": int(r.tp_size), "isl": int(r.isl), "osl": int(r.osl),
            "trtllm_version": r.trtllm_version, "published_version": chosen.version,
            "same_version": version_key(chosen.version) == version_key(r.trtllm_version),
            "output_throughput_tok_s": r.output_throughput_tok_s,
            "published_output_tok_s": float(chosen.output_tok_s),
            "ratio_to_published": r.output_throughput_tok_s / float(chosen.output_tok_s),
        })
    columns = ["run", "experiment", "model", "gpu", "tp_size", "isl", "osl", "trtllm_version",
               "published_version", "same_version", "output_throughput_tok_s", "published_output_tok_s",
               "ratio_to_published"]
    return pd.DataFrame(rows, columns=columns)


def _closest(match: pd.DataFrame, ours: tuple[int, int] | None):
    if ours is None:
        return match.assign(k=match.version.map(version_key)).sort_values("k").iloc[-1]

    def distance(v: str) -> tuple[int, int]:
        key = version_key(v) or (0, 0)
        return (abs((key[0] * 100 + key[1]) - (ours[0] * 100 + ours[1])), -(key[0] * 100 + key[1]))

    return match.assign(d=match.version.map(distance)).sort_values("d").iloc[0]
