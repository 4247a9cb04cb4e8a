"""recipelib: serve and benchmark LLMs with TensorRT-LLM on GKE, driven from notebooks.

The functions most users need are re-exported here; each lives in a module named for what it holds.
"""

from recipelib._compat import install as _install_moved_modules
from recipelib.cluster import (
    Cluster,
    apply,
    check_cluster,
    connect,
    ensure_hf_secret,
    from_gke,
    from_kubeconfig,
    hf_token,
    list_releases,
    uninstall,
)
from recipelib.deploy import (
    BenchmarkPlan,
    Experiment,
    ModelSpec,
    catalog,
    deploy,
    parse_experiments,
    plan_benchmark,
    presets,
    render_benchmark,
    resolve_model,
    validate_objects,
    write_manifests,
)
from recipelib.deploy.serving import deploy_serving, plan_serving
from recipelib.deploy.serving_load import deploy_load, plan_load
from recipelib.errors import (
    AnalysisError,
    CloudConflictError,
    CloudError,
    CloudNotFoundError,
    ClusterError,
    ConfigError,
    ConflictError,
    CredentialsError,
    GpuReportError,
    ImageBuildError,
    ManifestError,
    NotFoundError,
    PermissionDeniedError,
    QuotaError,
    RecipelibError,
    ReportError,
    ResultsError,
    SecretError,
    SpeedOfLightError,
)
from recipelib.image import build_image, follow_build
from recipelib.monitor import latest_release, wait
from recipelib.monitor import status as run_status
from recipelib.monitor.serving import server_state
from recipelib.redaction import install_log_redaction as _install_log_redaction
from recipelib.results import load_results
from recipelib.settings import Settings, load_settings, save_settings
from recipelib.views.errors import install_error_display as _install_error_display

_install_moved_modules()
_install_error_display()
_install_log_redaction()

__all__ = [
    "AnalysisError",
    "BenchmarkPlan",
    "CloudConflictError",
    "CloudError",
    "CloudNotFoundError",
    "Cluster",
    "ClusterError",
    "ConfigError",
    "ConflictError",
    "CredentialsError",
    "Experiment",
    "GpuReportError",
    "ImageBuildError",
    "ManifestError",
    "ModelSpec",
    "NotFoundError",
    "PermissionDeniedError",
    "QuotaError",
    "RecipelibError",
    "ReportError",
    "ResultsError",
    "SecretError",
    "Settings",
    "SpeedOfLightError",
    "apply",
    "build_image",
    "catalog",
    "check_cluster",
    "connect",
    "deploy",
    "deploy_load",
    "deploy_serving",
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
    "plan_load",
    "plan_serving",
    "presets",
    "render_benchmark",
    "resolve_model",
    "run_status",
    "save_settings",
    "server_state",
    "uninstall",
    "validate_objects",
    "wait",
    "write_manifests",
]
