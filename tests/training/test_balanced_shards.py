"""mpi-sync on shards balanced for unequal workers (``shards.balance: measured``): every row is
trained once per epoch and every worker takes the same number of steps, each with its own
micro-batch size (the update is the row-weighted mean, docs/training.md)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diagnosenet.artifacts import read_json
from diagnosenet.datasets.shards import Batching, write_shards
from diagnosenet.training.progress import read_track
from diagnosenet.training.timeline import read_timeline

BIN = Path(sys.executable).parent


@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_mpi_sync_trains_every_row_of_balanced_shards_in_equal_steps(tiny_inputs, tmp_path):
    inputs = tiny_inputs("pmsi", workers=2)
    shards = tmp_path / "shards"
    manifest = write_shards(inputs.dataset, shards, Batching(devices_number=2, batch_size=16, speeds=(3.0, 1.0)), seed=1)
    train = manifest["shards"]["train"]
    assert [s["batch_size"] for s in train] == [24, 8]
    out = tmp_path / "run"
    command = [str(BIN / "diagnosenet"), "launch-mpi", "--launcher", "mpirun -disable-auto-cleanup", "--tasks", "3", "--",
               "--task", "pmsi", "--mode", "mpi-sync", "--workers", "2", "--dataset", str(inputs.dataset),
               "--shards", str(shards), "--out", str(out), "--batch-size", "16",
               "--model-json", json.dumps({"backend": "numpy", "hidden_units": [8]}), "--max-epochs", "2",
               "--patience", "10", "--lr", "0.01", "--seed", "3", "--timeout", "30", "--startup-timeout", "300",
               "--monitor-rate", "0"]
    proc = subprocess.run(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=250,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert [int(r["samples"]) for r in read_track(out / "track.csv")] == [sum(s["rows"] for s in train)] * 2
    steps = {rank: sorted({(r["epoch"], r["step"]) for r in read_timeline(out) if r["rank"] == rank}) for rank in (1, 2)}
    assert steps[1] == steps[2] and len(steps[1]) == 2 * max(s["micro_batches"] for s in train)
    rows = {rank: max(r["rows"] for r in read_timeline(out) if r["rank"] == rank) for rank in (1, 2)}
    assert rows == {1: 24, 2: 8}
    assert read_json(out / "metrics.json")["workers"] == 2
