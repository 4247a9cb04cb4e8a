"""``make demo``: the notebooks end to end on this machine, no cloud account needed.

Starts a real Kubernetes API server on loopback (built once from Debian's source package, then
cached), points a demo settings file at it, and runs the notebooks headless with papermill:
setup -> deploy (dry run: manifests written) -> deploy (applied to the local API server) -> cleanup.
The user's own settings file is never touched. Everything lands in one output folder, named at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import tempfile
from pathlib import Path

from .localkube import LocalKube
from .paths import ROOT
from .settings import SETTINGS_ENV

log = logging.getLogger("recipelib.demo")

DEMO_SETTINGS = {
    "gcs_bucket": "demo-results",
    "artifact_registry": "us-central1-docker.pkg.dev/demo-project/demo-repo",
    "project_id": "demo-project",
}
# A placeholder, not a credential: the local API server stores it in hf-secret like a real token.
DEMO_TOKEN = "hf_localsandboxplaceholder000000"


def run_notebook(name: str, dest: Path, label: str, **parameters: object) -> Path:
    import papermill as pm

    out = dest / f"{label}.ipynb"
    print(f"-> {name}.ipynb {' '.join(f'{k}={v!r}' for k, v in parameters.items())}", flush=True)
    pm.execute_notebook(
        str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=parameters, kernel_name="python3",
        cwd=str(dest), progress_bar=False,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-output", help="parent folder of the run's output folder")
    parser.add_argument("--model", default="meta-llama/Llama-3.1-405B")
    parser.add_argument("--experiments", default="nvidia-sweep")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.WARNING)

    out_dir = Path(args.out).resolve() / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True)
    os.environ[SETTINGS_ENV] = str(out_dir / "settings.yaml")
    os.environ.setdefault("HF_TOKEN", DEMO_TOKEN)
    with tempfile.TemporaryDirectory(prefix="recipelib-kube-") as state, LocalKube(root=Path(state)) as kube:
        print(f"Local Kubernetes API server ready at {kube.url} (a sandbox; nothing leaves this machine)")
        run_notebook("setup", out_dir, "1-setup", kubeconfig=str(kube.kubeconfig), kube_context=kube.context,
                     require_ready=False, **DEMO_SETTINGS)
        run_notebook("deploy", out_dir, "2-deploy-dry-run", model=args.model, experiments=args.experiments,
                     dry_run=True, out_dir="manifests")
        run_notebook("deploy", out_dir, "3-deploy", model=args.model, experiments=args.experiments, out_dir="")
        run_notebook("cleanup", out_dir, "4-cleanup-list")
    print(f"\nDone. Executed notebooks, settings and manifests are in:\n  {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
