"""The results layout: the one contract between the launcher (which writes) and recipelib (which reads).

Standard library only: the launcher imports it inside the benchmark pod and recipelib loads this same file
(``recipelib.results.layout``), so a path or a key is spelled in one place.

    <results>/<release>/<run_id>/run.json                    written last: the run is over
    <results>/<release>/<run_id>/<experiment_id>/metadata.json  written last for the experiment
    <results>/<release>/<run_id>/<experiment_id>/report.json   trtllm-bench --report_json (where the tool has it)
    <results>/<release>/<run_id>/<experiment_id>/report.txt    trtllm-bench's printed report
    <results>/<release>/<run_id>/<experiment_id>/requests.json per-request output (where the tool has it)
    <results>/<release>/<run_id>/<experiment_id>/benchmark.log a failed experiment's output (never called a report)
    <results>/<release>/<run_id>/<experiment_id>/launcher.log
    <results>/<release>/<run_id>/.attempts/<attempt>/{started.json, preflight.json, result.json, launcher.log}
    <results>/<release>/<run_id>/<load point id>/load_summary.json   a serving load point: our summary ...
    <results>/<release>/<run_id>/<load point id>/profile_export_aiperf.{json,csv}  ... beside aiperf's exports

``run.json`` and ``metadata.json`` carry ``"schema": SCHEMA``; a reader reads exactly the keys listed here
and refuses a schema it does not know, rather than guessing at other spellings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SCHEMA = 1
"""The version of ``run.json`` and ``metadata.json``: bump it when a required key changes meaning or name."""

RUN_FILE = "run.json"
METADATA_FILE = "metadata.json"
REPORT_JSON = "report.json"
REPORT_TXT = "report.txt"
REQUESTS_FILE = "requests.json"
FAILED_OUTPUT = "benchmark.log"
LOG_FILE = "launcher.log"
ATTEMPTS_DIR = ".attempts"
ATTEMPT_RESULT = "result.json"
ATTEMPT_STARTED = "started.json"
"""Written when a pod starts; an attempt with it and without ``result.json`` was killed."""
ATTEMPT_PREFLIGHT = "preflight.json"
"""The GPU preflight's report for the node the attempt ran on (``launcher/preflight.py --json``)."""
REPORT_FILES = (REPORT_JSON, REPORT_TXT)
"""A succeeded experiment's report, in the order a reader prefers them."""

SUCCEEDED, FAILED, NOT_RUN = "succeeded", "failed", "not-run"
RUN_STATUSES = frozenset({SUCCEEDED, FAILED})
EXPERIMENT_STATUSES = frozenset({SUCCEEDED, FAILED, NOT_RUN})

RUN_KEYS = ("schema", "release", "run_id", "model", "status", "exit_code", "started", "finished", "experiments")
"""Keys every schema-1 ``run.json`` has (the launcher writes more: config, versions, gpus, ...)."""
METADATA_KEYS = ("schema", "release", "run_id", "model", "experiment", "status", "error", "started", "finished")
"""Keys every schema-1 experiment ``metadata.json`` has."""
EXPERIMENT_KEYS = ("id", "isl", "osl", "num_requests")
"""Keys of the ``experiment`` mapping in ``metadata.json`` and of each entry of ``run.json``'s ``experiments``."""

LOAD_SUMMARY = "load_summary.json"
"""Our summary of a load point (``recipelib.serving.results.write_summary``; its ``SUMMARY``), in the point's
folder beside aiperf's own exports: ``<results>/<release>/<run_id>/<load point id>/load_summary.json``."""
LOAD_EXPORT = "profile_export_aiperf.json"
"""aiperf's JSON export of one load point (kept as aiperf wrote it, beside its CSV export)."""
LOAD_ERROR = "error.txt"
"""Written in a load point's folder, instead of ``load_summary.json``, when aiperf failed there: why, in words."""
LOAD_SUMMARY_KEYS = ("schema", "points")
"""Keys every schema-1 ``load_summary.json`` has; ``points`` is a list of ``LoadPoint`` records. Optional keys
that analysis reads when present: ``model``, ``tp_size``, ``gpu``, ``gpu_count``, ``trtllm_version``,
``started`` (RFC 3339), ``standin`` and ``replay`` (booleans: not a real server), ``server`` (a description)."""

_EXPERIMENT_ID = re.compile(r"^isl(?P<isl>\d+)-osl(?P<osl>\d+)-n(?P<n>\d+)(?:-c(?P<c>\d+))?(?P<stream>-stream)?$")


class LayoutError(ValueError):
    """A results file does not follow this layout; the message names the file and the key."""


def experiment_id(isl: int, osl: int, num_requests: int, concurrency: int | None = None,
                  streaming: bool = False) -> str:
    """``isl128-osl128-n30000[-c64][-stream]``: stable, unique within a sweep, names the experiment's folder."""
    out = f"isl{isl}-osl{osl}-n{num_requests}"
    if concurrency:
        out += f"-c{concurrency}"
    return out + ("-stream" if streaming else "")


def parse_experiment_id(value: str) -> dict[str, Any] | None:
    """The inverse of :func:`experiment_id`; ``None`` for a folder name that is not one."""
    m = _EXPERIMENT_ID.match(value)
    if not m:
        return None
    return {"isl": int(m["isl"]), "osl": int(m["osl"]), "num_requests": int(m["n"]),
            "concurrency": int(m["c"]) if m["c"] else None, "streaming": bool(m["stream"])}


_LOAD_POINT_ID = re.compile(r"^isl(?P<isl>\d+)-osl(?P<osl>\d+)-(?:c(?P<c>\d+)|r(?P<r>\d+(?:\.\d+)?))$")


def load_point_id(concurrency: int | None = None, request_rate: float | None = None, *, isl: int,
                  osl: int) -> str:
    """``isl128-osl128-c16`` (closed loop, 16 in flight) or ``isl128-osl128-r2.5`` (open loop, 2.5 requests/s):
    the folder of one load point. Never an :func:`experiment_id` (those carry ``-n<requests>``)."""
    if (concurrency is None) == (request_rate is None):
        raise ValueError("load_point_id: give exactly one of concurrency or request_rate")
    if concurrency is not None:
        if isinstance(concurrency, bool) or int(concurrency) != concurrency or concurrency < 1:
            raise ValueError(f"load_point_id: concurrency {concurrency!r} is not a positive whole number")
        return f"isl{isl}-osl{osl}-c{int(concurrency)}"
    rate = float(request_rate)  # type: ignore[arg-type]
    if not rate > 0 or rate == float("inf"):
        raise ValueError(f"load_point_id: request_rate {request_rate!r} is not a positive number")
    return f"isl{isl}-osl{osl}-r{int(rate) if rate.is_integer() else rate!r}"


def parse_load_point_id(value: str) -> dict[str, Any] | None:
    """The inverse of :func:`load_point_id`; ``None`` for a folder name that is not one."""
    m = _LOAD_POINT_ID.match(value)
    if not m:
        return None
    return {"isl": int(m["isl"]), "osl": int(m["osl"]), "concurrency": int(m["c"]) if m["c"] else None,
            "request_rate": float(m["r"]) if m["r"] else None}


def run_prefix(release: str, run_id: str) -> str:
    """The run's folder relative to the results root (``<release>/<run_id>``)."""
    return f"{release}/{run_id}"


def run_file(release: str, run_id: str) -> str:
    return f"{run_prefix(release, run_id)}/{RUN_FILE}"


def experiment_prefix(release: str, run_id: str, experiment: str) -> str:
    return f"{run_prefix(release, run_id)}/{experiment}"


def experiment_file(release: str, run_id: str, experiment: str, name: str) -> str:
    return f"{experiment_prefix(release, run_id, experiment)}/{name}"


def attempt_file(attempt: str, name: str) -> str:
    """Relative to the run's folder."""
    return f"{ATTEMPTS_DIR}/{attempt}/{name}"


def check_document(doc: Any, required: tuple[str, ...], where: str) -> Mapping[str, Any]:
    """``doc`` as a schema-1 mapping with every ``required`` key, or :class:`LayoutError` naming what is wrong."""
    if not isinstance(doc, Mapping):
        raise LayoutError(f"{where}: must be a JSON object, got {type(doc).__name__}")
    schema = doc.get("schema")
    if schema != SCHEMA:
        if "schema" not in doc:
            raise LayoutError(f"{where}: has no 'schema' key: not written by the recipelib launcher")
        raise LayoutError(f"{where}: schema {schema!r} is not one this reader knows ({SCHEMA}); "
                          "upgrade recipelib to read it")
    missing = [k for k in required if k not in doc]
    if missing:
        raise LayoutError(f"{where}: missing key(s) {', '.join(missing)} (required by schema {SCHEMA})")
    return doc


def check_run(doc: Any, where: str = RUN_FILE) -> Mapping[str, Any]:
    run = check_document(doc, RUN_KEYS, where)
    if run["status"] not in RUN_STATUSES:
        raise LayoutError(f"{where}: status {run['status']!r} is not one of {', '.join(sorted(RUN_STATUSES))}")
    if not isinstance(run["experiments"], list):
        raise LayoutError(f"{where}: 'experiments' must be a list")
    for i, exp in enumerate(run["experiments"]):
        _check_experiment(exp, f"{where}: experiments[{i}]")
    return run


def check_metadata(doc: Any, where: str = METADATA_FILE) -> Mapping[str, Any]:
    meta = check_document(doc, METADATA_KEYS, where)
    if meta["status"] not in EXPERIMENT_STATUSES:
        raise LayoutError(f"{where}: status {meta['status']!r} is not one of "
                          f"{', '.join(sorted(EXPERIMENT_STATUSES))}")
    _check_experiment(meta["experiment"], f"{where}: experiment")
    return meta


def _check_experiment(exp: Any, where: str) -> None:
    if not isinstance(exp, Mapping):
        raise LayoutError(f"{where} must be a JSON object")
    missing = [k for k in EXPERIMENT_KEYS if k not in exp]
    if missing:
        raise LayoutError(f"{where}: missing key(s) {', '.join(missing)}")
