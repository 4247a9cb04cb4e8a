"""The launcher's one config file: parsed, validated and frozen before anything runs.

The recipe's launcher read ``tp_size`` while its config file said ``tp-size``, so the setting was
silently ignored. Here every key is checked: an unknown key, a missing one or a bad value is an error
that names the field (``experiments[1].isl: must be a positive integer, got 0``), and all errors are
reported at once so a user fixes the file in one go. The contract is documented in ``launch.py``.

Stdlib only (``yaml`` is imported lazily for ``.yaml``/``.yml`` files): this runs inside the
TensorRT-LLM container, not with our package.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import layout
from errors import LauncherConfigError

BACKENDS = ("tensorrt", "pytorch")
# The quantization algorithms trtllm-bench build accepts that this project uses (recipelib.models).
QUANTIZATIONS = ("FP8", "NVFP4", "INT8", "W4A16_AWQ", "W4A8_AWQ", "W8A16", "W4A16")
PREFLIGHT_MODES = ("enforce", "warn")
# How engines are built in the engine flow: one per experiment, tuned by trtllm-bench on that experiment's
# dataset (NVIDIA's method, comparable with its published figures), or one for the whole sweep.
ENGINE_METHODS = ("per-dataset", "shared")
FLOWS = {"tensorrt": "engine", "pytorch": "pytorch"}

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HF_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HF_ID = re.compile(rf"^{_HF_PART}/{_HF_PART}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


ConfigError = LauncherConfigError
"""The name this error had before :mod:`errors` gathered the launcher's errors; kept for callers."""


@dataclass(frozen=True)
class Experiment:
    """One ``trtllm-bench throughput`` run over a synthetic dataset of fixed input/output lengths."""

    isl: int
    osl: int
    num_requests: int
    concurrency: int | None = None
    streaming: bool = False

    @property
    def id(self) -> str:
        """Stable and unique within a sweep; it names the experiment's results folder."""
        return layout.experiment_id(self.isl, self.osl, self.num_requests, self.concurrency, self.streaming)

    @property
    def max_seq_len(self) -> int:
        return self.isl + self.osl


@dataclass(frozen=True)
class Preflight:
    enabled: bool = False
    mode: str = "enforce"


@dataclass(frozen=True)
class LauncherConfig:
    """What one pod runs: a model, how it is sharded and quantized, and a sweep of experiments."""

    release: str
    run_id: str
    model: str
    backend: str
    tp_size: int
    pp_size: int
    kv_cache_free_gpu_mem_fraction: float
    checkpoint_dir: str
    workspace: str
    engine_cache_dir: str
    results: str
    experiments: tuple[Experiment, ...]
    ep_size: int | None = None
    quantization: str | None = None
    max_batch_size: int | None = None
    max_num_tokens: int | None = None
    preflight: Preflight = field(default_factory=Preflight)
    checkpoint: str = ""
    engine_method: str | None = None
    model_shape: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if not self.checkpoint:  # the model's own repository unless a (pre-quantized) checkpoint is named
            object.__setattr__(self, "checkpoint", self.model)
        if self.engine_method is None and self.backend == "tensorrt":
            object.__setattr__(self, "engine_method", ENGINE_METHODS[0])

    @property
    def flow(self) -> str:
        """``engine`` (build, then run the engine) or ``pytorch`` (run the checkpoint, no build)."""
        return FLOWS[self.backend]

    @property
    def max_seq_len(self) -> int:
        """The longest request of the sweep: one engine built for it serves every experiment."""
        return max(e.max_seq_len for e in self.experiments)

    @property
    def checkpoint_path(self) -> Path:
        """Where the Hugging Face checkpoint lives on local SSD: ``<checkpoint_dir>/<org>/<name>``."""
        return Path(self.checkpoint_dir) / self.checkpoint

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["experiments"] = [asdict(e) for e in self.experiments]
        return out

    def config_hash(self) -> str:
        """A digest of every setting: two runs with the same hash asked for the same thing."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


_REQUIRED = (
    "release", "run_id", "model", "backend", "tp_size", "pp_size", "kv_cache_free_gpu_mem_fraction",
    "checkpoint_dir", "workspace", "engine_cache_dir", "results", "experiments",
)
_OPTIONAL = ("ep_size", "quantization", "max_batch_size", "max_num_tokens", "preflight", "checkpoint",
             "engine_method", "model_shape")
_SHAPE_KEYS = ("attention_heads", "layers")
_EXPERIMENT_KEYS = ("isl", "osl", "num_requests", "concurrency", "streaming")
_PREFLIGHT_KEYS = ("enabled", "mode")


class _Checker:
    """Collects problems so that one run of the validator reports all of them."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def fail(self, name: str, message: str) -> None:
        self.problems.append((name, message))

    def unknown_keys(self, data: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in data:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key).replace("-", "_"), allowed, n=1, cutoff=0.6)
                more = f"; did you mean {hint[0]!r}?" if hint else f"; allowed: {', '.join(allowed)}"
                self.fail(f"{where}{key}", f"unknown key{more}")

    def positive_int(self, value: Any, name: str, nullable: bool = False) -> int | None:
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            extra = " or null" if nullable else ""
            self.fail(name, f"must be a positive integer{extra}, got {value!r}")
            return None
        return value

    def text(self, value: Any, name: str, pattern: re.Pattern[str] | None, what: str) -> str | None:
        if not isinstance(value, str) or not value or (pattern is not None and not pattern.match(value)):
            self.fail(name, f"must be {what}, got {value!r}")
            return None
        return value

    def abs_path(self, value: Any, name: str) -> str | None:
        if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
            self.fail(name, f"must be an absolute path, got {value!r}")
            return None
        return value.rstrip("/") or "/"


def _results(value: Any, check: _Checker) -> str | None:
    if isinstance(value, str) and value.startswith("gs://"):
        bucket = value[5:].split("/", 1)[0]
        if not _BUCKET.match(bucket):
            check.fail("results", f"{value!r} does not name a valid bucket (gs://BUCKET/PREFIX)")
            return None
        return value.rstrip("/")
    return check.abs_path(value, "results")


def _experiments(value: Any, check: _Checker) -> tuple[Experiment, ...]:
    if not isinstance(value, list) or not value:
        check.fail("experiments", f"must be a non-empty list of {{isl, osl, num_requests}}, got {value!r}")
        return ()
    out: list[Experiment] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        where = f"experiments[{i}]"
        if not isinstance(item, dict):
            check.fail(where, f"must be a mapping with isl, osl, num_requests, got {item!r}")
            continue
        check.unknown_keys(item, _EXPERIMENT_KEYS, f"{where}.")
        for key in ("isl", "osl", "num_requests"):
            if key not in item:
                check.fail(f"{where}.{key}", "is required")
        before = len(check.problems)
        isl = check.positive_int(item.get("isl"), f"{where}.isl") if "isl" in item else None
        osl = check.positive_int(item.get("osl"), f"{where}.osl") if "osl" in item else None
        n = check.positive_int(item.get("num_requests"), f"{where}.num_requests") if "num_requests" in item else None
        concurrency = check.positive_int(item.get("concurrency"), f"{where}.concurrency", nullable=True)
        streaming = item.get("streaming", False)
        if not isinstance(streaming, bool):
            check.fail(f"{where}.streaming", f"must be true or false, got {streaming!r}")
        if len(check.problems) > before or isl is None or osl is None or n is None:
            continue
        exp = Experiment(isl, osl, n, concurrency, bool(streaming))
        if exp.id in seen:
            check.fail(where, f"duplicates experiments[{seen[exp.id]}] ({exp.id}): both would write one results folder")
            continue
        seen[exp.id] = i
        out.append(exp)
    return tuple(out)


def _preflight(value: Any, check: _Checker) -> Preflight:
    if value is None:
        return Preflight()
    if not isinstance(value, dict):
        check.fail("preflight", f"must be a mapping {{enabled, mode}}, got {value!r}")
        return Preflight()
    check.unknown_keys(value, _PREFLIGHT_KEYS, "preflight.")
    enabled = value.get("enabled", False)
    if not isinstance(enabled, bool):
        check.fail("preflight.enabled", f"must be true or false, got {enabled!r}")
        enabled = False
    mode = value.get("mode", "enforce")
    if mode not in PREFLIGHT_MODES:
        check.fail("preflight.mode", f"must be one of {', '.join(PREFLIGHT_MODES)}, got {mode!r}")
        mode = "enforce"
    return Preflight(enabled=enabled, mode=mode)


def _shape(value: Any, check: _Checker) -> dict[str, int] | None:
    """``model_shape``: the model's attention heads and layers (deploy writes them from its catalog)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        check.fail("model_shape", f"must be a mapping with {', '.join(_SHAPE_KEYS)}, got {value!r}")
        return None
    check.unknown_keys(value, _SHAPE_KEYS, "model_shape.")
    return {k: v for k in _SHAPE_KEYS
            if (v := check.positive_int(value.get(k), f"model_shape.{k}", nullable=True)) is not None}


def shape_problems(shape: dict[str, int], tp: int | None, pp: int | None) -> list[tuple[str, str]]:
    """TensorRT-LLM splits attention heads evenly over tensor-parallel ranks: tp_size must divide them.
    Pipeline stages take whole layers: pp_size must not exceed them."""
    problems = []
    heads, layers = shape.get("attention_heads"), shape.get("layers")
    if heads and tp and heads % tp:
        fits = [n for n in range(1, 9) if heads % n == 0]
        problems.append(("tp_size", f"{tp} does not divide the model's {heads} attention heads; use one of {fits}"))
    if layers and pp and pp > layers:
        problems.append(("pp_size", f"{pp} pipeline stages but the model has {layers} layers"))
    return problems


def parse_config(data: Any) -> LauncherConfig:
    """Validate a decoded config mapping; raise ``LauncherConfigError`` listing every bad field."""
    check = _Checker()
    if not isinstance(data, dict):
        raise LauncherConfigError([("config", f"must be a mapping of settings, got {type(data).__name__}")])
    check.unknown_keys(data, _REQUIRED + _OPTIONAL, "")
    for key in _REQUIRED:
        if key not in data:
            check.fail(key, "is required")
    get = data.get
    values: dict[str, Any] = {
        "release": check.text(get("release"), "release", _NAME, "a Kubernetes name ([a-z0-9-], at most 63)"),
        "run_id": check.text(get("run_id"), "run_id", _NAME, "lower-case letters, digits and '-' (at most 63)"),
        "model": check.text(get("model"), "model", _HF_ID, "a Hugging Face id 'organisation/name'"),
        "tp_size": check.positive_int(get("tp_size"), "tp_size"),
        "pp_size": check.positive_int(get("pp_size"), "pp_size"),
        "ep_size": check.positive_int(get("ep_size"), "ep_size", nullable=True),
        "max_batch_size": check.positive_int(get("max_batch_size"), "max_batch_size", nullable=True),
        "max_num_tokens": check.positive_int(get("max_num_tokens"), "max_num_tokens", nullable=True),
        "checkpoint_dir": check.abs_path(get("checkpoint_dir"), "checkpoint_dir"),
        "workspace": check.abs_path(get("workspace"), "workspace"),
        "engine_cache_dir": check.abs_path(get("engine_cache_dir"), "engine_cache_dir"),
        "results": _results(get("results"), check),
        "experiments": _experiments(get("experiments"), check),
        "preflight": _preflight(get("preflight"), check),
    }
    for key in ("model", "checkpoint"):
        if key == "checkpoint" and get(key) is None:
            continue
        value = values["model"] if key == "model" else check.text(get(key), key, _HF_ID,
                                                                  "a Hugging Face id 'organisation/name' or null")
        if isinstance(value, str) and ".." in value:
            check.fail(key, f"must be a Hugging Face id 'organisation/name', got {value!r}")
        values[key] = value
    method = get("engine_method")
    if method is not None and method not in ENGINE_METHODS:
        check.fail("engine_method", f"must be one of {', '.join(ENGINE_METHODS)} or null, got {method!r}")
    elif method is not None and get("backend") == "pytorch":
        check.fail("engine_method", f"applies only to backend tensorrt (the engine flow), got {method!r} "
                                    "with backend pytorch: remove it")
    values["engine_method"] = method
    backend = get("backend")
    if backend not in BACKENDS:
        check.fail("backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}")
    values["backend"] = backend
    quant = get("quantization")
    if quant is not None and quant not in QUANTIZATIONS:
        check.fail("quantization", f"must be one of {', '.join(QUANTIZATIONS)} or null, got {quant!r}")
    values["quantization"] = quant
    frac = get("kv_cache_free_gpu_mem_fraction")
    if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0 < frac <= 1:
        check.fail("kv_cache_free_gpu_mem_fraction", f"must be a number in (0, 1], got {frac!r}")
    values["kv_cache_free_gpu_mem_fraction"] = frac
    tp, pp, ep = values["tp_size"], values["pp_size"], values["ep_size"]
    if tp and pp and tp * pp > 8:
        check.fail("tp_size", f"tp_size x pp_size = {tp * pp} exceeds the 8 GPUs of one node")
    if ep and tp and tp % ep:
        check.fail("ep_size", f"must divide tp_size ({tp}), got {ep}")
    values["model_shape"] = _shape(get("model_shape"), check)
    for problem in shape_problems(values["model_shape"] or {}, tp, pp):
        check.fail(*problem)
    if check.problems:
        raise LauncherConfigError(check.problems)
    values["kv_cache_free_gpu_mem_fraction"] = float(frac)
    values["checkpoint"] = values.get("checkpoint") or ""
    return LauncherConfig(**values)


def load_config(path: str | Path) -> LauncherConfig:
    """Read JSON (or YAML, by extension) from ``path`` and validate it."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise LauncherConfigError([("--config", f"cannot read {p}: {e.strerror or e}")]) from None
    if p.suffix in (".yaml", ".yml"):
        try:
            import yaml  # optional: the TensorRT-LLM container has it, our contract is JSON
        except ImportError:
            raise LauncherConfigError([("--config", f"{p} is YAML but PyYAML is not installed; use JSON")]) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise LauncherConfigError([("--config", f"{p} is not valid YAML: {e}")]) from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LauncherConfigError([("--config", f"{p} is not valid JSON: {e}")]) from None
    return parse_config(data)
