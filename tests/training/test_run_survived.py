"""`diagnosenet run-survived`: the train_mpi rule keeps an asynchronous run that lost only workers."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from diagnosenet.artifacts import write_json, write_manifest

BIN = Path(sys.executable).parent


def survived(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "diagnosenet"), "run-survived", "--out", str(out)],
                          capture_output=True, text=True, timeout=60)


def finished_run(out: Path, lost: dict) -> Path:
    out.mkdir()
    write_json(out / "metrics.json", {"mode": "mpi-async", "mpi": {"lost_workers": lost}})
    write_manifest(out, stage="train", files=["metrics.json"], params={"mode": "mpi-async"})
    return out


@pytest.mark.timeout(120)
def test_only_a_finished_run_that_lost_workers_counts_as_survived(tmp_path):
    assert survived(finished_run(tmp_path / "lost", {"2": "silent for 120 s"})).returncode == 0
    proc = survived(finished_run(tmp_path / "none-lost", {}))
    assert proc.returncode == 1 and "no worker was recorded as lost" in proc.stderr
    unfinished = finished_run(tmp_path / "unfinished", {"1": "killed"})
    (unfinished / "metrics.json").unlink()  # the master died before writing its outputs
    proc = survived(unfinished)
    assert proc.returncode == 1 and "did not finish" in proc.stderr
    assert survived(tmp_path / "absent").returncode == 1
