#!/usr/bin/env python3
"""A downloader for ``$RECIPE_DOWNLOADER``: copies ``$FAKE_HUB/<org>/<name>/`` into the destination.

Called as ``fake_download.py MODEL DEST``, like any downloader the launcher accepts. It needs
``HF_TOKEN`` (as a gated model does) and records each call in ``$STANDIN_CALLS``. Simulations:
``FAKE_DOWNLOAD_FAIL=1`` prints the token (a leaky tool) and exits 1; ``FAKE_DOWNLOAD_PARTIAL=1``
copies only the first weight shard and exits 0 (the launcher's verification must catch it).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    model, dest = argv[0], Path(argv[1])
    calls = os.environ.get("STANDIN_CALLS")
    if calls:
        with open(calls, "a") as f:
            f.write(json.dumps({"tool": "download", "argv": argv}) + "\n")
    token = os.environ.get("HF_TOKEN")
    if not token:
        print(f"401 Client Error: access to model {model} is restricted (no HF_TOKEN)", file=sys.stderr)
        return 1
    if os.environ.get("FAKE_DOWNLOAD_FAIL") == "1":
        print(f"403 Forbidden: token {token} has no access to {model}", file=sys.stderr)
        return 1
    source = Path(os.environ["FAKE_HUB"]) / model
    if not source.is_dir():
        print(f"404 Client Error: Repository Not Found for url: https://huggingface.co/{model}", file=sys.stderr)
        return 1
    shards = sorted(p.name for p in source.glob("*.safetensors"))
    for path in sorted(source.iterdir()):
        if os.environ.get("FAKE_DOWNLOAD_PARTIAL") == "1" and path.suffix == ".safetensors" and path.name != shards[0]:
            continue
        shutil.copy(path, dest / path.name)
        print(f"Fetched {path.name} ({path.stat().st_size} bytes)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
