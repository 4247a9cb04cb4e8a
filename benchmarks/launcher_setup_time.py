"""Setup time of NVIDIA's 9-experiment Llama 3.1 405B sweep: the recipe's launcher against ours.

The recipe's launcher loads/quantizes the checkpoint and builds a TensorRT engine for every experiment
(then deletes it). Its real log (``shared/reports/01_...h200.txt``) times one such build:
``Loading HF model to memory`` 1663.266 s + ``Building TRT-LLM engine`` 555.845 s = 2219.111 s.
Ours builds what ``launcher/plan.py`` says: one engine covering the whole sweep on a cold node, none
on a node that already has it. The plan is the launcher's own (the same function the pod follows),
computed here for a cold and a warm cache; no GPU or TensorRT-LLM is needed.

    python benchmarks/launcher_setup_time.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "launcher"))

from bench import TrtllmVersion  # noqa: E402
from config import parse_config  # noqa: E402
from plan import CacheState, plan_setup  # noqa: E402

SEED_LOG = REPO.parent / "shared" / "reports" / "01_gpu-recipes_a3ultra_llama405b_trt_0.17.0.post1_h200.txt"
# (isl, osl, num_requests): manifests/experiments/nvidia-sweep.yaml
SWEEP = [(128, 128, 30000), (128, 2048, 3000), (128, 4096, 1500), (500, 2000, 3000), (1000, 1000, 3000),
         (2048, 128, 3000), (2048, 2048, 1500), (5000, 500, 1500), (20000, 2000, 1000)]
FALLBACK_PHASES = (1663.266, 555.845)


def build_seconds_from_log(path: Path = SEED_LOG) -> tuple[float, float, str]:
    """(load/quantize, engine build) seconds from the ``Loading Model: [i/2] ... Time: Xs`` lines."""
    if path.is_file():
        times = [float(t) for t in re.findall(r"Loading Model: \[\d/2\][^\n]*\n(?:.*\n)*?Time: ([\d.]+)s",
                                              path.read_text())]
        if len(times) >= 2:
            return times[0], times[1], path.name
    return (*FALLBACK_PHASES, "built-in figures from the seed log")


def sweep_config() -> dict[str, object]:
    return {
        "release": "bench-llama-3-1-405b", "run_id": "run-setup-time", "model": "meta-llama/Llama-3.1-405B",
        "backend": "tensorrt", "tp_size": 8, "pp_size": 1, "ep_size": None, "quantization": "FP8",
        "kv_cache_free_gpu_mem_fraction": 0.95, "max_batch_size": None, "max_num_tokens": None,
        "checkpoint_dir": "/ssd/models", "workspace": "/ssd/workspace", "engine_cache_dir": "/ssd/engines",
        "results": "/gcs/benchmarks",
        "experiments": [{"isl": i, "osl": o, "num_requests": n, "concurrency": None, "streaming": False}
                        for i, o, n in SWEEP],
    }


def main() -> None:
    load, build, source = build_seconds_from_log()
    per_build = load + build
    cfg = parse_config(sweep_config())
    version = TrtllmVersion("0.17.0.post1")
    cold = plan_setup(cfg, version, CacheState())
    warm = plan_setup(cfg, version, CacheState(checkpoint_complete=True, engines=frozenset(s.key for s in cold.builds)))

    recipe_builds = len(cfg.experiments)  # one build per experiment
    recipe = recipe_builds * per_build
    ours_cold = len(cold.builds) * per_build
    ours_warm = len(warm.builds) * per_build

    print(f"Llama 3.1 405B FP8 TP8, NVIDIA sweep of {len(cfg.experiments)} experiments "
          f"(max sequence length {cfg.max_seq_len})")
    print(f"one engine build = {load:.3f} s load/quantize + {build:.3f} s build = {per_build:.3f} s  [{source}]")
    print(f"engine: {cold.builds[0].key if cold.builds else cold.engine and cold.engine.key}")
    print()
    print(f"{'':34}{'builds':>7}{'setup (s)':>13}{'setup (h)':>11}{'recipe / ours':>15}")
    print(f"{'recipe (a build per experiment)':34}{recipe_builds:>7}{recipe:>13.3f}{recipe / 3600:>11.2f}{'1.0x':>15}")
    cold_ratio = f"{recipe / ours_cold:.1f}x" if ours_cold else "inf"
    print(f"{'ours, cold node (one build)':34}{len(cold.builds):>7}{ours_cold:>13.3f}{ours_cold / 3600:>11.2f}"
          f"{cold_ratio:>15}")
    warm_ratio = f"{recipe / ours_warm:.1f}x" if ours_warm else "no setup"
    print(f"{'ours, repeat on the node':34}{len(warm.builds):>7}{ours_warm:>13.3f}{ours_warm / 3600:>11.2f}"
          f"{warm_ratio:>15}")
    print()
    print(f"saved per sweep on a cold node: {recipe - ours_cold:.3f} s ({(recipe - ours_cold) / 3600:.2f} h); "
          f"downloads: cold {int(cold.download)}, repeat {int(warm.download)}")


if __name__ == "__main__":
    main()
