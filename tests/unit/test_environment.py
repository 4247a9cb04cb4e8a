"""environment.yml must say what pyproject.toml says: conda users get the same packages."""

import sys

import tomllib
import yaml
from helpers import REPO
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = REPO


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def environment():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def normalised(requirements):
    return {Requirement(r).name.lower().replace("_", "-"): str(Requirement(r).specifier) for r in requirements}


def test_environment_pins_exactly_what_pyproject_declares():
    project = pyproject()
    declared = normalised(project["dependencies"] + project["optional-dependencies"]["test"])
    deps = environment()["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    listed = normalised([p for p in pip if not p.startswith("-e")])
    assert listed == declared
    assert "-e ." in pip  # the project itself, as `pip install -e .`


def test_environment_python_satisfies_requires_python():
    deps = environment()["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    assert SpecifierSet(python.removeprefix("python")) == SpecifierSet(pyproject()["requires-python"])
    assert sys.version_info >= (3, 10)


def test_jupyterlab_is_a_runtime_dependency_so_make_lab_needs_no_test_extra():
    runtime = normalised(pyproject()["dependencies"])
    assert "jupyterlab" in runtime
    assert "jupyterlab" not in normalised(pyproject()["optional-dependencies"]["test"])
