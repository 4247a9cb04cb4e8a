"""The flat module names of recipelib's first round, still importable for users' code and notebooks.

``import recipelib.reports`` (and ``from recipelib.imagebuild import build_image``) resolve to the module's
new home, the same module object, so patching or reading it through either name sees one thing. Nothing is
imported until asked: the sandbox's old names do not pull the sandbox into the product.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

MOVED: dict[str, str] = {
    "models": "deploy.catalog",
    "render": "deploy.render",
    "validate": "deploy.validate",
    "checks": "cluster.checks",
    "releases": "cluster.releases",
    "secrets": "cluster.hf_secret",
    "imagebuild": "image.build",
    "buildcontext": "image.context",
    "registry": "image.registry",
    "trtllm_versions": "image.trtllm_versions",
    "progress": "monitor.progress",
    "reports": "results.reports",
    "analysis": "results.analysis",
    "plots": "results.plots",
    "reference": "results.reference",
    "speed_of_light": "results.speed_of_light",
    "html_report": "results.html_report",
    "preflight": "results.gpu_report",
    "notebook": "views.notebook",
    "monitor_view": "views.monitor",
    "imagebuild_view": "views.image_build",
    "localgcs": "sandbox.gcs",
    "localkube": "sandbox.kube",
    "nodeagent": "sandbox.nodeagent",
    "demo": "sandbox.demo",
}
"""Old module (``recipelib.<key>``) -> its home now (``recipelib.<value>``)."""


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        prefix, _, name = fullname.partition(".")
        if prefix != "recipelib" or name not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(f"recipelib.{MOVED[spec.name.partition('.')[2]]}")
        self._specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._specs[module.__name__]  # the import system stamped the alias's spec on it

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}


def install() -> None:
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
