"""The sandbox node agent's pure parts: the scheduler's verdicts, the kubelet's log reading, the replay stand-in.

The agent against a real API server is in ``test_sandbox.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import REPO
from kubernetes.client import (
    V1Container,
    V1Node,
    V1NodeSpec,
    V1NodeStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodSpec,
    V1ResourceRequirements,
    V1Taint,
    V1Toleration,
)

from recipelib.sandbox.nodeagent import (
    Container,
    Controls,
    LogQuery,
    NodeShape,
    log_chunks,
    parse_rfc3339,
    pod_requests,
    quantity,
    read_records,
    rfc3339_nano,
    unfit_reasons,
    unschedulable_message,
)

REPLAY = REPO / "launcher" / "testing" / "replay_bench.py"
RECORDING = REPO / "launcher" / "testing" / "recordings" / "gpu-recipes_a3ultra_llama405b_trt-0.17.0.post1_h200.txt"
MODEL = "meta-llama/Llama-3.1-405B"


def gke_node(**status: object) -> V1Node:
    shape = NodeShape()
    return V1Node(
        metadata=V1ObjectMeta(name=shape.name, labels=shape.labels()),
        spec=V1NodeSpec(taints=[V1Taint(key="nvidia.com/gpu", value="present", effect="NoSchedule")],
                        unschedulable=status.pop("unschedulable", None)),
        status=V1NodeStatus(allocatable=shape.resources("allocatable")),
    )


def benchmark_pod(gpus: str = "8", accelerator: str = "nvidia-h200-141gb", tolerate: bool = True) -> V1Pod:
    """What the benchmark Job's template asks of the scheduler."""
    return V1Pod(
        metadata=V1ObjectMeta(name="p", namespace="default", uid="u"),
        spec=V1PodSpec(
            containers=[V1Container(name="benchmark", resources=V1ResourceRequirements(
                requests={"nvidia.com/gpu": gpus}, limits={"nvidia.com/gpu": gpus}))],
            init_containers=[V1Container(name="nccl-plugin-installer")],
            node_selector={"cloud.google.com/gke-accelerator": accelerator},
            tolerations=[V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]
            if tolerate else [],
        ),
    )


# --- the node's shape --------------------------------------------------------------------------------


def test_the_node_is_labelled_and_sized_as_gke_makes_an_a3_ultra_node():
    shape = NodeShape()
    labels = shape.labels()
    assert labels["cloud.google.com/gke-accelerator"] == "nvidia-h200-141gb"
    assert labels["node.kubernetes.io/instance-type"] == labels["beta.kubernetes.io/instance-type"] == "a3-ultragpu-8g"
    assert labels["kubernetes.io/hostname"] == shape.name and labels["cloud.google.com/gke-nodepool"] == shape.nodepool
    assert labels["topology.kubernetes.io/zone"] == "us-central1-b"
    assert shape.resources("capacity")["nvidia.com/gpu"] == shape.resources("allocatable")["nvidia.com/gpu"] == "8"
    assert quantity(shape.resources("capacity")["cpu"]) == 224
    assert quantity(shape.resources("allocatable")["cpu"]) < 224  # GKE reserves some for the system


@pytest.mark.parametrize(("text", "value"), [("8", 8), ("500m", 0.5), ("16Gi", 16 * 2**30), ("2k", 2000),
                                             ("1.5", 1.5), ("1e3", 1000)])
def test_quantities(text, value):
    assert quantity(text) == pytest.approx(value)


def test_a_bad_quantity_is_refused():
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        quantity("8 GPUs")


def test_controls_refuse_unknown_or_bad_values():
    c = Controls()
    c.update({"replay_speed": 60, "fail": "benchmark"})
    assert (c.replay_speed, c.fail) == (60, "benchmark")
    for bad in ({"speed": 1}, {"fail": "download"}, {"replay_speed": 0}, {"pull_seconds": True}):
        with pytest.raises(ValueError):
            c.update(bad)


# --- the scheduler's filters and messages -------------------------------------------------------------


def test_a_benchmark_pod_fits_an_empty_node():
    assert unfit_reasons(benchmark_pod(), gke_node(), {}, 0) == []
    assert pod_requests(benchmark_pod()) == {"nvidia.com/gpu": 8.0}


def test_gpus_held_by_a_running_pod_leave_no_room():
    assert unfit_reasons(benchmark_pod("1"), gke_node(), {"nvidia.com/gpu": 8.0}, 1) == ["Insufficient nvidia.com/gpu"]
    assert unfit_reasons(benchmark_pod("4"), gke_node(), {"nvidia.com/gpu": 4.0}, 1) == []


def test_another_accelerator_does_not_match_the_node_selector():
    assert unfit_reasons(benchmark_pod(accelerator="nvidia-h100-80gb"), gke_node(), {}, 0) == [
        "node(s) didn't match node selector"]


def test_the_gpu_taint_needs_a_toleration():
    assert unfit_reasons(benchmark_pod(tolerate=False), gke_node(), {}, 0) == [
        "node(s) had taint {nvidia.com/gpu: present}, that the pod didn't tolerate"]


def test_a_cordoned_node_is_unschedulable():
    assert unfit_reasons(benchmark_pod(), gke_node(unschedulable=True), {}, 0) == ["node(s) were unschedulable"]


def test_messages_read_as_the_default_schedulers():
    assert unschedulable_message([["Insufficient nvidia.com/gpu"]]) == \
        "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    assert unschedulable_message([["node(s) didn't match node selector"], ["Insufficient cpu"]]) == \
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match node selector."
    assert unschedulable_message([]) == "no nodes available to schedule pods"


# --- the kubelet's log endpoint, on a CRI log file ------------------------------------------------------


def test_timestamps_are_rfc3339_nano_as_the_kubelet_prints_them():
    ns = parse_rfc3339("2026-11-27T03:10:00.1234Z")
    assert rfc3339_nano(ns) == "2026-11-27T03:10:00.1234Z"
    assert rfc3339_nano(parse_rfc3339("2026-11-27T03:10:00Z")) == "2026-11-27T03:10:00Z"


def _container(tmp_path: Path, lines: list[tuple[str, str]], done: bool = True) -> Container:
    c = Container("benchmark", "image", tmp_path / "benchmark" / "0.log")
    c.log_path.parent.mkdir(parents=True)
    c.log_path.write_text("".join(f"{stamp} stdout F {text}\n" for stamp, text in lines))
    if done:
        c.done.set()
    return c


LINES = [("2026-11-27T03:10:00.1Z", "one"), ("2026-11-27T03:10:01Z", "two"), ("2026-11-27T03:10:02.5Z", "three")]


def test_log_options_tail_since_timestamps_and_limit(tmp_path):
    c = _container(tmp_path, LINES)

    def read(**options: object) -> str:
        return b"".join(log_chunks(c, LogQuery(**options))).decode()  # type: ignore[arg-type]

    assert read() == "one\ntwo\nthree\n"
    assert read(tail_lines=2) == "two\nthree\n"
    assert read(tail_lines=0) == ""
    assert read(since_ns=parse_rfc3339("2026-11-27T03:10:01Z")) == "two\nthree\n"
    assert read(timestamps=True, tail_lines=1) == "2026-11-27T03:10:02.5Z three\n"
    assert read(limit_bytes=6) == "one\ntw"


def test_log_query_from_the_api_servers_parameters():
    q = LogQuery.parse({"follow": ["true"], "timestamps": ["true"], "tailLines": ["5"],
                        "sinceTime": ["2026-11-27T03:10:00Z"], "limitBytes": ["100"]})
    assert (q.follow, q.timestamps, q.tail_lines, q.limit_bytes) == (True, True, 5, 100)
    assert q.since_ns == parse_rfc3339("2026-11-27T03:10:00Z")
    recent = LogQuery.parse({"sinceSeconds": ["10"]})
    assert recent.since_ns is not None and abs(recent.since_ns - (time.time_ns() - 10 * 10**9)) < 10**9


def until(check, timeout: float = 10.0) -> None:
    """Wait for another thread to make ``check()`` true."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_follow_streams_new_lines_until_the_container_ends(tmp_path):
    c = _container(tmp_path, LINES[:1], done=False)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend(log_chunks(c, LogQuery(follow=True))))
    reader.start()
    until(lambda: got == [b"one\n"])
    with open(c.log_path, "a") as f:
        f.write("2026-11-27T03:10:05Z stdout F later\n2026-11-27T03:10:06Z stdout F partial")  # no newline yet
    until(lambda: len(got) >= 2)
    assert got == [b"one\n", b"later\n"] and reader.is_alive()
    with open(c.log_path, "a") as f:
        f.write(" line\n")
    c.done.set()
    reader.join(5)
    assert not reader.is_alive() and got[-1] == b"partial line\n"


def test_a_partial_last_line_is_left_for_later(tmp_path):
    path = tmp_path / "0.log"
    path.write_text("2026-11-27T03:10:00Z stdout F a\n2026-11-27T03:10:01Z stdout F b")
    records, offset = read_records(path)
    assert [r.text for r in records] == ["a"] and offset == len("2026-11-27T03:10:00Z stdout F a\n")


# --- the replay stand-in for trtllm-bench ---------------------------------------------------------------


def replay(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPLAY), *argv], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "RECIPE_REPLAY_SPEED": "100000", **env}, cwd=tmp_path)


def dataset(tmp_path: Path, isl: int = 128, osl: int = 128) -> Path:
    path = tmp_path / "dataset.jsonl"
    path.write_text(json.dumps({"task_id": -1, "input_ids": list(range(isl)), "output_tokens": osl}) + "\n")
    return path


def test_help_names_the_recorded_version(tmp_path):
    out = replay(tmp_path, "--help")
    assert out.returncode == 0 and "TensorRT-LLM version: 0.17.0.post1" in out.stdout


def test_report_json_is_refused_as_0_17_refuses_it(tmp_path):
    out = replay(tmp_path, "--model", MODEL, "throughput", "--report_json", str(tmp_path / "r.json"))
    assert out.returncode == 2 and "No such option" in out.stderr and not (tmp_path / "r.json").exists()
