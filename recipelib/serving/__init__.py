"""Online serving: load sweeps by NVIDIA's aiperf against trtllm-serve, and their per-point summaries.

``load`` validates a sweep and runs aiperf (from its own environment, ``aiperf_env``); ``results`` reads
aiperf's exports into :class:`LoadPoint` records without changing them.
"""

from recipelib.serving.load import LoadSweep, parse_slos, positive_list, run_sweep
from recipelib.serving.results import LoadPoint, read_point, read_sweep, write_summary

__all__ = ["LoadPoint", "LoadSweep", "parse_slos", "positive_list", "read_point",
           "read_sweep", "run_sweep", "write_summary"]
