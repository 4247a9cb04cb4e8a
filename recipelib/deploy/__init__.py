"""From a model and experiments to validated Kubernetes objects on the cluster: catalog, render, validate, apply."""

from recipelib.deploy.benchmark import DeployResult, deploy, plan_benchmark
from recipelib.deploy.catalog import Experiment, ModelSpec, catalog, parse_experiments, presets, resolve_model
from recipelib.deploy.render import BenchmarkPlan, render_benchmark, write_manifests
from recipelib.deploy.validate import validate_objects

__all__ = [
    "BenchmarkPlan", "DeployResult", "Experiment", "ModelSpec", "catalog", "deploy", "parse_experiments",
    "plan_benchmark", "presets", "render_benchmark", "resolve_model", "validate_objects", "write_manifests",
]
