"""Pin the built image by digest, so that deploy runs exactly what was built.

A tag can be pushed again; a node that cached the old image under that tag would run it stale. Cloud Build
reports the digest it pushed (``Build.results.images[].digest``, kept in :class:`BuildOutcome`), and Artifact
Registry names the version a tag points at (``.../versions/sha256:...``, kept in the skipped build's
:class:`~recipelib.image.registry.TagInfo`). Either is saved as ``TRTLLM_IMAGE_DIGEST`` with the tag it
belongs to; :attr:`recipelib.settings.Settings.image` then gives ``IMAGE:TAG@sha256:...`` for as long as the
configured tag is that same one, and the Job pulls it ``IfNotPresent``
(:func:`recipelib.deploy.render.image_pull_policy`).

Example::

    recorded = record_image(settings, submitted, outcome)
    print(recorded.message)   # Saved us-...-docker.pkg.dev/p/r/trtllm:v0.17.0@sha256:... to ~/.config/...
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from recipelib.errors import ConfigError
from recipelib.image.outcome import BuildOutcome
from recipelib.image.submit import SubmittedBuild
from recipelib.settings import Settings, save_settings

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class RecordedImage:
    """What :func:`record_image` did: the settings deploy should use, whether they were saved, and a line."""

    settings: Settings
    message: str
    saved_to: Path | None = None
    ready: bool = False


def image_digest(submitted: SubmittedBuild, outcome: BuildOutcome | None) -> str | None:
    """The digest of the image that now carries the tag: the build's push, or the existing tag's version."""
    if outcome is not None and outcome.success:
        return outcome.digest or None
    if submitted.skipped and submitted.existing is not None:
        return submitted.existing.digest
    return None


def pin(settings: Settings, image: str, digest: str) -> Settings:
    """``settings`` with ``TRTLLM_IMAGE_DIGEST`` = ``image@digest``; the image must be the configured tag."""
    if not _DIGEST.fullmatch(digest):
        raise ConfigError("digest", f"{digest!r} is not an image digest (sha256: and 64 hex digits)")
    if image != settings.image_tag:
        raise ConfigError("image", f"{image} is not the configured image {settings.image_tag}: its digest would "
                                   "never be used; build with the settings you deploy with")
    return replace(settings, trtllm_image_digest=f"{image}@{digest}")


def record_image(
    settings: Settings,
    submitted: SubmittedBuild,
    outcome: BuildOutcome | None,
    *,
    save: bool = True,
    path: Path | None = None,
) -> RecordedImage:
    """Pin the image once it exists, and save the settings for deploy.ipynb (never the sandbox's as yours).

    Nothing is saved while the image does not exist yet (a build still running, or one that failed). With
    no digest reported, the tag alone is saved and any digest of another build is dropped: deploy then pulls
    by tag, ``Always``.
    """
    ready = submitted.skipped or (outcome is not None and outcome.success)
    if not ready:
        return RecordedImage(settings, f"{submitted.image} is not built yet: settings not saved. Run this notebook "
                                       f"again once build {submitted.build_id} has finished; it will find the tag "
                                       "and save it.")
    digest = image_digest(submitted, outcome)
    updated = (pin(settings, submitted.image, digest) if digest
               else replace(settings, trtllm_image_digest=None))
    ref = updated.image
    if settings.sandbox:
        return RecordedImage(updated, f"{ref} is ready (the sandbox's settings are never saved as yours)", ready=True)
    if not save:
        return RecordedImage(updated, f"{ref} is ready (settings not saved: save=False)", ready=True)
    saved = save_settings(updated, path)
    note = "" if digest else " (no digest reported: deploy pulls it by tag)"
    return RecordedImage(updated, f"Saved {ref} to {saved}{note}", saved_to=saved, ready=True)
