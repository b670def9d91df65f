"""Faults that must end in bounded time with nothing lost: a damaged checkpoint, a full disk.

Every mode resumes through the same :class:`~diagnosenet.training.run.Run`, so the desktop
command covers the policy, and ``launch-mpi`` (what rule ``train_mpi`` runs) checks that an
MPI job stops *every* rank at once when rank 0 cannot start, instead of leaving the workers
waiting for ``startup_timeout_s``. The NumPy replica keeps TensorFlow out (``test_modes.py``
runs the real models).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from diagnosenet.training.checkpoint import (BEST, LAST, PREVIOUS, CheckpointError, intact_checkpoints,
                                             load_checkpoint, save_checkpoint)
from diagnosenet.training.progress import read_track

BIN = Path(sys.executable).parent
NUMPY_MODEL = {"backend": "numpy", "hidden_units": [16]}


def truncate(path: Path) -> None:
    """What a damaged disk or an interrupted copy leaves: the first half of the file."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def train_args(inputs, out: Path, mode: str, epochs: int, workers: int = 1) -> list[str]:
    return ["--task", inputs.task, "--mode", mode, "--workers", str(workers), "--dataset", str(inputs.dataset),
            "--shards", str(inputs.shards), "--out", str(out), "--batch-size", str(inputs.batch_size),
            "--model-json", json.dumps(NUMPY_MODEL), "--max-epochs", str(epochs), "--patience", "100",
            "--lr", "0.01", "--seed", "3", "--timeout", "10", "--startup-timeout", "600", "--monitor-rate", "0"]


def desktop(inputs, out: Path, epochs: int) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "diagnosenet"), "train-desktop", *train_args(inputs, out, "desktop", epochs)],
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)


def launch_mpi(inputs, out: Path, mode: str, epochs: int) -> subprocess.CompletedProcess:
    command = [str(BIN / "diagnosenet"), "launch-mpi", "--launcher", "mpirun -disable-auto-cleanup", "--tasks", "3",
               "--", *train_args(inputs, out, mode, epochs, workers=2)]
    return subprocess.run(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})


def newest_intact(out: Path) -> str:
    """The log line's end that names where a run resumes after a damaged ``last.npz``."""
    newest = intact_checkpoints(out / "checkpoint")[0][0]
    return f"resuming from {newest['path']} (epoch {newest['epoch']})"


def epochs(out: Path) -> list[int]:
    return [int(r["epoch"]) for r in read_track(out / "track.csv")]


# -- the checkpoint files -----------------------------------------------------------------
def test_a_damaged_checkpoint_is_named_and_the_one_before_it_is_kept(tmp_path):
    state = {"weights": np.arange(6, dtype=np.float32)}
    for epoch in (1, 2, 3):
        save_checkpoint(tmp_path, epoch=epoch, replica_state={"weights": state["weights"] * epoch},
                        progress={"best_epoch": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [BEST, LAST, PREVIOUS]   # no temporary file left
    assert [load_checkpoint(tmp_path, name)["epoch"] for name in (LAST, PREVIOUS, BEST)] == [3, 2, 1]

    truncate(tmp_path / LAST)
    with pytest.raises(CheckpointError, match=f"{tmp_path / LAST}: damaged checkpoint"):
        load_checkpoint(tmp_path, LAST)
    intact, damaged = intact_checkpoints(tmp_path)
    assert [c["epoch"] for c in intact] == [2, 1] and list(damaged) == [tmp_path / LAST]


def test_a_changed_byte_inside_a_checkpoint_fails_its_checksum(tmp_path):
    save_checkpoint(tmp_path, epoch=1, replica_state={"weights": np.zeros(64, np.float32)}, progress={"best_epoch": 0})
    data = bytearray((tmp_path / LAST).read_bytes())
    data[data.index(bytes(64 * 4)) + 10] = 1   # one bit inside the weights: the file still unzips
    (tmp_path / LAST).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged checkpoint"):
        load_checkpoint(tmp_path, LAST)


# -- a truncated last.npz, per mode --------------------------------------------------------
@pytest.mark.timeout(300)
def test_desktop_resumes_from_the_intact_checkpoint_when_last_is_truncated(tiny_inputs, tmp_path):
    inputs, out = tiny_inputs("pmsi"), tmp_path / "run"
    first = desktop(inputs, out, 3)
    assert first.returncode == 0, first.stdout[-3000:]
    truncate(out / "checkpoint" / LAST)
    resumes = newest_intact(out)   # previous.npz (epoch 2), or best.npz when epoch 3 was the best
    rerun = desktop(inputs, out, 5)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert f"{out / 'checkpoint' / LAST}: damaged checkpoint" in rerun.stdout
    assert resumes in rerun.stdout, rerun.stdout[-3000:]
    assert "Traceback" not in rerun.stdout
    assert epochs(out) == [1, 2, 3, 4, 5]   # epoch 3 trained again, nothing repeated in the track
    assert (out / "checkpoint" / f"{LAST}.damaged").exists()   # kept for inspection, out of the rotation


@pytest.mark.timeout(300)
def test_desktop_stops_with_what_to_delete_when_no_checkpoint_is_intact(tiny_inputs, tmp_path):
    inputs, out = tiny_inputs("pmsi"), tmp_path / "run"
    assert desktop(inputs, out, 2).returncode == 0
    for name in (LAST, PREVIOUS, BEST):
        truncate(out / "checkpoint" / name)
    rerun = desktop(inputs, out, 4)
    assert rerun.returncode == 1
    assert "no intact checkpoint to resume from" in rerun.stdout and f"Delete {out / 'checkpoint'}" in rerun.stdout
    assert "Traceback" not in rerun.stdout, rerun.stdout[-3000:]


@pytest.mark.mpi
@pytest.mark.timeout(400)
@pytest.mark.parametrize("mode", ["mpi-sync", "mpi-async"])
def test_mpi_resumes_from_the_intact_checkpoint_and_every_rank_stops_when_none_is(tiny_inputs, tmp_path, mode):
    inputs, out = tiny_inputs("pmsi", workers=2), tmp_path / mode
    first = launch_mpi(inputs, out, mode, 3)
    assert first.returncode == 0, first.stdout[-3000:]
    truncate(out / "checkpoint" / LAST)
    resumes = newest_intact(out)
    rerun = launch_mpi(inputs, out, mode, 4)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert resumes in rerun.stdout, rerun.stdout[-3000:]
    assert epochs(out) == [1, 2, 3, 4] and "Traceback" not in rerun.stdout

    for name in (LAST, PREVIOUS, BEST):
        truncate(out / "checkpoint" / name)
    started = time.monotonic()
    stopped = launch_mpi(inputs, out, mode, 6)
    assert stopped.returncode != 0
    assert time.monotonic() - started < 120   # every rank stopped, not after startup_timeout_s (600 s)
    assert f"{mode} rank 0 on" in stopped.stdout and "no intact checkpoint to resume from" in stopped.stdout
    assert "stopping every rank" in stopped.stdout and "Traceback" not in stopped.stdout, stopped.stdout[-3000:]


# -- a full disk ---------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (root only; CI runs as root), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """A file that takes all of ``disk`` but ``leave_bytes``."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    with open(filler, "wb") as handle, contextlib.suppress(OSError):
        handle.write(bytes(max(0, stat.f_bavail * stat.f_frsize - leave_bytes)))
    return filler


@pytest.mark.timeout(300)
def test_a_full_disk_names_the_file_keeps_the_checkpoint_and_the_rerun_resumes(tiny_inputs, small_disk):
    inputs, out = tiny_inputs("pmsi"), small_disk / "run"
    assert desktop(inputs, out, 2).returncode == 0
    before = load_checkpoint(out / "checkpoint")
    checkpoint_bytes = (out / "checkpoint" / LAST).stat().st_size
    filler = fill(small_disk, checkpoint_bytes // 2)   # room for the track, not for a checkpoint
    full = desktop(inputs, out, 4)
    assert full.returncode == 1
    assert "No space left on device" in full.stdout and str(out) in full.stdout, full.stdout[-3000:]
    assert "Traceback" not in full.stdout, full.stdout[-3000:]
    kept = load_checkpoint(out / "checkpoint")   # verifies: intact, and still epoch 2's
    assert kept["epoch"] == before["epoch"] == 2

    filler.unlink()
    rerun = desktop(inputs, out, 4)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert f"resuming {out} after epoch 2" in rerun.stdout
    assert epochs(out) == [1, 2, 3, 4]
