#!/usr/bin/env python3
"""What the serving pods run (shipped to them in a ConfigMap): ``fetch`` the checkpoint, ``load`` a sweep.

Why a program of ours around the tools: the server pod must find the model's checkpoint on the node's SSD
before ``trtllm-serve`` starts (downloaded once per node, verified, resumed, never trusted half-done: the
launcher's ``checkpoint.py`` does exactly that for the benchmark, and is reused), and a load sweep must
leave its results create-only in the bucket, in the layout of throughput runs, with aiperf's own exports
kept as they are beside our per-point summary. Values come from a mounted JSON file, never a shell line.

``serving_pod.py fetch --config serve.json`` (the server's init container)::

    {"checkpoint": "org/name", "dest": "/ssd/models/org/name", "launcher": "/workload/serve"}

``serving_pod.py load --config load.json`` (the load Job): runs ``aiperf profile`` once per load point (so
the log says "point k of n" and a retry skips the points already stored), then stores the point's folder
under ``<results>/<release>/<run_id>/<load point id>/`` and, last, ``run.json``. Events: one line
``RECIPE_EVENT {"phase": "load", "state": ..., "index": k, "total": n, ...}`` per change, as the
launcher's. Exit code: 0 only if every point produced a summary; 2 for a configuration error.

Standard library only at import: in the pod, the modules it needs (the launcher's ``checkpoint``,
``store``, ``layout``; recipelib's ``serving`` package and its errors) sit beside it in the ConfigMap.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EVENT_PREFIX = "RECIPE_EVENT "


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def say(text: str) -> None:
    print(text, flush=True)


def event(state: str, **extra: Any) -> None:
    payload = {"phase": "load", "state": state, "time": now(), **{k: v for k, v in extra.items() if v is not None}}
    say(EVENT_PREFIX + json.dumps(payload, sort_keys=False))


# -- fetch: the checkpoint on the node's SSD ---------------------------------------------------------


def fetch(config: dict[str, Any]) -> int:
    """Download the checkpoint to SSD unless a complete one is there (the launcher's rules and marker)."""
    sys.path.insert(0, str(config.get("launcher") or HERE))
    import checkpoint  # type: ignore[import-not-found]  # launcher/checkpoint.py, shipped beside this file

    repo, dest = str(config["checkpoint"]), Path(config["dest"])
    state = checkpoint.state(dest)
    if state.complete:
        say(f"checkpoint {repo} already complete on this node's SSD ({dest}, {state.bytes / 1e9:.1f} GB): not "
            "downloaded again")
        return 0
    say(f"downloading {repo} to {dest} (resumes a partial download; the token comes from the environment)")
    started = time.monotonic()
    try:
        state = checkpoint.download(repo, dest, on_line=say)
    except Exception as e:  # DownloadError: its message is already scrubbed of the token by the downloader
        say(f"download of {repo} failed: {e}")
        return 1
    say(f"checkpoint {repo} complete: {state.files} files, {state.bytes / 1e9:.1f} GB in "
        f"{time.monotonic() - started:.0f} s")
    return 0


# -- load: one aiperf run per point, stored create-only --------------------------------------------


def _server_version(url: str, attempts: int = 30) -> dict[str, Any]:
    """``GET /version`` of the server (a stand-in says so there); retried briefly: the Service may lag."""
    last: Exception | None = None
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/version", timeout=10) as reply:
                body = json.loads(reply.read() or b"{}")
                return body if isinstance(body, dict) else {"version": body}
        except (OSError, ValueError) as e:
            last = e
            time.sleep(2)
    raise RuntimeError(f"the server at {url} does not answer /version ({last}); is it ready? (monitor.ipynb)")


def _run_aiperf(argv: list[str], log_path: Path) -> int:
    """aiperf's console output into ``log_path`` (kept with the point) and, prefixed, into the pod's log."""
    with open(log_path, "x", encoding="utf-8") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            say(f"[aiperf] {line.rstrip()}")
        return proc.wait()


def _upload(store: Any, layout: Any, cfg: dict[str, Any], point: str, folder: Path, last: str) -> int:
    """Every file of the point's folder, create-only; ``last`` (our summary) after all of aiperf's."""
    files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: (p.name == last, str(p)))
    written = 0
    for path in files:
        key = layout.experiment_file(cfg["release"], cfg["run_id"], point, path.relative_to(folder).as_posix())
        written += bool(store.create(key, path.read_bytes()))
    return written


def load(config: dict[str, Any]) -> int:
    """The load sweep of ``config`` (rendered by recipelib.deploy.serving); see the module docstring."""
    sys.path.insert(0, str(HERE))
    import layout  # type: ignore[import-not-found]  # launcher/layout.py
    import store  # type: ignore[import-not-found]  # launcher/store.py

    from recipelib.errors import RecipelibError
    from recipelib.serving import aiperf_env, results
    from recipelib.serving import load as loadgen

    started = now()
    try:
        program = aiperf_env.executable()
        version = aiperf_env.installed_version(program)
        if version != config["aiperf_version"]:
            say(f"aiperf {version} is installed at {program}, but this sweep pins {config['aiperf_version']}: "
                "rebuild the load image with the pinned aiperf (recipelib.serving.aiperf_env.AIPERF_VERSION)")
            return 2
        options = loadgen.read_profile_options(program)
        sweeps = [loadgen.LoadSweep.create(**s) for s in config["sweeps"]]
    except RecipelibError as e:
        say(f"load sweep not started: {e}")
        return 2
    answer = _server_version(config["url"])
    standin = "stand_in" in answer
    server = (f"trtllm-serve {answer.get('version', '?')} at {config['url']}"
              + (f" -- {answer['stand_in']}" if standin else ""))
    say(f"aiperf {version} ({program}) against {server}")
    points = [(s, kind, v) for s in sweeps for kind, values in s.kinds() for v in values]
    results_store = store.open_store(config["results"])
    total, failed, done_ids = len(points), [], []
    event("started", total=total, release=config["release"], run_id=config["run_id"], aiperf=version)
    work = Path(tempfile.mkdtemp(prefix="load-"))
    for index, (sweep, kind, value) in enumerate(points, 1):
        conc, rate = (value, None) if kind == "concurrency" else (None, value)
        point = layout.load_point_id(conc, rate, isl=sweep.isl, osl=sweep.osl)
        done_ids.append({"id": point, "isl": sweep.isl, "osl": sweep.osl, "num_requests": sweep.requests or 0,
                         "concurrency": conc, "request_rate": rate})
        if results_store.exists(layout.experiment_file(config["release"], config["run_id"], point, results.SUMMARY)):
            event("skipped", experiment=point, index=index, total=total, reason="already in the bucket")
            continue
        event("started", experiment=point, index=index, total=total)
        clock = time.monotonic()
        folder = work / point
        folder.mkdir()
        argv = loadgen.profile_command(sweep, kind, [value], folder, options, program)
        code = _run_aiperf(argv, folder / "aiperf.log")
        try:
            if code != 0:
                raise RecipelibError(f"aiperf exited with code {code} (its log: aiperf.log in the point's folder)")
            measured = results.read_sweep(folder)
            results.write_summary(measured, folder / results.SUMMARY, release=config["release"],
                                  run_id=config["run_id"], point=point, model=config["model"],
                                  checkpoint=config["checkpoint"], tp_size=config["tp_size"],
                                  gpu=config["gpu"], gpu_count=config["gpu_count"],
                                  trtllm_version=config["trtllm_version"], image=config["image"],
                                  aiperf_version=version, started=started, standin=standin, replay=False,
                                  server=server, server_version=answer)
        except RecipelibError as e:
            failed.append(point)
            (folder / "error.txt").write_text(f"{e}\n", encoding="utf-8")
            _upload(results_store, layout, config, point, folder, "error.txt")
            event("failed", experiment=point, index=index, total=total, error=str(e)[:300],
                  seconds=round(time.monotonic() - clock, 1))
            continue
        written = _upload(results_store, layout, config, point, folder, results.SUMMARY)
        event("finished", experiment=point, index=index, total=total, files=written,
              seconds=round(time.monotonic() - clock, 1))
    status = "failed" if failed else "succeeded"
    run = {"schema": 1, "release": config["release"], "run_id": config["run_id"], "model": config["model"],
           "mode": "serving", "status": status, "exit_code": 1 if failed else 0, "started": started,
           "finished": now(), "experiments": done_ids, "failed": failed, "aiperf_version": version,
           "server": server, "server_version": answer, "standin": standin, "url": config["url"],
           "image": config["image"], "trtllm_version": config["trtllm_version"], "sweeps": config["sweeps"]}
    results_store.create(layout.run_file(config["release"], config["run_id"]),
                         json.dumps(run, indent=2).encode() + b"\n", "application/json")
    event("finished" if not failed else "failed", total=total, failed=len(failed),
          results=results_store.url(layout.run_prefix(config["release"], config["run_id"])))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serving_pod.py", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("fetch", "load"))
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    config = json.loads(args.config.read_text(encoding="utf-8"))
    return fetch(config) if args.step == "fetch" else load(config)


if __name__ == "__main__":
    sys.exit(main())
