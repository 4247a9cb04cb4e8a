"""A load sweep against an OpenAI-compatible server, run by NVIDIA's aiperf (``aiperf profile``).

Why aiperf and not our own client: it is the load generator TensorRT-LLM documents for trtllm-serve,
and a latency-throughput curve is only as good as the client that measures it. This module validates
what the user asks for (before anything runs or is created), turns it into aiperf command lines using
only options the installed aiperf lists in ``aiperf profile --help`` (read at run time, as the launcher
reads trtllm-bench's), runs them, and leaves aiperf's own exports as they are; ``results`` reads them.

A sweep is one aiperf run per kind of load: ``concurrency`` (closed loop, one point per value) and/or
``request_rate`` (open loop, requests/s). aiperf promotes a comma-separated list to a sweep and writes
one folder per point (``concurrency_16/``, ``rate_10.0/``) under ``--output-artifact-dir``.

Example::

    sweep = LoadSweep.create(model="llama", url="http://server:8000", tokenizer="/models/llama",
                             isl=128, osl=128, concurrency="1,4,16", slos={"ttft_ms": 2000, "tpot_ms": 50})
    points = run_sweep(sweep, Path("out/load-1"))
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recipelib.errors import ConfigError, RecipelibError

SLO_NAMES: Mapping[str, str] = {
    "ttft_ms": "time_to_first_token",
    "tpot_ms": "inter_token_latency",  # aiperf's ITL is (e2e - TTFT) / (OSL - 1): MLPerf's TPOT
    "itl_ms": "inter_token_latency",
    "e2e_ms": "request_latency",
}
"""Our SLO names -> aiperf metric tags (aiperf 0.13.0 ``aiperf/metrics/types/*.py``, attribute ``tag``);
all in milliseconds, aiperf's display unit for these metrics."""
AIPERF_SLO_TAGS = frozenset({*SLO_NAMES.values(), "time_to_second_token", "time_to_first_output_token",
                             "output_token_throughput_per_user"})
"""aiperf's own per-request metric tags that ``--goodput`` accepts under their own names."""
ENDPOINTS = ("completions", "chat")
KINDS = ("concurrency", "request_rate")
_HELP_OPTION = re.compile(r"^--?[A-Za-z0-9][\w-]*$")


def positive_list(field_name: str, value: Any, *, integer: bool) -> tuple[float, ...] | tuple[int, ...]:
    """``"1,2,4"``, ``[1, 2, 4]`` or ``4`` -> ``(1, 2, 4)``; empty, zero, negative or non-numbers refused."""
    kind = "positive whole numbers" if integer else "positive numbers"
    example = "1,2,4,8" if integer else "0.5,1,2"
    items: Iterable[Any]
    if isinstance(value, str):
        items = [p.strip() for p in value.replace(" ", ",").split(",") if p.strip()]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, Sequence):
        items = list(value)
    else:
        raise ConfigError(field_name, f"expected a list of {kind} such as {example!r}, got {value!r}")
    out: list[Any] = []
    for item in items:
        try:
            number = float(item) if not isinstance(item, bool) else float("nan")
        except (TypeError, ValueError):
            number = float("nan")
        if not number > 0 or number == float("inf") or (integer and number != int(number)):
            raise ConfigError(field_name, f"{item!r} is not allowed: use {kind} such as {example!r}")
        out.append(int(number) if integer else number)
    if not out:
        raise ConfigError(field_name, f"the list is empty: give {kind} such as {example!r}")
    if len(set(out)) != len(out):
        raise ConfigError(field_name, f"{value!r} repeats a value: each load point once")
    return tuple(out)


def parse_slos(value: Mapping[str, Any] | str | None) -> dict[str, float]:
    """SLOs for goodput -> ``{aiperf tag: milliseconds}``; ``"ttft_ms:2000 tpot_ms:50"`` or a mapping."""
    if not value:
        return {}
    if isinstance(value, str):
        pairs: list[tuple[str, Any]] = []
        for part in value.replace(",", " ").split():
            name, sep, number = part.partition(":")
            if not sep:
                raise ConfigError("slos", f"{part!r} is not NAME:VALUE (e.g. 'ttft_ms:2000 tpot_ms:50')")
            pairs.append((name, number))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        raise ConfigError("slos", f"expected a mapping such as {{'ttft_ms': 2000}}, got {value!r}")
    allowed = ", ".join([*SLO_NAMES, *sorted(AIPERF_SLO_TAGS)])
    slos: dict[str, float] = {}
    for name, number in pairs:
        tag = SLO_NAMES.get(str(name), str(name) if str(name) in AIPERF_SLO_TAGS else None)
        if tag is None:
            raise ConfigError(f"slos.{name}", f"aiperf has no SLO metric {name!r}; allowed: {allowed}")
        try:
            limit = float(number)
        except (TypeError, ValueError):
            limit = float("nan")
        if not 0 < limit < float("inf") or isinstance(number, bool):
            raise ConfigError(f"slos.{name}", f"{number!r} is not a positive number (milliseconds)")
        if tag in slos:
            raise ConfigError(f"slos.{name}", f"{tag} is limited twice (tpot_ms and itl_ms are the same metric)")
        slos[tag] = limit
    return slos


def _positive_int(field_name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field_name, f"{value!r} is not allowed: use a positive whole number")
    return value


@dataclass(frozen=True)
class LoadSweep:
    """One load sweep as validated data; build it with :meth:`create`."""

    model: str
    url: str
    tokenizer: str
    isl: int
    osl: int
    concurrency: tuple[int, ...] = ()
    request_rate: tuple[float, ...] = ()
    requests: int | None = None
    duration_s: float | None = None
    streaming: bool = True
    slos: Mapping[str, float] = field(default_factory=dict)
    endpoint: str = "completions"
    warmup_requests: int = 0
    seed: int = 0
    ramp_s: float | None = None  # spread the start: concurrency (or rate) grows to its target over this time

    @classmethod
    def create(cls, *, model: str, url: str, tokenizer: str, isl: int, osl: int, concurrency: Any = None,
               request_rate: Any = None, requests: int | None = None, duration_s: float | None = None,
               streaming: bool = True, slos: Mapping[str, Any] | str | None = None,
               endpoint: str = "completions", warmup_requests: int = 0, seed: int = 0,
               ramp_s: float | None = None) -> LoadSweep:
        """Validate everything a user can get wrong, naming the field; nothing has run yet."""
        if concurrency in (None, "", ()) and request_rate in (None, "", ()):
            raise ConfigError("concurrency", "give a concurrency list (e.g. '1,2,4') and/or a request_rate list")
        conc = positive_list("concurrency", concurrency, integer=True) if concurrency not in (None, "", ()) else ()
        rate = positive_list("request_rate", request_rate, integer=False) if request_rate not in (None, "", ()) else ()
        if requests is not None and duration_s is not None:
            raise ConfigError("requests", "give a number of requests or a duration, not both")
        if duration_s is not None and not (isinstance(duration_s, (int, float)) and duration_s > 0):
            raise ConfigError("duration_s", f"{duration_s!r} is not a positive number of seconds")
        if ramp_s is not None and (isinstance(ramp_s, bool) or not isinstance(ramp_s, (int, float)) or ramp_s <= 0):
            raise ConfigError("ramp_s", f"{ramp_s!r} is not a positive number of seconds")
        if endpoint not in ENDPOINTS:
            raise ConfigError("endpoint", f"{endpoint!r}: use one of {', '.join(ENDPOINTS)}")
        for name, text in (("model", model), ("url", url), ("tokenizer", tokenizer)):
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(name, "required (a non-empty string)")
        if not isinstance(warmup_requests, int) or isinstance(warmup_requests, bool) or warmup_requests < 0:
            raise ConfigError("warmup_requests", f"{warmup_requests!r}: use 0 or a positive whole number")
        if warmup_requests and rate:
            raise ConfigError("warmup_requests", "leave it 0 with a request_rate list: aiperf 0.13 then runs every "
                              "warm-up rate with every rate (9 runs for 3 rates); warm up with a concurrency sweep")
        parsed_slos = parse_slos(slos)
        if parsed_slos and not streaming and set(parsed_slos) - {"request_latency"}:
            raise ConfigError("slos", "TTFT and inter-token SLOs need streaming=True (aiperf measures them "
                                      "only on streamed responses); use e2e_ms alone or turn streaming on")
        return cls(model=model, url=url, tokenizer=tokenizer, isl=_positive_int("isl", isl),
                   osl=_positive_int("osl", osl), concurrency=conc, request_rate=rate,  # type: ignore[arg-type]
                   requests=None if requests is None else _positive_int("requests", requests),
                   duration_s=None if duration_s is None else float(duration_s), streaming=bool(streaming),
                   slos=parsed_slos, endpoint=endpoint, warmup_requests=warmup_requests, seed=int(seed),
                   ramp_s=None if ramp_s is None else float(ramp_s))

    def kinds(self) -> list[tuple[str, tuple[float, ...]]]:
        """The sweeps to run, in order: ``[("concurrency", (1, 4)), ("request_rate", (2.0,))]``."""
        return [(k, v) for k, v in (("concurrency", self.concurrency), ("request_rate", self.request_rate)) if v]


def read_profile_options(program: Path) -> frozenset[str]:
    """Every option spelling ``aiperf profile --help`` lists (its rich-boxed table, read wide)."""
    env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"}
    try:
        done = subprocess.run([str(program), "profile", "--help"], capture_output=True, text=True, env=env,
                              timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RecipelibError(f"could not run `{program} profile --help`: {e}") from e
    options = parse_profile_help(done.stdout)
    if done.returncode != 0 or not options:
        raise RecipelibError(f"`{program} profile --help` listed no options (exit {done.returncode}); "
                             "reinstall with `python -m recipelib.serving.aiperf_env`")
    return options


def parse_profile_help(text: str) -> frozenset[str]:
    """The option names in the first column of aiperf's help table (``│ --isl --prompt-input-... help``)."""
    found: set[str] = set()
    for line in text.splitlines():
        body = line.strip().strip("│┃|").strip()
        if not body.startswith("-"):
            continue
        first_column = re.split(r"\s{2,}", body, maxsplit=1)[0]
        found.update(tok for tok in first_column.split() if _HELP_OPTION.match(tok))
    return frozenset(found)


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(float(number))


def profile_command(sweep: LoadSweep, kind: str, values: Sequence[float], artifact_dir: Path,
                    options: frozenset[str], program: Path | str = "aiperf") -> list[str]:
    """The ``aiperf profile`` command line for one kind of sweep; refuses an option aiperf lacks."""
    argv: list[str] = [str(program), "profile"]

    def add(option: str, *values_: str) -> None:
        if option not in options:
            raise RecipelibError(f"the installed aiperf has no {option} (its `profile --help` does not list it); "
                                 "install the pinned one: `python -m recipelib.serving.aiperf_env`")
        argv.extend([option, *values_])

    add("--model", sweep.model)
    add("--url", sweep.url)
    add("--endpoint-type", sweep.endpoint)
    if sweep.streaming:
        add("--streaming")
    add("--tokenizer", sweep.tokenizer)
    add("--concurrency" if kind == "concurrency" else "--request-rate", ",".join(_fmt(v) for v in values))
    add("--isl", str(sweep.isl))
    add("--osl", str(sweep.osl))
    if sweep.requests is not None:
        add("--request-count", str(sweep.requests))
    if sweep.duration_s is not None:
        add("--benchmark-duration", _fmt(sweep.duration_s))
    if sweep.ramp_s is not None:
        ramp = "--concurrency-ramp-duration" if kind == "concurrency" else "--request-rate-ramp-duration"
        add(ramp, _fmt(sweep.ramp_s))
    if sweep.warmup_requests:
        add("--warmup-request-count", str(sweep.warmup_requests))
    if sweep.slos:
        add("--goodput", " ".join(f"{tag}:{_fmt(v)}" for tag, v in sweep.slos.items()))
    add("--random-seed", str(sweep.seed))
    add("--output-artifact-dir", str(artifact_dir))
    add("--ui-type", "none")  # headless: a Job's log, not a terminal dashboard
    add("--no-server-metrics")  # trtllm-serve's /metrics is JSON iteration stats, not Prometheus text
    add("--no-gpu-telemetry")  # no DCGM exporter beside the load generator
    return argv


def run_sweep(sweep: LoadSweep, out_dir: Path, *, program: Path | None = None, timeout_s: float | None = None,
              env: Mapping[str, str] | None = None) -> Path:
    """Run every aiperf sweep of ``sweep`` into ``out_dir/<kind>/`` (created; must not exist yet).

    aiperf's own files stay where it writes them, with its console output in ``<kind>/aiperf.log``.
    Returns ``out_dir``; read the points with :func:`recipelib.serving.results.read_sweep`.
    """
    from recipelib.serving import aiperf_env  # not at import: `python -m recipelib.serving.aiperf_env` runs it

    program = program or aiperf_env.executable()
    options = read_profile_options(program)
    planned = [(kind, profile_command(sweep, kind, values, out_dir / kind, options, program))
               for kind, values in sweep.kinds()]  # every command line checked before anything is created
    out_dir.mkdir(parents=True, exist_ok=False)
    for kind, argv in planned:
        (out_dir / kind).mkdir()
        with open(out_dir / kind / "aiperf.log", "x", encoding="utf-8") as logfile:
            try:
                done = subprocess.run(argv, stdout=logfile, stderr=subprocess.STDOUT, timeout=timeout_s,
                                      env={**os.environ, **(env or {})}, check=False)
            except subprocess.TimeoutExpired as e:
                raise RecipelibError(f"aiperf ({kind} sweep) ran past {timeout_s} s; see {out_dir / kind}") from e
        if done.returncode != 0:
            tail = (out_dir / kind / "aiperf.log").read_text(encoding="utf-8", errors="replace")[-1500:]
            raise RecipelibError(f"aiperf ({kind} sweep) failed with exit {done.returncode}; its log "
                                 f"({out_dir / kind / 'aiperf.log'}) ends:\n{tail}")
    return out_dir
