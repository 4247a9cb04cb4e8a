"""recipelib: serve and benchmark LLMs with TensorRT-LLM on GKE, driven from notebooks.

The functions most users need are re-exported here; each lives in a module named for what it holds.
"""

from .checks import check_cluster
from .cluster import Cluster, connect, from_gke, from_kubeconfig
from .deploy import deploy, plan_benchmark
from .errors import (
    CloudError,
    ClusterError,
    ConfigError,
    ConflictError,
    ManifestError,
    NotFoundError,
    RecipelibError,
    SecretError,
)
from .imagebuild import build_image, follow_build
from .models import Experiment, ModelSpec, catalog, parse_experiments, presets, resolve_model
from .monitor import latest_release, wait
from .monitor import status as run_status
from .releases import apply, list_releases, uninstall
from .render import BenchmarkPlan, render_benchmark, write_manifests
from .results import load_results
from .secrets import ensure_hf_secret, hf_token
from .settings import Settings, load_settings, save_settings
from .validate import validate_objects

__all__ = [
    "BenchmarkPlan",
    "CloudError",
    "Cluster",
    "ClusterError",
    "ConfigError",
    "ConflictError",
    "Experiment",
    "ManifestError",
    "ModelSpec",
    "NotFoundError",
    "RecipelibError",
    "SecretError",
    "Settings",
    "apply",
    "build_image",
    "catalog",
    "check_cluster",
    "connect",
    "deploy",
    "ensure_hf_secret",
    "follow_build",
    "from_gke",
    "from_kubeconfig",
    "hf_token",
    "latest_release",
    "list_releases",
    "load_results",
    "load_settings",
    "parse_experiments",
    "plan_benchmark",
    "presets",
    "render_benchmark",
    "resolve_model",
    "run_status",
    "save_settings",
    "uninstall",
    "validate_objects",
    "wait",
    "write_manifests",
]
