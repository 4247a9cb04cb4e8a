"""recipelib.results.gpu_report: a run's preflight report (metadata.json["preflight"]) as a record and tables."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO

from recipelib.errors import RecipelibError
from recipelib.results.gpu_report import (
    PreflightError,
    checks_table,
    from_metadata,
    gpus_table,
    headline,
    parse_preflight,
    runs_table,
)

RESULTS = REPO / "benchmarks" / "results"
RECORDED = sorted(RESULTS.glob("preflight-*gpu.txt"))


def recorded(path: Path) -> dict:
    return json.loads(path.read_text().split("# --- OUT.json ---\n", 1)[1])


def two_gpu_report() -> dict:
    """A small report in the shape launcher/preflight.py writes (figures from an H100 pair)."""

    def check(name, status, measured, limit, unit="", fraction=None, threshold=None, gpu=None, note=""):
        return {"name": name, "status": status, "measured": measured, "limit": limit, "unit": unit,
                "fraction": fraction, "threshold": threshold, "gpu": gpu, "note": note}

    return {
        "schema": "preflight/1", "decision": "fail", "reasons": ["bf16_matmul[gpu1]: 0.40 of the datasheet"],
        "mode": "enforce", "exit_code": 2, "seconds": 14.2, "started_at": "2026-01-01T00:00:00+00:00",
        "host": "gke-node-1", "replay": False,
        "datasheet": {"key": "H100-SXM"},
        "versions": {"driver": "580.159.04", "cuda_driver": "13.0", "cuda_runtime": "13.0", "torch": "2.11.0",
                     "nccl": "2.28.9", "python": "3.12.3"},
        "link": {"type": "NVLink", "detail": "NV18 between every pair of 2 GPUs", "matrix": [], "p2p": None},
        "gpus": [
            {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559.0, "hbm_copy_tbps": 3.0,
             "bf16_matmul_tflops": 690.0, "ecc_uncorrected_volatile": 0, "error": None},
            {"index": 1, "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559.0, "hbm_copy_tbps": 3.01,
             "bf16_matmul_tflops": 395.8, "ecc_uncorrected_volatile": 0, "error": None},
        ],
        "allreduce": {"world": 2, "nbytes": 1 << 30, "busbw_gbps": 330.0, "algbw_gbps": 330.0},
        "checks": [
            check("gpu_count", "pass", 2, 2, "GPUs", 1.0, 1.0),
            check("gpu_model", "pass", "NVIDIA H100 80GB HBM3", "H100"),
            check("hbm_copy", "pass", 3.0, 3.35, "TB/s", 0.8955, 0.8, 0),
            check("hbm_copy", "pass", 3.01, 3.35, "TB/s", 0.8985, 0.8, 1),
            check("bf16_matmul", "pass", 690.0, 989.4, "TFLOP/s", 0.6974, 0.6, 0),
            check("bf16_matmul", "fail", 395.8, 989.4, "TFLOP/s", 0.4, 0.6, 1, "0.40 of the datasheet"),
            check("allreduce_busbw", "pass", 330.0, 450, "GB/s", 0.7333, 0.6),
        ],
    }


def test_parse_record() -> None:
    rec = parse_preflight(two_gpu_report(), source="run/metadata.json")
    assert (rec.decision, rec.healthy, rec.gpu_count, rec.gpu_model) == ("fail", False, 2,
                                                                         "NVIDIA H100 80GB HBM3")
    assert rec.allreduce_busbw_gbps == 330.0 and rec.link_type == "NVLink" and rec.datasheet == "H100-SXM"
    assert rec.versions["cuda_runtime"] == "13.0" and rec.seconds == 14.2
    assert rec.checks[5].gpu == 1 and rec.checks[5].status == "fail" and rec.checks[1].measured.startswith("NV")
    assert rec.gpus[0].memory_total_gib == pytest.approx(79.65, abs=0.01)


def test_from_metadata_path_dict_and_absent(tmp_path: Path) -> None:
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps({"experiment": "e1", "preflight": two_gpu_report()}))
    rec = from_metadata(meta)
    assert rec is not None and rec.source == str(meta)
    assert from_metadata({"experiment": "e1"}) is None  # a run from before the preflight existed


def test_checks_table() -> None:
    rec = parse_preflight(two_gpu_report())
    table = checks_table(rec)
    assert list(table.columns) == ["check", "gpu", "status", "measured", "limit", "unit", "fraction", "threshold",
                                   "note"]
    assert len(table) == 7 and table["gpu"].dtype == "Int64"
    numeric = checks_table(rec, numeric_only=True)
    assert "gpu_model" not in set(numeric["check"])
    assert numeric["measured"].dtype == float and numeric["fraction"].dtype == float
    row = numeric[(numeric["check"] == "bf16_matmul") & (numeric["gpu"] == 1)].iloc[0]
    assert (row["status"], row["fraction"]) == ("fail", 0.4)


def test_gpus_table_and_headline() -> None:
    rec = parse_preflight(two_gpu_report())
    gpus = gpus_table(rec)
    assert list(gpus["gpu"]) == [0, 1]
    assert gpus.loc[1, "matmul_fraction"] == pytest.approx(395.8 / 989.4)
    assert gpus.loc[0, "hbm_fraction"] == pytest.approx(3.0 / 3.35)
    head = headline(rec)
    assert head["matmul_fraction_min"] == 0.4 and head["hbm_fraction_min"] == 0.8955
    assert head["allreduce_busbw_GBps"] == 330.0 and head["gpus"] == "2 x NVIDIA H100 80GB HBM3"
    table = runs_table({"run-a": rec, "run-b": rec})
    assert list(table.index) == ["run-a", "run-b"] and table.loc["run-a", "decision"] == "fail"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.pop("schema"), "schema"),
        (lambda r: r.update(schema="trtllm-bench"), "schema"),
        (lambda r: r.update(decision="maybe"), "decision"),
        (lambda r: r.pop("checks"), "checks"),
        (lambda r: r["checks"][2].update(measured=math.nan), "checks[2].measured"),
        (lambda r: r["checks"][2].update(measured=[1]), "checks[2].measured"),
        (lambda r: r["checks"][2].pop("fraction"), "checks[2].fraction"),
        (lambda r: r["checks"][3].update(status="great"), "checks[3].status"),
        (lambda r: r["gpus"][1].update(hbm_copy_tbps="fast"), "gpus[1].hbm_copy_tbps"),
        (lambda r: r["gpus"][0].pop("index"), "gpus[0].index"),
        (lambda r: r.update(seconds=None), "seconds"),
    ],
)
def test_malformed_reports_name_the_field(mutate, field: str) -> None:
    report = copy.deepcopy(two_gpu_report())
    mutate(report)
    with pytest.raises(PreflightError) as info:
        parse_preflight(report, source="gs://b/run/e1/metadata.json")
    assert info.value.field == field
    assert str(info.value).startswith("gs://b/run/e1/metadata.json: preflight.")
    assert isinstance(info.value, RecipelibError)


def test_not_json() -> None:
    with pytest.raises(PreflightError, match="not valid JSON"):
        parse_preflight("{nope")
    with pytest.raises(PreflightError, match="must be an object"):
        parse_preflight("[1, 2]")


def test_crash_report_parses() -> None:
    """A crashed preflight writes a minimal report; the notebook still shows why."""
    rec = parse_preflight({"schema": "preflight/1", "decision": "crash", "reasons": ["preflight: crashed: X"],
                           "mode": "warn", "exit_code": 1, "seconds": 0.4, "checks": [], "gpus": []})
    assert rec.decision == "crash" and rec.gpu_count == 0 and headline(rec)["gpus"] == "none"
    assert checks_table(rec).empty


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
def test_recorded_gpu_reports_parse(path: Path) -> None:
    """The reports recorded on real H100/H200 machines read back and tabulate."""
    rec = parse_preflight(recorded(path), source=path.name)
    assert rec.healthy and rec.gpu_count >= 1 and rec.seconds < 60
    table = checks_table(rec, numeric_only=True)
    hbm = table[table["check"] == "hbm_copy"]
    assert len(hbm) == rec.gpu_count and (hbm["fraction"] >= 0.8).all()
    assert isinstance(gpus_table(rec), pd.DataFrame)
