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
from .models import Experiment, ModelSpec, catalog, parse_experiments, presets, resolve_model
from .releases import apply, list_releases, uninstall
from .render import BenchmarkPlan, render_benchmark, write_manifests
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
    "catalog",
    "check_cluster",
    "connect",
    "deploy",
    "ensure_hf_secret",
    "from_gke",
    "from_kubeconfig",
    "hf_token",
    "list_releases",
    "load_settings",
    "parse_experiments",
    "plan_benchmark",
    "presets",
    "render_benchmark",
    "resolve_model",
    "save_settings",
    "uninstall",
    "validate_objects",
    "write_manifests",
]
