"""Prediction throughput: records per second of ``diagnosenet predict`` over a record directory.

    .venv/bin/python bench/bench_ecg_predict_throughput.py --model results-paper/ecg/baseline \\
        --records ../shared/data/physionet2017-train-a --jobs 1 2 --out bench/out/predict-throughput.json

Runs the real command once per ``--jobs`` value (a fresh process each: the imports count, as
for a user), and reports wall seconds, records/s, CPU seconds of the command and its worker
processes, and the peak resident memory of the largest of them (``ru_maxrss`` of the
children). Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(models: list[str], records: Path, jobs: int, weights: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter()
        command = [str(Path(sys.executable).parent / "diagnosenet"), "predict", "--model", *models,
                   *(["--weights", *weights] if weights else []), "--records", str(records), "--jobs", str(jobs),
                   "--out", out]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - wall
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        counts = json.loads((Path(out) / "counts.json").read_text())
        scores = json.loads((Path(out) / "scores.json").read_text()) if (Path(out) / "scores.json").exists() else {}
    n = counts["records_in"]
    return {"jobs": jobs, "records": n, "seconds": round(wall, 2), "records_per_second": round(n / wall, 2),
            "cpu_seconds": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
            "peak_rss_mb": round(after.ru_maxrss / 1024, 1), "challenge_f1": scores.get("challenge_f1")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", required=True, help="as diagnosenet predict --model")
    parser.add_argument("--weights", nargs="+", default=[])
    parser.add_argument("--records", type=Path, required=True)
    parser.add_argument("--jobs", type=int, nargs="+", default=[os.cpu_count() or 1])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    for jobs in args.jobs:
        rows.append(run(args.model, args.records, jobs, args.weights))
        print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "records_dir": str(args.records), "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
