"""After a hard kill (SIGKILL of Snakemake's process group) the next run stops with "Directory
cannot be locked"; ``make run`` first calls ``diagnosenet.stale_lock``, which unlocks only when
no Snakemake works in the directory. The kill is real, on the ECG windowing rules (no TensorFlow)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smk import BIN, snakemake, write_config

from diagnosenet import stale_lock

TARGET = "results/ecg/windows/table2.csv"
SMALL_ECG = {"ecg": {"source": "synthetic", "records_dir": None, "synthetic": {"records": 24, "seed": 1},
                     "detector": "xqrs", "window": 260, "windows_per_sample": 5, "stride": 5,
                     "normalisation": "zscore", "jobs": 1}}


def unlock(workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diagnosenet.stale_lock", str(workdir)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})


@pytest.mark.snakemake
@pytest.mark.timeout(600)
def test_a_hard_kill_locks_the_directory_until_stale_lock_unlocks_it(workdir):
    config = str(write_config(workdir, SMALL_ECG))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.Popen([str(BIN / "snakemake"), TARGET, "--cores", "1", "--configfile", config], cwd=workdir,
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (workdir / "results/logs/ecg/window_ecg.log").exists():   # killed inside the second job
            assert run.poll() is None and time.monotonic() < deadline, "snakemake ended before the kill"
            time.sleep(0.2)
    finally:
        os.killpg(run.pid, signal.SIGKILL)   # as a closed terminal or the OOM killer would
        run.wait(timeout=30)
    assert stale_lock.locks(workdir), "SIGKILL leaves the lock behind"

    locked = snakemake(workdir, TARGET, "--cores", "1", "--configfile", config, check=False)
    assert locked.returncode != 0 and "Directory cannot be locked" in locked.stdout, locked.stdout[-3000:]

    out = unlock(workdir)
    assert out.returncode == 0 and "stale Snakemake lock" in out.stderr, out.stderr
    assert not stale_lock.locks(workdir)
    rerun = snakemake(workdir, TARGET, "--cores", "1", "--configfile", config)
    assert (workdir / TARGET).exists(), rerun.stdout[-3000:]


def test_the_lock_of_a_live_snakemake_is_kept(workdir):
    lock_dir = workdir / ".snakemake" / "locks"
    lock_dir.mkdir(parents=True)
    (lock_dir / "0.input.lock").write_text("")
    fake = workdir / "snakemake"   # any process working here whose command names snakemake
    fake.write_text("sleep 60\n")
    live = subprocess.Popen(["sh", str(fake)], cwd=workdir)
    try:
        time.sleep(0.2)
        assert live.pid in stale_lock.snakemake_processes(workdir)
        out = unlock(workdir)
        assert out.returncode == 0 and f"pid {live.pid}" in out.stderr, out.stderr
        assert stale_lock.locks(workdir)
    finally:
        live.kill()
        live.wait()
    assert stale_lock.snakemake_processes(workdir) == []
