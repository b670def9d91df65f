"""Epoch time of mpi-sync and mpi-async for 1..N workers on a small synthetic PMSI set.

    .venv/bin/python bench/bench_mpi.py --backend numpy --workers 1 2 3
    .venv/bin/python bench/bench_mpi.py --backend tensorflow --workers 1 2

Builds the data once with the project's own stages into ``bench/out/mpi/`` (``synth-pmsi``,
``compose-pmsi``, ``materialise``, one ``shard`` set per worker count), then runs
``mpirun -disable-auto-cleanup -n W+1 diagnosenet train-mpi`` for every mode and worker count
(``--max-epochs`` epochs, no early stop, monitor off) and prints one row per run: the median
``epoch_seconds`` of the epochs after the first (the first includes TensorFlow tracing),
training samples per second over those epochs, and the run's wall time including start-up.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
OUT = Path(__file__).resolve().parent / "out" / "mpi"
MODELS = {"numpy": {"backend": "numpy", "hidden_units": [256, 256]},
          "tensorflow": {"hidden_units": [256, 256], "dropout_keep": 0.8}}


def diagnosenet(*args: str) -> None:
    subprocess.run([str(BIN / "diagnosenet"), *args], check=True, stdout=subprocess.DEVNULL)


def prepare(patients: int, workers: list[int], batch_size: int) -> Path:
    raw, composed, dataset = OUT / f"raw-{patients}", OUT / f"composed-{patients}", OUT / f"dataset-{patients}"
    if not (dataset / "manifest.json").exists():
        diagnosenet("synth-pmsi", "--patients", str(patients), "--seed", "2020", "--out", str(raw))
        diagnosenet("compose-pmsi", "--rhs", str(raw / "rhs_*.txt"), "--labels", str(raw / "labels.csv"),
                    "--out", str(composed))
        diagnosenet("materialise", "--input", str(composed), "--out", str(dataset), "--seed", "1")
    for w in workers:
        shards = OUT / f"shards-{patients}-w{w}-b{batch_size}"
        if not (shards / "manifest.json").exists():
            diagnosenet("shard", "--dataset", str(dataset), "--out", str(shards), "--workers", str(w),
                        "--batch-size", str(batch_size), "--seed", "1")
    return dataset


def run(mode: str, workers: int, backend: str, dataset: Path, patients: int, batch_size: int, epochs: int) -> dict:
    out = OUT / "runs" / f"{backend}-{mode}-w{workers}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    command = [str(BIN / "mpirun"), "-disable-auto-cleanup", "-n", str(workers + 1), str(BIN / "diagnosenet"),
               "train-mpi", "--task", "pmsi", "--mode", mode, "--workers", str(workers), "--dataset", str(dataset),
               "--shards", str(OUT / f"shards-{patients}-w{workers}-b{batch_size}"), "--out", str(out),
               "--model-json", json.dumps(MODELS[backend]), "--max-epochs", str(epochs), "--patience", "100",
               "--batch-size", str(batch_size), "--monitor-rate", "0", "--timeout", "300", "--weighting", "1"]
    tic = time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - tic
    with open(out / "track.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[1:]
    metrics = json.loads((out / "metrics.json").read_text())
    seconds = [float(r["epoch_seconds"]) for r in rows]
    return {"mode": mode, "workers": workers, "epoch_s": statistics.median(seconds),
            "samples_per_s": sum(int(r["samples"]) for r in rows) / sum(seconds), "wall_s": wall,
            "n_params": metrics["n_params"], "bytes_per_epoch": metrics["bytes_exchanged_per_epoch"],
            "valid_loss": float(rows[-1]["valid_loss"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=sorted(MODELS), default="numpy")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", default=["mpi-sync", "mpi-async"])
    parser.add_argument("--patients", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    dataset = prepare(args.patients, args.workers, args.batch_size)
    print(f"backend {args.backend}, {args.patients} synthetic stays, batch {args.batch_size}, {args.epochs} epochs")
    print("| mode | workers | epoch s (median, epochs 2+) | samples/s | run wall s | n_params | MB exchanged/epoch | last valid loss |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in args.modes:
        for workers in args.workers:
            r = run(mode, workers, args.backend, dataset, args.patients, args.batch_size, args.epochs)
            print(f"| {r['mode']} | {r['workers']} | {r['epoch_s']:.2f} | {r['samples_per_s']:.0f} | {r['wall_s']:.1f} "
                  f"| {r['n_params']:,} | {r['bytes_per_epoch'] / 1e6:.1f} | {r['valid_loss']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
