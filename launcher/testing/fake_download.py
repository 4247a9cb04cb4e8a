#!/usr/bin/env python3
"""A downloader for ``$RECIPE_DOWNLOADER``: copies ``$FAKE_HUB/<org>/<name>/`` into the destination.

Called as ``fake_download.py MODEL DEST [--exclude PATTERN]...``, like any downloader the launcher accepts
(``--exclude`` as ``huggingface-cli download`` spells it: an fnmatch pattern on the file's path in the repo). It needs
``HF_TOKEN`` (as a gated model does) and records each call in ``$STANDIN_CALLS``. Simulations:
``FAKE_DOWNLOAD_FAIL=1`` prints the token (a leaky tool) and exits 1; ``FAKE_DOWNLOAD_PARTIAL=1``
copies only the first weight shard and exits 0 (the launcher's verification must catch it).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    model, dest = argv[0], Path(argv[1])
    rest = argv[2:]
    if len(rest) % 2 or any(flag != "--exclude" for flag in rest[::2]):
        print(f"Error: No such option: {' '.join(rest)}", file=sys.stderr)
        return 2
    excluded = rest[1::2]
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
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        name = path.relative_to(source).as_posix()
        if os.environ.get("FAKE_DOWNLOAD_PARTIAL") == "1" and path.suffix == ".safetensors" and path.name != shards[0]:
            continue
        if any(fnmatch.fnmatch(name, pattern) for pattern in excluded):
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest / name)
        print(f"Fetched {name} ({path.stat().st_size} bytes)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
