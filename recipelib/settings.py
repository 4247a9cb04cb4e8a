"""Settings: the recipe's exported variables, read once, validated once.

Precedence, lowest to highest: defaults < settings file < environment < explicit arguments.
The settings file is the user's (``$RECIPELIB_SETTINGS`` or ``~/.config/recipelib/settings.yaml``, written by
the setup notebook). The settings file and the environment use the recipe's names (``PROJECT_ID``,
``GCS_BUCKET``, ...); Python code reads the same values as lower-case attributes (``settings.gcs_bucket``).

**Settings a tool offers (the overlay).** A tool that runs a cluster of its own (the local sandbox,
``python -m recipelib.sandbox start``) presents itself as any cluster does: a kubeconfig with its context,
and a settings file it writes at ``$RECIPELIB_OVERLAY`` or ``~/.config/recipelib/overlay.yaml``, removed
when the tool stops. The overlay takes the settings file's place, whole, when the user has configured no
cluster: no settings file of the user's exists, and no ``KUBECONFIG``/``KUBE_CONTEXT``/``CLUSTER_NAME`` is
in the environment or the arguments. It is never merged key by key into the user's settings (a sandbox's
``GCS_ENDPOINT`` under a real ``GCS_BUCKET`` would send real results to a fake server), and the user's
settings file is never written by a tool. A ``$RECIPELIB_SETTINGS`` that names an absent file counts as
configured (tests use one to stay hermetic), unless ``$RECIPELIB_OVERLAY`` is named too.

Besides the recipe's names, any settings file may carry marks that are data, not settings:
``SANDBOX: true`` (the cluster is a local replay of recorded runs, never a measurement: ``Settings.sandbox``,
which the notebooks' banner says first), ``NOTE`` (a line about where these settings come from:
``Settings.note``), and ``PID`` (the process the values depend on: an overlay whose process is gone is stale
and ignored, so a crashed tool never leaves the product pointing at a dead server).

Example::

    settings = load_settings(GCS_BUCKET="my-bucket")
    settings.require("GCS_BUCKET", "ARTIFACT_REGISTRY")   # before anything touches the cloud
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from recipelib.errors import ConfigError

SETTINGS_ENV = "RECIPELIB_SETTINGS"
"""Environment variable naming the settings file; default ``~/.config/recipelib/settings.yaml``."""
OVERLAY_ENV = "RECIPELIB_OVERLAY"
"""Environment variable naming the overlay a tool writes; default ``~/.config/recipelib/overlay.yaml``.
Setting it also lets a named but absent ``$RECIPELIB_SETTINGS`` fall back to the overlay."""
MARKS = ("SANDBOX", "NOTE", "PID")
"""Keys a settings file may hold besides the settings: what the file is, not where things are."""
_CLUSTER_NAMES = ("KUBECONFIG", "KUBE_CONTEXT", "CLUSTER_NAME")

_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_ZONE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_BUCKET_PART = re.compile(r"^[a-z0-9][a-z0-9_-]*[a-z0-9]$|^[a-z0-9]$")
_REGISTRY = re.compile(
    r"^(?P<location>[a-z]+-[a-z]+[0-9]+|us|europe|asia)-docker\.pkg\.dev/"
    r"(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/(?P<repo>[a-z][a-z0-9-]{0,62})$"
)
_IMAGE_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_PINNED = re.compile(r"^[a-z0-9][a-z0-9./_-]*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}@sha256:[0-9a-f]{64}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_PREFIX_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Settings:
    """Where the cluster, the bucket and the image are. Field names map to the recipe's upper-case names."""

    project_id: str | None = None
    region: str | None = None
    cluster_region: str | None = None
    cluster_name: str | None = None
    gcs_bucket: str | None = None
    artifact_registry: str | None = None
    trtllm_image: str = "trtllm"
    trtllm_version: str = "v0.17.0"
    triton_server_version: str = "25.02-trtllm-python-py3"
    trtllm_image_digest: str | None = None
    """``ARTIFACT_REGISTRY/TRTLLM_IMAGE:TRTLLM_VERSION@sha256:...``: the digest build-image.ipynb found for
    that tag. ``image`` pins it while the tag is still the one configured."""
    kueue_name: str | None = None
    namespace: str = "default"
    results_prefix: str = "trtllm-benchmarks"
    kubeconfig: str | None = None
    kube_context: str | None = None
    gcs_endpoint: str | None = None
    sandbox: bool = False
    """The file says ``SANDBOX: true``: a local replay of recorded runs, not a real cluster."""
    note: str | None = None
    """The file's ``NOTE``: where these settings come from (a tool that wrote them, how to stop it)."""

    @property
    def image_tag(self) -> str | None:
        """The benchmark image by tag, ``ARTIFACT_REGISTRY/TRTLLM_IMAGE:TRTLLM_VERSION``: what a build pushes."""
        if not self.artifact_registry:
            return None
        return f"{self.artifact_registry}/{self.trtllm_image}:{self.trtllm_version}"

    @property
    def image(self) -> str | None:
        """The image a deploy runs: the tag, pinned ``@sha256:...`` when ``TRTLLM_IMAGE_DIGEST`` was saved for
        that same tag (a re-pushed tag then never runs stale, and nodes may keep it cached)."""
        tag = self.image_tag
        if tag and self.trtllm_image_digest and self.trtllm_image_digest.startswith(tag + "@"):
            return self.trtllm_image_digest
        return tag

    def require(self, *names: str, purpose: str = "this step") -> None:
        """Raise a ConfigError naming every required setting that is unset."""
        missing = [n.upper() for n in names if getattr(self, n.lower()) in (None, "")]
        if missing:
            raise ConfigError(
                ", ".join(missing),
                f"required for {purpose} but not set; set it in the setup notebook, the settings file "
                f"({settings_path()}) or the environment (export {missing[0]}=...)",
            )

    def as_env(self) -> dict[str, str]:
        """The settings under the recipe's names, unset ones left out (the marks are not settings)."""
        return {k.upper(): v for k, v in asdict(self).items() if v is not None and k.upper() in NAMES}


NAMES: tuple[str, ...] = tuple(f.name.upper() for f in fields(Settings) if f.name.upper() not in MARKS)
"""Every setting's name as the recipe, the environment and the settings file spell it."""


def settings_path() -> Path:
    return Path(os.environ.get(SETTINGS_ENV) or Path.home() / ".config" / "recipelib" / "settings.yaml")


def overlay_path() -> Path:
    """Where a tool offers its settings (see the module's docstring)."""
    return Path(os.environ.get(OVERLAY_ENV) or Path.home() / ".config" / "recipelib" / "overlay.yaml")


def _normalise_keys(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).upper()
        if name not in NAMES:
            raise ConfigError(
                str(key), f"unknown setting in {source}; allowed: {', '.join(NAMES)}"
            )
        if value is not None and not isinstance(value, str):
            if isinstance(value, float):
                raise ConfigError(name, f"must be a string, got the number {value!r} in {source}: quote it "
                                  "(YAML reads 0.10 as the number 0.1, so the text you wrote is lost)")
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(name, f"must be a string, got {type(value).__name__} in {source}")
            value = str(value)
        if isinstance(value, str):
            _check_text(name, value, source)
        out[name.lower()] = value
    return out


def _check_text(name: str, value: str, source: str) -> None:
    """Refuse what would otherwise be changed silently: surrounding spaces, line breaks, control characters.

    A value is used exactly as written (no trimming): ``TRTLLM_VERSION="v0.17.0 "`` from a copied line is an
    error that names the setting, not a tag quietly different from the one typed.
    """
    if value != value.strip():
        raise ConfigError(name, f"{value!r} in {source} has leading or trailing whitespace: remove it (values "
                          "are used exactly as written)")
    bad = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ConfigError(name, f"{value!r} in {source} holds a control character ({bad!r}): give a single "
                          "line of text")


def _marks(data: dict[Any, Any], source: str) -> tuple[dict[str, Any], int | None]:
    """Take the marks out of a file's mapping: ``sandbox`` and ``note`` for Settings, and the ``PID``."""
    found = {str(k).upper(): data.pop(k) for k in list(data) if str(k).upper() in MARKS}
    sandbox, note, pid = found.get("SANDBOX", False), found.get("NOTE"), found.get("PID")
    if not isinstance(sandbox, bool):
        raise ConfigError("SANDBOX", f"must be true or false, got {sandbox!r} in {source}")
    if note is not None and not isinstance(note, str):
        raise ConfigError("NOTE", f"must be a line of text, got {type(note).__name__} in {source}")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0):
        raise ConfigError("PID", f"must be a process id, got {pid!r} in {source}")
    marks: dict[str, Any] = {"sandbox": True} if sandbox else {}
    if note:
        marks["note"] = note.strip()
    return marks, pid


def _read_file(path: Path) -> tuple[dict[str, Any], int | None]:
    if not path.exists():
        return {}, None
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(str(path), f"is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "must be a mapping of setting names to values")
    marks, pid = _marks(data, f"settings file {path}")
    return {**_normalise_keys(data, f"settings file {path}"), **marks}, pid


def read_settings_file(path: Path | None = None) -> dict[str, Any]:
    """The file's settings and marks under Settings' field names (``{}`` when the file does not exist)."""
    return _read_file(path or settings_path())[0]


def read_overlay(path: Path | None = None) -> dict[str, Any]:
    """The overlay's settings, or ``{}`` when there is none or the process it depends on is gone."""
    values, pid = _read_file(path or overlay_path())
    return values if pid is None or _alive(pid) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_settings(
    *, path: Path | None = None, environ: Mapping[str, str] | None = None, **explicit: Any
) -> Settings:
    """Merge defaults, the settings file (or the overlay), the environment and ``explicit`` values; validate once.

    Empty explicit values (``""`` or ``None``) mean "not given", so notebook parameters can default
    to empty and let lower layers decide. An explicit ``path`` is read as it is: no overlay.
    """
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    merged.update(read_settings_file(path))
    if path is None and not merged and _no_cluster_configured(environ, explicit):
        merged.update(read_overlay())
    merged.update(_normalise_keys({k: environ[k] for k in NAMES if environ.get(k)}, "the environment"))
    merged.update(_normalise_keys({k: v for k, v in explicit.items() if v not in (None, "")}, "arguments"))
    settings = replace(Settings(), **merged)
    validate_settings(settings)
    return settings


def _no_cluster_configured(environ: Mapping[str, str], explicit: Mapping[str, Any]) -> bool:
    """No settings file of the user's (named or default) and no cluster in the environment or arguments.

    A ``$RECIPELIB_SETTINGS`` that names an absent file counts as configured (tests use one to stay
    hermetic), unless ``$RECIPELIB_OVERLAY`` asks for the overlay too.
    """
    if settings_path().exists() or (SETTINGS_ENV in os.environ and OVERLAY_ENV not in os.environ):
        return False
    given = {str(k).upper() for k, v in explicit.items() if v not in (None, "")}
    return not any(environ.get(n) for n in _CLUSTER_NAMES) and not given & set(_CLUSTER_NAMES)


_USER_COMMENT = "recipelib settings: the recipe's variables. Written by notebooks/setup.ipynb."


def save_settings(settings: Settings, path: Path | None = None, *, pid: int | None = None,
                  comment: str = _USER_COMMENT) -> Path:
    """Write a settings file (the user's by default); atomic, so a crash never leaves half a file.

    The marks go with the settings (``SANDBOX``, ``NOTE``); ``pid`` adds a ``PID`` mark, for a tool's
    overlay whose values hold only while that process runs.
    """
    validate_settings(settings)
    if settings.sandbox and path is None:
        raise ConfigError("settings", "these are the local sandbox's settings (its kubeconfig and local "
                          f"Cloud Storage): they are not saved as yours in {settings_path()}. Run setup.ipynb "
                          "with your project's values to save your own")
    path = path or settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = dict(settings.as_env())
    if settings.sandbox:
        values["SANDBOX"] = True
    if settings.note:
        values["NOTE"] = settings.note
    if pid is not None:
        values["PID"] = pid
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    tmp.write_text(header + yaml.safe_dump(values, sort_keys=True))
    tmp.replace(path)
    return path


def validate_settings(s: Settings) -> None:
    """Check every set value's shape; each error names the setting and what is allowed."""
    for name in NAMES:
        value = getattr(s, name.lower())
        if value is not None and not isinstance(value, str):
            raise ConfigError(name, f"must be a string, got {type(value).__name__}")
        if value is not None:
            _check_text(name, value, "the settings")
    if s.project_id is not None and not _PROJECT.fullmatch(s.project_id):
        raise ConfigError(
            "PROJECT_ID",
            f"{s.project_id!r} is not a Google Cloud project ID: 6-30 characters, lower-case letters, "
            "digits and hyphens, starting with a letter and not ending with a hyphen",
        )
    if s.region is not None and not _REGION.fullmatch(s.region):
        raise ConfigError("REGION", f"{s.region!r} is not a region name such as 'us-central1'")
    if s.cluster_region is not None and not (_REGION.fullmatch(s.cluster_region) or _ZONE.fullmatch(s.cluster_region)):
        raise ConfigError(
            "CLUSTER_REGION",
            f"{s.cluster_region!r} is not a region or zone such as 'europe-west4' or 'us-central1-a'",
        )
    if s.cluster_name is not None and not re.fullmatch(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", s.cluster_name):
        raise ConfigError(
            "CLUSTER_NAME",
            f"{s.cluster_name!r} is not a GKE cluster name: up to 40 lower-case letters, digits and hyphens, "
            "starting with a letter",
        )
    if s.gcs_bucket is not None:
        check_bucket_name(s.gcs_bucket)
    if s.artifact_registry is not None:
        check_artifact_registry(s.artifact_registry)
    if not _IMAGE_NAME.fullmatch(s.trtllm_image):
        raise ConfigError(
            "TRTLLM_IMAGE",
            f"{s.trtllm_image!r} is not an image name: lower-case letters, digits and . _ - / separators",
        )
    for name, value in (("TRTLLM_VERSION", s.trtllm_version), ("TRITON_SERVER_VERSION", s.triton_server_version)):
        if not _TAG.fullmatch(value):
            raise ConfigError(
                name, f"{value!r} is not an image tag: letters, digits, '_', '.', '-', at most 128 characters"
            )
    if s.trtllm_image_digest is not None and not _PINNED.fullmatch(s.trtllm_image_digest):
        raise ConfigError(
            "TRTLLM_IMAGE_DIGEST",
            f"{s.trtllm_image_digest!r} is not a pinned image: REGISTRY/IMAGE:TAG@sha256:<64 hex digits>, as "
            "build-image.ipynb saves it; remove it to deploy by tag",
        )
    if s.kueue_name is not None and not (_DNS_SUBDOMAIN.fullmatch(s.kueue_name) and len(s.kueue_name) <= 63):
        raise ConfigError(
            "KUEUE_NAME",
            f"{s.kueue_name!r} is not a LocalQueue name: lower-case letters, digits, '-' and '.', "
            "at most 63 characters",
        )
    if not _DNS_LABEL.fullmatch(s.namespace):
        raise ConfigError(
            "NAMESPACE",
            f"{s.namespace!r} is not a Kubernetes namespace name: lower-case letters, digits and '-', "
            "at most 63 characters, starting and ending with a letter or digit",
        )
    parts = s.results_prefix.split("/")
    if s.results_prefix.startswith("gs://") or not all(p and _PREFIX_PART.fullmatch(p) for p in parts):
        raise ConfigError(
            "RESULTS_PREFIX",
            f"{s.results_prefix!r} must be a relative path inside the bucket such as 'trtllm-benchmarks' or "
            "'team/benchmarks': no gs://, no leading, trailing or double '/', no '..'",
        )
    if s.gcs_endpoint is not None and not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+/?", s.gcs_endpoint):
        raise ConfigError(
            "GCS_ENDPOINT",
            f"{s.gcs_endpoint!r} is not a server URL such as 'http://127.0.0.1:4443' (a Cloud Storage emulator); "
            "leave it unset for Google Cloud Storage",
        )
    if s.kubeconfig is not None and not Path(s.kubeconfig).expanduser().exists():
        raise ConfigError("KUBECONFIG", f"file {s.kubeconfig!r} does not exist")


def check_bucket_name(name: str, field: str = "GCS_BUCKET") -> None:
    """Cloud Storage bucket naming rules (cloud.google.com/storage/docs/buckets#naming)."""
    if name.startswith("gs://"):
        bare = name[5:].split("/", 1)[0]
        raise ConfigError(field, f"give the bucket name without the gs:// prefix: {bare!r}, not {name!r}")
    if "/" in name:
        raise ConfigError(
            field, f"{name!r} contains '/': give the bucket name alone; put paths in RESULTS_PREFIX"
        )
    allowed = "3-63 characters (up to 222 with dots), lower-case letters, digits, '-', '_' and '.', " \
        "starting and ending with a letter or digit"
    parts = name.split(".")
    if (
        not 3 <= len(name) <= (222 if len(parts) > 1 else 63)
        or not all(len(p) <= 63 and _BUCKET_PART.fullmatch(p) for p in parts)
    ):
        raise ConfigError(field, f"{name!r} is not a bucket name: {allowed}")
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        raise ConfigError(field, f"{name!r} looks like an IP address, which bucket names cannot be")
    if name.startswith("goog") or "google" in name or "g00gle" in name:
        raise ConfigError(field, f"{name!r}: bucket names cannot start with 'goog' or contain 'google'")


def check_artifact_registry(value: str, field: str = "ARTIFACT_REGISTRY") -> None:
    if value.startswith(("https://", "http://", "docker://")):
        raise ConfigError(field, f"drop the scheme: use {value.split('://', 1)[1]!r}")
    if not _REGISTRY.fullmatch(value.rstrip("/")) or value.endswith("/"):
        raise ConfigError(
            field,
            f"{value!r} is not an Artifact Registry repository: use LOCATION-docker.pkg.dev/PROJECT_ID/REPOSITORY "
            "such as 'us-central1-docker.pkg.dev/my-project/my-repo'",
        )
