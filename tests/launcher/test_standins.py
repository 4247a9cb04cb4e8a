"""The test stand-ins for trtllm-bench and prepare_dataset.py obey the real tools, as the version tables record them.

Nothing here compares a stand-in with itself: the expected option sets are read straight from the YAML
tables (``manifests/trtllm/``, with their sources), the expected report layouts are the real published
samples in ``tests/data/reports/`` (one synthetic, said so), and the numbers are read back with the same
parser the analysis uses.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO, REPORTS

from recipelib.results.reports import parse_json, parse_text

TESTING = REPO / "launcher" / "testing"
TABLES = REPO / "manifests" / "trtllm"
BENCH, PREPARE = TESTING / "trtllm_bench.py", TESTING / "prepare_dataset.py"
VERSIONS = ("0.16.0", "0.17.0.post1", "0.19.0", "0.21.0", "1.0.0", "1.2.0")

sys.path.insert(0, str(TESTING))
import cli_tables  # noqa: E402


def run(version: str, script: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a stand-in as the harness does (``python -S``: it must find click itself)."""
    return subprocess.run([sys.executable, "-S", str(script), *argv], cwd=cwd, capture_output=True, text=True,
                          env={"STANDIN_VERSION": version, "PATH": "/usr/bin:/bin"}, check=False, timeout=60)


def table_yaml(version: str) -> dict[str, Any]:
    """The raw table for ``version`` (the test's own reading, not the stand-in's loader)."""
    return yaml.safe_load((TABLES / f"bench-{'.'.join(version.split('.')[:2])}.yaml").read_text())


def expected(version: str, key: str, child: str | None = None) -> set[str]:
    """Every non-hidden spelling the table lists for a command, following ``stand_in_from`` where not read."""
    entry = table_yaml(version)["commands"][key]
    if entry.get("not_read"):
        entry = table_yaml(entry["stand_in_from"])["commands"][key]
    if child:
        entry = entry["subcommands"][child]
    names = set()
    for o in entry.get("options") or ():
        if not o.get("hidden"):
            names |= {o["name"], *(o.get("aliases") or ()), *([o["secondary"]] if o.get("secondary") else [])}
    return names


def help_options(text: str) -> set[str]:
    """The option spellings in click's help (``-m, --model TEXT``, ``--a / --b``), without ``--help``."""
    body = text.split("Options:", 1)[1].split("Commands:", 1)[0]
    names = set()
    for line in body.splitlines():
        if re.match(r"^  -", line):
            first = re.split(r"\s{2,}", line.strip())[0]
            for part in re.split(r",\s*|\s+/\s+", first):
                names.add(part.split(" ")[0])
    return names - {"--help"}


def help_commands(text: str) -> list[str]:
    if "Commands:" not in text:
        return []
    return [line.split()[0] for line in text.split("Commands:", 1)[1].splitlines() if line.startswith("  ")]


@pytest.mark.parametrize("version", VERSIONS)
def test_help_lists_exactly_the_tables_options(version: str, tmp_path: Path) -> None:
    group = run(version, BENCH, "--help", cwd=tmp_path)
    assert group.returncode == 0, group.stderr
    assert f"[TensorRT-LLM] TensorRT-LLM version: {version}" in group.stdout.splitlines()[0]
    assert help_options(group.stdout) == expected(version, "trtllm-bench")
    assert sorted(help_commands(group.stdout)) == sorted(table_yaml(version)["commands"]["trtllm-bench"]["subcommands"])
    for sub in ("build", "throughput"):
        out = run(version, BENCH, "--model", "m", sub, "--help", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert help_options(out.stdout) == expected(version, f"trtllm-bench {sub}"), sub
    top = run(version, PREPARE, "--help", cwd=tmp_path)
    assert help_options(top.stdout) == expected(version, "prepare_dataset.py")
    norm = run(version, PREPARE, "--tokenizer", "t", "token-norm-dist", "--help", cwd=tmp_path)
    assert help_options(norm.stdout) == expected(version, "prepare_dataset.py", "token-norm-dist")


def test_prepare_dataset_subcommand_only_where_a_table_has_it(tmp_path: Path) -> None:
    for version in VERSIONS:
        has = not table_yaml(version)["commands"]["trtllm-bench prepare-dataset"].get("absent")
        out = run(version, BENCH, "--model", "m", "prepare-dataset", "--help", cwd=tmp_path)
        assert (out.returncode == 0) == has, (version, out.stderr)
        if not has:
            assert "No such command" in out.stderr


def test_prepare_dataset_subcommand_is_generated_where_a_table_has_it(tmp_path: Path) -> None:
    """No target release has it (see the tables), so this table is made here: the 1.2 one plus the subcommand as read
    at 0c8de69a (bench-1.2.yaml's note: the group's options without --tokenizer/--stdout; the tokenizer is --model)."""
    table = table_yaml("1.2.0")
    table["version"] = "1.3.0"
    table["commands"]["trtllm-bench"]["subcommands"].append("prepare-dataset")
    entry = dict(table["commands"]["prepare_dataset.py"])
    entry["options"] = [o for o in entry["options"] if o["name"] not in ("--tokenizer", "--stdout")]
    table["commands"]["trtllm-bench prepare-dataset"] = entry
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "bench-1.3.yaml").write_text(yaml.safe_dump(table))
    ckpt, _ = dataset(tmp_path, "1.2.0")
    argv = ["--model", "acme/llm", "--model_path", str(ckpt), "prepare-dataset", "--output", "d.jsonl",
            "token-norm-dist", "--num-requests", "4", "--input-mean", "7", "--output-mean", "3", "--input-stdev", "0",
            "--output-stdev", "0"]
    out = subprocess.run([sys.executable, "-S", str(BENCH), *argv], cwd=tmp_path, capture_output=True, text=True,
                         env={"STANDIN_VERSION": "1.3.0", "STANDIN_TABLES": str(tmp_path / "tables")}, check=False)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [(len(r["input_ids"]), r["output_tokens"]) for r in rows] == [(7, 3)] * 4
    out = subprocess.run([sys.executable, "-S", str(BENCH), *argv[:4], "prepare-dataset", "--stdout"], cwd=tmp_path,
                         capture_output=True, text=True, check=False,
                         env={"STANDIN_VERSION": "1.3.0", "STANDIN_TABLES": str(tmp_path / "tables")})
    assert out.returncode == 2 and "No such option" in out.stderr


@pytest.mark.parametrize(("script", "argv"), [
    (BENCH, ["--model", "m", "--x", "throughput"]),
    (BENCH, ["--model", "m", "throughput", "--x", "1"]),
    (BENCH, ["--model", "m", "build", "--x"]),
    (PREPARE, ["--tokenizer", "t", "--x", "token-norm-dist"]),
    (PREPARE, ["--tokenizer", "t", "token-norm-dist", "--x", "1"]),
])
def test_an_unknown_option_fails_as_click_does(script: Path, argv: list[str], tmp_path: Path) -> None:
    for version in ("0.16.0", "1.2.0"):
        out = run(version, script, *argv, cwd=tmp_path)
        assert out.returncode == 2 and "No such option" in out.stderr and "--x" in out.stderr, out.stderr


@pytest.mark.parametrize(("version", "script", "argv", "missing"), [
    ("0.16.0", BENCH, ["throughput", "--help"], "--model"),
    ("1.2.0", BENCH, ["--model_path", "p", "throughput"], "--model"),
    ("0.16.0", BENCH, ["--model", "m", "throughput", "--dataset", "."], "--engine_dir"),  # engine-only at 0.16
    ("0.19.0", PREPARE, ["--stdout", "token-norm-dist"], "--tokenizer"),
    ("0.19.0", PREPARE, ["--tokenizer", "t", "token-norm-dist", "--num-requests", "3", "--input-mean", "5",
                         "--output-mean", "5", "--input-stdev", "0"], "--output-stdev"),
])
def test_a_missing_required_option_fails_as_click_does(version: str, script: Path, argv: list[str], missing: str,
                                                         tmp_path: Path) -> None:
    out = run(version, script, *argv, cwd=tmp_path)
    assert out.returncode == 2 and "Missing option" in out.stderr and missing in out.stderr, out.stderr


# -- one run of each flow ------------------------------------------------------------------------------


def dataset(tmp_path: Path, version: str, isl: int = 128, osl: int = 128, n: int = 20) -> tuple[Path, Path]:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir(exist_ok=True)
    (ckpt / "config.json").write_text("{}")
    out = run(version, PREPARE, "--stdout", "--tokenizer", str(ckpt), "token-norm-dist", "--num-requests", str(n),
              "--input-mean", str(isl), "--output-mean", str(osl), "--input-stdev", "0", "--output-stdev", "0",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    path = tmp_path / "data.jsonl"
    path.write_text(out.stdout)
    assert [len(json.loads(line)["input_ids"]) for line in out.stdout.splitlines()] == [isl] * n
    return ckpt, path


def throughput(tmp_path: Path, version: str, flow: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """The engine flow (build, then throughput on the engine) or the PyTorch flow (``--backend pytorch``)."""
    ckpt, data = dataset(tmp_path, version)
    head = ["--model", "acme/llm", "--workspace", str(tmp_path / "ws")]
    if "--model_path" in expected(version, "trtllm-bench"):
        head += ["--model_path", str(ckpt)]
    if flow == "pytorch":
        return run(version, BENCH, *head, "throughput", "--dataset", str(data), "--backend", "pytorch", *extra,
                   cwd=tmp_path)
    built = run(version, BENCH, *head, "build", "--dataset", str(data), "--quantization", "FP8", "--tp_size", "2",
                cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    engine = tmp_path / "ws" / "acme" / "llm" / "tp_2_pp_1"
    assert json.loads((engine / "config.json").read_text())["build_config"]["max_seq_len"] == 256
    assert sorted(p.name for p in engine.glob("rank*.engine")) == ["rank0.engine", "rank1.engine"]
    options = table_yaml(version)["commands"]["trtllm-bench throughput"]["options"]
    pytorch_default = any(o["name"] == "--backend" and o.get("default") == "pytorch" for o in options)
    backend = ["--backend", "tensorrt"] if pytorch_default else []  # 1.x: the engine path must be asked for
    return run(version, BENCH, *head, "throughput", "--dataset", str(data), "--engine_dir", str(engine), *backend,
               *extra, cwd=tmp_path)


def test_nvidias_0_17_pytorch_command_runs_on_the_0_17_standin(tmp_path: Path) -> None:
    """NVIDIA's 0.17 docs run ``throughput --backend pytorch`` (``nvidia-docs_0.17_llama8b_pytorch.txt``)."""
    out = throughput(tmp_path, "0.17.0", "pytorch")
    assert out.returncode == 0, out.stderr
    assert "= PyTorch backend" in out.stdout


@pytest.mark.parametrize("version", VERSIONS)
def test_report_json_only_where_the_table_lists_it(version: str, tmp_path: Path) -> None:
    out = throughput(tmp_path, version, "engine", "--report_json", str(tmp_path / "report.json"))
    if "--report_json" in expected(version, "trtllm-bench throughput"):
        assert out.returncode == 0, out.stderr
        assert parse_json((tmp_path / "report.json").read_text()).num_requests == 20
    else:
        assert out.returncode == 2 and "No such option" in out.stderr and not (tmp_path / "report.json").exists()


# -- the printed report, held against the real samples ---------------------------------------------------------

_LOG = re.compile(r"^\[\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\]|^\[TensorRT-LLM\]")


def structure(text: str, first: str) -> list[tuple[str, list[str]]]:
    """(section title, labels in order) from the section ``first`` on; numbers and log lines left out."""
    lines = [line.rstrip() for line in text.splitlines() if not _LOG.match(line)]
    start = next(i for i, line in enumerate(lines) if line.strip() == f"= {first}")
    sections: list[tuple[str, list[str]]] = []
    for line in lines[start:]:
        if re.match(r"^=\s+\S", line):
            sections.append((line[1:].strip(), []))
        elif line.strip() and not re.fullmatch(r"[=-]+", line.strip()):
            label = re.split(r":\s", line + " ", maxsplit=1)[0] if ":" in line else line
            label = re.sub(r"-{3,}$", "", re.sub(r"\s+", " ", label)).strip()
            sections[-1][1].append("<machine line>" if ", memory " in label else label)
    return sections


SAMPLES = [  # sample, version, flow, options, the sample's first report section, does it run to the end
    ("gpu-recipes_a3ultra_llama405b_trt-0.17.0.post1_h200.txt", "0.17.0.post1", "engine", (), "ENGINE DETAILS", True),
    ("nvidia-docs_0.17_llama8b_trt_throughput.txt", "0.17.0", "engine", (), "ENGINE DETAILS", True),
    ("nvidia-docs_0.17_llama8b_pytorch.txt", "0.17.0", "pytorch", (), "PyTorch backend", True),
    ("nvidia-docs_0.19_qwen2-vl_pytorch_request-details.txt", "0.19.0", "pytorch", (), "REQUEST DETAILS", True),
    ("nvidia-perf-overview_0.21_streaming-breakdowns.txt", "0.19.0", "pytorch", ("--streaming",),
     "PERFORMANCE OVERVIEW", False),
    ("nvidia-blog_0.21.0rc0_llama8b_pytorch_streaming.txt", "0.21.0", "pytorch", ("--streaming", "--concurrency", "8"),
     "PYTORCH BACKEND", True),
    ("nvidia-blog_0.21.0rc0_overview_tabs.txt", "0.21.0", "pytorch", ("--streaming",), "PERFORMANCE OVERVIEW", False),
]


@pytest.mark.parametrize(("sample", "version", "flow", "options", "first", "whole"), SAMPLES,
                         ids=[s[0].split("_")[0] + "-" + s[1] for s in SAMPLES])
def test_standin_report_follows_the_real_sample_of_its_version(sample: str, version: str, flow: str,
                                                               options: tuple[str, ...], first: str, whole: bool,
                                                               tmp_path: Path) -> None:
    out = throughput(tmp_path, version, flow, *options)
    assert out.returncode == 0, out.stderr
    real = structure((REPORTS / sample).read_text(), first)
    ours = structure(out.stdout, first)
    if not whole:  # an excerpt: its last section may stop part way
        title, labels = real[-1]
        real[-1] = (title, labels)
        ours[len(real) - 1] = (ours[len(real) - 1][0], ours[len(real) - 1][1][:len(labels)])
    assert ours[:len(real)] == real, f"stand-in {version} vs the real sample {sample}"
    if whole:
        assert len(ours) == len(real), f"the stand-in prints sections the real {sample} does not: {ours[len(real):]}"


def test_1x_standin_report_follows_the_synthetic_1x_layout(tmp_path: Path) -> None:
    """No real 1.x sample exists: this compares with a SYNTHETIC layout built from reporting.py's format strings.

    Its DATASET DETAILS stops after the sequence count, so that section is held to the real 0.21 sample instead.
    """
    synthetic = (REPORTS / "synthetic_1.x-layout_from-reporting-py.txt").read_text()
    assert "SYNTHETIC" in synthetic.splitlines()[0]
    out = throughput(tmp_path, "1.0.0", "pytorch", "--streaming")
    assert out.returncode == 0, out.stderr
    ours = structure(out.stdout, "PYTORCH BACKEND")
    layout = structure(synthetic, "PYTORCH BACKEND")
    assert ours[:-1] == layout[:-1], "stand-in 1.0 vs the SYNTHETIC 1.x layout (not a real sample)"
    blog = structure((REPORTS / "nvidia-blog_0.21.0rc0_llama8b_pytorch_streaming.txt").read_text(), "PYTORCH BACKEND")
    assert ours[-1] == blog[-1] and ours[-1][0] == "DATASET DETAILS"


# -- what the stand-in prints, read back by the analysis' parser -------------------------------------------------


def printed(text: str) -> dict[str, float]:
    """Every ``label: number`` line of the printed report, as printed."""
    values = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z][^:\[]*(?:\[[^\]]*\][^:]*)?):\s+(-?\d+(?:\.\d+)?(?:E[+-]\d+)?)%?$", line.strip())
        if match:
            values[re.sub(r"\s+", " ", match.group(1))] = float(match.group(2))
    return values


@pytest.mark.parametrize(("version", "flow"), [("0.16.0", "engine"), ("0.17.0.post1", "pytorch"), ("0.19.0", "pytorch"),
                                               ("0.21.0", "engine"), ("1.2.0", "pytorch")])
def test_printed_report_parses_to_the_printed_numbers(version: str, flow: str, tmp_path: Path) -> None:
    out = throughput(tmp_path, version, flow, "--streaming")
    assert out.returncode == 0, out.stderr
    [report] = parse_text(out.stdout, source="stand-in")
    shown = printed(out.stdout)
    output = shown.get("Token Throughput (tokens/sec)") or shown["Total Output Throughput (tokens/sec)"]
    assert report.output_throughput == pytest.approx(output)
    assert report.request_throughput == pytest.approx(shown["Request Throughput (req/sec)"])
    assert report.total_latency_ms == pytest.approx(shown["Total Latency (ms)"])
    assert report.num_requests == shown["Number of requests"] == 20
    assert report.avg_isl == shown["Average Input Length (tokens)"] == 128
    ttft = shown.get("Average time-to-first-token (ms)") or shown["Average time-to-first-token [TTFT] (ms)"]
    assert report.ttft_ms == pytest.approx(ttft)
    assert report.kv_cache_percent == pytest.approx(90.0)


def test_tables_pick_the_nearest_release_at_or_below() -> None:
    assert cli_tables.load_table("0.18.2").version == "0.17.0.post1"
    assert cli_tables.load_table("0.20.0").version == "0.19.0"
    assert cli_tables.load_table("1.2.0rc2").version == "1.2.0"
    assert cli_tables.load_table("1.1.0").version == "1.0.0"
    assert cli_tables.load_table("0.19.0").command("trtllm-bench build").inherited_from == "0.17.0.post1"
    with pytest.raises(cli_tables.TableError, match="no CLI table at or below"):
        cli_tables.load_table("0.15.0")
