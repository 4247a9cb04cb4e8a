"""``make demo``: setup -> deploy -> monitor -> serve + load -> analyze on this machine, no cloud account needed.

Starts the local sandbox (:mod:`recipelib.sandbox`: a real API server, a node agent playing an A3 Ultra
node's kubelet, a Cloud Storage server), or reuses a running one, and runs the notebooks headless with
papermill, as a user would run them with no cluster configured: they pick up the settings the sandbox
offers (the settings overlay, :mod:`recipelib.settings`) and say so first. The benchmark pod replays the
recipe's recorded Llama 3.1 405B run, labelled as a replay everywhere; then the same model is served by the
trtllm-serve stand-in (configured latencies, labelled a stand-in everywhere) and loaded by the real aiperf
in a load Job. The executed notebooks, the
manifests, the plots and the HTML report land in one output folder, named at the end; the user's own
settings file is never touched. A sandbox the demo started is stopped at the end (``--keep`` leaves it
running).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from recipelib.errors import RecipelibError
from recipelib.names import release_name
from recipelib.paths import ROOT
from recipelib.sandbox.control import Sandbox, sandbox_root
from recipelib.sandbox.node import Controls
from recipelib.settings import NAMES, OVERLAY_ENV, SETTINGS_ENV

log = logging.getLogger("recipelib.sandbox.demo")

NOTEBOOKS = ROOT / "notebooks"


def kernel_config() -> Any:
    """The kernel manager's configuration for our papermill runs: CurveZMQ keys for the kernel's sockets.

    ipykernel 7 (``IPKernelApp.init_sockets``) warns "Kernel is running over TCP without encryption" on every
    start unless the manager provisioned CurveZMQ keys, which jupyter_client 8.10 does only when asked
    (``KernelManager.transport_encryption``, default ``disabled``); ``auto`` provisions them where the
    kernelspec declares ``supported_encryption: curve`` (ipykernel's does). The cause goes, not just the line:
    the sockets are encrypted. An older jupyter_client ignores the setting.
    """
    import zmq
    from traitlets.config import Config

    config = Config()
    if zmq.has("curve"):  # pyzmq's wheels have it; a pyzmq built without libsodium keeps the plain transport
        config.KernelManager.transport_encryption = "auto"
    return config


def run_notebook(name: str, dest: Path, label: str, **parameters: Any) -> Path:
    """Execute ``notebooks/<name>.ipynb`` into ``dest/<label>.ipynb`` (cwd ``dest``); raises on a failed cell."""
    import papermill as pm

    out = dest / f"{label}.ipynb"
    shown = " ".join(f"{k}={v!r}" for k, v in parameters.items())
    log.info("-> %s.ipynb %s", name, shown)
    start = time.monotonic()
    pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), parameters=parameters, kernel_name="python3",
                        cwd=str(dest), progress_bar=False, config=kernel_config())
    log.info("   %s done in %.1f s", out.name, time.monotonic() - start)
    return out


def _environment(out_dir: Path, sandbox: Sandbox) -> None:
    """What the notebooks' kernels inherit: no cluster of the user's, the sandbox's overlay, a settings file
    of the run's (absent, so the overlay applies; the user's own is never read or written), and no Hugging Face
    token: the sandbox needs none (setup.ipynb stores a marked placeholder there), and a real one has no business
    near it."""
    if sandbox.overlay is None:
        raise RecipelibError("the demo needs a sandbox that offers its settings (Sandbox(overlay=...))")
    for name in (*NAMES, "HF_TOKEN"):  # an exported KUBECONFIG or GCS_BUCKET would point at a real cluster or bucket
        os.environ.pop(name, None)
    os.environ[SETTINGS_ENV] = str(out_dir / "settings.yaml")
    os.environ[OVERLAY_ENV] = str(sandbox.overlay)


SERVING_EXPERIMENTS = "128/32/24"
"""The serving run's load: ISL 128 / OSL 32, 24 requests per point (the stand-in keeps TTFT 50 ms, 10 ms a token)."""
SERVING_CONCURRENCY = "1,4,16"
SERVING_OVERRIDES = {"serve_startup_period_seconds": 1, "serve_readiness_period_seconds": 1}
"""Probes every second: the stand-in loads in 2 s, and the demo should not wait for a 30 s probe period."""


def run_demo(out_dir: Path, sandbox: Sandbox, *, model: str, experiments: str, monitor_timeout_s: int = 600,
             serving: bool = True) -> Path:
    """The notebooks, in order, against a started sandbox; returns the output folder.

    After the throughput run, a serving run: deploy.ipynb with ``mode="serving"`` starts the trtllm-serve
    stand-in behind its Service and, once it is ready, a load Job running the real aiperf against it; the
    analysis then shows both (the serving points labelled as measured against a stand-in).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    _environment(out_dir, sandbox)
    stamp = out_dir.name.lower().replace("_", "-")
    run_id = f"replay-{stamp}"[:40].strip("-")
    load_id = f"load-{stamp}"[:40].strip("-")
    release = release_name(model, user="demo")
    run_notebook("setup", out_dir, "1-setup")
    run_notebook("deploy", out_dir, "2-deploy", model=model, experiments=experiments, user="demo", run_id=run_id,
                 out_dir="manifests")
    if (NOTEBOOKS / "monitor.ipynb").exists():
        run_notebook("monitor", out_dir, "3-monitor", release=release, follow=True, timeout_s=monitor_timeout_s,
                     widgets="no")
    else:
        log.warning("notebooks/monitor.ipynb is missing: waiting for the Job without it")
        _wait_for_job(sandbox, release, monitor_timeout_s)
    serving_runs = "all"
    if serving and _aiperf_ready():
        from recipelib.deploy.serving import serving_release

        served = serving_release(model, user="demo")
        run_notebook("deploy", out_dir, "4-serve", mode="serving", model=model, user="demo",
                     experiments=SERVING_EXPERIMENTS, concurrency=SERVING_CONCURRENCY, ttft_ms=500, tpot_ms=20,
                     wait_ready_s=120, run_id=load_id, out_dir="serving-manifests", overrides=SERVING_OVERRIDES)
        _wait_for_load(sandbox, served, load_id, monitor_timeout_s)
        serving_runs = f"{served}/{load_id}"
    run_notebook("analyze", out_dir, "5-analyze", runs=f"{release}/{run_id}", serving_runs=serving_runs,
                 out_dir="analysis")
    run_notebook("cleanup", out_dir, "6-cleanup", release=release)
    return out_dir


def _aiperf_ready() -> bool:
    """aiperf's own environment (``make demo`` creates it): the load Job's pod runs the real aiperf from it."""
    from recipelib.sandbox.serving import AIPERF

    if AIPERF.is_file():
        return True
    log.warning("%s is missing: the serving run is skipped (python -m recipelib.serving.aiperf_env creates it)",
                AIPERF)
    return False


def _wait_for_load(sandbox: Sandbox, release: str, run_id: str, timeout_s: float) -> None:
    """Follow the load Job: point k of n, ETA, until it ends; a failed sweep stops the demo."""
    from recipelib.monitor.serving import load_jobs, load_progress

    cluster = sandbox.cluster()
    job = next((j for j in load_jobs(cluster, release) if j.endswith(run_id)), None)
    if job is None:
        raise RecipelibError(f"no load Job of release {release} for run {run_id}: see 4-serve.ipynb")
    deadline, said = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        progress = load_progress(cluster, job)
        if progress.describe() != said:
            said = progress.describe()
            log.info("   %s", said)
        if progress.status in ("Complete", "Failed"):
            if progress.status != "Complete":
                raise RecipelibError(f"the load Job {job} ended {progress.status}: {said}")
            return
        time.sleep(1)
    raise RecipelibError(f"the load Job {job} did not finish within {timeout_s:.0f}s")


def _wait_for_job(sandbox: Sandbox, release: str, timeout_s: float) -> None:
    batch = sandbox.cluster().batch
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = batch.read_namespaced_job(release, "default")
        done = [c.type for c in job.status.conditions or [] if c.status == "True"]
        if done:
            if done[0] != "Complete":
                raise RecipelibError(f"the benchmark Job {release} ended {done[0]}")
            return
        time.sleep(1)
    raise RecipelibError(f"the benchmark Job {release} did not finish within {timeout_s:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipelib.sandbox.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-output", help="parent folder of the run's output folder")
    parser.add_argument("--model", default="meta-llama/Llama-3.1-405B",
                        help="the sandbox replays a recorded run of this model only")
    parser.add_argument("--experiments", default="recipe-default",
                        help="the recorded run is the recipe's 128/128/30000 (preset recipe-default)")
    parser.add_argument("--replay-speed", type=float, default=Controls.replay_speed,
                        help="recorded seconds per real second (default %(default)g: the recorded hour in 10 s)")
    parser.add_argument("--sandbox", default=None, help=f"the sandbox's folder (default {sandbox_root()})")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running afterwards")
    parser.add_argument("--no-serving", action="store_true", help="skip the serving run (server + aiperf load)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("papermill", "traitlets", "urllib3", "kubernetes", "google", "recipelib.sandbox.gcs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    began = time.monotonic()
    out_dir = Path(args.out).resolve() / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    sandbox = Sandbox(Path(args.sandbox) if args.sandbox else sandbox_root(), replay_speed=args.replay_speed)
    started_here = not sandbox.is_running()
    try:
        sandbox.start()
        if not started_here:
            sandbox.set_controls(replay_speed=args.replay_speed, fail="")
        log.info("Local sandbox ready (a replay of a recorded run, not a real cluster): %s", sandbox.root)
        run_demo(out_dir, sandbox, model=args.model, experiments=args.experiments, serving=not args.no_serving)
    except Exception as e:  # a failed notebook is saved with its error: point at it
        log.error("The demo failed: %s: %s", type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        log.error("Executed notebooks so far (the failing one shows the error at the top): %s", out_dir)
        return 1
    finally:
        if started_here and not args.keep:
            sandbox.stop()
    print(f"\nDone in {time.monotonic() - began:.0f} s. Executed notebooks, manifests, plots and the HTML report:\n"
          f"  {out_dir}\n  {out_dir / 'analysis' / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
