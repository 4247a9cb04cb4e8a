"""What the sandbox's replay can play for an experiment: a recorded real run, or NVIDIA's published figure.

Why: the sandbox has no GPU, so a benchmark there replays. Only one real run is recorded (``recordings/``:
the recipe's 405B TP8 FP8 run of ISL/OSL 128/128 on TensorRT-LLM 0.17.0.post1), but the README's presets
sweep nine ISL/OSL pairs. For those, the one honest number there is to show is the figure NVIDIA published
for that model, GPU, TP and ISL/OSL in that TensorRT-LLM version (``recipelib/data/
nvidia_published_throughput.csv``, whose header names each version column's source). An experiment with
neither is refused, by the deploy (``recipelib.deploy.benchmark``, before anything is applied) and by the
replay itself, with what does exist.

Both sides read this one file: the replay in the pod (``replay_bench.py``) and the deploy's plan check,
which loads it by path. So it is standard library only, with no sibling imports. Example::

    want = Wanted(model="meta-llama/Llama-3.1-405B", gpu="H200", tp=8, pp=1, quantization="FP8",
                  isl=128, osl=2048, num_requests=3000, version="0.17.0.post1")
    source = find(want)   # Published(family='405B', ..., column='v0.17', output_tok_s=5938.09)
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORDINGS = HERE / "recordings"
TABLE = HERE.parents[1] / "recipelib" / "data" / "nvidia_published_throughput.csv"
TABLE_NAME = "recipelib/data/nvidia_published_throughput.csv"
LABEL = "replay of NVIDIA's published figure"
RECORDED_LABEL = "replay of a recorded real run"
_BANNER = re.compile(r"^\[TensorRT-LLM\] TensorRT-LLM version: (\S+)")
_FIELD = re.compile(r"^([A-Za-z][A-Za-z ()/+\-]*?):\s+(.+?)\s*$")
_VERSION = re.compile(r"^\s*v?(\d+)\.(\d+)")
_FAMILY = re.compile(r"llama[-_ ]?3(?:\.\d)?[-_ ](\d+)b", re.IGNORECASE)
_GPU = re.compile(r"\b(h\d{3})\b", re.IGNORECASE)


def minor(version: str) -> tuple[int, int] | None:
    """``0.17.0.post1`` -> (0, 17); ``v1.0`` -> (1, 0); None when it is no version."""
    m = _VERSION.match(str(version))
    return (int(m.group(1)), int(m.group(2))) if m else None


def family(model: str) -> str | None:
    """The table's model key: ``meta-llama/Llama-3.1-405B`` and ``nvidia/Llama-3.1-405B-Instruct-FP8`` -> 405B."""
    m = _FAMILY.search(model or "")
    return f"{m.group(1)}B" if m else None


def gpu_name(text: str) -> str | None:
    """``nvidia-h200-141gb`` (the node's accelerator label) or ``NVIDIA H200`` -> ``H200``."""
    m = _GPU.search(text.replace("-", " ") if text else "")
    return m.group(1).upper() if m else None


@dataclass
class Recording:
    """A recorded ``kubectl logs`` of the recipe: a build segment, then a throughput segment."""

    path: Path
    source: str
    build: list[str]
    throughput: list[str]
    version: str
    fields: dict[str, str]

    @classmethod
    def load(cls, path: Path) -> Recording:
        lines = path.read_text(encoding="utf-8").splitlines()
        source = lines[0][len("# source:"):].strip() if lines and lines[0].startswith("# source:") else str(path)
        body = lines[1:] if lines and lines[0].startswith("#") else lines
        banners = [i for i, line in enumerate(body) if _BANNER.match(line)]
        if not banners:
            raise ValueError(f"{path} has no 'TensorRT-LLM version' banner: not a trtllm-bench log")
        split = banners[-1]
        version = _BANNER.match(body[split]).group(1)  # type: ignore[union-attr]
        fields: dict[str, str] = {}
        for line in body[split:]:
            match = _FIELD.match(line)
            if match:
                fields.setdefault(match.group(1).strip(), match.group(2))
        return cls(path, source, body[:split], body[split:], version, fields)

    def number(self, name: str) -> float:
        value = self.fields.get(name, "").rstrip("%")
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"the recorded report {self.path.name} has no number for {name!r}") from None

    @property
    def model(self) -> str:
        return self.fields.get("Model", "")

    @property
    def engine(self) -> tuple[str, int, int, str | None]:
        """(model, TP, PP, quantization) of the recorded engine."""
        n = self.number
        return (self.model, round(n("TP Size")), round(n("PP Size")), self.fields.get("Quantization"))

    @property
    def experiment(self) -> tuple[int, int, int]:
        n = self.number
        return (round(n("Average Input Length (tokens)")), round(n("Average Output Length (tokens)")),
                round(n("Number of requests")))

    def describe(self) -> str:
        model, tp, pp, quant = self.engine
        isl, osl, n = self.experiment
        return (f"recorded run {self.path.name}: {model} TP{tp} PP{pp} {quant}, TensorRT-LLM {self.version}, "
                f"ISL {isl} / OSL {osl}, {n} requests")


@lru_cache(maxsize=4)
def recordings(folder: Path = RECORDINGS) -> tuple[Recording, ...]:
    return tuple(Recording.load(p) for p in sorted(folder.glob("*.txt")))


@dataclass(frozen=True)
class Published:
    """One figure of the published table: output tokens/s of ``family`` on ``gpu`` at TP ``tp``."""

    family: str
    gpu: str
    tp: int
    isl: int
    osl: int
    column: str
    output_tok_s: float
    source: str

    @property
    def row(self) -> str:
        """Names the table row and column, as metadata and logs quote it."""
        return f"{TABLE_NAME}: row {self.family},{self.gpu},{self.tp},{self.isl},{self.osl}, column {self.column}"


@lru_cache(maxsize=2)
def published_table(path: Path = TABLE) -> tuple[tuple[Published, ...], dict[str, str]]:
    """Every figure of the table, and each version column's source as its header states it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    sources: dict[str, str] = {}
    for line in lines:
        m = re.match(r"^#\s*(?:Sources:)?\s*(v\d+\.\d+)\s+(.*)$", line)
        if m:
            sources.setdefault(m.group(1), m.group(2).strip())  # the first mention is the Sources line
    rows = csv.DictReader(line for line in lines if line.strip() and not line.startswith("#"))
    figures = []
    for r in rows:
        for column in (c for c in (rows.fieldnames or []) if c.startswith("v")):
            if (r.get(column) or "").strip():
                figures.append(Published(r["model"], r["gpu"], int(r["tp"]), int(r["isl"]), int(r["osl"]), column,
                                         float(r[column]), sources.get(column, "")))
    return tuple(figures), sources


def column(version: str) -> str | None:
    """The table's column for a TensorRT-LLM version (``0.17.0.post1`` -> ``v0.17``), if it has one."""
    key = minor(version)
    if key is None:
        return None
    name = f"v{key[0]}.{key[1]}"
    return name if name in published_table()[1] else None


def played_version(asked: str) -> str:
    """The version the replay plays for an image of version ``asked``: a recording's exact version where one
    was made with that release (``v0.17.0`` -> ``0.17.0.post1``, the version the recorded image printed)."""
    key = minor(asked)
    for rec in recordings():
        if key is not None and minor(rec.version) == key:
            return rec.version
    return asked.strip().lstrip("v")


@dataclass(frozen=True)
class Wanted:
    """One experiment as the replay or the deploy sees it. ``quantization`` None: not known (the PyTorch
    flow reads it from the checkpoint) and not checked."""

    model: str
    gpu: str
    tp: int
    pp: int
    quantization: str | None
    isl: int
    osl: int
    num_requests: int
    version: str
    concurrency: int | None = None
    streaming: bool = False

    def describe(self) -> str:
        return (f"{self.model} on {self.gpu} TP{self.tp} PP{self.pp} {self.quantization or ''}, TensorRT-LLM "
                f"{self.version}, ISL {self.isl} / OSL {self.osl}, {self.num_requests} requests").replace("  ", " ")


def recording_for(want: Wanted) -> Recording | None:
    for rec in recordings():
        model, tp, pp, quant = rec.engine
        if ((model, tp, pp) == (want.model, want.tp, want.pp) and minor(rec.version) == minor(want.version)
                and want.quantization in (None, quant) and rec.experiment == (want.isl, want.osl, want.num_requests)
                and not want.concurrency and not want.streaming):
            return rec
    return None


def published_for(want: Wanted) -> Published | None:
    """NVIDIA's figure for this experiment: FP8, maximum throughput (no concurrency limit, no streaming),
    PP 1, the version's own column (never a neighbour's)."""
    name, fam = column(want.version), family(want.model)
    if name is None or fam is None or want.pp != 1 or want.concurrency or want.streaming:
        return None
    if want.quantization not in (None, "FP8"):
        return None
    for fig in published_table()[0]:
        if (fig.family, fig.gpu, fig.tp, fig.isl, fig.osl, fig.column) == (fam, want.gpu, want.tp, want.isl,
                                                                         want.osl, name):
            return fig
    return None


def find(want: Wanted) -> Recording | Published | None:
    """The recording of this very experiment, else NVIDIA's figure for it, else None."""
    return recording_for(want) or published_for(want)


def what_exists(want: Wanted) -> str:
    """What the replay could play instead, for a refusal: the recordings and the published ISL/OSL pairs."""
    name, fam = column(want.version), family(want.model)
    pairs = sorted({(f.isl, f.osl) for f in published_table()[0]
                    if (f.family, f.gpu, f.tp, f.column) == (fam, want.gpu, want.tp, name)})
    near = sorted({f"{f.gpu} TP{f.tp}" for f in published_table()[0] if (f.family, f.column) == (fam, name)})
    parts = [f"recordings: {'; '.join(r.describe() for r in recordings()) or 'none'}"]
    if name is None:
        parts.append(f"NVIDIA published no figures for TensorRT-LLM {want.version} (table columns: "
                     f"{', '.join(published_table()[1])})")
    elif pairs:
        parts.append(f"NVIDIA's {name} figures for {fam} on {want.gpu} TP{want.tp} (FP8, PP1, no concurrency limit, "
                     f"no streaming) cover ISL/OSL {', '.join(f'{i}/{o}' for i, o in pairs)}")
    else:
        parts.append(f"NVIDIA's {name} figures for {fam or want.model}: "
                     f"{', '.join(near) or 'none'} (none for {want.gpu} TP{want.tp})")
    return "; ".join(parts)


def refusal(want: Wanted, experiment: str = "") -> str:
    """Why the sandbox cannot replay ``want``, and what it can."""
    what = f"experiment {experiment} ({want.describe()})" if experiment else want.describe()
    return (f"the sandbox cannot replay {what}: there is neither a recorded run of it nor a figure NVIDIA "
            f"published for it ({TABLE_NAME}); {what_exists(want)}")
