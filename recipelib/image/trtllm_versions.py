"""Which TensorRT-LLM versions the benchmark image can be built for, and from which NVIDIA base image.

Two ways, one per era, because NVIDIA ships TensorRT-LLM two ways:

* **0.1x** (the recipe's way): ``FROM nvcr.io/nvidia/tritonserver:<YY.MM>-trtllm-python-py3`` plus a
  shallow clone of ``triton-inference-server/tensorrtllm_backend`` at tag ``v<version>`` for
  ``benchmarks/cpp/prepare_dataset.py``. The TensorRT-LLM that runs is the one inside the Triton base, so
  ``TRITON_SERVER_VERSION`` must name a container that ships it: a pair NVIDIA does not ship together is a
  warning (NVIDIA also publishes post releases, and a user may know better).
* **1.x**: ``FROM nvcr.io/nvidia/tensorrt-llm/release:<version>``, NVIDIA's TensorRT-LLM release image
  (``trtllm-bench``, ``trtllm-serve``, Python 3.12, ``/app/tensorrt_llm/benchmarks``), no clone:
  tensorrtllm_backend has no tag after v1.0.0, so the 0.1x way cannot build 1.1 or later at all.
  ``TRITON_SERVER_VERSION`` plays no part.

:data:`BUILDABLE` lists only versions both halves of which were found (a base image that ships the version,
and, for 0.1x, the backend tag); anything else is refused before a request is sent
(:func:`image_source`), naming ``TRTLLM_VERSION`` and what can be built. The launcher's version tables
start at 0.16, so older releases are not offered even where NVIDIA still has images for them.

Sources (read 2026-11-30):

* Triton containers: the "Release Compatibility Matrix, Container Name: trtllm-python-py3" table,
  ``docs/introduction/compatibility.md`` in triton-inference-server/server at commit
  0f963c9a8c6913aa4cd9b57ee04f9c2b76ee8d2a.
* tensorrtllm_backend tags: ``git tag`` of triton-inference-server/tensorrtllm_backend at
  0b9d7d5a195820d53abadfcf7208d0ccdbfd5332: v0.16.0, v0.17.0, v0.18.0, v0.18.1, v0.18.2, v0.19.0,
  v0.20.0, v0.21.0, v1.0.0, and nothing later.
* Release images: NVIDIA's "Pre-built release container images on NGC" page
  (nvidia.github.io/TensorRT-LLM/installation/containers.html) and ``docker/release.md`` in NVIDIA/TensorRT-LLM
  (``nvcr.io/nvidia/tensorrt-llm/release:x.y.z``, tags as in the NGC catalog); what is inside from the
  ``release`` stage of ``docker/Dockerfile.multi`` (NVIDIA/TensorRT-LLM at 00f74add6b0d51b1e7b34d5bdd48a9ed39b868f3:
  the wheel pip-installed, whose ``setup.py`` console scripts are trtllm-bench and trtllm-serve; WORKDIR
  ``/app/tensorrt_llm`` with ``benchmarks/`` and ``examples/``; base ``nvcr.io/nvidia/pytorch``, Python 3.12.3).
  The individual tags are not readable in the NGC catalog from here; each 1.x entry names the public
  use of that exact tag it rests on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from recipelib.errors import ConfigError

TRITON_REPOSITORY = "nvcr.io/nvidia/tritonserver"
RELEASE_REPOSITORY = "nvcr.io/nvidia/tensorrt-llm/release"

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

_TRITON_SOURCE = "triton-inference-server/server docs/introduction/compatibility.md@0f963c9a"
_BACKEND_SOURCE = "triton-inference-server/tensorrtllm_backend tag"


@dataclass(frozen=True)
class ImageSource:
    """How the image for one TensorRT-LLM version is built, and where each half of that was read."""

    version: str
    """The release, ``0.17.0`` / ``1.2.0`` (the image tag is ``TRTLLM_VERSION`` as the user spells it)."""
    kind: str
    """``triton`` (0.1x: Triton base + tensorrtllm_backend clone) or ``release`` (1.x: NVIDIA's release image)."""
    source: str
    backend_tag: str | None = None
    """The tensorrtllm_backend tag the Dockerfile clones (``triton`` only)."""

    def base_image(self, triton_server_version: str) -> str:
        """The ``FROM`` image: the Triton tag the user chose (0.1x), or the release image of this version."""
        if self.kind == "triton":
            return f"{TRITON_REPOSITORY}:{triton_server_version}"
        return f"{RELEASE_REPOSITORY}:{self.version}"


def _release(version: str) -> tuple[int, int, int] | None:
    """``v0.17.0`` / ``0.17.0.post1`` -> ``(0, 17, 0)``; ``None`` for a branch name such as ``main``."""
    m = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    if not m:
        return None
    return int(m[1]), int(m[2]), int(m[3] or 0)


def _triton(version: str) -> ImageSource:
    releases = ", ".join(f"{r}-trtllm-python-py3" for r, v in KNOWN_GOOD.items() if _release(v) == _release(version))
    return ImageSource(version, "triton", f"{_TRITON_SOURCE} ({releases}); {_BACKEND_SOURCE} v{version}",
                       backend_tag=f"v{version}")


BUILDABLE: dict[str, ImageSource] = {
    **{v: _triton(v) for v in ("0.16.0", "0.17.0", "0.18.0", "0.18.2", "0.19.0", "0.20.0", "0.21.0")},
    "1.0.0": ImageSource("1.0.0", "release", "nvcr.io/nvidia/tensorrt-llm/release:1.0.0 run in public benchmark "
                         "notes that print tensorrt_llm 1.0.0 and Python 3.12.3 inside it; the same version ships in "
                         "Triton 25.09/25.10"),
    "1.1.0": ImageSource("1.1.0", "release", "nvcr.io/nvidia/tensorrt-llm/release:1.1.0 named as the serving "
                         "container of public benchmark write-ups; the same version ships in Triton 25.12-26.02"),
    "1.2.0": ImageSource("1.2.0", "release", "nvcr.io/nvidia/tensorrt-llm/release:1.2.0 used as the passing image "
                         "of public trtllm-bench smoke scripts; the same version ships in Triton 26.03"),
    "1.2.1": ImageSource("1.2.1", "release", "nvcr.io/nvidia/tensorrt-llm/release:1.2.1 run with trtllm-serve in "
                         "public deployment notes (one records its digest); the same version ships in Triton 26.04"),
}
"""Every TensorRT-LLM version an image can be built for; nothing else is offered."""

_TRITON_TAG = re.compile(r"^(?P<release>\d{2}\.\d{2})-trtllm-python-py3$")


def buildable_versions() -> list[str]:
    """What ``TRTLLM_VERSION`` may say, oldest first, as the recipe spells it (``v0.17.0``, ``1.2.0``)."""
    return [f"v{v}" if s.kind == "triton" else v for v, s in BUILDABLE.items()]


def image_source(trtllm_version: str) -> ImageSource:
    """The way to build ``TRTLLM_VERSION``; a version outside :data:`BUILDABLE` is a ConfigError.

    ``v0.17.0`` and ``0.17.0`` are the same release; ``0.17.0.post1`` or ``1.3.0rc1`` are not offered.
    """
    m = re.fullmatch(r"v?(\d+\.\d+\.\d+)", trtllm_version.strip())
    found = BUILDABLE.get(m[1]) if m else None
    if found is None:
        raise ConfigError(
            "TRTLLM_VERSION",
            f"{trtllm_version!r} cannot be built here; versions that can: {', '.join(buildable_versions())} "
            "(0.1x on NVIDIA's Triton trtllm-python-py3 images, 1.x on nvcr.io/nvidia/tensorrt-llm/release)",
        )
    return found


def shipped_trtllm(triton_server_version: str) -> str | None:
    """The TensorRT-LLM version in that Triton container, if the table knows it."""
    m = _TRITON_TAG.match(triton_server_version)
    return KNOWN_GOOD.get(m["release"]) if m else None


def check_version_pair(trtllm_version: str, triton_server_version: str) -> str | None:
    """``None`` when the pair is a known-good combination, else a sentence saying what is off and what fits.

    Only the 0.1x way has a pair: for 1.x the base image is the release image of the version itself.
    Matching compares major.minor.patch: ``v0.17.0`` fits 25.02's ``0.17.0.post1``.
    """
    wanted = _release(trtllm_version)
    if wanted is not None and wanted >= (1, 0, 0):
        return None
    if not _TRITON_TAG.match(triton_server_version):
        return (
            f"TRITON_SERVER_VERSION {triton_server_version!r} is not a '-trtllm-python-py3' Triton tag such as "
            "'25.02-trtllm-python-py3': the base image may have no TensorRT-LLM at all"
        )
    shipped = shipped_trtllm(triton_server_version)
    fitting = sorted(r for r, v in KNOWN_GOOD.items() if wanted is not None and _release(v) == wanted)
    suggestion = (
        f"; TensorRT-LLM {trtllm_version} ships in " + ", ".join(f"{r}-trtllm-python-py3" for r in fitting)
        if fitting else ""
    )
    if shipped is None:
        return (
            f"TRITON_SERVER_VERSION {triton_server_version!r} is not in the known-good table "
            f"(recipelib/image/trtllm_versions.py, from NVIDIA's Triton compatibility matrix): cannot check that it "
            f"ships TensorRT-LLM {trtllm_version}{suggestion}"
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
