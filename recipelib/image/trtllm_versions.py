"""Which TensorRT-LLM version each Triton ``-trtllm-python-py3`` container ships.

The image is built ``FROM nvcr.io/nvidia/tritonserver:${TRITON_SERVER_VERSION}``: the TensorRT-LLM that
runs is the one inside that base, whatever ``TRTLLM_VERSION`` says. ``TRTLLM_VERSION`` picks the
tensorrtllm_backend checkout and names the image tag, so a pair that does not match builds an image
whose tag lies about what it runs (and whose engines may not load). We warn, not refuse: NVIDIA also
publishes post releases and a user may know better.

Source: the "Release Compatibility Matrix, Container Name: trtllm-python-py3" table of the Triton
Inference Server documentation (``docs/introduction/compatibility.md`` in triton-inference-server/server;
also each release's notes at docs.nvidia.com/deeplearning/triton-inference-server/release-notes/).
"""

from __future__ import annotations

import re

KNOWN_GOOD: dict[str, str] = {
    "24.04": "0.9.0",
    "24.05": "0.9.0",
    "24.06": "0.10.0",
    "24.07": "0.11.0",
    "24.08": "0.12.0",
    "24.09": "0.13.0",
    "24.10": "0.14.0",
    "24.11": "0.15.0",
    "24.12": "0.16.0",
    "25.01": "0.17.0",
    "25.02": "0.17.0.post1",
    "25.03": "0.18.0",
    "25.04": "0.18.2",
    "25.05": "0.19.0",
    "25.06": "0.20.0",
    "25.07": "0.20.0",
    "25.08": "0.21.0",
    "25.09": "1.0.0",
    "25.10": "1.0.0",
    "25.11": "1.0.3.2510",
    "25.12": "1.1.0",
    "26.01": "1.1.0",
    "26.02": "1.1.0",
    "26.03": "1.2.0",
    "26.04": "1.2.1",
    "26.05": "1.2.1",
    "26.06": "1.2.1",
    "26.07": "1.2.1",
}
"""Triton release (``YY.MM``) -> TensorRT-LLM version in ``nvcr.io/nvidia/tritonserver:YY.MM-trtllm-python-py3``."""

_TRITON_TAG = re.compile(r"^(?P<release>\d{2}\.\d{2})-trtllm-python-py3$")


def _release(version: str) -> tuple[int, int, int] | None:
    """``v0.17.0`` / ``0.17.0.post1`` -> ``(0, 17, 0)``; ``None`` for a branch name such as ``main``."""
    m = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    if not m:
        return None
    return int(m[1]), int(m[2]), int(m[3] or 0)


def shipped_trtllm(triton_server_version: str) -> str | None:
    """The TensorRT-LLM version in that Triton container, if the table knows it."""
    m = _TRITON_TAG.match(triton_server_version)
    return KNOWN_GOOD.get(m["release"]) if m else None


def check_version_pair(trtllm_version: str, triton_server_version: str) -> str | None:
    """``None`` when the pair is a known-good combination, else a sentence saying what is off and what fits.

    Matching compares major.minor.patch: ``v0.17.0`` fits 25.02's ``0.17.0.post1``.
    """
    if not _TRITON_TAG.match(triton_server_version):
        return (
            f"TRITON_SERVER_VERSION {triton_server_version!r} is not a '-trtllm-python-py3' Triton tag such as "
            "'25.02-trtllm-python-py3': the base image may have no TensorRT-LLM at all"
        )
    shipped = shipped_trtllm(triton_server_version)
    wanted = _release(trtllm_version)
    fitting = sorted(r for r, v in KNOWN_GOOD.items() if wanted is not None and _release(v) == wanted)
    suggestion = (
        f"; TensorRT-LLM {trtllm_version} ships in " + ", ".join(f"{r}-trtllm-python-py3" for r in fitting)
        if fitting else ""
    )
    if shipped is None:
        return (
            f"TRITON_SERVER_VERSION {triton_server_version!r} is not in the known-good table "
            f"(recipelib/trtllm_versions.py, from NVIDIA's Triton compatibility matrix): cannot check that it ships "
            f"TensorRT-LLM {trtllm_version}{suggestion}"
        )
    if wanted is None:
        return (
            f"TRTLLM_VERSION {trtllm_version!r} is not a release number; {triton_server_version} ships TensorRT-LLM "
            f"{shipped} (use TRTLLM_VERSION v{shipped})"
        )
    if wanted != _release(shipped):
        return (
            f"TRTLLM_VERSION {trtllm_version} does not match TRITON_SERVER_VERSION {triton_server_version}, which "
            f"ships TensorRT-LLM {shipped}: the image would be tagged {trtllm_version} but run {shipped}"
            f"{suggestion}"
        )
    return None
