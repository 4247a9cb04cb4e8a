"""Every notebook in ``notebooks/``, run by nbmake with its defaults, against the sandbox.

This is ``pytest --nbmake notebooks/`` as the user's design asks ("nbmake tests in CI"), with two
differences that keep it hermetic: each notebook runs from a copy in a temporary folder (nbmake runs a
notebook in its own folder, and the notebooks write ``deploy-manifests/`` and ``analysis-output/`` beside
themselves), and the kernels see a user with no cluster configured, no settings file and no ``HF_TOKEN``,
while the session's sandbox offers its settings (``RECIPELIB_OVERLAY``), as after ``python -m recipelib.sandbox
start``. nbmake passes no parameters, so these runs prove that every notebook's defaults work on the sandbox.

build-image needs Cloud Build, which the sandbox has not: on the sandbox it says so and ends cleanly at its
first cell (no Google credentials are looked up); its defaults are checked here for exactly that. The google-auth
library is kept from probing the GCE metadata server, so nothing here can leave loopback.

The notebooks run in the user's order (setup, build-image, deploy, monitor, analyze, cleanup; any other
notebook after them), sharing the sandbox's ``default`` namespace as a user does; a notebook that needs a
release (monitor, analyze) gets the deploy notebook run first when it is selected alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import NOTEBOOKS
from nbmake.nb_run import NotebookRun

from recipelib.cluster.hf_secret import SECRET_NAME, delete_hf_secret
from recipelib.sandbox import Sandbox
from recipelib.settings import NAMES, OVERLAY_ENV, SETTINGS_ENV

FLOW = ("setup", "build-image", "deploy", "monitor", "analyze", "cleanup")
NEEDS_A_RELEASE = ("monitor", "analyze")
TIMEOUT_S = 300  # nbmake's default cell timeout (pytest --nbmake-timeout)


def in_flow_order() -> list[str]:
    found = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    return [n for n in FLOW if n in found] + [n for n in found if n not in FLOW]


class Runs:
    """Runs notebooks with nbmake's runner in one folder; remembers which ran."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.done: set[str] = set()

    def run(self, name: str) -> None:
        copy = self.folder / f"{name}.ipynb"
        shutil.copyfile(NOTEBOOKS / f"{name}.ipynb", copy)
        result = NotebookRun(copy, TIMEOUT_S).execute()
        if result.error is not None:
            pytest.fail(f"{name}.ipynb failed under nbmake with its defaults:\n{result.error.summary}\n"
                        f"{result.error.trace[-4000:]}", pytrace=False)
        self.done.add(name)


@pytest.fixture(scope="module")
def runs(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """A user with nothing configured, next to a running sandbox; the releases made here are removed after."""
    import recipelib

    folder = tmp_path_factory.mktemp("nbmake")
    env = pytest.MonkeyPatch()
    for name in (*NAMES, "HF_TOKEN", "RECIPELIB_LAUNCHER"):
        env.delenv(name, raising=False)
    env.setenv(SETTINGS_ENV, str(folder / "no-settings-of-the-users.yaml"))
    env.setenv(OVERLAY_ENV, str(sandbox.overlay))
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG"):
        env.delenv(name, raising=False)
    env.setenv("NO_GCE_CHECK", "True")  # google-auth: never probe the GCE metadata server (loopback only here)
    env.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    env.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    env.chdir(folder)
    cluster = sandbox.cluster("default")
    before = {r.name for r in recipelib.list_releases(cluster)}
    secrets = cluster.core.list_namespaced_secret("default", field_selector=f"metadata.name={SECRET_NAME}")
    had_secret = bool(secrets.items)
    yield Runs(folder)
    for release in recipelib.list_releases(cluster):
        if release.name not in before:
            recipelib.uninstall(cluster, release.name)
    if not had_secret:
        delete_hf_secret(cluster)
    env.undo()
    assert not (folder / "no-settings-of-the-users.yaml").exists(), "a notebook saved the sandbox's settings"


@pytest.mark.parametrize("name", in_flow_order())
def test_notebook_runs_with_its_defaults_on_the_sandbox(runs: Runs, name: str) -> None:
    if name in NEEDS_A_RELEASE and "deploy" not in runs.done:
        runs.run("deploy")
    runs.run(name)
