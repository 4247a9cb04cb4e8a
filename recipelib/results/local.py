"""Results on disk: a results root laid out like the bucket, one run's folder, loose reports, the examples.

A folder the launcher wrote (``run.json``, ``metadata.json``) is read strictly through
:mod:`recipelib.results.records`; a folder of loose ``report.json``/``*.txt`` files (a user's own
trtllm-bench output) has no launcher records to check, and each file becomes an experiment of one run
named after the folder. The bucket's local cache is read by the same code (:func:`load_run_dir`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import recipelib.results.layout as layout
from recipelib.errors import ReportError, ResultsError
from recipelib.results.records import ExperimentMetadata, RunInfo, newest_first, read_metadata, read_run
from recipelib.results.reports import parse_report
from recipelib.results.table import MissingReport, Results, RunRows, combine, report_row

log = logging.getLogger(__name__)

__all__ = ["examples_dir", "list_local_runs", "load_examples", "load_local", "load_run_dir"]

LOOSE_RELEASE = "local"
"""The release of a folder of loose reports (its run id is the folder's name)."""


def examples_dir() -> Path:
    """The example results shipped with recipelib, laid out like the bucket (release/run_id/experiment)."""
    return Path(__file__).resolve().parents[1] / "data" / "examples"


def list_local_runs(root: str | Path) -> list[RunInfo]:
    """Runs under a local results root (``release/run_id/run.json``), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = []
    for release_dir in _folders(root):
        for run_dir in _folders(release_dir):
            runs.append(read_run(run_dir, release_dir.name, run_dir.name))
    return newest_first(runs)


def load_local(path: str | Path, runs: str | Sequence[str] = "all", *, strict: bool = True,
               excerpt: bool = False) -> Results:
    """Load a local folder of reports.

    ``path`` may be a results root laid out like the bucket (``release/run_id/experiment/report.*``),
    one run's folder (it holds ``run.json``), or any folder of loose ``report.json``/``*.txt`` reports
    (each file is an experiment of one run named after the folder). ``strict=False`` lists an experiment
    whose report or ``metadata.json`` cannot be read as missing (with a logged warning) instead of raising;
    a bad ``run.json`` always raises. ``excerpt=True`` reads text reports as published excerpts (see
    :func:`~recipelib.results.report_text.parse_text`); the shipped examples are always read so.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ResultsError(f"{path} does not exist")
    excerpt = excerpt or path.resolve().is_relative_to(examples_dir())  # the shipped examples are quotes
    origin = str(path)
    if path.is_file():
        return combine([load_loose([path], path.parent.name, strict=strict, excerpt=excerpt)], origin=origin)
    if (path / layout.RUN_FILE).exists():
        return combine([load_run_dir(path, path.parent.name, path.name, named=origin, strict=strict,
                                     excerpt=excerpt)], origin=origin)
    listed = [r for r in list_local_runs(path) if not r.serving and _has_results(path / r.release / r.run_id)]
    if listed:
        tokens = run_tokens(runs)
        if tokens == ["latest"]:
            listed = listed[:1]
        elif tokens != ["all"]:
            listed = [_find_local(t, listed) for t in tokens]
        return combine([load_run_dir(path / r.release / r.run_id, r.release, r.run_id,
                                     named=f"{origin}/{r.key}", strict=strict, excerpt=excerpt)
                        for r in listed], origin=origin)
    files = sorted(p for p in path.rglob("*") if p.is_file() and _is_report_file(p))
    if not files:
        raise ResultsError(f"no trtllm-bench reports ({layout.REPORT_JSON}, *.txt) under {path}")
    return combine([load_loose(files, path.name, strict=strict, excerpt=excerpt)], origin=origin)


def load_examples(runs: str | Sequence[str] = "all", *, strict: bool = True) -> Results:
    """The example reports shipped with recipelib (real, published runs; see ``data/examples/README.md``).

    They are quotes from NVIDIA's docs and blogs, some of which stop at the last value, before the closing
    rule trtllm-bench prints: they are read as excerpts (a line cut mid-way is still refused)."""
    results = load_local(examples_dir(), runs, strict=strict, excerpt=True)
    return Results(results.frame, results.runs, results.missing, origin="recipelib examples")


def load_run_dir(run_dir: Path, release: str, run_id: str, *, named: str, strict: bool,
                 excerpt: bool = False) -> RunRows:
    """One run's folder as rows. ``named`` is how its files are named in sources and errors (a path or
    the bucket's ``gs://`` URI of the run); an experiment without a report is listed as missing."""
    info = read_run(run_dir, release, run_id, where=f"{named}/{layout.RUN_FILE}")
    experiments = [p.name for p in _folders(run_dir)]
    experiments += [e for e in info.experiments if e not in experiments]
    loaded = RunRows(info)
    for experiment in experiments:
        exp_dir = run_dir / experiment
        try:
            metadata = read_metadata(exp_dir / layout.METADATA_FILE,
                                     where=f"{named}/{experiment}/{layout.METADATA_FILE}")
        except ResultsError as e:
            if strict:
                raise
            _skip(loaded, experiment, str(e))
            continue
        report_path = next((exp_dir / f for f in layout.REPORT_FILES if (exp_dir / f).is_file()), None)
        if report_path is None:
            _skip(loaded, experiment, _no_report(metadata))
            continue
        _add_reports(loaded, report_path, experiment, metadata, f"{named}/{experiment}/{report_path.name}",
                     strict=strict, excerpt=excerpt)
    return loaded


def load_loose(files: Iterable[Path], run_id: str, *, strict: bool, excerpt: bool = False) -> RunRows:
    """Report files that no launcher wrote, as one run ``local/<run_id>``: each file is an experiment (its
    folder's name for ``report.json``/``report.txt``, else the file's stem). A ``metadata.json`` beside a
    report is the launcher's, and is read strictly."""
    loaded = RunRows(RunInfo(release=LOOSE_RELEASE, run_id=run_id))
    for path in files:
        experiment = path.parent.name if path.name in layout.REPORT_FILES else path.stem
        try:
            metadata = read_metadata(path.parent / layout.METADATA_FILE)
        except ResultsError as e:
            if strict:
                raise
            _skip(loaded, experiment, str(e))
            continue
        _add_reports(loaded, path, experiment, metadata, str(path), strict=strict, excerpt=excerpt)
    return loaded


def run_tokens(runs: str | Sequence[str]) -> list[str]:
    """``"latest"``, ``"all"``, or run ids as a comma-separated string or a list, stripped and checked."""
    items = runs.split(",") if isinstance(runs, str) else list(runs)
    tokens = [t.strip() for t in items if t and t.strip()]
    if not tokens:
        raise ResultsError("runs is empty: give 'latest', 'all', or run ids (release/run_id)")
    return tokens


def unique_run(token: str, found: Sequence[RunInfo]) -> tuple[str, str]:
    """The one run a bare run id names, or a ResultsError saying there is none, or several releases."""
    if not found:
        raise ResultsError(f"no run with id {token!r}; list them with ResultsStore.list_runs()")
    if len({r.key for r in found}) > 1:
        raise ResultsError(f"run id {token!r} is in several releases ({', '.join(r.key for r in found)}): "
                           "write release/run_id")
    return found[0].release, found[0].run_id


def _find_local(token: str, listed: Sequence[RunInfo]) -> RunInfo:
    found = [r for r in listed if token in (r.key, r.run_id)]
    release, run_id = unique_run(token, found)
    return next(r for r in found if (r.release, r.run_id) == (release, run_id))


def _add_reports(loaded: RunRows, path: Path, experiment: str, metadata: ExperimentMetadata | None, source: str,
                 *, strict: bool, excerpt: bool = False) -> None:
    try:
        reports = parse_report(path.read_bytes(), name=path.name, source=source, excerpt=excerpt)
    except ReportError as e:
        if strict:
            raise
        _skip(loaded, experiment, str(e))
        return
    for index, report in enumerate(reports):
        loaded.rows.append(report_row(report, loaded.info, experiment, index, metadata))


def _skip(loaded: RunRows, experiment: str, reason: str) -> None:
    loaded.missing.append(MissingReport(loaded.info.key, experiment, reason))
    log.warning("%s/%s: no report (%s)", loaded.info.key, experiment, reason)


def _no_report(metadata: ExperimentMetadata | None) -> str:
    """Why an experiment has no report: the launcher's error, else its status, else that none was written."""
    if metadata is None:
        return f"no {' or '.join(layout.REPORT_FILES)}"
    return metadata.error or metadata.status


def _folders(path: Path) -> list[Path]:
    """Sub-folders in name order, without the dot folders (``.attempts``) that hold no results."""
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _has_results(run_dir: Path) -> bool:
    return (run_dir / layout.RUN_FILE).exists() or any(
        any(run_dir.glob(f"*/{name}")) for name in layout.REPORT_FILES)


def _is_report_file(path: Path) -> bool:
    if path.name.startswith("."):
        return False
    return path.name == layout.REPORT_JSON or path.suffix == ".txt"
