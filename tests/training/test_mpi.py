"""MPI training under a real ``mpirun`` (1 master + 2 workers) with the NumPy replica.

The NumPy model implements the same replica contract as the TensorFlow one, so these tests
exercise the whole exchange (broadcast, all-reduce, asynchronous updates, liveness, faults,
resume) without paying TensorFlow's import on every rank; ``test_modes.py`` runs the real
models in every mode.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import scipy.sparse as sp

from diagnosenet.artifacts import read_json, verify_manifest
from diagnosenet.models.numpy_backend import NumpyReplica


def _shared_fixtures():
    """tests/training/conftest.py as a module, by path (two test folders have a ``conftest``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("training_conftest", Path(__file__).with_name("conftest.py"))
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_shared = _shared_fixtures()
make_dataset, make_shards, RunInputs = _shared.make_dataset, _shared.make_shards, _shared.RunInputs

pytestmark = pytest.mark.mpi

MPIRUN = Path(sys.executable).parent / "mpirun"
NUMPY_MODEL = {"backend": "numpy", "hidden_units": [16]}
RUN_FILES = {"track.csv", "metrics.json", "per_class.csv", "confusion.csv", "run.json", "manifest.json"}


def train_command(inputs, out: Path, mode: str, *, model=None, workers=2, **options) -> list[str]:
    args = {"max-epochs": 4, "patience": 10, "lr": 0.01, "seed": 3, "timeout": 20, "monitor-rate": 0,
            "weighting": 1, **{k.replace("_", "-"): v for k, v in options.items()}}
    command = [str(MPIRUN), "-disable-auto-cleanup", "-n", str(workers + 1), sys.executable, "-m",
               "diagnosenet", "train-mpi", "--task", inputs.task, "--mode", mode, "--workers", str(workers),
               "--dataset", str(inputs.dataset), "--shards", str(inputs.shards), "--out", str(out),
               "--batch-size", str(inputs.batch_size), "--model-json", json.dumps(model or NUMPY_MODEL)]
    return command + [item for k, v in args.items() for item in (f"--{k}", str(v))]


def launch_command(command: list[str]) -> list[str]:
    """:func:`train_command` run as rule ``train_mpi`` runs it: through ``diagnosenet launch-mpi``,
    which puts every rank under its supervisor (run it with :data:`LAUNCH_ENV`)."""
    start = command.index("train-mpi") + 1
    return [str(MPIRUN.with_name("diagnosenet")), "launch-mpi", "--launcher", f"{MPIRUN} -disable-auto-cleanup",
            "--tasks", command[command.index("-n") + 1], "--", *command[start:]]


LAUNCH_ENV = {**os.environ, "PATH": f"{MPIRUN.parent}:{os.environ['PATH']}"}


def run(command, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)


def train_rows(inputs) -> int:
    return sum(s["rows"] for s in read_json(inputs.shards / "manifest.json")["shards"]["train"])


def read_track(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def rank_process(launcher: subprocess.Popen, rank: int) -> psutil.Process:
    """The training process of ``rank`` among the launcher's descendants (not its supervisor)."""
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if (child.environ().get("PMI_RANK") == str(rank) and child.name() != "sh"
                    and "train-mpi" in child.cmdline()):
                return child
        except psutil.Error:
            continue
    raise LookupError(f"rank {rank} not found under mpirun {launcher.pid}")


def wait_for_rows(path: Path, rows: int, launcher: subprocess.Popen, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not (path.exists() and len(read_track(path)) >= rows):
        assert launcher.poll() is None, f"run ended before {path.name} had {rows} rows"
        assert time.monotonic() < deadline, f"{path.name} never reached {rows} rows"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def w2(tiny_inputs):
    return tiny_inputs("pmsi", workers=2)


# -- the NumPy replica itself --------------------------------------------------------------
def test_numpy_replica_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    X = sp.random(12, 7, density=0.4, format="csr", dtype=np.float32, random_state=1)
    y = rng.integers(0, 3, 12)
    replica = NumpyReplica(7, 3, [5], seed=2)
    grads, loss, _ = replica.compute_gradients(X, y)
    w = replica.get_weights().astype(np.float64)

    def loss_at(i, step):
        shifted = w.copy()
        shifted[i] += step
        replica.set_weights(shifted.astype(np.float32))
        return replica.compute_gradients(X, y)[1]

    for i in rng.choice(replica.n_params, 10, replace=False):
        numeric = (loss_at(i, 1e-2) - loss_at(i, -1e-2)) / 2e-2
        assert abs(numeric - grads[i]) < 2e-3 + 0.05 * abs(numeric)
    replica.set_weights(w.astype(np.float32))
    state = replica.get_state()
    replica.apply_gradients(grads)
    assert not np.array_equal(replica.get_weights(), state["weights"])
    replica.set_state(state)
    assert np.array_equal(replica.get_weights(), state["weights"])


def test_mpi_modes_import_mpi_only_when_they_run():
    code = ("import sys, diagnosenet as dt, diagnosenet.training.mpi, diagnosenet.training.desktop; "
            "dt.DistributedMPI; assert 'mpi4py' not in sys.modules, 'mpi4py imported'")
    proc = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.timeout(60)
def test_a_rank_count_that_does_not_match_the_workers_is_refused(w2, tmp_path):
    command = train_command(w2, tmp_path / "run", "mpi-sync")
    command[command.index("-n") + 1] = "2"  # 1 master + 1 worker for a 2-worker shard set
    proc = run(command)
    assert proc.returncode != 0
    assert "needs mpirun -n 3 (1 master + workers), got 2 ranks" in proc.stdout


# -- synchronous ---------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_sync_keeps_replicas_bit_identical_and_writes_the_desktop_outputs(w2, tmp_path):
    out = tmp_path / "sync"
    proc = run(train_command(w2, out, "mpi-sync", exchange="dense"))
    assert proc.returncode == 0, proc.stdout
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    verify_manifest(out, stage="train")
    result = metrics(out)
    hashes = result["mpi"]["replica_sha256"]
    assert len(hashes) == 3 and len(set(hashes)) == 1 and result["mpi"]["replicas_identical"]
    track = read_track(out / "track.csv")
    assert [int(r["epoch"]) for r in track] == [1, 2, 3, 4]
    assert float(track[-1]["valid_loss"]) < float(track[0]["valid_loss"])
    # an epoch is one pass over every training row, whatever the number of workers
    assert all(int(r["samples"]) == train_rows(w2) for r in track)
    # each step every worker hands its float32 gradient (+ its rows) to the all-reduce; once an
    # epoch the state goes to rank 0
    gradients = 4 * (result["n_params"] + 1) * result["steps_per_epoch"] * 2
    state = result["bytes_exchanged_per_epoch"] - gradients
    assert 3 * 4 * result["n_params"] < state < 4 * 4 * result["n_params"]   # weights + Adam m, v + header
    assert result["bytes_exchanged_per_epoch"] == int(track[-1]["bytes_exchanged"])
    assert result["time_to_best_s"] > 0 and result["best_epoch"] >= 1


@pytest.mark.parametrize("mode", ["mpi-sync", "mpi-async"])
def test_a_monitored_run_writes_a_manifest_that_verifies(w2, tmp_path, mode):
    """Every rank samples its monitor (fast, so samples are still being written as training
    ends), and the run's manifest hashes each rank's monitor CSV and timeline: it must do so
    after they are closed. (mpi-async wrote it while its ranks' monitors still ran: a finished
    run whose manifest did not verify, so launch-mpi could not tell it from a failed one.)"""
    out = tmp_path / mode
    proc = run(train_command(w2, out, mode, monitor_rate=20, max_epochs=2))
    assert proc.returncode == 0, proc.stdout
    verify_manifest(out, stage="train")
    listed = json.loads((out / "manifest.json").read_text())["files"]
    assert {f"monitor/rank{r}.csv" for r in range(3)} <= set(listed), listed


@pytest.mark.timeout(180)
def test_class_weighted_loss_is_the_same_in_mpi_sync_and_desktop(tiny_inputs, tmp_path):
    """``--class-weight balanced`` reaches the replica of every rank: one mpi-sync worker takes
    exactly the desktop step, weighted, and the weighting changes that step."""
    inputs = tiny_inputs("pmsi", workers=1, batch_size=16)
    options = {"max-epochs": 2, "patience": 10, "lr": 0.01, "seed": 3, "monitor-rate": 0}
    desktop = [sys.executable, "-m", "diagnosenet", "train-desktop", "--task", "pmsi", "--dataset", str(inputs.dataset),
               "--shards", str(inputs.shards), "--batch-size", "16", "--model-json", json.dumps(NUMPY_MODEL),
               *[item for k, v in options.items() for item in (f"--{k}", str(v))]]
    for weight in ("balanced", "none"):
        proc = run(desktop + ["--out", str(tmp_path / f"desktop-{weight}"), "--class-weight", weight])
        assert proc.returncode == 0, proc.stdout[-3000:]
    proc = run(train_command(inputs, tmp_path / "sync", "mpi-sync", workers=1, max_epochs=2, class_weight="balanced"))
    assert proc.returncode == 0, proc.stdout[-3000:]
    sync, weighted = _final_state(tmp_path / "sync"), _final_state(tmp_path / "desktop-balanced")
    np.testing.assert_allclose(sync["weights"], weighted["weights"], rtol=1e-6, atol=1e-9)
    assert not np.allclose(weighted["weights"], _final_state(tmp_path / "desktop-none")["weights"])
    assert json.loads((tmp_path / "sync" / "run.json").read_text())["settings"]["class_weight"] == "balanced"


@pytest.mark.timeout(120)
def test_sync_epoch_passes_over_every_row_when_workers_have_unequal_batches(tmp_path):
    dataset = make_dataset(tmp_path, "pmsi", n_rows=251)  # 177 training rows: 89 + 88
    shards = make_shards(dataset, tmp_path / "shards", workers=2, batch_size=22)  # 5 and 4 batches
    counts = [s["micro_batches"] for s in verify_manifest(shards, stage="shard")["shards"]["train"]]
    assert len(set(counts)) == 2, counts  # the point of this data set
    inputs = RunInputs("pmsi", tmp_path, dataset, shards, workers=2, batch_size=22)
    out = tmp_path / "run"
    proc = run(train_command(inputs, out, "mpi-sync", max_epochs=2))
    assert proc.returncode == 0, proc.stdout
    assert metrics(out)["steps_per_epoch"] == max(counts)  # the shorter worker adds a zero-row step
    assert [int(r["samples"]) for r in read_track(out / "track.csv")] == [177, 177]
    assert metrics(out)["mpi"]["replicas_identical"]


@pytest.mark.timeout(180)
def test_sync_killed_worker_aborts_with_a_message_and_a_rerun_resumes(w2, tmp_path):
    """Through launch-mpi: its rank supervisor turns the worker's death by SIGKILL into an exit
    status, so Hydra keeps the job up until the master has said which rank went silent (under a
    bare ``mpirun`` Hydra ended the job at once about 1 run in 3, and the line was lost)."""
    out = tmp_path / "sync"
    slow = {**NUMPY_MODEL, "delay_s": 0.05}
    command = launch_command(train_command(w2, out, "mpi-sync", model=slow, max_epochs=6, timeout=5))
    launcher = subprocess.Popen(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=LAUNCH_ENV)
    try:
        wait_for_rows(out / "track.csv", 2, launcher)
        killed_at = time.monotonic()
        rank_process(launcher, 2).send_signal(signal.SIGKILL)
        output, _ = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0
    assert time.monotonic() - killed_at < 5 + 15  # bounded by timeout_s (+ start-up slack on 2 busy cores)
    assert "synchronous training cannot go on" in output and "rerun the same command" in output, output
    assert f"rank 2 on {socket.gethostname()} silent" in output, output  # names the node
    assert f"rank 2 on {socket.gethostname()} ended by signal 9" in output, output   # the supervisor's line
    done = len(read_track(out / "track.csv"))
    assert 2 <= done < 6

    proc = subprocess.run(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                          env=LAUNCH_ENV)
    assert proc.returncode == 0, proc.stdout
    assert f"resuming {out} after epoch" in proc.stdout
    epochs = [int(r["epoch"]) for r in read_track(out / "track.csv")]
    assert epochs == list(range(1, 7))  # no epoch lost or repeated
    assert metrics(out)["mpi"]["replicas_identical"]


@pytest.mark.timeout(120)
def test_sync_hung_worker_times_out_instead_of_hanging(w2, tmp_path):
    out = tmp_path / "sync"
    slow = {**NUMPY_MODEL, "delay_s": 0.05}
    launcher = subprocess.Popen(train_command(w2, out, "mpi-sync", model=slow, max_epochs=20, timeout=4),
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_rows(out / "track.csv", 1, launcher)
        hung = rank_process(launcher, 2)
        hung.send_signal(signal.SIGSTOP)  # alive but silent: only the timeouts can notice
        output, _ = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0
    assert "silent (no message, no heartbeat) for more than 4 s (timeout_s)" in output, output


# -- asynchronous --------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_async_weighting_sets_how_many_gradients_make_one_update(w2, tmp_path):
    results = {}
    for k in (1, 2):
        proc = run(train_command(w2, tmp_path / f"w{k}", "mpi-async", weighting=k))
        assert proc.returncode == 0, proc.stdout
        results[k] = metrics(tmp_path / f"w{k}")["mpi"]
    one, two = results[1], results[2]
    assert one["gradients"] == two["gradients"] == 4 * sum(
        s["micro_batches"] for s in verify_manifest(w2.shards, stage="shard")["shards"]["train"])
    assert one["updates"] == one["gradients"] and one["max_staleness"] >= 1  # every gradient applied on arrival
    assert two["updates"] * 2 == two["gradients"] and two["max_staleness"] == 0  # one update per pair

    # weighting = workers averages one gradient per worker on the same weights: a synchronous step
    proc = run(train_command(w2, tmp_path / "sync", "mpi-sync"))
    assert proc.returncode == 0, proc.stdout
    sync = [float(r["valid_loss"]) for r in read_track(tmp_path / "sync" / "track.csv")]
    paired = [float(r["valid_loss"]) for r in read_track(tmp_path / "w2" / "track.csv")]
    np.testing.assert_allclose(paired, sync, rtol=1e-5)


@pytest.mark.timeout(120)
def test_async_master_decides_early_stopping_on_its_own_validation(w2, tmp_path):
    out = tmp_path / "async"
    proc = run(train_command(w2, out, "mpi-async", lr=0.05, patience=2, max_epochs=60))
    assert proc.returncode == 0, proc.stdout
    result = metrics(out)
    assert result["accuracy"] >= 0.9  # one indicator feature per class
    track = read_track(out / "track.csv")
    assert result["stopped_early"] and len(track) == result["epochs_run"] < 60
    assert len(track) - result["best_epoch"] == 2
    assert all(int(r["samples"]) == train_rows(w2) for r in track)  # every row once per epoch
    assert result["mpi"]["gradients"] == len(track) * sum(
        s["micro_batches"] for s in verify_manifest(w2.shards, stage="shard")["shards"]["train"])


@pytest.mark.timeout(150)
def test_async_master_carries_on_when_a_worker_stops_responding(w2, tmp_path):
    """A stopped (SIGSTOP) worker is silent like a dead one; the master drops it after timeout_s.

    A SIGKILLed worker makes MPICH's Hydra proxy kill the whole job at random (see
    docs/training.md, MPI, faults), so the dead rank is simulated by a silent one and only
    killed once the master has written the run.
    """
    out = tmp_path / "async"
    slow = {**NUMPY_MODEL, "delay_s": 0.03}
    launcher = subprocess.Popen(train_command(w2, out, "mpi-async", model=slow, max_epochs=12, timeout=3),
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_rows(out / "track.csv", 1, launcher)
        silent = rank_process(launcher, 2)
        silent.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 90
        while not (out / "manifest.json").exists():
            assert launcher.poll() is None and time.monotonic() < deadline, "the master never finished"
            time.sleep(0.1)
        silent.send_signal(signal.SIGKILL)
        output, _ = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    verify_manifest(out, stage="train")
    result = metrics(out)
    assert set(result["mpi"]["lost_workers"]) == {"2"}
    assert "silent" in result["mpi"]["lost_workers"]["2"]
    track = read_track(out / "track.csv")
    assert [int(r["epoch"]) for r in track] == list(range(1, 13))  # the survivor trained to the end
    rows_2 = train_rows(w2) - read_json(w2.shards / "manifest.json")["shards"]["train"][0]["rows"]
    assert int(track[-1]["samples"]) == train_rows(w2) - rows_2  # after the loss: worker 1's shard only
    assert "worker rank 2 on" in output and "lost" in output


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["mpi-sync", "mpi-async"])
def test_steps_and_epochs_longer_than_the_timeout_complete(w2, tmp_path, mode):
    """Liveness, not duration: a 1.5 s step (so a 9 s epoch) under timeout_s = 1 loses nobody."""
    out = tmp_path / mode
    slow = {**NUMPY_MODEL, "delay_s": 1.5}
    proc = run(train_command(w2, out, mode, model=slow, max_epochs=2, timeout=1), timeout=110)
    assert proc.returncode == 0, proc.stdout
    track = read_track(out / "track.csv")
    assert [int(r["epoch"]) for r in track] == [1, 2]
    assert all(float(r["epoch_seconds"]) > 1 for r in track)
    assert not metrics(out)["mpi"].get("lost_workers")


@pytest.mark.timeout(120)
def test_async_with_weighting_equal_to_workers_keeps_the_sync_semantics_on_a_resumed_run(w2, tmp_path):
    """Resume in async: kill-free version (stop at 2 epochs, continue to 4) equals 4 straight epochs."""
    split, straight = tmp_path / "split", tmp_path / "straight"
    for out, epochs in ((split, 2), (split, 4), (straight, 4)):
        proc = run(train_command(w2, out, "mpi-async", weighting=2, max_epochs=epochs))
        assert proc.returncode == 0, proc.stdout
    a, b = read_track(split / "track.csv"), read_track(straight / "track.csv")
    assert [r["epoch"] for r in a] == ["1", "2", "3", "4"]
    np.testing.assert_allclose([float(r["valid_loss"]) for r in a], [float(r["valid_loss"]) for r in b], rtol=1e-6)


# -- the paper's API -----------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_paper_api_script_runs_under_mpirun(w2, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\nimport diagnosenet as dt\n"
        "platform = dt.DistributedMPI(model={'backend': 'numpy', 'hidden_units': [8]},\n"
        "    datamanager=dt.Batching(devices_number=2, batch_size=32), max_epochs=2, early_stopping=3,\n"
        "    learning_rate=0.01)\n"
        f"platform.asynchronous_training({str(w2.dataset)!r}, {str(w2.shards)!r}, sys.argv[1], weighting=2)\n")
    proc = run([str(MPIRUN), "-n", "3", sys.executable, str(script), str(tmp_path / "api")])
    assert proc.returncode == 0, proc.stdout
    assert metrics(tmp_path / "api")["mpi"]["weighting"] == 2


@pytest.mark.timeout(120)
def test_async_job_re_formed_without_a_lost_worker_resumes_on_the_others(w2, tmp_path):
    """What ``launch-mpi`` starts after a node is lost: the same run, one rank fewer, the lost
    worker's shard left out and its loss recorded; it resumes from the last checkpoint."""
    out = tmp_path / "async"
    first = run(train_command(w2, out, "mpi-async", max_epochs=2))
    assert first.returncode == 0, first.stdout[-3000:]
    command = train_command(w2, out, "mpi-async", max_epochs=4)
    command[command.index("-n") + 1] = "2"   # master + worker 2 only
    lost = {"1": "node0: node lost (its launcher exited with status 137 (signal 9)) after epoch 2"}
    proc = run(command + ["--lost-workers-json", json.dumps(lost)])
    assert proc.returncode == 0, proc.stdout[-3000:]   # no loss inside this job: a normal exit
    assert "resuming" in proc.stdout
    result = metrics(out)
    assert result["mpi"]["lost_workers"] == lost and result["mpi"]["rank_workers"] == {"1": 2}
    shards = read_json(w2.shards / "manifest.json")["shards"]["train"]
    track = read_track(out / "track.csv")
    assert [int(r["epoch"]) for r in track] == [1, 2, 3, 4]
    assert [int(r["samples"]) for r in track] == [train_rows(w2)] * 2 + [shards[1]["rows"]] * 2
    wrong = run(train_command(w2, tmp_path / "sync", "mpi-sync", workers=2) + ["--lost-workers-json", json.dumps(lost)])
    assert wrong.returncode != 0 and "needs every worker" in wrong.stdout


# -- what travels: dense or sparse input rows; the per-step timeline ----------------------------
def _final_state(out: Path) -> dict:
    from diagnosenet.training.checkpoint import load_checkpoint

    return load_checkpoint(out / "checkpoint")["replica_state"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("workers", [2, 3])
def test_sparse_exchange_gives_the_dense_weights_and_records_its_bytes_per_step(tiny_inputs, tmp_path, workers):
    from diagnosenet.datasets.shards import load_shard
    from diagnosenet.training.exchange import payload_formula
    from diagnosenet.training.loop import batch_order
    from diagnosenet.training.run import sync_steps
    from diagnosenet.training.timeline import read_timeline

    inputs = tiny_inputs("pmsi", workers=workers, batch_size=16)
    runs = {}
    for exchange in ("dense", "sparse"):
        runs[exchange] = tmp_path / exchange
        proc = run(train_command(inputs, runs[exchange], "mpi-sync", workers=workers, max_epochs=3,
                                 exchange=exchange), timeout=200)
        assert proc.returncode == 0, proc.stdout[-3000:]
    dense, sparse = _final_state(runs["dense"]), _final_state(runs["sparse"])
    for key in ("weights", "adam_m", "adam_v"):   # 3 epochs of Adam steps on the same gradients
        np.testing.assert_allclose(sparse[key], dense[key], rtol=1e-6, atol=1e-9)
    block = (60, 16)
    n_params = NumpyReplica(60, 4, [16]).n_params
    steps = sync_steps(read_json(inputs.shards / "manifest.json"))
    rows = read_timeline(runs["sparse"])
    assert len(rows) == 3 * steps * workers   # one entry per step per worker rank
    assert {(r["rank"], r["epoch"], r["step"]) for r in rows} == {
        (rank, epoch, step) for rank in range(1, workers + 1) for epoch in (1, 2, 3) for step in range(1, steps + 1)}
    for rank in range(1, workers + 1):   # bytes per step = the formula for the features each batch holds
        shard = load_shard(inputs.shards, "train", rank - 1, workers=workers, batch_size=16)
        for epoch in (1, 2, 3):
            batches = list(shard.microbatches(batch_order(len(shard.boundaries) - 1, 3, epoch)))
            recorded = [r["payload_bytes"] for r in rows if r["rank"] == rank and r["epoch"] == epoch]
            expected = [payload_formula(n_params, block, int(np.unique(X.indices).size)) for X, _ in batches]
            expected += [payload_formula(n_params, block, 0)] * (steps - len(batches))
            assert sorted(recorded) == sorted(expected) and recorded[:len(batches)] == expected[:len(batches)]
    dense_rows = read_timeline(runs["dense"])
    assert {r["payload_bytes"] for r in dense_rows} == {payload_formula(n_params, None, None)}
    track = {e: read_track(runs[e] / "track.csv") for e in runs}
    assert int(track["sparse"][0]["bytes_exchanged"]) < int(track["dense"][0]["bytes_exchanged"])


@pytest.mark.timeout(240)
def test_bfloat16_exchange_halves_the_all_reduce_keeps_replicas_identical_and_near_float32(tiny_inputs, tmp_path):
    from diagnosenet.training.exchange import payload_formula
    from diagnosenet.training.run import sync_steps
    from diagnosenet.training.timeline import read_timeline

    workers = 3
    inputs = tiny_inputs("pmsi", workers=workers, batch_size=16)
    runs = {}
    for exchange, precision in (("sparse", "float32"), ("sparse", "bfloat16"), ("dense", "bfloat16")):
        runs[exchange, precision] = out = tmp_path / f"{exchange}-{precision}"
        proc = run(train_command(inputs, out, "mpi-sync", workers=workers, max_epochs=3, exchange=exchange,
                                 exchange_precision=precision), timeout=200)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert metrics(out)["mpi"]["replicas_identical"]   # every rank decoded the same bits
    exact = _final_state(runs["sparse", "float32"])["weights"]
    for key in (("sparse", "bfloat16"), ("dense", "bfloat16")):
        weights = _final_state(runs[key])["weights"]
        change = np.linalg.norm(weights - exact) / np.linalg.norm(exact)
        assert 0 < change < 0.01, (key, change)   # not the float32 step, but close (1e-4 measured)
    n_params, block = NumpyReplica(60, 4, [16]).n_params, (60, 16)
    steps = sync_steps(read_json(inputs.shards / "manifest.json"))
    dense_rows = read_timeline(runs["dense", "bfloat16"])
    assert len(dense_rows) == 3 * steps * workers
    assert {r["payload_bytes"] for r in dense_rows} == {payload_formula(n_params, None, None, "bfloat16")}
    half, full = read_timeline(runs["sparse", "bfloat16"]), read_timeline(runs["sparse", "float32"])
    saved = {f["payload_bytes"] - h["payload_bytes"] for h, f in zip(half, full)}
    assert saved == {payload_formula(n_params, block, 0) - payload_formula(n_params, block, 0, "bfloat16")}


@pytest.mark.timeout(120)
def test_async_sparse_gradient_messages_give_the_dense_update(tiny_inputs, tmp_path):
    inputs = tiny_inputs("pmsi", workers=1, batch_size=16)
    for exchange in ("dense", "sparse"):
        proc = run(train_command(inputs, tmp_path / exchange, "mpi-async", workers=1, max_epochs=2, exchange=exchange))
        assert proc.returncode == 0, proc.stdout[-3000:]
    np.testing.assert_allclose(_final_state(tmp_path / "sparse")["weights"], _final_state(tmp_path / "dense")["weights"],
                               rtol=1e-6, atol=1e-9)
    track = {e: read_track(tmp_path / e / "track.csv") for e in ("dense", "sparse")}
    assert int(track["sparse"][0]["bytes_exchanged"]) < int(track["dense"][0]["bytes_exchanged"])
    from diagnosenet.training.timeline import read_timeline

    steps = read_json(inputs.shards / "manifest.json")["shards"]["train"][0]["micro_batches"]
    timeline = read_timeline(tmp_path / "sparse")
    assert [(r["rank"], r["epoch"], r["step"]) for r in timeline] == [
        (1, epoch, step) for epoch in (1, 2) for step in range(1, steps + 1)]   # one row per step of the worker
