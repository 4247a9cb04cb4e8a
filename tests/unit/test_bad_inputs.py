"""Bad input, all of it: one table of wrong values, each refused with an error naming its field, nothing done.

Five areas, each with its own runner, so that "nothing applied or written" is checked the way it can be there:

- notebook parameters: the declared types are read from the notebooks' own parameters cells
  (``notebooks/*.ipynb``) and checked with :func:`recipelib.views.parameters.check_values`, with the
  choices and bounds each notebook is to pass (:data:`WIRING`); two rows run papermill end to end;
- settings: :func:`recipelib.settings.load_settings` from a file, the environment or arguments; the
  settings file is left byte for byte as it was and nothing else appears beside it;
- launcher config: ``python launcher/launch.py --config F --dry-run``, as in the pod; exit code 2 (a
  configuration error), the field in its output, nothing under the workspace or the results folder;
- deploy: :func:`recipelib.plan_benchmark` then :func:`recipelib.deploy` with ``dry_run=True`` and no
  cluster at all, so no cluster call can happen; no file in ``out_dir``;
- reports: a run folder read with :func:`recipelib.results.load_local`: ``strict=True`` raises a
  ReportError naming the file and the field; ``strict=False`` lists the experiment as missing, with a
  warning, and returns no row; the folder is unchanged.

Rows that fail because of code outside recipelib.results/settings/views are marked
``xfail(strict=True)`` with the owner area and what is missing; the lead removes the marks as those land.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import NOTEBOOKS, REPO, REPORTS

from recipelib import deploy, plan_benchmark
from recipelib.errors import ConfigError, ReportError
from recipelib.results import load_local
from recipelib.results.reports import parse_json, parse_text
from recipelib.settings import load_settings
from recipelib.views.parameters import check_values, declared

REAL_405B = REPORTS / "gpu-recipes_a3ultra_llama405b_trt-0.17.0.post1_h200.txt"
QWEN_019 = REPORTS / "nvidia-docs_0.19_qwen2-vl_pytorch_request-details.txt"
M405 = "meta-llama/Llama-3.1-405B"


@dataclass(frozen=True)
class Row:
    area: str
    run: Callable[[Path], None]
    field: str


def xfail(row: Row, reason: str) -> Any:
    return pytest.param(row, marks=pytest.mark.xfail(strict=True, reason=reason))


# -- notebook parameters ---------------------------------------------------------------------------------

WIRING: dict[str, dict[str, Any]] = {
    "deploy": {"choices": {"backend": ("", "tensorrt", "pytorch")},
               "bounds": {"tp_size": (0, 8), "pp_size": (0, 8), "gpus": (0, 8)}},
    "monitor": {"choices": {"widgets": ("auto", "yes", "no")}, "bounds": {"timeout_s": (1, None)}},
    "build-image": {"bounds": {"follow_timeout_s": (0, None), "poll_s": (0.01, None), "timeout_s": (1, None),
                               "disk_size_gb": (10, None)}},
    "analyze": {}, "cleanup": {}, "setup": {},
}
"""What each notebook passes to ``parameters.check(globals(), **WIRING[name])`` (see the report to the lead)."""


def parameters_cell(notebook: str) -> str:
    nb = json.loads((NOTEBOOKS / f"{notebook}.ipynb").read_text())
    [cell] = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    return "".join(cell["source"])


def param(notebook: str, name: str, value: Any) -> Row:
    def run(tmp: Path) -> None:
        types = declared(parameters_cell(notebook))
        assert name in types, f"{notebook}.ipynb declares no parameter {name!r}"
        check_values({name: value}, types, **WIRING[notebook])

    return Row("parameter", run, name)


def papermill_row(notebook: str, name: str, value: Any, out_name: str) -> Row:
    """The whole notebook under papermill: the run fails at the check, before writing ``out_dir``."""

    def run(tmp: Path) -> None:
        import papermill

        out = tmp / out_name
        with pytest.raises(papermill.PapermillExecutionError) as err:
            papermill.execute_notebook(str(NOTEBOOKS / f"{notebook}.ipynb"), str(tmp / "out.ipynb"),
                                       parameters={name: value, "out_dir": str(out)}, cwd=str(tmp),
                                       progress_bar=False, kernel_name="python3")
        assert err.value.ename == "ConfigError" and f"{name}:" in err.value.evalue
        assert not out.exists()
        raise ConfigError(name, err.value.evalue)  # the row's own assertion reads the field

    return Row("parameter", run, name)


PARAMETER_ROWS = [
    param("deploy", "dry_run", "yes"),  # the example: any string was a dry run
    param("deploy", "dry_run", "false"),
    param("deploy", "dry_run", 1),
    param("deploy", "tp_size", "3"),
    param("deploy", "tp_size", 3.0),
    param("deploy", "tp_size", True),
    param("deploy", "gpus", 9),
    param("deploy", "pp_size", -1),
    param("deploy", "backend", "tensorrt-llm"),
    param("deploy", "model", None),
    param("deploy", "overrides", "rdma=false"),
    param("deploy", "experiments", 128),
    param("deploy", "force", "no"),
    param("analyze", "offline", "no"),
    param("analyze", "strict", "False"),
    param("build-image", "follow_timeout_s", 1.5),
    param("build-image", "poll_s", float("nan")),
    param("build-image", "disk_size_gb", "1000"),
    param("monitor", "widgets", "maybe"),
    param("monitor", "timeout_s", 0),
    param("cleanup", "delete_secret", "yes"),
    param("setup", "save", "true"),
]
PAPERMILL_ROWS = [
    papermill_row("deploy", "dry_run", "yes", "deploy-manifests"),
    papermill_row("analyze", "strict", "no", "analysis-output"),
]


# -- settings -------------------------------------------------------------------------------------------


def setting(field: str, *, file: str | None = None, env: dict[str, str] | None = None,
            **explicit: Any) -> Row:
    def run(tmp: Path) -> None:
        path = tmp / "settings.yaml"
        if file is not None:
            path.write_text(file)
        before = sorted(tmp.iterdir())
        content = path.read_bytes() if path.exists() else None
        try:
            load_settings(path=path, environ=env or {}, **explicit)
        finally:
            assert sorted(tmp.iterdir()) == before
            assert (path.read_bytes() if path.exists() else None) == content

    return Row("setting", run, field)


SETTING_ROWS = [
    setting("TRTLLM_VERSION", env={"TRTLLM_VERSION": "v0.17.0 "}),  # the example: no silent trimming
    setting("GCS_BUCKET", gcs_bucket=" my-bucket"),
    setting("NAMESPACE", file='NAMESPACE: "team-a\\n"\n'),
    setting("KUBE_CONTEXT", kube_context="ctx\tx"),
    setting("PROJECT_ID", project_id="My_Project"),
    setting("REGION", region="us-central"),
    setting("CLUSTER_REGION", cluster_region="uscentral1"),
    setting("CLUSTER_NAME", cluster_name="A3-Ultra"),
    setting("GCS_BUCKET", gcs_bucket="gs://my-bucket"),
    setting("GCS_BUCKET", gcs_bucket="my-google-results"),
    setting("GCS_BUCKET", file="GCS_BUCKET: [a, b]\n"),
    setting("ARTIFACT_REGISTRY", artifact_registry="https://us-docker.pkg.dev/p/r"),
    setting("ARTIFACT_REGISTRY", artifact_registry="us-central1-docker.pkg.dev/my-project"),
    setting("TRTLLM_IMAGE", trtllm_image="TRTLLM"),
    setting("TRTLLM_VERSION", trtllm_version="v0.17.0:latest"),
    setting("TRTLLM_VERSION", file="TRTLLM_VERSION: 0.10\n"),  # YAML's float 0.1: the text written is lost
    setting("TRITON_SERVER_VERSION", triton_server_version="25.02 trtllm"),
    setting("TRTLLM_IMAGE_DIGEST", trtllm_image_digest="sha256:abc"),
    setting("KUEUE_NAME", kueue_name="Queue_A"),
    setting("NAMESPACE", namespace="Default"),
    setting("RESULTS_PREFIX", results_prefix="gs://b/x"),
    setting("RESULTS_PREFIX", results_prefix="team//runs"),
    setting("KUBECONFIG", kubeconfig="/nonexistent/kubeconfig"),
    setting("GCS_ENDPOINT", gcs_endpoint="localhost:4443"),
    setting("TP-SIZE", file="TP-SIZE: 8\n"),
    setting("SANDBOX", file="SANDBOX: 'yes'\n"),
    setting("PID", file="PID: -1\n"),
]


# -- launcher config --------------------------------------------------------------------------------------


def launcher_base(tmp: Path) -> dict[str, Any]:
    """The config deploy writes for the recipe (tests/launcher/test_launcher_config.py's), paths under tmp."""
    return {
        "release": "bench-llama", "run_id": "run-abc123", "model": M405, "backend": "tensorrt", "tp_size": 8,
        "pp_size": 1, "ep_size": None, "quantization": "FP8", "kv_cache_free_gpu_mem_fraction": 0.95,
        "max_batch_size": None, "max_num_tokens": None, "checkpoint_dir": str(tmp / "models"),
        "workspace": str(tmp / "workspace"), "engine_cache_dir": str(tmp / "engines"),
        "results": str(tmp / "results"),
        "experiments": [{"isl": 128, "osl": 128, "num_requests": 1000, "concurrency": None, "streaming": False}],
    }


def launcher(field: str, mutate: Callable[[dict[str, Any]], Any]) -> Row:
    def run(tmp: Path) -> None:
        config = launcher_base(tmp)
        mutate(config)
        path = tmp / "config.json"
        path.write_text(json.dumps(config))
        done = subprocess.run([sys.executable, str(REPO / "launcher" / "launch.py"), "--config", str(path),
                               "--dry-run"], capture_output=True, text=True, timeout=60, cwd=tmp)
        for folder in ("workspace", "results", "engines", "models"):
            assert not (tmp / folder).exists() or not any((tmp / folder).rglob("*")), folder
        if done.returncode == 2:
            lines = [line for line in done.stdout.splitlines() if f"] {field}: " in line]
            assert lines, done.stdout
            raise ConfigError(field, lines[0])
        assert done.returncode == 0, done.stdout + done.stderr  # anything else is a crash, not a refusal

    return Row("launcher", run, field)


def set_key(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda c: c.__setitem__(key, value)


def set_exp(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda c: c["experiments"][0].__setitem__(key, value)


LAUNCHER_ROWS = [
    # the example, with the 405B's shape as deploy writes it (model_shape): 128 heads, not divisible by 3
    launcher("tp_size", lambda c: c.update(tp_size=3, model_shape={"attention_heads": 128, "layers": 126})),
    launcher("pp_size", lambda c: c.update(tp_size=1, pp_size=4, model_shape={"layers": 2})),
    launcher("model_shape.heads", set_key("model_shape", {"heads": 128})),
    launcher("tp-size", set_key("tp-size", 8)),  # the recipe's own bug: a spelling silently ignored
    launcher("tp_size", set_key("tp_size", "8")),
    launcher("tp_size", set_key("tp_size", 16)),
    launcher("pp_size", set_key("pp_size", -1)),
    launcher("experiments", set_key("experiments", [])),
    launcher("experiments[0].isl", set_exp("isl", 0)),
    launcher("experiments[0].osl", set_exp("osl", "128")),
    launcher("experiments[0].num_requests", set_exp("num_requests", True)),
    launcher("experiments[0].concurrency", set_exp("concurrency", -1)),
    launcher("experiments[0].streaming", set_exp("streaming", "yes")),
    launcher("experiments[0].input_len", set_exp("input_len", 128)),
    launcher("kv_cache_free_gpu_mem_fraction", set_key("kv_cache_free_gpu_mem_fraction", 1.5)),
    launcher("backend", set_key("backend", "vllm")),
    launcher("results", set_key("results", "s3://bucket/x")),
    launcher("release", set_key("release", "Bad_Name")),
    launcher("run_id", set_key("run_id", "")),
    launcher("model", set_key("model", f"{M405} ")),
    launcher("quantization", set_key("quantization", "INT3")),
    launcher("max_batch_size", set_key("max_batch_size", -5)),
    launcher("workspace", set_key("workspace", "relative/path")),
]


# -- deploy -----------------------------------------------------------------------------------------------


def deploying(field: str, model: str = M405, **kwargs: Any) -> Row:
    def run(tmp: Path) -> None:
        settings = load_settings(path=tmp / "none.yaml", environ={}, gcs_bucket="my-results",
                                 artifact_registry="us-central1-docker.pkg.dev/my-project/my-repo")
        out = tmp / "manifests"
        try:
            plan = plan_benchmark(settings, model, user="alice", **kwargs)
            deploy(plan, None, dry_run=True, out_dir=out)  # no cluster: nothing can be applied
        finally:
            assert not out.exists() or not any(out.iterdir())

    return Row("deploy", run, field)


DEPLOY_ROWS = [
    deploying("tp_size", tp_size=3),  # the example
    deploying("tp_size", tp_size=1),  # 405B FP8 weights do not fit one H200
    deploying("tp_size", model="meta-llama/Llama-3.1-8B", tp_size=5),
    deploying("tp_size", tp_size="8"),
    deploying("tp_size", tp_size=True),
    deploying("pp_size", pp_size="2"),
    deploying("gpus", gpus=9),
    deploying("gpus", tp_size=8, gpus=4),
    deploying("experiments[0]", experiments="128/128"),
    deploying("experiments", experiments="nvidia-sweeep"),
    deploying("experiments[0].isl", experiments=[{"isl": 0, "osl": 128, "num_requests": 10}]),
    deploying("experiments[0]", experiments=[{"isl": 128, "osl": 128, "num_requests": 10, "foo": 1}]),
    deploying("experiments", experiments=128),
    deploying("model", model="llama"),
    deploying("model", model=f"{M405} "),
    deploying("release", release="Bad_Name"),
    deploying("run_id", run_id="Run 1"),
    deploying("quantization", quantization="INT3"),
    deploying("backend", backend="vllm"),
    deploying("overrides.no_such_key", overrides={"no_such_key": 1}),
    deploying("overrides.backoff_limit", overrides={"backoff_limit": "2"}),
    deploying("overrides", overrides="rdma=false"),
    deploying("dry_run", dry_run="yes"),  # the example
]


# -- reports ----------------------------------------------------------------------------------------------


def good_json() -> dict[str, Any]:
    """The smallest ``--report_json`` this reader accepts (keys of ReportUtility.get_statistics_dict())."""
    return {
        "engine": {"model": "meta-llama/Llama-3.1-8B", "backend": "pytorch", "version": "0.21.0"},
        "world_info": {"tp_size": 1, "pp_size": 1, "kv_cache_percentage": 0.9},
        "request_info": {"num_requests": 100, "avg_input_length": 128.0, "avg_output_length": 128.0},
        "performance": {"total_latency_ms": 1155.5715, "request_throughput_req_s": 86.5373,
                        "system_output_throughput_tok_s": 11076.77},
        "streaming_metrics": {"avg_ttft_ms": 162.6706},
        "dataset": {"num_requests": 100},
    }


def report_row(field: str, name: str, content: bytes) -> Row:
    def run(tmp: Path) -> None:
        run_dir = tmp / "run"
        (run_dir / "exp").mkdir(parents=True)
        (run_dir / "exp" / name).write_bytes(content)
        before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
        with pytest.raises(ReportError) as err:
            load_local(run_dir, strict=True)
        assert name in str(err.value) and err.value.field == field
        results = load_local(run_dir, strict=False)
        assert results.frame.empty and [m.experiment for m in results.missing] == ["exp"]
        assert f"{field}:" in results.missing[0].reason
        assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
        raise err.value

    return Row("report", run, field)


def text_cut(field: str, source: Path, cut_after: str, drop: int = 0) -> Row:
    text = source.read_text()
    end = text.index(cut_after) + len(cut_after) - drop
    return report_row(field, "report.txt", text[:end].encode())


def text_replaced(field: str, old: str, new: str) -> Row:
    text = REAL_405B.read_text()
    assert old in text
    return report_row(field, "report.txt", text.replace(old, new).encode())


def json_doc(field: str, change: Callable[[dict[str, Any]], Any]) -> Row:
    doc = good_json()
    change(doc)
    return report_row(field, "report.json", json.dumps(doc).encode())


def json_text(field: str, text: str | bytes) -> Row:
    return report_row(field, "report.json", text if isinstance(text, bytes) else text.encode())


def put(section: str, key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d[section].__setitem__(key, value)


GOOD = json.dumps(good_json())
REPORT_ROWS = [
    # the example: cut in the middle of its last number (980980.5121 read as 98098: 10x wrong)
    text_cut("total_latency_ms", REAL_405B, "Total Latency (ms):             98098"),
    text_cut("total_latency_ms", REAL_405B, "Total Latency (ms):             980980.5121\n"),
    text_cut("total_latency_ms", REAL_405B, "Request Throughput (req/sec):   30.5"),  # missing what follows
    text_cut("latency_percentiles_ms.p90", QWEN_019, "[Latency] P90    : 5514.4"),
    text_cut("DATASET DETAILS", QWEN_019, "Number of Sequences:  10\n"),
    text_replaced("output_throughput", "3914.4509", "nan"),
    text_replaced("request_throughput", "Throughput (req/sec):   30.5816", "Throughput (req/sec):   <value>"),
    text_replaced("tp_size", "TP Size:                8", "TP Size:                1e300"),
    report_row("report_text", "report.txt", REAL_405B.read_bytes().replace(b"Token", b"\xffToken")),
    json_doc("performance", lambda d: d.__setitem__("performance", [1, 2])),  # the issue: wrong-type sections
    json_doc("streaming_metrics", lambda d: d.__setitem__("streaming_metrics", "fast")),
    json_doc("engine", lambda d: d.__setitem__("engine", 5)),
    json_doc("world_info", lambda d: d.__setitem__("world_info", True)),
    json_doc("request_info", lambda d: d.__setitem__("request_info", [])),
    json_doc("dataset", lambda d: d.__setitem__("dataset", "synthetic")),
    json_doc("machine", lambda d: d.__setitem__("machine", ["H200"])),
    json_doc("model", put("engine", "model", 123)),
    json_doc("backend", put("engine", "backend", ["pytorch"])),
    json_doc("trtllm_version", put("engine", "version", 0.21)),
    json_doc("latency_percentiles_ms", put("performance", "request_latency_percentiles_ms", "fast")),
    json_doc("tp_size", put("world_info", "tp_size", 10**30)),
    json_doc("num_requests", put("request_info", "num_requests", 1.5)),
    json_doc("kv_cache_percent", put("world_info", "kv_cache_percentage", "0.9")),
    json_doc("ttft_ms", put("streaming_metrics", "avg_ttft_ms", {"value": 1})),
    json_text("total_latency_ms", GOOD.replace("1155.5715", "1" + "0" * 400)),  # the issue: huge numbers
    json_text("request_throughput", GOOD.replace("86.5373", "1e999")),
    json_text("report_json", GOOD.replace("1155.5715", "9" * 5000)),
    json_text("report_json", "[" * 100_000 + "]" * 100_000),  # the issue: deep nesting
    json_text("report_json", '{"performance": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001),
    json_text("report_json", GOOD.replace("86.5373", "NaN")),
    json_text("report_json", GOOD.replace("86.5373", "Infinity")),
    json_text("report_json", GOOD.replace("86.5373", "-Infinity")),
    json_text("report_json", GOOD.encode("utf-16")),  # bytes that are not UTF-8
    json_text("report_json", b"\xff\xfe\x00garbage"),
    json_text("report_json", b""),
    json_text("report_json", "[1, 2]"),
    json_text("report_json", '{"performance": '),
]


def direct(field: str, call: Callable[[], Any]) -> Row:
    return Row("report", lambda tmp: call(), field)


DIRECT_ROWS = [
    direct("report_text", lambda: parse_text(None, source="x.txt")),  # type: ignore[arg-type]
    direct("report_text", lambda: parse_text(b"\xc3\x28 PERFORMANCE", source="x.txt")),
    direct("report_json", lambda: parse_json(None, source="x.json")),  # type: ignore[arg-type]
    direct("total_latency_ms", lambda: parse_json(
        {**good_json(), "performance": {**good_json()["performance"], "total_latency_ms": _nested(5000)}})),
]


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


ROWS = [*PARAMETER_ROWS, *PAPERMILL_ROWS, *SETTING_ROWS, *LAUNCHER_ROWS, *DEPLOY_ROWS, *REPORT_ROWS, *DIRECT_ROWS]


def _row(item: Any) -> Row:
    return item.values[0] if hasattr(item, "values") else item


def _id(item: Any) -> str:
    return f"{item.area}-{item.field}" if isinstance(item, Row) else str(item)


def test_the_table_holds_at_least_60_distinct_bad_inputs() -> None:
    assert len(ROWS) >= 60
    areas = {_row(r).area for r in ROWS}
    assert areas == {"parameter", "setting", "launcher", "deploy", "report"}


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_bad_input_is_refused_naming_its_field(row: Row, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="recipelib")
    with pytest.raises((ConfigError, ReportError)) as err:
        row.run(tmp_path)
    assert err.value.field == row.field, str(err.value)
    assert str(err.value).strip()
    if row.area == "report" and err.value.source and err.value.source.startswith(str(tmp_path)):
        assert any("no report" in r.getMessage() for r in caplog.records)  # strict=False warned


@pytest.mark.parametrize("notebook", sorted(WIRING))
def test_every_notebook_default_passes_its_own_declared_types(notebook: str) -> None:
    """The check the notebooks will call understands every annotation they use, and accepts their defaults."""
    from IPython.core.interactiveshell import InteractiveShell

    from recipelib.views import parameters

    shell = InteractiveShell.instance()
    shell.user_ns.clear()
    shell.init_user_ns()
    result = shell.run_cell(parameters_cell(notebook))
    assert result.success
    values = parameters.check(shell.user_ns, **WIRING[notebook])  # reads the kernel's __annotations__
    assert set(values) == set(declared(parameters_cell(notebook)))
    first = next(n for n, t in declared(parameters_cell(notebook)).items() if t == "bool")
    shell.run_cell(f"{first} = 'no'")  # what papermill's injected cell holds for -p {first} no
    with pytest.raises(ConfigError) as err:
        parameters.check(shell.user_ns, **WIRING[notebook])
    assert err.value.field == first and "True" in err.value.message
