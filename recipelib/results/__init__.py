"""Benchmark results: report parsing, the results store and local folders, the table, analysis, plots, export."""

from recipelib.results.store import (
    COLUMNS,
    MissingReport,
    Results,
    ResultsError,
    ResultsStore,
    RunInfo,
    default_cache_dir,
    examples_dir,
    list_local_runs,
    load_examples,
    load_local,
    load_results,
    make_client,
)

__all__ = [
    "COLUMNS", "MissingReport", "Results", "ResultsError", "ResultsStore", "RunInfo", "default_cache_dir",
    "examples_dir", "list_local_runs", "load_examples", "load_local", "load_results", "make_client",
]
