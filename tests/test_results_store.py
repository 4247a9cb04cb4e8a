"""The results store against a real Cloud Storage API (fake-gcs-server on loopback), and local folders.

Network calls are counted at the HTTP session the storage client sends through, so "a second load from
the cache makes no network call" is measured, not assumed; one test also stops the server outright.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from recipelib.errors import CloudError
from recipelib.results import (
    COLUMNS,
    ResultsError,
    ResultsStore,
    examples_dir,
    load_examples,
    load_local,
    load_results,
)
from recipelib.results.reports import ReportError
from recipelib.sandbox.gcs import LocalGCS

pytestmark = pytest.mark.integration

REPORTS = Path(__file__).parent / "data" / "reports"
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


def upload_run(bucket, release: str, run_id: str, experiments: dict[str, dict[str, str]], *,
               status: str = "succeeded", started: str = "2025-05-28T22:40:28Z", extra: dict | None = None) -> None:
    doc = {"release": release, "run_id": run_id, "model": "meta-llama/Llama-3.1-405B", "status": status,
           "started": started, "finished": None if status == "running" else "2025-05-28T23:40:59Z",
           "experiments": list(experiments), "settings": {"gpu": "H200", "gpu_count": 8},
           "versions": {"tensorrt_llm": "0.17.0.post1"}, **(extra or {})}
    put(bucket, f"{PREFIX}/{release}/{run_id}/run.json", json.dumps(doc))
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
    upload_run(gcs_bucket, "alice-llama-405b", "20250528-224028", {
        "isl128-osl128-n30000": {"report.txt": REAL_405B, "metadata.json": json.dumps({"isl": 128, "osl": 128}),
                                 "launcher.log": "RECIPE_EVENT {}\n"},
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
    upload_run(gcs_bucket, "rel", "live", {"isl128-osl128-n30000": {"report.txt": REAL_405B}}, status="running",
               extra={"experiments": ["isl128-osl128-n30000", "isl128-osl128-n3000"]})
    store = ResultsStore(gcs.client(), gcs_bucket.name, PREFIX, tmp_path / "cache")
    first = store.load("rel/live")
    assert len(first.frame) == 1
    assert [(m.experiment, m.reason) for m in first.missing] == [("isl128-osl128-n3000",
                                                                  "no report.json or report.txt")]
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
    put(gcs_bucket, f"{base}/{ok['id']}/metadata.json", json.dumps(common | {"experiment": ok, "status": "succeeded"}))
    put(gcs_bucket, f"{base}/{bad['id']}/benchmark.log", "CUDA out of memory\n")
    put(gcs_bucket, f"{base}/{bad['id']}/metadata.json",
        json.dumps(common | {"experiment": bad, "status": "failed", "error": error}))
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
    loose = load_local(REPORTS)  # a folder of loose report files: one experiment per file
    assert len(loose.frame) == len(list(REPORTS.glob("*.txt")))
    assert set(loose.frame["run"]) == {"local/reports"}
    by_id = load_local(examples_dir(), "llama8b-fp8-pytorch0.17")
    assert by_id.frame["backend"].tolist() == ["pytorch"]
    with pytest.raises(ResultsError, match="does not exist"):
        load_local(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="no trtllm-bench reports"):
        load_local(tmp_path / "empty")
