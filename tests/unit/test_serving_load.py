"""Load-sweep inputs: bad concurrency/rate lists and SLO names are refused, naming the field; command lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from recipelib.errors import ConfigError, RecipelibError
from recipelib.serving.load import SLO_NAMES, LoadSweep, parse_profile_help, parse_slos, positive_list, profile_command

BASE = {"model": "m", "url": "http://s:8000", "tokenizer": "/tok", "isl": 128, "osl": 64}


@pytest.mark.parametrize("bad", ["", [], "0", "1,0,4", "-2", "1,two", [1, None], "1.5", [True], "nan", "inf", "4,4"])
def test_bad_concurrency_is_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(ConfigError) as e:
        positive_list("concurrency", bad, integer=True)
    assert e.value.field == "concurrency"
    assert "positive whole numbers" in str(e.value) or "empty" in str(e.value) or "repeats" in str(e.value)


@pytest.mark.parametrize("bad", ["0", "-1", "x", "0.5,-3", [float("nan")], ","])
def test_bad_request_rate_is_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(ConfigError) as e:
        LoadSweep.create(**BASE, request_rate=bad)
    assert e.value.field == "request_rate"


def test_lists_parse() -> None:
    assert positive_list("concurrency", "1, 2,4", integer=True) == (1, 2, 4)
    assert positive_list("concurrency", [8, 16.0], integer=True) == (8, 16)
    assert positive_list("request_rate", "0.5,2", integer=False) == (0.5, 2.0)
    assert positive_list("concurrency", 3, integer=True) == (3,)


def test_neither_list_is_an_error() -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        LoadSweep.create(**BASE)


def test_unknown_slo_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as e:
        parse_slos({"ttft_seconds": 2})
    assert e.value.field == "slos.ttft_seconds"
    for name in (*SLO_NAMES, "time_to_first_token", "request_latency"):
        assert name in str(e.value)


@pytest.mark.parametrize("bad", [{"ttft_ms": 0}, {"tpot_ms": -5}, {"e2e_ms": "soon"}, {"itl_ms": True},
                                 "ttft_ms=200", {"tpot_ms": 20, "itl_ms": 30}])
def test_bad_slo_values(bad: object) -> None:
    with pytest.raises(ConfigError, match="slos"):
        parse_slos(bad)  # type: ignore[arg-type]


def test_slos_map_to_aiperf_tags() -> None:
    assert parse_slos("ttft_ms:2000 tpot_ms:50") == {"time_to_first_token": 2000.0, "inter_token_latency": 50.0}
    assert parse_slos({"request_latency": 900}) == {"request_latency": 900.0}


def test_latency_slos_need_streaming() -> None:
    with pytest.raises(ConfigError, match="streaming"):
        LoadSweep.create(**BASE, concurrency="1", streaming=False, slos={"ttft_ms": 100})
    LoadSweep.create(**BASE, concurrency="1", streaming=False, slos={"e2e_ms": 100})


@pytest.mark.parametrize(("field", "value"), [("isl", 0), ("osl", -1), ("requests", 0), ("endpoint", "embeddings"),
                                              ("duration_s", -3), ("ramp_s", 0), ("warmup_requests", -1)])
def test_other_fields(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as e:
        LoadSweep.create(**{**BASE, field: value}, concurrency="1")  # type: ignore[arg-type]
    assert e.value.field == field


HELP = """\
╭─ Endpoint ──────────────────────────────────────────────╮
│ --model-names --model -m      Model name(s) to be       │
│ --url -u                      Base URL(s)               │
│ --streaming                   Enable streaming          │
╰─────────────────────────────────────────────────────────╯
│ --prompt-input-tokens-stddev --synthetic-input-tokens-stddev          Standard deviation │
│   --isl-stddev                                                        realistic          │
"""


def test_help_table_is_read() -> None:
    assert parse_profile_help(HELP) == {"--model-names", "--model", "-m", "--url", "-u", "--streaming",
                                        "--prompt-input-tokens-stddev", "--synthetic-input-tokens-stddev",
                                        "--isl-stddev"}


def test_command_refuses_an_option_aiperf_does_not_list(tmp_path: Path) -> None:
    sweep = LoadSweep.create(**BASE, concurrency="1,4", slos={"ttft_ms": 200})
    options = frozenset({"--model", "--url", "--endpoint-type", "--streaming", "--tokenizer", "--concurrency", "--isl",
                         "--osl", "--random-seed", "--output-artifact-dir", "--ui-type", "--no-server-metrics",
                         "--no-gpu-telemetry"})
    with pytest.raises(RecipelibError, match="--goodput"):
        profile_command(sweep, "concurrency", sweep.concurrency, tmp_path, options)
    argv = profile_command(sweep, "concurrency", sweep.concurrency, tmp_path, options | {"--goodput"})
    assert argv[argv.index("--concurrency") + 1] == "1,4"
    assert argv[argv.index("--goodput") + 1] == "time_to_first_token:200"


def test_the_image_installs_the_aiperf_the_load_steps_pin():
    from helpers import REPO

    from recipelib.serving.aiperf_env import AIPERF_VERSION

    assert f"ARG AIPERF_VERSION={AIPERF_VERSION}\n" in (REPO / "launcher" / "Dockerfile").read_text()
