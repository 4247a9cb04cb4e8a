"""The real aiperf drives the trtllm-serve stand-in; our summary against aiperf's own exports and the server.

Checks the whole measurement chain on a small sweep: the command line built from aiperf's own
``profile --help``, aiperf's run, and our per-point summary, compared with (1) aiperf's CSV export (an
independent rendering of the same run, two decimals), and (2) what the stand-in was told to do and
counted (token counts exactly; latencies within loose bounds, this machine being shared).
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, until

from recipelib.errors import RecipelibError
from recipelib.serving import aiperf_env, load, results

STANDIN = REPO / "launcher" / "testing" / "trtllm_serve.py"
TOKENIZER = REPO / "launcher" / "testing" / "tokenizer"

try:
    AIPERF = aiperf_env.executable()
except RecipelibError as e:  # the environment is made by `python -m recipelib.serving.aiperf_env`
    pytest.skip(str(e), allow_module_level=True)


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {**os.environ, "STANDIN_SERVE_TTFT_MS": "80", "STANDIN_SERVE_ITL_MS": "8", "STANDIN_VERSION": "1.2.0"}
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(STANDIN), "serve", "tiny", "--host", "127.0.0.1", "--port",
                                 str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)

    def healthy() -> bool:
        try:
            return _get(port, "/health")[0] == 200
        except OSError:
            return False

    until("the stand-in answers /health", healthy, timeout=30)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def _csv_row(path: Path, metric: str) -> dict[str, str]:
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if row and row[0] == metric:
                return dict(zip(["Metric", "avg", "min", "max", "sum", "p1", "p5", "p10", "p25", "p50", "p75",
                                 "p90", "p95", "p99", "std"], row, strict=False))
    raise AssertionError(f"{metric} not in {path}")


def _csv_value(path: Path, metric: str) -> float:
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) == 2 and row[0] == metric:
                return float(row[1])
    raise AssertionError(f"{metric} not in {path}")


def test_aiperf_sweep_against_the_standin(standin: int, tmp_path: Path) -> None:
    sweep = load.LoadSweep.create(model="tiny", url=f"http://127.0.0.1:{standin}", tokenizer=str(TOKENIZER),
                                  isl=24, osl=12, concurrency="1,3", requests=6, slos={"ttft_ms": 5000, "tpot_ms": 1})
    before = json.loads(_get(standin, "/metrics")[1])[0]["numCompletedRequests"]
    out = load.run_sweep(sweep, tmp_path / "load", program=AIPERF, timeout_s=400)
    points = results.read_sweep(out)
    served = json.loads(_get(standin, "/metrics")[1])[0]["numCompletedRequests"] - before

    assert [(p.mode, p.value) for p in points] == [("concurrency", 1.0), ("concurrency", 3.0)]
    assert sum(p.requests for p in points) == served == 12  # every request aiperf counted, the server served
    for p in points:
        export_dir = out / Path(p.source).parent
        table = export_dir / "profile_export_aiperf.csv"
        assert p.aiperf_version == aiperf_env.AIPERF_VERSION
        assert (p.requests, p.errors, p.isl, p.osl) == (6, 0, 24.0, 12.0)  # tiny tokenizer: counts are exact
        for ours, metric, statistic in ((p.ttft_p50_ms, "Time to First Token (ms)", "p50"),
                                        (p.ttft_p99_ms, "Time to First Token (ms)", "p99"),
                                        (p.itl_p50_ms, "Inter Token Latency (ms)", "p50"),
                                        (p.itl_p99_ms, "Inter Token Latency (ms)", "p99"),
                                        (p.e2e_p50_ms, "Request Latency (ms)", "p50"),
                                        (p.e2e_p99_ms, "Request Latency (ms)", "p99")):
            assert ours == pytest.approx(float(_csv_row(table, metric)[statistic]), abs=0.006), metric
        assert p.output_tokens_per_s == pytest.approx(_csv_value(table, "Output Token Throughput (tokens/sec)"),
                                                      abs=0.006)
        assert p.requests_per_s == pytest.approx(_csv_value(table, "Request Throughput (requests/sec)"), abs=0.006)
        # what the stand-in was told: 80 ms to the first token, 8 ms between tokens (loose: a shared machine)
        assert 78 < p.ttft_p50_ms < 130 and 6 < p.itl_p50_ms < 12  # type: ignore[operator]
        # the TPOT limit of 1 ms cannot be met by an 8 ms gap: no request is good
        assert p.slos == {"time_to_first_token": 5000.0, "inter_token_latency": 1.0} and p.goodput_rps == 0.0
    assert (out / "concurrency" / "aiperf.log").is_file()
    with pytest.raises(FileExistsError):  # re-running never writes over a sweep
        load.run_sweep(sweep, out, program=AIPERF)


def test_every_option_we_use_is_in_aiperfs_help(tmp_path: Path) -> None:
    options = load.read_profile_options(AIPERF)
    common = {"model": "m", "url": "http://x:8000", "tokenizer": "/t", "isl": 8, "osl": 8, "duration_s": 10,
              "ramp_s": 1, "slos": {"ttft_ms": 100, "e2e_ms": 900}}
    sweeps = [load.LoadSweep.create(concurrency="1,2", warmup_requests=2, **common),  # warm-up only with these
              load.LoadSweep.create(concurrency="1,2", request_rate="5", **common)]
    for sweep in sweeps:
        for kind, values in sweep.kinds():
            argv = load.profile_command(sweep, kind, values, tmp_path, options, AIPERF)
            assert {a for a in argv if a.startswith("--")} <= options
    assert aiperf_env.installed_version(AIPERF) == aiperf_env.AIPERF_VERSION
