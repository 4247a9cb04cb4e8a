"""launcher/preflight.py on CPU: parsing, datasheet lookup, checks, decisions, reporting, exit codes.

No GPU and no torch here: measurements come from fake ``Measurements``, a fake worker script, or a
report recorded on a real H100/H200 (``benchmarks/results/preflight-*.txt``) replayed with ``--replay``.
Raw nvidia-smi outputs recorded on the device machine are golden inputs for the parsers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from helpers import REPO

SCRIPT = REPO / "launcher" / "preflight.py"
RESULTS = REPO / "benchmarks" / "results"
RAW = RESULTS / "preflight-raw"


def _load() -> ModuleType:
    """launcher/ is not a package (it ships as loose files in a ConfigMap): load the file itself."""
    spec = importlib.util.spec_from_file_location("launcher_preflight", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


pf = _load()

H100 = "NVIDIA H100 80GB HBM3"
H200 = "NVIDIA H200"

TOPO_8_NV18 = (
    "\t\x1b[4mGPU0\tGPU1\tGPU2\tGPU3\tGPU4\tGPU5\tGPU6\tGPU7\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m\n"
    + "".join(
        f"GPU{i}\t" + "\t".join(" X " if i == j else "NV18" for j in range(8)) + "\tSYS\t0-51\t0\t\tN/A\n"
        for i in range(8)
    )
    + "NIC0\t" + "SYS\t" * 8 + " X \n\nLegend:\n\n  X    = Self\n"
    + "  NV#  = Connection traversing a bonded set of # NVLinks\n"
)

TOPO_2_PCIE = """\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID
GPU0\t X \tSYS\t0-15\t0\t\tN/A
GPU1\tSYS\t X \t16-31\t1\t\tN/A
"""


def recorded_reports() -> list[Path]:
    return sorted(RESULTS.glob("preflight-*gpu.txt"))


def json_of(result_txt: Path) -> dict:
    """The OUT.json part of a recorded result file (after the '# --- OUT.json ---' marker)."""
    return json.loads(result_txt.read_text().split("# --- OUT.json ---\n", 1)[1])


# --- datasheet ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        (H100, "H100-SXM"),
        ("NVIDIA H100 PCIe", "H100-PCIe"),
        ("NVIDIA H100 NVL", "H100-NVL"),
        (H200, "H200-SXM"),
        ("NVIDIA H200 NVL", "H200-NVL"),
        ("NVIDIA B200", "B200-HGX"),
        ("NVIDIA A100-SXM4-80GB", "A100-SXM-80GB"),
        ("NVIDIA GH200 480GB", None),
        ("NVIDIA H20", None),
        ("Tesla T4", None),
    ],
)
def test_lookup_spec(name: str, key: str | None) -> None:
    spec = pf.lookup_spec(name)
    assert (spec.key if spec else None) == key


def test_datasheet_figures_are_the_published_ones() -> None:
    h100, h200 = pf.lookup_spec(H100), pf.lookup_spec(H200)
    assert (h100.hbm_tbps, h100.bf16_dense_tflops, h100.memory_gib, h100.link_gbps) == (3.35, 989.4, 80, 450)
    assert (h200.hbm_tbps, h200.bf16_dense_tflops, h200.memory_gib, h200.link_gbps) == (4.8, 989.4, 141, 450)
    for _, spec in pf.DATASHEET:
        assert spec.source and spec.hbm_tbps > 0 and spec.bf16_dense_tflops > 0 and spec.link_gbps > 0
        assert "https://www.nvidia.com/en-us/data-center/" in spec.source
    assert "whitepaper" in h100.source and "whitepaper" in h200.source
    for _, spec in pf.DATASHEET:  # FP8 Tensor Cores run at twice the BF16 rate (A100 has none)
        assert spec.fp8_dense_tflops == (None if spec.model == "A100" else 2 * spec.bf16_dense_tflops)


def test_speed_of_light_reads_this_datasheet() -> None:
    """One datasheet: recipelib's speed-of-light bound uses the preflight's figures, not a copy of them."""
    from recipelib.results import speed_of_light as sol

    for name in (H100, H200, "NVIDIA B200"):
        mine, theirs = pf.lookup_spec(name), sol.gpu_spec(name)
        assert (theirs.name, theirs.memory_gb, theirs.hbm_tb_s, theirs.bf16_dense_tflops, theirs.fp8_dense_tflops) == (
            mine.model, mine.memory_gib, mine.hbm_tbps, mine.bf16_dense_tflops, mine.fp8_dense_tflops)
    assert sol.gpu_spec("nvidia-h200-141gb").bf16_dense_tflops == 989.4


@pytest.mark.parametrize(
    ("name", "expected", "ok"),
    [
        (H200, "H200", True),
        (H200, "h200", True),
        (H200, "H20", False),
        ("NVIDIA GH200 480GB", "H200", False),
        (H100, "H100", True),
        (H100, "H200", False),
        (H100, "H100 80GB", True),
        (H100, "", False),
    ],
)
def test_model_matches_words_not_substrings(name: str, expected: str, ok: bool) -> None:
    assert pf.model_matches(name, expected) is ok


def test_node_types_cover_a3_ultra() -> None:
    assert pf.NODE_TYPES["a3-ultra"] == pf.NodeType(8, "H200")


# --- nvidia-smi parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "name", "mib"),
    [("h200-1gpu", H200, 143771.0), ("h200-2gpu", H200, 143771.0), ("h100-1gpu", H100, 81559.0)],
)
def test_parse_recorded_basic_and_ecc_queries(machine: str, name: str, mib: float) -> None:
    gpus = pf.gpus_from_smi((RAW / f"smi-basic-{machine}.txt").read_text())
    assert [g.index for g in gpus] == list(range(int(machine[-4])))
    for g in gpus:
        assert (g.name, g.memory_total_mib, g.memory_used_mib) == (name, mib, 0.0)
        assert g.uuid.startswith("GPU-") and g.pci_bus_id.startswith("00000000:00:0")
        assert pf.lookup_spec(g.name) is not None
    pf.merge_ecc(gpus, (RAW / f"smi-ecc-{machine}.txt").read_text(), pf.ECC_FIELDS + pf.REMAP_FIELDS)
    for g in gpus:
        assert (g.ecc_mode, g.ecc_uncorrected_volatile, g.ecc_corrected_volatile) == ("Enabled", 0, 0)
        assert g.remapped_rows_pending is False and g.remapped_rows_failure is False
        assert pf.check_ecc(g).status == "pass"


def test_parse_csv_not_available_and_header() -> None:
    text = "index, ecc.mode.current, x, y\n0, [N/A], [Not Supported], 3\n1, Disabled, N/A, \n"
    rows = pf.parse_smi_csv(text, ("index", "ecc.mode.current", "x", "y"))
    assert rows == [{"index": "0", "ecc.mode.current": None, "x": None, "y": "3"},
                    {"index": "1", "ecc.mode.current": "Disabled", "x": None, "y": None}]


def test_parse_csv_wrong_column_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="columns"):
        pf.parse_smi_csv("0, NVIDIA H200, 143771\n", pf.BASIC_FIELDS)


def test_merge_power() -> None:
    gpus = [pf.GpuInfo(0, H100), pf.GpuInfo(1, H100)]
    pf.merge_power(gpus, "0, 700.00, 700.00\n1, 500.00, 700.00\n")
    assert [(g.power_limit_w, g.power_default_limit_w) for g in gpus] == [(700.0, 700.0), (500.0, 700.0)]


@pytest.mark.parametrize("machine", ["h200-1gpu", "h200-2gpu", "h100-1gpu"])
def test_parse_recorded_header(machine: str) -> None:
    assert pf.parse_smi_header((RAW / f"smi-plain-{machine}.txt").read_text()) == ("580.159.04", "13.0")


def test_parse_header_garbage() -> None:
    assert pf.parse_smi_header("garbage") == (None, None)


@pytest.mark.parametrize("machine", ["h200-1gpu", "h100-1gpu"])
def test_parse_recorded_topo_single_gpu(machine: str) -> None:
    assert pf.parse_topo((RAW / f"smi-topo-{machine}.txt").read_text()) == [["X"]]


def test_parse_topo_eight_nvlinked_gpus_with_ansi_header() -> None:
    matrix = pf.parse_topo(TOPO_8_NV18)
    assert len(matrix) == 8 and all(len(row) == 8 for row in matrix)
    assert matrix[0][0] == "X" and matrix[3][5] == "NV18"
    link = pf.classify_link(matrix, 8)
    assert link.kind == "NVLink" and "NV18" in link.detail


def test_parse_recorded_topo_two_gpus() -> None:
    """Two H200s of the device machine: the header carries ANSI codes and tab-separated columns."""
    text = (RAW / "smi-topo-h200-2gpu.txt").read_text()
    assert "\x1b[4m" in text
    matrix = pf.parse_topo(text)
    assert matrix == [["X", "NV18"], ["NV18", "X"]]
    link = pf.classify_link(matrix, 2)
    assert (link.kind, link.detail) == ("NVLink", "NV18 between every pair of 2 GPUs")


def test_classify_pcie_mixed_and_single() -> None:
    assert pf.classify_link(pf.parse_topo(TOPO_2_PCIE), 2).kind == "PCIe"
    mixed = [["X", "NV4", "SYS"], ["NV4", "X", "NV4"], ["SYS", "NV4", "X"]]
    link = pf.classify_link(mixed, 3)
    assert link.kind == "mixed" and "SYS" in link.detail
    assert pf.classify_link([["X"]], 1).kind == "single"
    assert pf.classify_link([], 2).kind == "unknown"


def test_link_from_falls_back_to_peer_access() -> None:
    assert pf.link_from(None, [[True, True], [True, True]], 2).kind == "P2P"
    assert pf.link_from(None, [[True, False], [False, True]], 2).kind == "no-P2P"
    assert pf.link_from(TOPO_2_PCIE, [[True, True], [True, True]], 2).kind == "PCIe"


def test_visible_gpus() -> None:
    gpus = [pf.GpuInfo(i, H100, uuid=f"GPU-{i}aaa") for i in range(4)]
    assert pf.visible_gpus(gpus, None) == gpus
    assert [g.index for g in pf.visible_gpus(gpus, "2,0")] == [2, 0]
    assert [g.index for g in pf.visible_gpus(gpus, "GPU-3")] == [3]
    assert [g.index for g in pf.visible_gpus(gpus, "1,9,2")] == [1]  # CUDA stops at the first bad entry
    assert pf.visible_gpus(gpus, "") == []


def test_collect_inventory_with_fake_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole inventory step against recorded outputs, through an injected command runner."""
    outputs = {
        "index,uuid": (0, (RAW / "smi-basic-h200-1gpu.txt").read_text()),
        "index,ecc": (0, (RAW / "smi-ecc-h200-1gpu.txt").read_text()),
        "index,power": (0, "0, 700.00, 700.00\n"),
        "plain": (0, (RAW / "smi-plain-h200-1gpu.txt").read_text()),
    }
    calls = []

    def runner(cmd):
        calls.append(cmd)
        key = "plain" if len(cmd) == 1 else cmd[1].removeprefix("--query-gpu=")[:9].rstrip(".")
        key = {"index,uui": "index,uuid", "index,ecc": "index,ecc", "index,pow": "index,power"}.get(key, key)
        return outputs.get(key, (2, "unexpected"))

    # no libcuda here (or whatever this host's is): the CUDA version must come from nvidia-smi's banner
    monkeypatch.setattr(sys.modules[pf.complete_inventory.__module__], "cuda_driver_version", lambda: None)
    inv = pf.collect_basic_inventory("/fake/nvidia-smi", runner)
    assert [g.name for g in inv.gpus] == [H200] and inv.driver_version == "580.159.04"
    pf.complete_inventory(inv, runner)
    assert inv.gpus[0].ecc_mode == "Enabled" and inv.gpus[0].power_limit_w == 700.0
    assert inv.cuda_driver_version == "13.0" and ["/fake/nvidia-smi"] in calls
    assert not any(c[1:2] == ["topo"] for c in calls)  # one GPU: no topology query


def test_inventory_tolerates_missing_or_broken_nvidia_smi() -> None:
    inv = pf.collect_basic_inventory(None)
    assert inv.gpus == [] and "not found" in inv.smi_error
    broken = pf.collect_basic_inventory("/x", lambda cmd: (9, "NVIDIA-SMI has failed because it couldn't "
                                                           "communicate with the NVIDIA driver.\n"))
    assert broken.gpus == [] and "couldn't communicate" in broken.smi_error


def test_old_driver_without_remap_fields_falls_back_to_ecc_only() -> None:
    inv = pf.Inventory(gpus=[pf.GpuInfo(0, H100)], smi_path="/x")

    def runner(cmd):
        if len(cmd) > 1 and "remapped_rows" in cmd[1]:
            return 6, 'Field "remapped_rows.pending" is not a valid field to query.'
        if len(cmd) > 1 and "ecc" in cmd[1]:
            return 0, "0, Enabled, 2, 5\n"
        return 1, "nope"

    pf.complete_inventory(inv, runner)
    g = inv.gpus[0]
    assert (g.ecc_uncorrected_volatile, g.ecc_corrected_volatile, g.remapped_rows_pending) == (2, 5, None)


# --- checks ----------------------------------------------------------------------------------------


def test_busbw_matches_nccl_tests_definition() -> None:
    assert pf.busbw_from_algbw(100.0, 2) == pytest.approx(100.0)
    assert pf.busbw_from_algbw(100.0, 8) == pytest.approx(175.0)


def test_ratio_check() -> None:
    ok = pf.ratio_check("hbm_copy", 3.0, 3.35, "TB/s", 0.8, gpu=0)
    assert ok.status == "pass" and ok.fraction == pytest.approx(0.8955, abs=1e-4)
    slow = pf.ratio_check("hbm_copy", 2.0, 3.35, "TB/s", 0.8, gpu=1)
    assert slow.status == "fail" and "below the 0.80 threshold" in slow.note
    assert pf.ratio_check("x", 1.0, None, "u", 0.5).status == "skip"
    assert pf.ratio_check("x", None, 1.0, "u", 0.5).status == "fail"
    err = pf.ratio_check("x", None, 1.0, "u", 0.5, error="CUDA error: an illegal memory access")
    assert err.status == "fail" and "illegal" in err.note
    assert pf.ratio_check("x", 0.8, 1.0, "u", 0.8).status == "pass"  # the threshold itself passes


def test_gpu_count_check() -> None:
    assert pf.check_gpu_count(8, 8).status == "pass"
    assert pf.check_gpu_count(7, 8).status == "fail"
    assert pf.check_gpu_count(0, None, "nvidia-smi not found").status == "fail"
    assert pf.check_gpu_count(2, None).status == "pass"
    assert pf.check_gpu_count(None, 8, "no torch").status == "error"


def test_gpu_model_check() -> None:
    assert pf.check_gpu_model([H200] * 8, "H200").status == "pass"
    assert pf.check_gpu_model([H100] * 8, "H200").status == "fail"
    assert pf.check_gpu_model([H100, "NVIDIA H100 PCIe"], None).status == "fail"
    assert pf.check_gpu_model(["Tesla T4"], None).status == "warn"
    assert pf.check_gpu_model([], "H200").status == "skip"


def test_memory_checks() -> None:
    spec, th = pf.lookup_spec(H200), pf.Thresholds()
    total, used = pf.check_memory(pf.GpuInfo(0, H200, 143771, 0), spec, th)
    assert total.status == "pass" and total.fraction == pytest.approx(0.9958, abs=1e-4)
    assert used.status == "pass"
    small, _ = pf.check_memory(pf.GpuInfo(0, H200, 40960, 0), spec, th)  # a MIG slice, say
    assert small.status == "fail"
    _, busy = pf.check_memory(pf.GpuInfo(0, H200, 143771, 60000), spec, th)
    assert busy.status == "fail" and "another process" in busy.note


def test_ecc_check() -> None:
    clean = pf.GpuInfo(0, H100, ecc_mode="Enabled", ecc_uncorrected_volatile=0, ecc_corrected_volatile=3)
    assert pf.check_ecc(clean).status == "pass" and "3 corrected" in pf.check_ecc(clean).note
    bad = pf.GpuInfo(1, H100, ecc_mode="Enabled", ecc_uncorrected_volatile=2)
    assert pf.check_ecc(bad).status == "fail"
    remap = pf.GpuInfo(2, H100, ecc_uncorrected_volatile=0, remapped_rows_failure=True)
    assert pf.check_ecc(remap).status == "fail"
    assert pf.check_ecc(pf.GpuInfo(3, H100, ecc_mode="Disabled")).status == "warn"
    assert pf.check_ecc(pf.GpuInfo(4, H100)).status == "skip"


def test_power_check() -> None:
    assert pf.check_power(pf.GpuInfo(0, H100)) is None
    assert pf.check_power(pf.GpuInfo(0, H100, power_limit_w=700, power_default_limit_w=700)).status == "pass"
    assert pf.check_power(pf.GpuInfo(0, H100, power_limit_w=500, power_default_limit_w=700)).status == "warn"


@pytest.mark.parametrize(
    ("driver", "runtime", "status"),
    [("13.0", "13.0", "pass"), ("12.8", "12.4", "pass"), ("12.2", "12.4", "warn"), ("12.8", "13.0", "fail"),
     (None, "12.4", "skip"), ("12.4", None, "skip")],
)
def test_cuda_compat(driver: str | None, runtime: str | None, status: str) -> None:
    assert pf.check_cuda_compat(driver, runtime).status == status


def test_driver_minimum() -> None:
    assert pf.check_driver("580.159.04", "550.54.15").status == "pass"
    assert pf.check_driver("535.104.05", "550.54.15").status == "fail"
    assert pf.check_driver("535.104.05", None).status == "pass"
    assert pf.check_driver(None, "550").status == "error"


def test_link_check() -> None:
    spec = pf.lookup_spec(H100)
    nv = pf.classify_link(pf.parse_topo(TOPO_8_NV18), 8)
    assert pf.check_link(nv, spec).status == "pass"
    pcie = pf.classify_link(pf.parse_topo(TOPO_2_PCIE), 2)
    assert pf.check_link(pcie, spec).status == "fail"
    assert pf.check_link(pcie, pf.lookup_spec("NVIDIA H100 PCIe")).status == "pass"
    assert pf.check_link(pf.LinkInfo("unknown", "?"), spec).status == "warn"
    assert pf.check_link(pf.LinkInfo("single", "1 GPU"), spec).status == "skip"


def test_allreduce_check() -> None:
    spec, th = pf.lookup_spec(H100), pf.Thresholds()
    skipped = pf.check_allreduce(None, 1, spec, th)
    assert skipped.status == "skip" and "at least 2 GPUs" in skipped.note
    good = pf.AllReduceMeasurement(world=8, nbytes=1 << 30, busbw_gbps=360.0, algbw_gbps=205.7, correct=True)
    check = pf.check_allreduce(good, 8, spec, th)
    assert check.status == "pass" and check.fraction == pytest.approx(0.8) and "NCCL_NVLS_ENABLE=0" in check.note
    pcie_speed = pf.AllReduceMeasurement(world=8, nbytes=1 << 30, busbw_gbps=45.0, correct=True)
    assert pf.check_allreduce(pcie_speed, 8, spec, th).status == "fail"
    wrong = pf.AllReduceMeasurement(world=2, nbytes=1 << 30, busbw_gbps=400.0, correct=False)
    assert "wrong sum" in pf.check_allreduce(wrong, 2, spec, th).note
    hung = pf.AllReduceMeasurement(world=2, nbytes=1 << 30, error="timed out after 45 s")
    assert pf.check_allreduce(hung, 2, spec, th).status == "fail"


# --- decisions and exit codes ------------------------------------------------------------------------


def _check(status: str, name: str = "x") -> object:
    return pf.Check(name, status)


@pytest.mark.parametrize(
    ("statuses", "decision"),
    [(["pass", "skip", "warn"], "pass"), (["pass", "fail"], "fail"), (["error", "pass"], "error"),
     (["error", "fail"], "fail"), ([], "pass")],
)
def test_decide(statuses: list[str], decision: str) -> None:
    assert pf.decide([_check(s) for s in statuses]).status == decision


@pytest.mark.parametrize(
    ("decision", "mode", "code"),
    [("pass", "enforce", 0), ("fail", "enforce", 2), ("error", "enforce", 1),
     ("pass", "warn", 0), ("fail", "warn", 0), ("error", "warn", 0)],
)
def test_exit_code(decision: str, mode: str, code: int) -> None:
    assert pf.exit_code(pf.Decision(decision, ()), mode) == code


# --- evaluate / report / lines with fake measurements --------------------------------------------------------


def healthy_node(n: int = 8, name: str = H200) -> tuple[object, object]:
    inv = pf.Inventory(
        gpus=[pf.GpuInfo(i, name, 143771, 0, f"GPU-{i}", f"0000:{i:02x}:00.0", "Enabled", 0, 0, False, False,
                         700, 700) for i in range(n)],
        driver_version="580.159.04", cuda_driver_version="13.0", smi_path="/x", topo_text=TOPO_8_NV18)
    meas = pf.Measurements(
        gpus=[pf.GpuMeasurement(i, 4.27, 672.0, 0.0017, name, 143000) for i in range(n)],
        allreduce=pf.AllReduceMeasurement(world=n, nbytes=1 << 30, busbw_gbps=360.0, algbw_gbps=205.7,
                                          seconds_per_op=0.0052, correct=True),
        versions={"torch": "2.11.0+cu130", "cuda_runtime": "13.0", "nccl": "2.28.9", "python": "3.12.3"},
    )
    return inv, meas


def test_healthy_eight_gpu_node_passes() -> None:
    inv, meas = healthy_node()
    checks = pf.evaluate(inv, meas, pf.Expectations(8, "H200"), pf.Thresholds())
    decision = pf.decide(checks)
    assert decision.status == "pass", decision.reasons
    names = {c.name for c in checks}
    assert {"gpu_count", "gpu_model", "cuda_compat", "memory_total", "ecc_uncorrected", "hbm_copy",
            "bf16_matmul", "link_type", "allreduce_busbw", "power_limit"} <= names
    assert sum(c.name == "hbm_copy" for c in checks) == 8


def test_one_slow_gpu_fails_the_node_and_is_named() -> None:
    inv, meas = healthy_node()
    meas.gpus[3].hbm_copy_tbps = 2.9  # 0.60 of 4.8
    decision = pf.decide(pf.evaluate(inv, meas, pf.Expectations(8, "H200"), pf.Thresholds()))
    assert decision.status == "fail"
    assert decision.reasons == ("hbm_copy[gpu3]: 0.60 of the datasheet, below the 0.80 threshold",)


def test_wrong_matmul_results_fail_even_when_fast() -> None:
    inv, meas = healthy_node(2)
    meas.gpus[1].matmul_rel_error = 0.5
    checks = pf.evaluate(inv, meas, pf.Expectations(2), pf.Thresholds())
    bad = [c for c in checks if c.status == "fail"]
    assert [(c.name, c.gpu) for c in bad] == [("bf16_matmul", 1)] and "wrong results" in bad[0].note


def test_missing_gpu_and_wrong_model() -> None:
    inv, meas = healthy_node(7, H100)
    decision = pf.decide(pf.evaluate(inv, meas, pf.Expectations(8, "H200"), pf.Thresholds()))
    assert decision.status == "fail"
    assert any(r.startswith("gpu_count: found 7 GPUs, expected 8") for r in decision.reasons)
    assert any(r.startswith("gpu_model:") for r in decision.reasons)


def test_worker_crash_on_one_gpu_fails_that_gpu() -> None:
    inv, meas = healthy_node(2)
    meas.gpus[1] = pf.GpuMeasurement(1, error="RuntimeError: CUDA error: uncorrectable ECC error encountered")
    checks = pf.evaluate(inv, meas, pf.Expectations(2), pf.Thresholds())
    failed = {(c.name, c.gpu) for c in checks if c.status == "fail"}
    assert failed == {("hbm_copy", 1), ("bf16_matmul", 1)}


def test_cuda_visible_devices_pairs_measurements_by_position() -> None:
    """CUDA_VISIBLE_DEVICES=2,3: workers measure cuda:0 and cuda:1, nvidia-smi calls them 2 and 3."""
    inv, meas = healthy_node(4)
    inv.gpus = pf.visible_gpus(inv.gpus, "2,3")
    meas.gpus = meas.gpus[:2]
    meas.gpus[1].hbm_copy_tbps = 1.0
    meas.allreduce.world = 2
    expect, th = pf.Expectations(2), pf.Thresholds()
    checks = pf.evaluate(inv, meas, expect, th)
    assert [(c.name, c.gpu) for c in checks if c.status == "fail"] == [("hbm_copy", 3)]
    report = pf.build_report(inv=inv, meas=meas, checks=checks, decision=pf.decide(checks), mode="warn",
                             expect=expect, thresholds=th, sizes=pf.Sizes(), seconds=1.0, started_at="", host="h")
    assert [(g["index"], g["cuda_index"], g["hbm_copy_tbps"]) for g in report["gpus"]] == [(2, 0, 4.27),
                                                                                          (3, 1, 1.0)]


def test_no_torch_is_an_error_not_a_pass() -> None:
    inv, _ = healthy_node(2)
    meas = pf.Measurements(error="PyTorch is not installed")
    checks = pf.evaluate(inv, meas, pf.Expectations(2), pf.Thresholds())
    decision = pf.decide(checks)
    assert decision == pf.Decision("error", ("hbm_copy, bf16_matmul, allreduce_busbw: PyTorch is not installed",))


def test_without_nvidia_smi_torch_view_is_used() -> None:
    _, meas = healthy_node(2, H100)
    inv = pf.Inventory(gpus=[], smi_error="nvidia-smi not found")
    checks = pf.evaluate(inv, meas, pf.Expectations(2, "H100"), pf.Thresholds())
    assert {c.name: c.status for c in checks}["gpu_count"] == "pass"
    assert {c.name: c.status for c in checks}["gpu_model"] == "pass"
    assert {(c.name, c.status) for c in checks if c.name == "ecc_uncorrected"} == {("ecc_uncorrected", "skip")}


LINE = re.compile(r"^(?P<name>[a-z_0-9]+(\[gpu\d+\])?) measured=(?P<m>\S+|'[^']*') limit=(?P<l>\S+|'[^']*') "
                  r"fraction=(?P<f>\S+) unit=\S+ threshold=\S+ status=(pass|fail|warn|skip|error)( note=.*)?$")


def test_format_line() -> None:
    check = pf.ratio_check("hbm_copy", 3.012, 3.35, "TB/s", 0.8, gpu=0)
    assert pf.format_line(check) == ("hbm_copy[gpu0] measured=3.012 limit=3.35 fraction=0.899 unit=TB/s "
                                     "threshold=0.8 status=pass")
    model = pf.check_gpu_model([H100], "H100")
    assert pf.format_line(model).startswith("gpu_model measured='NVIDIA H100 80GB HBM3' limit=H100 ")


def test_report_json_and_lines() -> None:
    inv, meas = healthy_node(2)
    inv.topo_text = None
    meas.p2p = [[True, True], [True, True]]
    expect, th = pf.Expectations(2, "H200"), pf.Thresholds()
    checks = pf.evaluate(inv, meas, expect, th)
    report = pf.build_report(inv=inv, meas=meas, checks=checks, decision=pf.decide(checks), mode="enforce",
                             expect=expect, thresholds=th, sizes=pf.Sizes(), seconds=12.3,
                             started_at="2026-01-01T00:00:00+00:00", host="node-1")
    report = json.loads(json.dumps(report))  # JSON-clean
    assert report["schema"] == "preflight/1" and report["decision"] == "pass" and report["exit_code"] == 0
    assert report["versions"] == {"driver": "580.159.04", "cuda_driver": "13.0", "cuda_runtime": "13.0",
                                  "torch": "2.11.0+cu130", "nccl": "2.28.9", "python": "3.12.3"}
    assert report["link"]["type"] == "P2P"
    assert [g["hbm_copy_tbps"] for g in report["gpus"]] == [4.27, 4.27]
    assert report["gpus"][0]["name"] == H200 and report["gpus"][0]["uuid"] == "GPU-0"
    assert report["allreduce"]["busbw_gbps"] == 360.0
    for c in report["checks"]:
        assert set(c) == {"name", "status", "measured", "limit", "unit", "fraction", "threshold", "gpu", "note"}
    lines = pf.render_text(report)
    assert lines[0].startswith("preflight host=node-1 gpus=2 model='NVIDIA H200' mode=enforce")
    assert lines[-1] == "decision=pass exit_code=0 seconds=12.3"
    check_lines = [line for line in lines if " measured=" in line]
    assert len(check_lines) == len(report["checks"])
    for line in check_lines:
        assert LINE.match(line), line


def test_write_json_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    pf.write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert not list(target.parent.glob("*.tmp"))


# --- main() with injected sources, and the CLI -----------------------------------------------------------------


class FakeSource:
    def __init__(self, meas: object) -> None:
        self.meas = meas
        self.calls: list[tuple] = []

    def measure(self, n_gpus, sizes, timeout_s):
        self.calls.append((n_gpus, sizes, timeout_s))
        return self.meas


class CrashingSource:
    def measure(self, n_gpus, sizes, timeout_s):
        raise RuntimeError("boom")


def test_main_exit_codes_with_injected_measurements(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "pf.json"
    inv, meas = healthy_node(8)
    args = ["--json", str(out), "--mode", "enforce", "--expect-gpus", "8", "--expect-model", "H200"]
    assert pf.main(args, source=FakeSource(meas), inventory=inv) == 0
    assert json.loads(out.read_text())["decision"] == "pass"
    meas.gpus[5].bf16_matmul_tflops = 400.0  # 0.40 of dense peak
    assert pf.main(args, source=FakeSource(meas), inventory=inv) == 2
    report = json.loads(out.read_text())
    assert report["decision"] == "fail" and report["exit_code"] == 2
    assert report["reasons"] == ["bf16_matmul[gpu5]: 0.40 of the datasheet, below the 0.60 threshold"]
    err = capsys.readouterr().err
    assert "node is unhealthy, stopping the run: bf16_matmul[gpu5]" in err
    warn = ["--json", str(out), "--mode", "warn", "--expect-gpus", "8"]
    assert pf.main(warn, source=FakeSource(meas), inventory=inv) == 0
    assert json.loads(out.read_text())["decision"] == "fail"
    assert "continuing (warn mode)" in capsys.readouterr().err


def test_main_thresholds_and_sizes_are_configurable(tmp_path: Path) -> None:
    inv, meas = healthy_node(8)
    source = FakeSource(meas)
    args = ["--json", str(tmp_path / "o.json"), "--mode", "enforce", "--min-hbm-fraction", "0.95",
            "--hbm-mib", "512", "--matmul-n", "4096", "--allreduce-mib", "64", "--timeout", "30"]
    assert pf.main(args, source=source, inventory=inv) == 2
    sizes = source.calls[0][1]
    assert (sizes.hbm_bytes, sizes.matmul_n, sizes.allreduce_bytes, source.calls[0][2]) == (512 << 20, 4096,
                                                                                          64 << 20, 30.0)


def test_main_node_type_shorthand(tmp_path: Path) -> None:
    inv, meas = healthy_node(8, H100)
    args = ["--json", str(tmp_path / "o.json"), "--mode", "enforce", "--node-type", "a3-ultra"]
    assert pf.main(args, source=FakeSource(meas), inventory=inv) == 2  # H100s where A3 Ultra means H200
    report = json.loads((tmp_path / "o.json").read_text())
    assert report["expected"] == {"gpus": 8, "model": "H200", "min_driver": None}


def test_main_crash_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    inv, _ = healthy_node(2)
    out = tmp_path / "pf.json"
    assert pf.main(["--json", str(out), "--mode", "warn"], source=CrashingSource(), inventory=inv) == 1
    err = capsys.readouterr().err
    assert err.strip() == "preflight: crashed: RuntimeError: boom" and "Traceback" not in err
    assert json.loads(out.read_text())["decision"] == "crash"


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    base["PATH"] = str(Path(sys.executable).parent)  # no nvidia-smi on PATH
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**base, **(env or {})}, check=False)


def _without_torch(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot import torch, installed or not (a sitecustomize hides it)."""
    hide = tmp_path / "no-torch"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    return {"PYTHONPATH": str(hide)}


def test_cli_without_gpu_or_torch_fails_clearly(tmp_path: Path) -> None:
    out = tmp_path / "pf.json"
    env = _without_torch(tmp_path)
    proc = _cli("--json", str(out), "--mode", "enforce", "--expect-gpus", "8", "--expect-model", "H200", env=env)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "could not prove the node healthy, stopping the run" in proc.stderr
    assert "PyTorch is not installed" in proc.stderr
    report = json.loads(out.read_text())
    assert report["decision"] == "error" and report["exit_code"] == 1
    proc = _cli("--json", str(out), "--mode", "warn", env=env)
    assert proc.returncode == 0 and "continuing (warn mode)" in proc.stderr


def test_cli_with_torch_but_no_gpu_fails_the_node(tmp_path: Path) -> None:
    """A CPU-only torch (a stub here) and no nvidia-smi: zero GPUs is an unhealthy node, exit 2."""
    stub = tmp_path / "stub" / "torch"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("class cuda:\n    @staticmethod\n    def device_count():\n        return 0\n")
    out = tmp_path / "pf.json"
    proc = _cli("--json", str(out), "--mode", "enforce", "--expect-gpus", "8",
                env={"PYTHONPATH": str(stub.parent)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "gpu_count: found 0 GPUs, expected 8 (nvidia-smi not found" in proc.stderr
    assert json.loads(out.read_text())["decision"] == "fail"


def test_cli_help_and_bad_arguments() -> None:
    assert _cli("--help").returncode == 0
    bad = _cli("--mode", "maybe")
    assert bad.returncode == 1 and "invalid choice" in bad.stderr  # not 2: a typo is not a bad node


@pytest.mark.parametrize("recorded", recorded_reports(), ids=lambda p: p.name)
def test_cli_replays_recorded_gpu_reports(recorded: Path, tmp_path: Path) -> None:
    """Recorded real-GPU reports replay to the same decision, and a stricter threshold flips it."""
    original = json_of(recorded)
    assert original["decision"] == "pass" and original["seconds"] < 60
    src = tmp_path / "recorded.json"
    src.write_text(json.dumps(original))
    out = tmp_path / "replayed.json"
    n = str(len(original["gpus"]))
    proc = _cli("--replay", str(src), "--json", str(out), "--mode", "enforce", "--expect-gpus", n)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    replayed = json.loads(out.read_text())
    assert replayed["replay"] is True and replayed["decision"] == "pass"
    assert replayed["link"]["type"] == original["link"]["type"]
    measured = {(c["name"], c["gpu"]): c["measured"] for c in original["checks"]}
    for c in replayed["checks"]:
        if c["name"] in {"hbm_copy", "bf16_matmul", "allreduce_busbw"}:
            assert c["measured"] == measured[(c["name"], c["gpu"])]
    strict = _cli("--replay", str(src), "--json", str(out), "--mode", "enforce", "--min-hbm-fraction", "0.99")
    assert strict.returncode == 2 and "hbm_copy[gpu0]" in strict.stderr
    assert _cli("--replay", str(src), "--mode", "warn", "--min-hbm-fraction", "0.99").returncode == 0


# --- the worker orchestration, with a fake worker script -------------------------------------------------------

FAKE_WORKER = textwrap.dedent('''
    import json, os, sys, time
    args = sys.argv[1:]
    rank, world = int(args[args.index("--rank") + 1]), int(args[args.index("--world") + 1])
    behaviour = os.environ.get("FAKE_BEHAVIOUR", "ok")
    if rank == 0:
        print("PREFLIGHT_INFO " + json.dumps({"torch": "fake", "cuda_runtime": "13.0", "nccl": "2.28.9",
              "python": "3", "p2p": [[True] * world for _ in range(world)]}), flush=True)
    if behaviour == "crash" and rank == 1:
        print("Traceback ...\\nRuntimeError: CUDA driver initialization failed", file=sys.stderr)
        sys.exit(3)
    print("NCCL INFO some log line", flush=True)
    print("PREFLIGHT_GPU " + json.dumps({"index": rank, "hbm_copy_tbps": 3.0, "bf16_matmul_tflops": 700.0,
          "matmul_rel_error": 0.002, "name": os.environ["NCCL_NVLS_ENABLE"]}), flush=True)
    if behaviour == "hang":
        time.sleep(60)
    print("PREFLIGHT_ALLREDUCE " + json.dumps({"world": world, "nbytes": 1024, "busbw_gbps": 330.0,
          "algbw_gbps": 330.0, "seconds_per_op": 0.003, "correct": True, "error": None}), flush=True)
''')


@pytest.fixture
def fake_worker(tmp_path: Path) -> object:
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    return pf.WorkerMeasurements(python=sys.executable, script=str(script), require_torch=False)


def test_workers_collect_results_and_keep_nvls_off(fake_worker: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NCCL_NVLS_ENABLE", "1")  # the caller's environment must not switch multicast on
    meas = fake_worker.measure(2, pf.Sizes(), 30)
    assert meas.error is None
    assert [(g.index, g.hbm_copy_tbps, g.error) for g in meas.gpus] == [(0, 3.0, None), (1, 3.0, None)]
    assert {g.name for g in meas.gpus} == {"0"}  # each worker saw NCCL_NVLS_ENABLE=0
    assert meas.allreduce.busbw_gbps == 330.0 and meas.versions["nccl"] == "2.28.9"
    assert meas.p2p == [[True, True], [True, True]]


def test_worker_crash_is_reported_with_its_stderr(fake_worker: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BEHAVIOUR", "crash")
    meas = fake_worker.measure(2, pf.Sizes(), 30)
    assert meas.gpus[0].error is None
    assert meas.gpus[1].error.startswith("worker exited with code 3")
    assert "CUDA driver initialization failed" in meas.gpus[1].error
    assert meas.allreduce.error is not None


def test_hung_worker_is_killed_at_the_deadline(fake_worker: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BEHAVIOUR", "hang")
    meas = fake_worker.measure(2, pf.Sizes(), 3)
    assert [g.hbm_copy_tbps for g in meas.gpus] == [3.0, 3.0]  # per-GPU figures survive the hang
    assert meas.allreduce.error == "timed out after 3 s"


def test_parse_worker_output_ignores_log_lines() -> None:
    text = 'NCCL INFO x\nPREFLIGHT_GPU {"index": 9, "hbm_copy_tbps": 1.5}\nwarning\n'
    gpu, allreduce, info = pf.parse_worker_output(4, text)
    assert (gpu.index, gpu.hbm_copy_tbps, allreduce, info) == (4, 1.5, None, None)


def test_no_torch_means_no_workers_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # find_spec("torch") is None, installed or not
    never = tmp_path / "never.py"
    never.write_text(f"open({str(tmp_path / 'started')!r}, 'w')\n")
    source = pf.WorkerMeasurements(python=sys.executable, script=str(never))
    meas = source.measure(2, pf.Sizes(), 5)
    assert "PyTorch is not installed" in meas.error and meas.gpus == []
    assert not (tmp_path / "started").exists()
