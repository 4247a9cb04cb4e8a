"""The launcher writing to a real GCS server on loopback (fake-gcs-server), create-only.

The launcher subprocess finds the server through ``STORAGE_EMULATOR_HOST``, as google-cloud-storage
does; these tests read the results back with their own client.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO

sys.path[:0] = [str(REPO / "launcher"), str(REPO / "launcher" / "testing")]  # flat modules, as in the pod

from harness import Node, kill_group, wait_for_event, wait_until  # noqa: E402
from store import GCSStore  # noqa: E402

IDS = ["isl128-osl128-n30", "isl9000-osl100-n5-c4-stream", "isl500-osl200-n10"]
PREFIX = "benchmarks"


@pytest.fixture
def node(tmp_path: Path, gcs: Any) -> Node:
    # 1.2.0: a release whose trtllm-bench lists --report_json (0.17's prints only the text report)
    return Node(tmp_path, version="1.2.0", env_extra={"STORAGE_EMULATOR_HOST": gcs.url})


def objects(bucket: Any, run_id: str = "run-1") -> dict[str, Any]:
    """Blob name (relative to the run) -> blob, with generation."""
    base = f"{PREFIX}/bench-acme-tiny/{run_id}/"
    return {b.name[len(base):]: b for b in bucket.client.list_blobs(bucket.name, prefix=base)}


def generations(bucket: Any, run_id: str = "run-1") -> dict[str, int]:
    return {name: blob.generation for name, blob in objects(bucket, run_id).items()}


def test_results_land_in_gcs(node: Node, gcs_bucket: Any) -> None:
    result = node.run(node.config(results=f"gs://{gcs_bucket.name}/{PREFIX}"))
    assert result.returncode == 0, result.stdout
    names = set(objects(gcs_bucket))
    for exp_id in IDS:
        assert {f"{exp_id}/{n}" for n in ("report.json", "report.txt", "metadata.json", "launcher.log")} <= names
    assert "run.json" in names
    assert any(n.startswith(".attempts/") and n.endswith("/started.json") for n in names)
    run = json.loads(objects(gcs_bucket)["run.json"].download_as_bytes())
    assert run["status"] == "succeeded"
    assert run["results"] == f"gs://{gcs_bucket.name}/{PREFIX}/bench-acme-tiny/run-1"
    report = json.loads(objects(gcs_bucket)[f"{IDS[1]}/report.json"].download_as_bytes())
    assert report["performance"]["system_output_throughput_tok_s"] > 0


def test_an_existing_object_is_never_overwritten(node: Node, gcs_bucket: Any) -> None:
    """The server enforces if_generation_match=0; the launcher keeps what is there and says so."""
    # not a report: a planted report would mark the experiment recorded (a pod that died uploading)
    sentinel = gcs_bucket.blob(f"{PREFIX}/bench-acme-tiny/run-1/{IDS[0]}/launcher.log")
    sentinel.upload_from_string(b"written by someone else")
    sentinel.reload()
    result = node.run(node.config(results=f"gs://{gcs_bucket.name}/{PREFIX}"))
    assert result.returncode == 0, result.stdout
    blob = objects(gcs_bucket)[f"{IDS[0]}/launcher.log"]
    assert blob.download_as_bytes() == b"written by someone else" and blob.generation == sentinel.generation
    meta = json.loads(objects(gcs_bucket)[f"{IDS[0]}/metadata.json"].download_as_bytes())
    assert meta["kept_existing"] == ["launcher.log"]


def test_a_killed_run_resumes_on_gcs_without_rewriting_an_object(node: Node, gcs_bucket: Any) -> None:
    cfg = node.config(results=f"gs://{gcs_bucket.name}/{PREFIX}")
    proc = node.start(cfg, STANDIN_SLEEP_ISL="500:60")
    wait_for_event(proc, lambda e: e["phase"] == "benchmark" and e["state"] == "started" and e.get("index") == 3)
    wait_until(lambda: len([c for c in node.calls("trtllm-bench", "throughput") if "--help" not in c["argv"]]) == 3)
    kill_group(proc)
    before = generations(gcs_bucket)
    assert f"{IDS[1]}/metadata.json" in before and "run.json" not in before

    resumed = node.run(cfg)
    assert resumed.returncode == 0, resumed.stdout
    after = generations(gcs_bucket)
    assert {name: after[name] for name in before} == before  # nothing that existed was rewritten
    assert {f"{IDS[2]}/report.json", "run.json"} <= set(after)
    assert [e["experiment"] for e in resumed.find("benchmark", "skipped")] == IDS[:2]

    closed = node.run(cfg)
    assert closed.returncode == 0 and closed.find("run", "skipped")
    assert generations(gcs_bucket) == after


def test_gcs_store_creates_only_once(gcs_client: Any, gcs_bucket: Any) -> None:
    store = GCSStore(gcs_bucket.name, "p", client=gcs_client)
    assert store.read("a/b.json") is None and not store.exists("a/b.json")
    assert store.create("a/b.json", b"first", "application/json") is True
    assert store.create("a/b.json", b"second", "application/json") is False
    assert store.read("a/b.json") == b"first" and store.exists("a/b.json")
    assert store.url("a/b.json") == f"gs://{gcs_bucket.name}/p/a/b.json"
