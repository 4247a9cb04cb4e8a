"""Setup time of NVIDIA's 9-experiment Llama 3.1 405B sweep: the recipe's launcher against ours.

What is measured and what is modelled, each figure labelled where it is printed:

- measured: one engine build's two phases (``Loading HF model to memory`` and ``Building TRT-LLM engine``),
  read from the recording of the recipe's real run on 8 x H200 kept in this repository
  (``launcher/testing/recordings/``). Without that file this script stops: it has no built-in figures.
- modelled: how many builds each approach makes, from ``launcher/plan.py`` (the function the pod
  follows), fed with the ``--help`` of the 0.17.0.post1 stand-in (its options come from the version
  table ``manifests/trtllm/bench-0.17.yaml``), for a cold node and for a repeat on the same node; and
  the setup time = builds x the measured build time. Downloads and the dataset step are not timed.

The recipe builds (and deletes) an engine per experiment. Ours, per-dataset (the default, NVIDIA's
method): one engine per distinct dataset on a cold node, none on a repeat (engines are cached by their
exact build command); shared (explicit option): one engine for the sweep, none on a repeat.

    python benchmarks/launcher_setup_time.py
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "launcher"))

from config import parse_config  # noqa: E402
from plan import CacheState, plan_setup  # noqa: E402
from tool_cli import Tools, read_tools  # noqa: E402

RECORDINGS = REPO / "launcher" / "testing" / "recordings"
RECORDING = RECORDINGS / "gpu-recipes_a3ultra_llama405b_trt-0.17.0.post1_h200.txt"
STANDIN = REPO / "launcher" / "testing" / "trtllm_bench.py"
PREPARE_DATASET = REPO / "launcher" / "testing" / "prepare_dataset.py"
STANDIN_VERSION = "0.17.0.post1"
SWEEP_FILE = REPO / "manifests" / "experiments" / "nvidia-sweep.yaml"
_PHASE = re.compile(r"Loading Model: \[(\d)/2\]\s*(.*?)\n(?:.*\n)*?Time: ([\d.]+)s")


def build_seconds_from_recording(path: Path = RECORDING) -> tuple[float, float]:
    """(load/quantize, engine build) seconds from the ``Loading Model: [i/2] ... Time: Xs`` lines; no fallback."""
    if not path.is_file():
        raise SystemExit(f"the recording {path} is missing: this script reports measured build times only from it "
                         f"(restore it from git, e.g. git checkout -- {path.relative_to(REPO)})")
    phases = {int(i): float(t) for i, _name, t in _PHASE.findall(path.read_text())}
    if 1 not in phases or 2 not in phases:
        raise SystemExit(f"{path} has no 'Loading Model: [1/2] ... Time: Xs' and '[2/2]' lines: "
                         "no measured build time to report")
    return phases[1], phases[2]


def sweep() -> list[dict[str, object]]:
    import yaml

    return [{"isl": e["isl"], "osl": e["osl"], "num_requests": e["num_requests"], "concurrency": None,
             "streaming": False} for e in yaml.safe_load(SWEEP_FILE.read_text())]


def sweep_config(method: str) -> dict[str, object]:
    return {
        "release": "bench-llama-3-1-405b", "run_id": "run-setup-time", "model": "meta-llama/Llama-3.1-405B",
        "backend": "tensorrt", "engine_method": method, "tp_size": 8, "pp_size": 1, "ep_size": None,
        "quantization": "FP8", "kv_cache_free_gpu_mem_fraction": 0.95, "max_batch_size": None,
        "max_num_tokens": None, "checkpoint_dir": "/ssd/models", "workspace": "/ssd/workspace",
        "engine_cache_dir": "/ssd/engines", "results": "/gcs/benchmarks", "experiments": sweep(),
    }


def standin_tools(tmp: Path) -> Tools:
    """The 0.17.0.post1 stand-in's ``--help``, read as the launcher reads a real tool's."""
    wrapper = tmp / "trtllm-bench"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{STANDIN}" "$@"\n')
    wrapper.chmod(0o755)
    os.environ["STANDIN_VERSION"] = STANDIN_VERSION
    return read_tools(str(wrapper), "meta-llama/Llama-3.1-405B", sys.executable, PREPARE_DATASET)


def main() -> None:
    load, build = build_seconds_from_recording()
    per_build = load + build
    with tempfile.TemporaryDirectory() as tmp:
        tools = standin_tools(Path(tmp))
    rows: list[tuple[str, int]] = []
    n = 0
    for method in ("per-dataset", "shared"):
        cfg = parse_config(sweep_config(method))
        n = len(cfg.experiments)
        cold = plan_setup(cfg, tools, CacheState())
        warm = plan_setup(cfg, tools, CacheState(checkpoint_complete=True,
                                                 engines=frozenset(s.key for s in cold.builds)))
        rows += [(f"ours {method}, cold node", len(cold.builds)), (f"ours {method}, repeat on the node",
                                                                    len(warm.builds))]
    print(f"Llama 3.1 405B FP8 TP8, NVIDIA sweep of {n} experiments ({SWEEP_FILE.relative_to(REPO)})")
    print(f"measured   one engine build = {load:.3f} s load/quantize + {build:.3f} s build = {per_build:.3f} s "
          f"[{RECORDING.relative_to(REPO)}]")
    print(f"modelled   builds per approach: launcher/plan.py with the --help of the {STANDIN_VERSION} stand-in; "
          "setup = builds x the measured build time (downloads and datasets not included)")
    print()
    recipe = n * per_build
    print(f"{'':38}{'builds':>7}{'setup (s)':>13}{'setup (h)':>11}{'recipe / ours':>15}   source")
    print(f"{'recipe (a build per experiment)':38}{n:>7}{recipe:>13.3f}{recipe / 3600:>11.2f}{'1.0x':>15}   modelled")
    for label, builds in rows:
        seconds = builds * per_build
        ratio = f"{recipe / seconds:.1f}x" if seconds else "no build"
        print(f"{label:38}{builds:>7}{seconds:>13.3f}{seconds / 3600:>11.2f}{ratio:>15}   modelled")


if __name__ == "__main__":
    main()
