"""How long parsing and loading 1,000 trtllm-bench reports takes, and proof that a cached load is offline.

    .venv/bin/python benchmarks/load_reports.py [--runs 10] [--experiments 100]

Builds a results tree of runs x experiments from the example reports shipped with recipelib (their four
text layouts, plus one report.json in five), then times:

1. parsing every file;
2. ``load_local`` of the whole tree into the DataFrame (the target: under 2 s for 1,000 files);
3. the same tree in a bucket of a local fake-gcs-server: a first load (downloads), a second load from the
   cache and an offline load, counting the HTTP requests the storage client sends. The cached loads must
   send none.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from recipelib.results import ResultsStore, examples_dir, layout, load_local
from recipelib.results.reports import BenchReport, ReportError, parse_json, parse_text
from recipelib.sandbox.gcs import LocalGCS

TARGET_S = 2.0


class CountingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def request(self, *args, **kwargs):  # type: ignore[override]
        self.count += 1
        return super().request(*args, **kwargs)


def as_report_json(r: BenchReport) -> str:
    """A --report_json document (ReportUtility.get_statistics_dict keys) holding a parsed report's values."""
    return json.dumps({
        "engine": {"model": r.model, "version": r.trtllm_version, "backend": "TRT", "quantization": r.quantization},
        "world_info": {"tp_size": r.tp_size, "pp_size": r.pp_size},
        "request_info": {"num_requests": r.num_requests, "avg_input_length": r.avg_isl,
                         "avg_output_length": r.avg_osl},
        "performance": {"total_latency_ms": r.total_latency_ms, "request_throughput_req_s": r.request_throughput,
                        "system_output_throughput_tok_s": r.output_throughput},
    })


def _complete(text: str) -> bool:
    try:
        parse_text(text)
    except ReportError:
        return False
    return True


def build_tree(root: Path, runs: int, experiments: int) -> list[Path]:
    texts = [p.read_text() for p in sorted(examples_dir().rglob("report.txt"))]
    texts = [t for t in texts if _complete(t)]  # a published excerpt (no closing rule) reads only as one
    [real] = [t for t in texts if "Llama-3.1-405B" in t]
    json_text = as_report_json(parse_text(real)[0])
    files = []
    for run in range(runs):
        run_dir = root / f"release-{run % 3}" / f"run-{run:03d}"
        run_dir.mkdir(parents=True)
        ids = [layout.experiment_id(128 * (k + 1), 128, 3000) for k in range(experiments)]
        (run_dir / layout.RUN_FILE).write_text(json.dumps({
            "schema": layout.SCHEMA, "release": run_dir.parent.name, "run_id": run_dir.name,
            "model": "meta-llama/Llama-3.1-405B", "status": layout.SUCCEEDED, "exit_code": 0,
            "started": f"2025-06-{run % 28 + 1:02d}T00:00:00Z", "finished": None,
            "experiments": [{"id": i, **layout.parse_experiment_id(i)} for i in ids],
            "gpus": {"available": True, "count": 1, "gpus": [{"name": "NVIDIA H200"}]}}))
        for k, experiment in enumerate(ids):
            exp = run_dir / experiment
            exp.mkdir()
            if k % 5 == 4:
                path = exp / layout.REPORT_JSON
                path.write_text(json_text)
            else:
                path = exp / layout.REPORT_TXT
                path.write_text(texts[k % len(texts)])
            files.append(path)
    return files


def upload(root: Path, client: storage.Client, bucket_name: str, prefix: str) -> int:
    bucket = client.bucket(bucket_name)
    paths = [p for p in root.rglob("*") if p.is_file()]

    def put(path: Path) -> None:
        bucket.blob(f"{prefix}/{path.relative_to(root).as_posix()}").upload_from_filename(str(path))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, paths))
    return len(paths)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--experiments", type=int, default=100)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "results"
        files = build_tree(root, args.runs, args.experiments)
        layouts = len({p.read_text() for p in files if p.suffix == ".txt"})
        print(f"{len(files)} report files ({args.runs} runs x {args.experiments} experiments; {layouts} text layouts, "
              f"every 5th a report.json)")

        start = time.perf_counter()
        for path in files:
            (parse_json if path.suffix == ".json" else parse_text)(path.read_text(), source=str(path))
        parse_s = time.perf_counter() - start
        print(f"parse every file:                 {parse_s:6.2f} s")

        start = time.perf_counter()
        results = load_local(root, "all")
        load_s = time.perf_counter() - start
        rows, columns = results.frame.shape
        verdict = "OK" if load_s < TARGET_S else "TOO SLOW"
        print(f"load_local -> DataFrame:          {load_s:6.2f} s  ({rows} rows x {columns} columns; "
              f"target < {TARGET_S:.0f} s: {verdict})")

        server = LocalGCS(root=tmp_path / "gcs").start()
        try:
            client = server.client()
            bucket = client.create_bucket("benchmark")
            start = time.perf_counter()
            objects = upload(root, client, bucket.name, "trtllm-benchmarks")
            print(f"upload to fake-gcs-server:        {time.perf_counter() - start:6.2f} s  ({objects} objects)")

            def store() -> tuple[ResultsStore, CountingSession]:
                session = CountingSession()
                counting = storage.Client(project="local-sandbox", credentials=AnonymousCredentials(),
                                          client_options={"api_endpoint": server.url}, _http=session)
                return ResultsStore(counting, "benchmark", "trtllm-benchmarks", tmp_path / "cache"), session

            first_store, first = store()
            start = time.perf_counter()
            online = first_store.load("all")
            print(f"first load from the bucket:       {time.perf_counter() - start:6.2f} s  "
                  f"({first.count} HTTP requests, {len(online.frame)} rows)")
            run_ids = [r.key for r in online.runs]

            second_store, second = store()
            start = time.perf_counter()
            cached = second_store.load(run_ids)
            print(f"second load, from the cache:      {time.perf_counter() - start:6.2f} s  "
                  f"({second.count} HTTP requests, {len(cached.frame)} rows)")

            offline_store, offline = store()
            start = time.perf_counter()
            offline_results = offline_store.load("all", offline=True)
            print(f"offline load of all cached runs:  {time.perf_counter() - start:6.2f} s  "
                  f"({offline.count} HTTP requests, {len(offline_results.frame)} rows)")
        finally:
            server.stop()

    ok = load_s < TARGET_S and second.count == 0 and offline.count == 0 and cached.frame.equals(online.frame)
    print("result:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
