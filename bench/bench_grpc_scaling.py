"""Training throughput of grpc-async and grpc-sync against the number of workers (loopback).

Builds a synthetic PMSI data set with the project's own stages (synth-pmsi → compose-pmsi →
materialise → shard), then runs `diagnosenet train-grpc` for every mode × worker count and
reads the run's track.csv: samples/s = training rows of epochs 2.. / their epoch seconds
(epoch 1 includes tracing). Prints one Markdown table row per run.

    .venv/bin/python bench/bench_grpc_scaling.py --workers 1 2 --epochs 4
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def stage(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "diagnosenet", *args], check=True, stdout=subprocess.DEVNULL)


def prepare(root: Path, patients: int, workers: list[int], batch: int) -> None:
    stage("synth-pmsi", "--patients", str(patients), "--out", str(root / "raw"))
    stage("compose-pmsi", "--rhs", str(root / "raw" / "rhs_*.txt"), "--labels", str(root / "raw" / "labels.csv"),
          "--out", str(root / "composed"), "--salt-file", str(root / "salt"))
    stage("materialise", "--input", str(root / "composed"), "--out", str(root / "dataset"))
    for n in workers:
        stage("shard", "--dataset", str(root / "dataset"), "--out", str(root / f"shards-w{n}"), "--workers", str(n),
              "--batch-size", str(batch))


def run(root: Path, mode: str, workers: int, args, port: int) -> dict:
    out = root / f"{mode}-w{workers}"
    train = ["--task", "pmsi", "--mode", mode, "--workers", str(workers), "--dataset", str(root / "dataset"),
             "--shards", str(root / f"shards-w{workers}"), "--out", str(out),
             "--model-json", json.dumps({"hidden_units": args.hidden, "dropout_keep": 0.8}),
             "--max-epochs", str(args.epochs), "--patience", str(args.epochs), "--batch-size", str(args.batch),
             "--monitor-rate", "0"]
    tic = time.time()
    with open(root / f"{mode}-w{workers}.log", "w") as log:
        code = subprocess.run([sys.executable, "-m", "diagnosenet", "train-grpc", "--mode", mode, "--workers",
                               str(workers), "--base-port", str(port), "--timeout", "600", "--", *train],
                              stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.time() - tic
    if code != 0:
        return {"mode": mode, "workers": workers, "error": f"exit {code}, see {log.name}"}
    with open(out / "track.csv") as handle:
        rows = list(csv.DictReader(handle))[1:]
    samples = sum(float(r["samples"]) for r in rows)
    seconds = sum(float(r["epoch_seconds"]) for r in rows)
    return {"mode": mode, "workers": workers, "samples_per_s": samples / seconds,
            "epoch_s": seconds / len(rows), "wall_s": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", default=["grpc-async", "grpc-sync"])
    parser.add_argument("--patients", type=int, default=3000)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--base-port", type=int, default=24200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-grpc-") as tmp:
        root = Path(tmp)
        prepare(root, args.patients, args.workers, args.batch)
        print("| mode | workers | samples/s | s/epoch | launcher wall s |\n|---|---|---|---|---|")
        for i, (mode, n) in enumerate((m, n) for m in args.modes for n in args.workers):
            r = run(root, mode, n, args, args.base_port + 10 * i)
            cells = ([f"{r['samples_per_s']:,.0f}", f"{r['epoch_s']:.2f}", f"{r['wall_s']:.0f}"]
                     if "error" not in r else [r["error"], "", ""])
            print(f"| {mode} | {n} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
