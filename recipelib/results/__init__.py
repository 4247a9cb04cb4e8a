"""Benchmark results: report parsing, the results store and local folders, the table, analysis, plots, export.

Where things are: ``reports`` (trtllm-bench reports -> :class:`~recipelib.results.reports.BenchReport`;
``report_text`` and ``report_json`` parse the two formats), ``layout`` (the paths and keys the launcher
writes), ``records`` (``run.json``/``metadata.json``, read strictly), ``table`` (the DataFrame and
:class:`Results`), ``local`` (folders on disk and the shipped examples), ``store`` (the Cloud Storage bucket
and its cache, :func:`load_results`).
"""

from recipelib.errors import ResultsError
from recipelib.results.local import examples_dir, list_local_runs, load_examples, load_local
from recipelib.results.records import RunInfo
from recipelib.results.store import ResultsStore, default_cache_dir, load_results, make_client
from recipelib.results.table import COLUMNS, MissingReport, Results

__all__ = [
    "COLUMNS", "MissingReport", "Results", "ResultsError", "ResultsStore", "RunInfo", "default_cache_dir",
    "examples_dir", "list_local_runs", "load_examples", "load_local", "load_results", "make_client",
]
