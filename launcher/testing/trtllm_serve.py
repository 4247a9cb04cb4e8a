#!/usr/bin/env python3
"""A STAND-IN for ``trtllm-serve``: an OpenAI-compatible server with configured latencies, no model, no GPU.

Why: the serving path (Deployment, readiness, aiperf's load, parsing, plots) must be exercised where no
TensorRT-LLM can run, and the measurement chain must be checked against known truth. This server answers
as ``trtllm-serve`` would, with latencies it is told to keep, and says everywhere that it is a stand-in
(a banner log line, ``/version``, the model card, an ``x-stand-in`` header on every response).

Command line: built with click from ``manifests/trtllm/serve-<v>.yaml`` (the table at or below
``$STANDIN_VERSION``, default 0.17.0.post1): exactly the options that release's ``trtllm-serve`` has,
a single command (``trtllm-serve [OPTIONS] MODEL``) or a group whose default subcommand is ``serve``, as
the table's ``invocation`` says; anything else fails as click fails (``No such option``, exit 2).
Defaults the table could not read (``BuildConfig`` fields) stay unset rather than invented.

HTTP (as the tables' ``routes`` list them, tensorrt_llm/serve/openai_server.py): ``GET /health``
(empty 200), ``/version``, ``/v1/models``, ``/metrics`` (JSON iteration stats, not Prometheus),
``POST /v1/completions`` and ``/v1/chat/completions`` (JSON, or SSE with ``stream: true``: one token per
``data:`` chunk, ``usage`` on a last chunk with ``stream_options.include_usage`` and on every chunk with
``continuous_usage_stats``, then ``data: [DONE]``). Errors use the server's shape
(``{"object": "error", "message", "type": "BadRequestError", "code": 400}``).

Loading: the tables read that the real server builds the LLM before it listens (connection refused while
loading, then ``/health`` 200). That is the default here (``STANDIN_SERVE_LOADING=refuse``);
``STANDIN_SERVE_LOADING=503`` instead listens at once and answers 503 until loaded, as the newest stored
openai_server.py (post-1.2) does when its engine is unavailable.

Timing: a request waits for one of ``capacity`` batch slots (``--max_batch_size`` if given, else
``STANDIN_SERVE_CAPACITY``): past capacity, requests queue and their time to first token grows. Once it
holds a slot, token k (from 0) is sent at ``start + TTFT + k * ITL`` on absolute deadlines, so gaps do
not drift. Output length: ``max_completion_tokens``/``max_tokens`` (the stand-in never stops early, as
with ``ignore_eos``), else ``STANDIN_SERVE_DEFAULT_TOKENS``. Tokens are words of the tiny word-level
tokenizer (``tokenizer/``), so a client counting with that tokenizer counts one token per chunk.

Environment (defaults): STANDIN_VERSION, STANDIN_TABLES (serve-*.yaml folder), STANDIN_SERVE_TTFT_MS (50),
_ITL_MS (10), _LOAD_S (0), _LOADING (refuse|503), _CAPACITY (256), _DEFAULT_TOKENS (16), _TOKENIZER (folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import yaml

HERE = Path(__file__).resolve().parent
VERSION = os.environ.get("STANDIN_VERSION", "0.17.0.post1")
STANDIN = "trtllm-serve STAND-IN (recipelib test double: configured latencies, no model, no GPU)"
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def log(message: str, level: str = "I") -> None:
    stamp = datetime.now().strftime("%m/%d/%Y-%H:%M:%S")
    print(f"[{stamp}] [TRT-LLM] [{level}] [STAND-IN] {message}", flush=True)


# -- configuration ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """What the stand-in is told to do (seconds; ``loading``: refuse|503); read once from the environment."""

    ttft_s: float; itl_s: float; load_s: float; loading: str; capacity: int; default_tokens: int  # noqa: E702

    @classmethod
    def from_env(cls, max_batch_size: int | None) -> Timing:
        def number(name: str, default: float, minimum: float) -> float:
            raw = os.environ.get(name, "")
            try:
                value = float(raw) if raw.strip() else default
            except ValueError:
                raise click.UsageError(f"{name}={raw!r} is not a number") from None
            if value < minimum:
                raise click.UsageError(f"{name}={raw!r} must be >= {minimum:g}")
            return value

        loading = os.environ.get("STANDIN_SERVE_LOADING", "refuse")
        if loading not in ("refuse", "503"):
            raise click.UsageError(f"STANDIN_SERVE_LOADING={loading!r}: use 'refuse' or '503'")
        capacity = max_batch_size or int(number("STANDIN_SERVE_CAPACITY", 256, 1))
        return cls(number("STANDIN_SERVE_TTFT_MS", 50, 0) / 1e3, number("STANDIN_SERVE_ITL_MS", 10, 0) / 1e3,
                   number("STANDIN_SERVE_LOAD_S", 0, 0), loading, capacity,
                   int(number("STANDIN_SERVE_DEFAULT_TOKENS", 16, 1)))


def _release(version: str) -> tuple[int, int, int]:
    match = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", version)
    if not match:
        raise SystemExit(f"STANDIN_VERSION={version!r} is not a TensorRT-LLM version (e.g. 0.17.0.post1)")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def load_table(version: str = VERSION) -> dict[str, Any]:
    """The ``serve-*.yaml`` table playing ``version``: the nearest release at or below it."""
    folder = Path(os.environ.get("STANDIN_TABLES") or HERE.parents[1] / "manifests" / "trtllm")
    tables = {_release(p.stem.removeprefix("serve-")): p for p in folder.glob("serve-*.yaml")}
    fits = [r for r in tables if r <= _release(version)]
    if not fits:
        raise SystemExit(f"no trtllm-serve table at or below {version} in {folder}")
    with open(tables[max(fits)], encoding="utf-8") as f:
        return yaml.safe_load(f)


def vocabulary() -> list[str]:
    """The words the stand-in streams: the tiny tokenizer's vocabulary, special tokens left out."""
    folder = Path(os.environ.get("STANDIN_SERVE_TOKENIZER") or HERE / "tokenizer")
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    special = {t["content"] for t in data.get("added_tokens", [])}
    return [w for w in data["model"]["vocab"] if w not in special]


# -- the HTTP server --------------------------------------------------------------------------------


class StandInServer:
    """The OpenAI-compatible routes over a plain asyncio HTTP/1.1 server (keep-alive, chunked SSE)."""

    def __init__(self, model: str, timing: Timing, words: list[str]) -> None:
        self.model = Path(model).name if Path(model).is_dir() else model  # as OpenAIServer names it
        self.timing, self.words = timing, words
        self.ready = False
        self.active = self.queued = self.completed = self.iteration = 0
        self.slots = asyncio.Semaphore(timing.capacity)  # binds to the running loop on first use
        self.created = int(time.time())

    async def serve(self, host: str, port: int) -> None:
        log(f"{STANDIN}; playing TensorRT-LLM {VERSION}; model {self.model}; TTFT "
            f"{self.timing.ttft_s * 1e3:g} ms, ITL {self.timing.itl_s * 1e3:g} ms, capacity {self.timing.capacity}")
        if self.timing.loading == "refuse":
            log(f"loading the model (stand-in: {self.timing.load_s:g} s; the port opens after loading)")
            await asyncio.sleep(self.timing.load_s)
            self.ready = True
        server = await asyncio.start_server(self.connection, host, port, backlog=4096)
        if not self.ready:
            log(f"listening while loading (stand-in: {self.timing.load_s:g} s; /health answers 503)")
            asyncio.get_running_loop().call_later(self.timing.load_s, self._loaded)
        log(f"Uvicorn running on http://{host}:{port} (stand-in, no uvicorn)")
        async with server:
            await server.serve_forever()

    def _loaded(self) -> None:
        self.ready = True
        log("model loaded (stand-in); /health answers 200")

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, *_ = [*lines[0].split(" "), "", ""]
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                await self.route(method, target.split("?", 1)[0], body, writer)
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    @staticmethod
    def send(writer: asyncio.StreamWriter, status: int, payload: Any, ctype: str = "application/json") -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        writer.write(f"HTTP/1.1 {status} {REASONS[status]}\r\ncontent-type: {ctype}\r\ncontent-length: "
                     f"{len(body)}\r\nx-stand-in: trtllm-serve\r\n\r\n".encode() + body)

    @staticmethod
    def error(message: str, status: int = 400) -> dict[str, Any]:  # ErrorResponse, openai_protocol.py
        return {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": status}

    async def route(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> None:
        gets = {"/health": self.health, "/version": self.version, "/v1/models": self.models,
                "/metrics": self.metrics}
        posts = {"/v1/completions": False, "/v1/chat/completions": True}
        if path not in gets and path not in posts:
            self.send(writer, 404, {"detail": "Not Found"})
        elif (method == "GET") != (path in gets):
            self.send(writer, 405, {"detail": "Method Not Allowed"})
        elif path in gets:
            status, payload = gets[path]()
            self.send(writer, status, payload)
        elif not self.ready:
            self.send(writer, 503, self.error("the model is loading (stand-in)", 503))
        else:
            try:
                request = json.loads(body or b"null")
                if not isinstance(request, dict):
                    raise ValueError("the request body must be a JSON object")
                await self.generate(request, posts[path], writer)
            except ValueError as e:
                self.send(writer, 400, self.error(str(e)))
        await writer.drain()

    def health(self) -> tuple[int, Any]:
        return (200, b"") if self.ready else (503, b"")

    def version(self) -> tuple[int, Any]:
        return 200, {"version": VERSION, "stand_in": STANDIN}

    def models(self) -> tuple[int, Any]:  # ModelCard: id, object, created, owned_by (openai_protocol.py)
        card = {"id": self.model, "object": "model", "created": self.created, "owned_by": "tensorrt_llm"}
        return 200, {"object": "list", "data": [{**card, "stand_in": STANDIN}]}

    def metrics(self) -> tuple[int, Any]:
        self.iteration += 1
        return 200, [{"iter": self.iteration, "timestamp": datetime.now().isoformat(), "stand_in": STANDIN,
                      "numActiveRequests": self.active, "numQueuedRequests": self.queued,
                      "maxNumActiveRequests": self.timing.capacity, "numCompletedRequests": self.completed}]

    # -- generation ---------------------------------------------------------------------------------

    @staticmethod
    def _count(text: Any) -> int:
        """Prompt tokens as the tiny tokenizer counts them: whitespace-separated words."""
        if isinstance(text, str):
            return len(text.split())
        if isinstance(text, list):  # a list of prompts, of token ids, or of content parts
            return sum(1 if isinstance(t, int) else StandInServer._count(t) for t in text)
        if isinstance(text, dict):
            return StandInServer._count(text.get("text") or text.get("content") or "")
        return 0

    def _plan(self, request: dict[str, Any], chat: bool) -> tuple[int, int]:
        if chat:
            messages = request.get("messages")
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages: a non-empty list is required")
            prompt = self._count(messages)
            asked = request.get("max_completion_tokens", request.get("max_tokens"))
        else:
            if "prompt" not in request:
                raise ValueError("prompt: field required")
            prompt = self._count(request["prompt"])
            asked = request.get("max_tokens")
        if asked is None:
            return prompt, self.timing.default_tokens
        if isinstance(asked, bool) or not isinstance(asked, int) or asked < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {asked!r}")
        return prompt, asked

    async def generate(self, request: dict[str, Any], chat: bool, writer: asyncio.StreamWriter) -> None:
        prompt_tokens, n = self._plan(request, chat)
        stream = bool(request.get("stream"))
        asked = request.get("stream_options")
        if asked is not None and not stream:
            raise ValueError("Stream options can only be defined when stream is true.")
        # StreamOptions defaults both flags to True (openai_protocol.py, store id 2541217336)
        options = {} if asked is None else {"include_usage": True, "continuous_usage_stats": True, **asked}
        kind = "chatcmpl" if chat else "cmpl"
        base = {"id": f"{kind}-{secrets.token_hex(16)}", "created": int(time.time()), "model": self.model}
        seed = secrets.randbelow(len(self.words))
        loop = asyncio.get_running_loop()
        self.queued += 1
        async with self.slots:
            self.queued -= 1
            self.active += 1
            start = loop.time()
            try:
                if stream:
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                                 b"transfer-encoding: chunked\r\nx-stand-in: trtllm-serve\r\n\r\n")
                    await self._stream(writer, base, chat, prompt_tokens, n, seed, start, options)
                else:
                    await asyncio.sleep(max(0.0, start + self.timing.ttft_s + (n - 1) * self.timing.itl_s
                                            - loop.time()))
                    self.send(writer, 200, self._whole(base, chat, prompt_tokens, n, seed))
                self.completed += 1
            finally:
                self.active -= 1

    def _word(self, seed: int, i: int) -> str:
        word = self.words[(seed + i * 7919) % len(self.words)]
        return word if i == 0 else " " + word

    @staticmethod
    def _usage(prompt: int, done: int) -> dict[str, int]:  # UsageInfo
        return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}

    async def _stream(self, writer: asyncio.StreamWriter, base: dict[str, Any], chat: bool, prompt: int,
                      n: int, seed: int, start: float, options: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        obj = "chat.completion.chunk" if chat else "text_completion"

        def event(payload: Any) -> None:
            data = b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n"
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))

        for i in range(n):
            delay = start + self.timing.ttft_s + i * self.timing.itl_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            finish = "length" if i == n - 1 else None
            text = self._word(seed, i)
            delta = {"role": "assistant", "content": text} if i == 0 else {"content": text}
            choice = {"index": 0, **({"delta": delta} if chat else {"text": text}), "logprobs": None,
                      "finish_reason": finish}
            chunk = {**base, "object": obj, "choices": [choice]}
            if options.get("continuous_usage_stats"):
                chunk["usage"] = self._usage(prompt, i + 1)
            event(chunk)
            await writer.drain()
        if options.get("include_usage"):
            event({**base, "object": obj, "choices": [], "usage": self._usage(prompt, n)})
        event(b"[DONE]")
        writer.write(b"0\r\n\r\n")

    def _whole(self, base: dict[str, Any], chat: bool, prompt: int, n: int, seed: int) -> dict[str, Any]:
        text = "".join(self._word(seed, i) for i in range(n))
        body = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
        choice = {"index": 0, **body, "logprobs": None, "finish_reason": "length"}
        obj = "chat.completion" if chat else "text_completion"
        return {**base, "object": obj, "choices": [choice], "usage": self._usage(prompt, n)}


# -- the command line, from the version table -------------------------------------------------------


def _option(raw: dict[str, Any]) -> click.Option:
    kind, default = raw["type"], raw.get("default")
    if isinstance(default, str) and default.startswith("not read"):
        default = None  # the table could not read it: leave it unset rather than invent a number
    decls = [raw["name"], *(raw.get("aliases") or [])]
    common = {"help": raw.get("help", ""), "required": bool(raw.get("required")), "multiple": bool(raw.get("multiple"))}
    if kind == "bool_flag":
        return click.Option(decls, is_flag=True, default=bool(default), **common)
    types: dict[str, Any] = {"int": click.INT, "float": click.FLOAT, "str": click.STRING, "path": click.STRING}
    if kind == "choice":
        choices = [*(raw.get("choices") or []), *(raw.get("aliases_values") or {})]
        # choices the table could not enumerate (``choices: []``) are not restricted here
        kind_type: Any = click.Choice(choices) if raw.get("choices") else click.STRING
    elif kind in types:
        kind_type = types[kind]
    else:
        raise SystemExit(f"serve table: option {raw['name']} has an unknown type {kind!r}")
    return click.Option(decls, type=kind_type, default=default, show_default=True, **common)


def _run(model: str, **options: Any) -> None:
    timing = Timing.from_env(options.get("max_batch_size"))
    server = StandInServer(model, timing, vocabulary())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(options["host"], options["port"]))


def _not_played() -> None:
    raise click.ClickException("the stand-in plays only the 'serve' subcommand")


class DefaultGroup(click.Group):
    """A group that runs ``serve`` when the first argument is not one of its subcommands (TRT-LLM's shape)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


def build_cli(table: dict[str, Any] | None = None) -> click.Command:
    """The click command of the release the table describes."""
    table = table or load_table()
    spec = table["command"]
    params: list[click.Parameter] = [click.Argument([a["name"]], required=bool(a.get("required", True)))
                                     for a in spec.get("arguments") or []]
    params += [_option(o) for o in spec.get("options") or []]
    serve = click.Command("serve", params=params, callback=_run, help=f"{STANDIN}. Serve MODEL.")
    if "[serve]" not in spec.get("invocation", ""):
        serve.name = "trtllm-serve"
        return serve
    group = DefaultGroup("trtllm-serve", help=STANDIN)
    group.add_command(serve)
    for other in spec.get("subcommands") or []:
        name = str(other).split()[0]
        if name != "serve":
            extra = {"ignore_unknown_options": True, "allow_extra_args": True}
            group.add_command(click.Command(name, callback=_not_played, context_settings=extra,
                                            help=f"not played by the {STANDIN}"))
    return group


def main() -> None:
    build_cli()(prog_name="trtllm-serve")


if __name__ == "__main__":
    sys.exit(main())
