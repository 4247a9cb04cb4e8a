"""The trtllm-serve stand-in as a client sees it: CLI from the version tables, routes, SSE, health, timing.

Each test starts the real stand-in program on a free loopback port and talks plain HTTP to it (stdlib
``http.client``, no OpenAI SDK), checking what trtllm-serve's sources say it does
(``manifests/trtllm/serve-*.yaml``, tensorrt_llm/serve/openai_protocol.py).
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import REPO, until

STANDIN = REPO / "launcher" / "testing" / "trtllm_serve.py"
TABLES = REPO / "manifests" / "trtllm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = open(tmp_path / f"serve-{port}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, str(STANDIN), "tiny-model", "--host", "127.0.0.1", "--port", str(port),
                             *args], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    return proc, port


def request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"content-type": "application/json"})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def ready(port: int) -> bool:
    try:
        return request(port, "GET", "/health")[0] == 200
    except OSError:
        return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    proc, port = start(tmp_path, STANDIN_SERVE_TTFT_MS="30", STANDIN_SERVE_ITL_MS="5")
    until("the stand-in answers /health", lambda: ready(port), timeout=30)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def sse_events(raw: bytes) -> list[str]:
    """``data:`` payloads of an SSE body, checking the framing (each event ends with a blank line)."""
    text = raw.decode()
    assert text.endswith("\n\n"), text[-50:]
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events), events[:3]
    return [e[len("data: "):] for e in events]


@pytest.mark.parametrize("version", ["0.17.0.post1", "1.2.0"])
def test_unknown_option_exits_2_as_click_does(version: str) -> None:
    done = subprocess.run([sys.executable, str(STANDIN), "m", "--no_such_option", "1"], capture_output=True,
                          text=True, env={**os.environ, "STANDIN_VERSION": version}, timeout=60)
    assert done.returncode == 2
    assert "No such option: --no_such_option" in done.stderr or "No such option '--no_such_option'" in done.stderr


def test_cli_options_are_the_version_tables() -> None:
    """--help lists exactly the table's options: 0.17 has no --backend tensorrt; 1.2 has it, and --log_level."""
    for version, table in (("0.17.0.post1", "serve-0.17.yaml"), ("1.2.0", "serve-1.2.yaml")):
        env = {**os.environ, "STANDIN_VERSION": version, "COLUMNS": "200"}
        args = ["serve"] if version.startswith("1.") else []
        shown = subprocess.run([sys.executable, str(STANDIN), *args, "--help"], capture_output=True, text=True,
                               env=env, timeout=60, check=True).stdout
        listed = {w.rstrip(",") for line in shown.splitlines() for w in line.split() if w.startswith("--")}
        expected = {o["name"] for o in yaml.safe_load((TABLES / table).read_text())["command"]["options"]}
        assert listed - {"--help"} == expected, version
    old = subprocess.run([sys.executable, str(STANDIN), "m", "--backend", "tensorrt"], capture_output=True, text=True,
                         env={**os.environ, "STANDIN_VERSION": "0.17.0"}, timeout=60)
    assert old.returncode == 2 and "'tensorrt' is not" in old.stderr


def test_routes_and_status_codes(server: int) -> None:
    status, headers, body = request(server, "GET", "/health")
    assert (status, body) == (200, b"")
    status, _, body = request(server, "GET", "/version")
    version = json.loads(body)
    assert status == 200 and version["version"] == "0.17.0.post1" and "STAND-IN" in version["stand_in"]
    status, _, body = request(server, "GET", "/v1/models")
    card = json.loads(body)["data"][0]
    assert status == 200 and card["id"] == "tiny-model" and card["object"] == "model" and "STAND-IN" in card["stand_in"]
    status, _, body = request(server, "GET", "/metrics")
    assert status == 200 and isinstance(json.loads(body), list)  # JSON iteration stats, not Prometheus text
    assert request(server, "GET", "/nowhere")[0] == 404
    assert request(server, "POST", "/health")[0] == 405
    assert request(server, "GET", "/v1/completions")[0] == 405
    bad = {"model": "tiny-model", "prompt": "a b", "max_tokens": 0}
    status, _, body = request(server, "POST", "/v1/completions", bad)
    error = json.loads(body)
    assert status == 400 and error["object"] == "error" and error["code"] == 400 and "max_tokens" in error["message"]
    status, _, body = request(server, "POST", "/v1/chat/completions", {"model": "tiny-model", "messages": []})
    assert status == 400 and "messages" in json.loads(body)["message"]
    status, _, body = request(server, "POST", "/v1/completions",
                              {"model": "m", "prompt": "a", "stream_options": {"include_usage": True}})
    assert status == 400 and "stream is true" in json.loads(body)["message"]
    assert headers["x-stand-in"] == "trtllm-serve"


def test_completion_json_honours_max_tokens(server: int) -> None:
    body = {"model": "m", "prompt": "one two three", "max_tokens": 7}
    status, _, body = request(server, "POST", "/v1/completions", body)
    out = json.loads(body)
    assert status == 200 and out["object"] == "text_completion"
    assert len(out["choices"][0]["text"].split()) == 7 and out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}


def test_chat_sse_one_token_per_chunk_then_usage_and_done(server: int) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "a b c d"}], "max_completion_tokens": 5,
            "stream": True, "stream_options": {"include_usage": True, "continuous_usage_stats": False}}
    status, headers, raw = request(server, "POST", "/v1/chat/completions", body)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    tokens, usage = chunks[:-1], chunks[-1]
    assert len(tokens) == 5 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert tokens[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(len(c["choices"][0]["delta"]["content"].split()) == 1 for c in tokens)
    assert [c["choices"][0]["finish_reason"] for c in tokens] == [None] * 4 + ["length"]
    assert all("usage" not in c for c in tokens)
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}


def test_completion_sse_usage_on_every_chunk_by_default(server: int) -> None:
    """StreamOptions defaults continuous_usage_stats to True in trtllm-serve's protocol."""
    body = {"model": "m", "prompt": "x", "max_tokens": 3, "stream": True, "stream_options": {"include_usage": True}}
    events = sse_events(request(server, "POST", "/v1/completions", body)[2])
    chunks = [json.loads(e) for e in events[:-1]]
    assert [c["usage"]["completion_tokens"] for c in chunks] == [1, 2, 3, 3]
    assert all(c["object"] == "text_completion" for c in chunks)


def test_health_503_while_loading_then_200(tmp_path: Path) -> None:
    proc, port = start(tmp_path, STANDIN_SERVE_LOADING="503", STANDIN_SERVE_LOAD_S="2")
    try:
        status = until("the stand-in listens", lambda: _status(port), timeout=30)
        assert status == 503
        assert request(port, "POST", "/v1/completions", {"model": "m", "prompt": "a"})[0] == 503
        until("/health turns 200", lambda: _status(port) == 200, timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_port_closed_while_loading_by_default(tmp_path: Path) -> None:
    """The tables read that trtllm-serve builds the LLM before it listens: connection refused, then 200."""
    proc, port = start(tmp_path, STANDIN_SERVE_LOAD_S="2")
    try:
        time.sleep(0.8)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        until("/health turns 200", lambda: _status(port) == 200, timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _status(port: int) -> int | None:
    try:
        return request(port, "GET", "/health")[0]
    except OSError:
        return None


def test_latency_and_capacity(tmp_path: Path) -> None:
    """TTFT and gaps as configured; with one batch slot a second request waits for the first to finish."""
    proc, port = start(tmp_path, "--max_batch_size", "1", STANDIN_SERVE_TTFT_MS="200", STANDIN_SERVE_ITL_MS="50")
    try:
        until("the stand-in answers /health", lambda: ready(port), timeout=30)
        t0 = time.monotonic()
        alone = _read_times(_open_stream(port), t0)
        t0 = time.monotonic()
        first, second = _open_stream(port), _open_stream(port)
        a, b = _read_times(first, t0), _read_times(second, t0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    for times in (alone, a):
        assert 0.19 < times[0] < 0.30, times
        gaps = [y - x for x, y in itertools.pairwise(times)]
        assert len(times) == 4 and all(0.03 < g < 0.08 for g in gaps), gaps
    assert b[0] - a[-1] > 0.19, (a, b)  # it waited for the slot, then paid its own time to first token


def _open_stream(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = {"model": "m", "prompt": "a", "max_tokens": 4, "stream": True}
    conn.request("POST", "/v1/completions", body=json.dumps(body))
    return conn


def _read_times(conn: http.client.HTTPConnection, t0: float) -> list[float]:
    """When each token chunk arrived, seconds after ``t0``."""
    r = conn.getresponse()
    times = [time.monotonic() - t0 for line in iter(r.readline, b"") if line.startswith(b"data: {")]
    conn.close()
    return times
