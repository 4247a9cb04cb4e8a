"""The results store against a real Cloud Storage API (fake-gcs-server on loopback), and local folders.

Network calls are counted at the HTTP session the storage client sends through, so "a second load from
the cache makes no network call" is measured, not assumed; one test also stops the server outright.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from helpers import REPORTS

from recipelib.errors import CloudError
from recipelib.results import (
    COLUMNS,
    ResultsError,
    ResultsStore,
    examples_dir,
    layout,
    load_examples,
    load_local,
    load_results,
)
from recipelib.results.reports import ReportError
from recipelib.sandbox.gcs import LocalGCS

REAL_405B = (REPORTS / "gpu-recipes_a3ultra_llama405b_trt-0.17.0.post1_h200.txt").read_text()
DOCS_8B = (REPORTS / "nvidia-docs_0.17_llama8b_trt_throughput.txt").read_text()
BLOG_021 = (REPORTS / "nvidia-blog_0.21.0rc0_llama8b_pytorch_streaming.txt").read_text()
PREFIX = "trtllm-benchmarks"


class CountingSession(requests.Session):
    """Records every HTTP request the storage client makes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        self.calls.append((method, url))
        return super().request(method, url, *args, **kwargs)


def counting_client(url: str) -> tuple[storage.Client, CountingSession]:
    session = CountingSession()
    client = storage.Client(project="local-sandbox", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": url}, _http=session)
    return client, session


class Untouchable:
    """A stand-in client that fails the test if anything at all is asked of it."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the storage client was used ({name}) although everything was cached")


def put(bucket, name: str, data: str | bytes) -> None:
    bucket.blob(name).upload_from_string(data, if_generation_match=0)  # create-only, like the launcher


GPUS = {"available": True, "count": 8, "gpus": [{"index": str(i), "name": "NVIDIA H200"} for i in range(8)]}


def spec(experiment: str) -> dict:
    """The launcher's ``experiment`` record for an experiment id."""
    return {"id": experiment, **layout.parse_experiment_id(experiment)}


def run_doc(release: str, run_id: str, experiments: list[str], *, status: str = "succeeded",
            started: str | None = "2025-05-28T22:40:28Z") -> dict:
    """A schema-1 run.json, as launcher/runner.py writes it."""
    return {"schema": 1, "release": release, "run_id": run_id, "model": "meta-llama/Llama-3.1-405B",
            "status": status, "exit_code": 0 if status == "succeeded" else 1, "started": started,
            "finished": "2025-05-28T23:40:59Z", "experiments": [spec(e) | {"status": status} for e in experiments],
            "versions": {"tensorrt_llm": "0.17.0.post1"}, "gpus": GPUS}


def metadata_doc(release: str, run_id: str, experiment: str, *, status: str = "succeeded",
                 error: str | None = None) -> dict:
    """A schema-1 metadata.json, as launcher/runner.py writes it."""
    return {"schema": 1, "release": release, "run_id": run_id, "model": "meta-llama/Llama-3.1-405B",
            "experiment": spec(experiment), "status": status, "error": error, "started": "2025-05-28T22:41:00Z",
            "finished": "2025-05-28T23:40:00Z", "gpus": GPUS}


def upload_run(bucket, release: str, run_id: str, experiments: dict[str, dict[str, str]], *,
               started: str = "2025-05-28T22:40:28Z", running: bool = False) -> None:
    """A run's objects; ``running`` leaves out run.json, which the launcher writes when the run is over."""
    if not running:
        put(bucket, f"{PREFIX}/{release}/{run_id}/run.json",
            json.dumps(run_doc(release, run_id, list(experiments), started=started)))
    for experiment, files in experiments.items():
        for name, content in files.items():
            put(bucket, f"{PREFIX}/{release}/{run_id}/{experiment}/{name}", content)


def report_json(throughput: float) -> str:
    return json.dumps({
        "engine": {"model": "meta-llama/Llama-3.1-405B", "version": "0.17.0.post1", "backend": "TRT",
                   "quantization": "FP8", "kv_cache_dtype": "FP8"},
        "world_info": {"tp_size": 8, "pp_size": 1},
        "request_info": {"num_requests": 3000, "avg_input_length": 128.0, "avg_output_length": 2048.0},
        "performance": {"total_latency_ms": 3000 * 2048 / throughput * 1000, "request_throughput_req_s":
                        throughput / 2048, "system_output_throughput_tok_s": throughput},
    })


@pytest.fixture
def bucket_name(gcs_bucket) -> str:
    metadata = metadata_doc("alice-llama-405b", "20250528-224028", "isl128-osl128-n30000")
    upload_run(gcs_bucket, "alice-llama-405b", "20250528-224028", {
        "isl128-osl128-n30000": {"report.txt": REAL_405B, "launcher.log": "RECIPE_EVENT {}\n",
                                 "metadata.json": json.dumps(metadata)},
        # both files: report.json must win over report.txt
        "isl128-osl2048-n3000": {"report.json": report_json(5001.5), "report.txt": REAL_405B},
    })
    upload_run(gcs_bucket, "alice-llama-405b", "20250101-000000", {"isl128-osl128-n30000": {"report.txt": REAL_405B}},
               started="2025-01-01T00:00:00Z")
    return gcs_bucket.name


def test_list_runs_newest_first_with_their_documents(gcs, bucket_name, tmp_path) -> None:
    store = ResultsStore(gcs.client(), bucket_name, PREFIX, tmp_path / "cache")
    runs = store.list_runs()
    assert [r.key for r in runs] == ["alice-llama-405b/20250528-224028", "alice-llama-405b/20250101-000000"]
    first = runs[0]
    assert (first.model, first.status, first.gpu, first.gpu_count) == ("meta-llama/Llama-3.1-405B", "succeeded",
                                                                       "H200", 8)
    assert first.experiments == ("isl128-osl128-n30000", "isl128-osl2048-n3000")
    assert first.started.isoformat() == "2025-05-28T22:40:28+00:00" and first.ended


def test_load_prefers_report_json_and_fills_the_frame(gcs, bucket_name, tmp_path) -> None:
    store = ResultsStore(gcs.client(), bucket_name, PREFIX, tmp_path / "cache")
    results = store.load("latest")
    frame = results.frame
    assert list(frame.columns) == list(COLUMNS)
    assert list(frame["experiment"]) == ["isl128-osl128-n30000", "isl128-osl2048-n3000"]
    text_row, json_row = frame.iloc[0], frame.iloc[1]
    assert text_row["output_throughput_tok_s"] == 3914.4509 and text_row["source"].endswith("/report.txt")
    assert json_row["output_throughput_tok_s"] == 5001.5 and json_row["source"].endswith("/report.json")
    assert json_row["report_layout"] == "json"
    assert (json_row["isl"], json_row["osl"], json_row["num_requests"]) == (128, 2048, 3000)
    assert (text_row["gpu"], text_row["gpu_count"], text_row["tp_size"]) == ("H200", 8, 8)
    assert text_row["run"] == "alice-llama-405b/20250528-224028"
    assert text_row["source"].startswith(f"gs://{bucket_name}/{PREFIX}/alice-llama-405b/")
    cached = store.run_dir("alice-llama-405b", "20250528-224028")
    assert (cached / "isl128-osl128-n30000" / "launcher.log").read_text() == "RECIPE_EVENT {}\n"


def test_second_load_from_the_cache_makes_no_network_call(gcs, bucket_name, tmp_path) -> None:
    client, session = counting_client(gcs.url)
    first = ResultsStore(client, bucket_name, PREFIX, tmp_path / "cache").load("alice-llama-405b/20250528-224028")
    assert len(session.calls) > 0  # it did download

    client, session = counting_client(gcs.url)
    second = ResultsStore(client, bucket_name, PREFIX, tmp_path / "cache").load("alice-llama-405b/20250528-224028")
    assert session.calls == []
    assert second.frame.equals(first.frame)

    # and no client at all is needed, for a run id alone as well as release/run_id
    third = ResultsStore(Untouchable(), bucket_name, PREFIX, tmp_path / "cache").load("20250528-224028")
    assert third.frame["output_throughput_tok_s"].tolist() == first.frame["output_throughput_tok_s"].tolist()


def test_cached_runs_load_offline_after_the_server_is_gone(tmp_path) -> None:
    server = LocalGCS(root=tmp_path / "gcs").start()
    try:
        bucket = server.client().create_bucket(f"offline-{uuid.uuid4().hex[:8]}")
        upload_run(bucket, "rel", "run-a", {"isl128-osl128-n30000": {"report.txt": REAL_405B}})
        upload_run(bucket, "rel", "run-b", {"isl128-osl128-n3000": {"report.txt": DOCS_8B}},
                   started="2025-06-01T00:00:00Z")
        online = ResultsStore(server.client(), bucket.name, PREFIX, tmp_path / "cache").load("rel/run-a")
    finally:
        server.stop()
    with pytest.raises(CloudError):  # the server really is gone
        ResultsStore(server.client(), bucket.name, PREFIX, tmp_path / "cache", retry_s=0.5).list_runs()
    store = ResultsStore(server.client(), bucket.name, PREFIX, tmp_path / "cache")
    offline = store.load("latest", offline=True)  # latest among the cached runs: run-b was never fetched
    assert offline.frame["output_throughput_tok_s"].tolist() == online.frame["output_throughput_tok_s"].tolist()
    assert [r.key for r in store.list_runs(offline=True)] == ["rel/run-a"]
    with pytest.raises(ResultsError, match="not in the local cache"):
        store.load("rel/run-b", offline=True)


def test_a_running_run_is_refreshed_until_it_ends(gcs, gcs_bucket, tmp_path) -> None:
    """No run.json yet: the second experiment's folder holds only its log (the launcher uploads the report
    after it), so it is listed as missing, and the run is looked at again on the next load."""
    upload_run(gcs_bucket, "rel", "live", {"isl128-osl128-n30000": {"report.txt": REAL_405B},
                                           "isl128-osl128-n3000": {"launcher.log": "RECIPE_EVENT {}\n"}},
               running=True)
    store = ResultsStore(gcs.client(), gcs_bucket.name, PREFIX, tmp_path / "cache")
    first = store.load("rel/live")
    assert len(first.frame) == 1
    assert [(m.experiment, m.reason) for m in first.missing] == [("isl128-osl128-n3000",
                                                                  "no report.json or report.txt")]
    assert [(r.status, r.ended) for r in first.runs] == [(None, False)]
    put(gcs_bucket, f"{PREFIX}/rel/live/isl128-osl128-n3000/report.txt", DOCS_8B)
    client, session = counting_client(gcs.url)
    second = ResultsStore(client, gcs_bucket.name, PREFIX, tmp_path / "cache").load("rel/live")
    assert len(second.frame) == 2 and not second.missing
    assert session.calls  # not complete yet: it had to look again


def test_a_bad_report_names_the_object_and_the_field(gcs, gcs_bucket, tmp_path) -> None:
    broken = REAL_405B.replace("Token Throughput (tokens/sec):  3914.4509", "Token Throughput (tokens/sec):  n/a")
    upload_run(gcs_bucket, "rel", "bad", {"isl128-osl128-n30000": {"report.txt": broken},
                                          "isl128-osl128-n3000": {"report.txt": DOCS_8B}})
    store = ResultsStore(gcs.client(), gcs_bucket.name, PREFIX, tmp_path / "cache")
    with pytest.raises(ReportError) as err:
        store.load("rel/bad")
    assert err.value.field == "output_throughput"
    assert f"gs://{gcs_bucket.name}/{PREFIX}/rel/bad/isl128-osl128-n30000/report.txt" in str(err.value)
    lenient = store.load("rel/bad", strict=False)
    assert lenient.frame["experiment"].tolist() == ["isl128-osl128-n3000"]
    assert "output_throughput" in lenient.missing[0].reason


def test_reads_the_launchers_records(gcs, gcs_bucket, tmp_path) -> None:
    """run.json / metadata.json as launcher/runner.py writes them (schema 1), a failed experiment and the
    per-attempt records under .attempts/."""
    base = f"{PREFIX}/carol-llama-405b/20250601T000000Z"
    gpus = {"available": True, "count": 8,
            "gpus": [{"index": str(i), "name": "NVIDIA H200", "memory.total": "143771 MiB"} for i in range(8)]}
    common = {"schema": 1, "release": "carol-llama-405b", "run_id": "20250601T000000Z", "model":
              "meta-llama/Llama-3.1-405B", "backend": "tensorrt", "tp_size": 8, "pp_size": 1, "quantization": "FP8",
              "versions": {"tensorrt_llm": "0.17.0.post1"}, "gpus": gpus}
    ok = {"id": "isl128-osl128-n30000", "index": 1, "isl": 128, "osl": 128, "num_requests": 30000,
          "concurrency": None, "streaming": False}
    bad = {"id": "isl20000-osl2000-n1000", "index": 2, "isl": 20000, "osl": 2000, "num_requests": 1000,
           "concurrency": None, "streaming": False}
    error = "trtllm-bench exited 0 but wrote no report (out of memory)"
    put(gcs_bucket, f"{base}/.attempts/a1/started.json", json.dumps({"attempt": "a1"}))
    put(gcs_bucket, f"{base}/{ok['id']}/report.txt", REAL_405B)
    times = {"started": "2025-06-01T00:10:00.000Z", "finished": "2025-06-01T01:00:00.000Z"}
    put(gcs_bucket, f"{base}/{ok['id']}/metadata.json",
        json.dumps(common | times | {"experiment": ok, "status": "succeeded", "error": None}))
    put(gcs_bucket, f"{base}/{bad['id']}/benchmark.log", "CUDA out of memory\n")
    put(gcs_bucket, f"{base}/{bad['id']}/metadata.json",
        json.dumps(common | times | {"experiment": bad, "status": "failed", "error": error}))
    put(gcs_bucket, f"{base}/run.json", json.dumps(common | {
        "status": "failed", "exit_code": 1, "started": "2025-06-01T00:00:00.123Z", "finished": "2025-06-01T02:00:00Z",
        "experiments": [ok | {"status": "succeeded"}, bad | {"status": "failed", "error": error}]}))
    store = ResultsStore(gcs.client(), gcs_bucket.name, PREFIX, tmp_path / "cache")
    [info] = store.list_runs()
    assert (info.gpu, info.gpu_count, info.status, info.ended) == ("H200", 8, "failed", True)
    assert info.experiments == (ok["id"], bad["id"])
    results = store.load("latest")
    [row] = results.frame.to_dict("records")
    assert (row["experiment"], row["isl"], row["osl"], row["gpu"]) == (ok["id"], 128, 128, "H200")
    assert [(m.experiment, m.reason) for m in results.missing] == [(bad["id"], error)]
    assert (store.run_dir("carol-llama-405b", "20250601T000000Z") / ".attempts" / "a1" / "started.json").exists()


def test_unknown_bucket_or_run_gives_a_clear_error(gcs, gcs_bucket, tmp_path) -> None:
    with pytest.raises(CloudError, match="listing gs://no-such-bucket"):
        ResultsStore(gcs.client(), "no-such-bucket", PREFIX, tmp_path).list_runs()
    store = ResultsStore(gcs.client(), gcs_bucket.name, PREFIX, tmp_path)
    with pytest.raises(ResultsError, match="no runs under"):
        store.load("latest")
    with pytest.raises(ResultsError, match="no run rel/none"):
        store.load("rel/none")
    with pytest.raises(ResultsError, match="no run with id"):
        store.load("none")


class ListingOnly:
    """A client whose bucket lists one object with a hostile name (Cloud Storage allows '..' in names;
    fake-gcs-server normalises them away, so this case needs a stand-in)."""

    class Blob:
        name = f"{PREFIX}/rel/run/x/../../../../escape.txt"
        size, md5_hash, generation = 4, None, 1

        def download_to_filename(self, filename: str, **_: object) -> None:
            Path(filename).write_text("nope")

    def list_blobs(self, bucket: str, prefix: str, **_: object) -> list:
        return [self.Blob()]


def test_object_names_cannot_escape_the_cache(tmp_path) -> None:
    store = ResultsStore(ListingOnly(), "bucket", PREFIX, tmp_path / "cache")
    with pytest.raises(ResultsError, match="leaves the run's folder"):
        store.fetch_run("rel", "run")
    assert not list(tmp_path.rglob("escape.txt"))
    with pytest.raises(ResultsError, match="not a valid release or run id"):
        store.fetch_run("..", "run")


def test_load_results_end_to_end_through_an_endpoint(gcs, bucket_name, tmp_path) -> None:
    results = load_results(bucket=bucket_name, prefix=PREFIX, runs="all", endpoint=gcs.url,
                           cache_dir=str(tmp_path / "cache"))
    assert results.origin == f"gs://{bucket_name}/{PREFIX}"
    assert results.frame["run"].nunique() == 2
    assert results.runs_table()["run"].tolist() == ["alice-llama-405b/20250528-224028",
                                                    "alice-llama-405b/20250101-000000"]


# --- local folders -------------------------------------------------------------------------------------


def test_examples_load_with_no_bucket_and_no_cloud(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("GCS_BUCKET", raising=False)
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "absent.yaml"))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))  # any client would fail
    latest = load_results(runs="latest")
    assert latest.origin == "recipelib examples"
    [row] = latest.frame.to_dict("records")
    assert (row["model"], row["output_throughput_tok_s"], row["gpu"]) == ("meta-llama/Llama-3.1-405B", 3914.4509,
                                                                          "H200")
    everything = load_examples("all")
    assert everything.frame["run"].nunique() == len(everything.runs) == 4
    assert not everything.missing


def test_local_folder_layouts(tmp_path) -> None:
    run_dir = examples_dir() / "nvidia-docs" / "20250118-llama8b-fp8-trt0.17"
    one_run = load_local(run_dir)
    assert one_run.frame["output_throughput_tok_s"].tolist() == [28390.4265]
    loose = load_local(REPORTS, excerpt=True)  # loose report files, some published excerpts: one experiment per file
    assert len(loose.frame) == len(list(REPORTS.glob("*.txt")))
    assert set(loose.frame["run"]) == {"local/reports"}
    by_id = load_local(examples_dir(), "llama8b-fp8-pytorch0.17")
    assert by_id.frame["backend"].tolist() == ["pytorch"]
    with pytest.raises(ResultsError, match="does not exist"):
        load_local(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="no trtllm-bench reports"):
        load_local(tmp_path / "empty")


# --- the launcher's records, read strictly (schema 1 of recipelib.results.layout) ------------------------


def local_run(root: Path, run: dict, metadata: dict | None = None) -> Path:
    """One run folder under ``root`` as the launcher leaves it: run.json, and one experiment."""
    run_dir = root / run["release"] / run["run_id"]
    exp_dir = run_dir / "isl128-osl128-n30000"
    exp_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(run))
    (exp_dir / "report.txt").write_text(REAL_405B)
    (exp_dir / "metadata.json").write_text(json.dumps(
        metadata or metadata_doc(run["release"], run["run_id"], "isl128-osl128-n30000")))
    return run_dir


def test_the_example_records_are_schema_1() -> None:
    runs = sorted(examples_dir().glob("*/*/run.json"))
    metadata = sorted(examples_dir().glob("*/*/*/metadata.json"))
    assert len(runs) == 4 and len(metadata) == 4
    for path in runs:
        doc = json.loads(path.read_text())
        layout.check_run(doc, str(path))
        assert doc["source"].startswith("https://")
    for path in metadata:
        layout.check_metadata(json.loads(path.read_text()), str(path))


def test_a_run_json_missing_a_required_key_names_the_file_and_the_key(tmp_path) -> None:
    run = run_doc("rel", "run", ["isl128-osl128-n30000"])
    del run["finished"]
    run_dir = local_run(tmp_path, run)
    for strict in (True, False):  # strict=False forgives a bad report, not a bad run.json
        with pytest.raises(ResultsError, match="missing key") as err:
            load_local(tmp_path, strict=strict)
        assert str(run_dir / "run.json") in str(err.value) and "finished" in str(err.value)
    with pytest.raises(ResultsError, match="finished"):
        load_local(run_dir)


def test_an_unknown_schema_is_rejected_with_a_message(tmp_path) -> None:
    run_dir = local_run(tmp_path, run_doc("rel", "run", ["isl128-osl128-n30000"]) | {"schema": 2})
    with pytest.raises(ResultsError, match=r"schema 2 is not one this reader knows.*upgrade recipelib") as err:
        load_local(tmp_path)
    assert str(run_dir / "run.json") in str(err.value)
    unmarked = run_doc("rel", "old", ["isl128-osl128-n30000"])
    del unmarked["schema"]
    local_run(tmp_path / "other", unmarked)
    with pytest.raises(ResultsError, match="no 'schema' key"):
        load_local(tmp_path / "other")


def test_a_bad_metadata_json_fails_strict_and_is_listed_as_missing_otherwise(tmp_path) -> None:
    metadata = metadata_doc("rel", "run", "isl128-osl128-n30000")
    del metadata["experiment"]["num_requests"]
    local_run(tmp_path, run_doc("rel", "run", ["isl128-osl128-n30000"]), metadata)
    where = str(tmp_path / "rel" / "run" / "isl128-osl128-n30000" / "metadata.json")
    with pytest.raises(ResultsError, match="num_requests") as err:
        load_local(tmp_path)
    assert where in str(err.value)
    lenient = load_local(tmp_path, strict=False)
    assert lenient.frame.empty
    [missing] = lenient.missing
    assert missing.experiment == "isl128-osl128-n30000" and where in missing.reason


def test_a_bad_run_json_in_the_bucket_names_the_object(gcs, gcs_bucket, tmp_path) -> None:
    doc = run_doc("rel", "future", ["isl128-osl128-n30000"]) | {"schema": 2}
    put(gcs_bucket, f"{PREFIX}/rel/future/run.json", json.dumps(doc))
    store = ResultsStore(gcs.client(), gcs_bucket.name, PREFIX, tmp_path / "cache")
    named = re.escape(f"gs://{gcs_bucket.name}/{PREFIX}/rel/future/run.json: schema 2")
    with pytest.raises(ResultsError, match=named):
        store.list_runs()
    with pytest.raises(ResultsError, match=named):
        store.load("rel/future")


def test_an_experiment_in_run_json_without_a_folder_is_missing(tmp_path) -> None:
    local_run(tmp_path, run_doc("rel", "run", ["isl128-osl128-n30000", "isl128-osl2048-n3000"]))
    results = load_local(tmp_path)
    assert results.frame["experiment"].tolist() == ["isl128-osl128-n30000"]
    assert [(m.experiment, m.reason) for m in results.missing] == [("isl128-osl2048-n3000",
                                                                    "no report.json or report.txt")]
    [run] = results.runs
    assert (run.status, run.ended, run.gpu, run.gpu_count) == ("succeeded", True, "H200", 8)
