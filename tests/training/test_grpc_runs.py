"""Real TensorFlow gRPC clusters on loopback: faults and process hygiene of the launcher.

Each test starts its cluster with ``diagnosenet train-grpc`` (1 PS + 2 workers + chief, or 2
sync workers) on tiny data, and checks afterwards that no process it started is alive and
nothing listens on its ports. A killed worker node is tested on the emulated cluster
(``tests/workflow/test_emulated_cluster.py``). The training contract of both gRPC modes (ECG and PMSI, resume
after a kill) is tested with every other mode in ``test_modes.py``. ``import tensorflow``
costs 12-60 s per process here, hence the few, combined tests and the generous timeouts.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import scipy.sparse as sp

from diagnosenet.artifacts import write_json, write_manifest
from diagnosenet.datasets.materialise import materialise
from diagnosenet.datasets.shards import Batching, write_shards
from diagnosenet.training.grpc.cluster import port_free
from diagnosenet.training.progress import TRACK_COLUMNS

pytestmark = pytest.mark.tensorflow

BATCH = 32
MODEL = {"hidden_units": [16], "dropout_keep": 1.0}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny learnable sparse data set (PMSI-like CSR) materialised and sharded for 2 workers."""
    root = tmp_path_factory.mktemp("grpc")
    rng = np.random.default_rng(0)
    n, n_features = 480, 60
    y = rng.integers(0, 3, n)
    noise = sp.random(n, n_features, density=0.1, format="csr", dtype=np.float32, random_state=0)
    signal_ = sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), y * 3)), shape=(n, n_features))
    source = root / "composed"
    source.mkdir()
    sp.save_npz(source / "X.npz", (noise + signal_).tocsr())
    np.save(source / "y.npy", y.astype(np.int64))
    np.save(source / "groups.npy", np.array([f"g{i:04d}" for i in range(n)]))
    write_json(source / "classes.json", ["a", "b", "c"])
    write_manifest(source, stage="test", files=["X.npz", "y.npy", "groups.npy", "classes.json"])
    materialise(source, root / "dataset", valid_fraction=0.1, test_fraction=0.1, seed=1)
    write_shards(root / "dataset", root / "shards", Batching(devices_number=2, batch_size=BATCH), seed=1)
    return root


def free_base_port(count: int) -> int:
    while True:
        base = random.randrange(30000, 60000, 10)
        if all(port_free(base + i) for i in range(count)):
            return base


class Run:
    """``diagnosenet train-grpc`` in its own session; remembers every descendant it sees."""

    def __init__(self, data: Path, mode: str, *, epochs: int, out: Path, n_ports: int = 4, monitor_rate: float = 0):
        self.out, base = out, free_base_port(n_ports)
        self.ports = range(base, base + n_ports)
        argv = ["--task", "pmsi", "--mode", mode, "--workers", "2", "--dataset", str(data / "dataset"),
                "--shards", str(data / "shards"), "--out", str(out), "--model-json", json.dumps(MODEL),
                "--seed", "1", "--max-epochs", str(epochs), "--patience", str(epochs), "--lr", "0.01",
                "--batch-size", str(BATCH), "--timeout", "120", "--monitor-rate", str(monitor_rate)]
        self.log_path = out.parent / f"{out.name}.log"
        with open(self.log_path, "w") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "diagnosenet", "train-grpc", "--mode", mode, "--workers", "2",
                 "--base-port", str(base), "--timeout", "300", "--wall-limit", "500", "--", *argv],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.seen: set[psutil.Process] = set()

    def descendants(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            self.seen.update(psutil.Process(self.popen.pid).children(recursive=True))
        return [p for p in self.seen if alive(p)]

    def find(self, role: str, index: int = 0) -> psutil.Process:
        """The live task process of ``role:index`` (from its ``TF_CONFIG``)."""
        for proc in self.descendants():
            with contextlib.suppress(psutil.Error, KeyError, ValueError):
                task = json.loads(proc.environ()["TF_CONFIG"])["task"]
                if (task["type"], task["index"]) == (role, index) and "grpc-task" in proc.cmdline():
                    return proc
        raise AssertionError(f"no live process for {role}:{index}:\n{self.text()}")

    def wait_epochs(self, n: int, timeout: float = 400) -> None:
        track = self.out / "track.csv"
        deadline = time.monotonic() + timeout
        while not (track.exists() and len(track.read_text().splitlines()) > n):
            assert self.popen.poll() is None, f"launcher ended early:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {n} epochs after {timeout} s:\n{self.text()}"
            self.descendants()
            time.sleep(0.5)

    def wait(self, timeout: float = 520) -> int:
        deadline = time.monotonic() + timeout
        while self.popen.poll() is None and time.monotonic() < deadline:
            self.descendants()
            time.sleep(0.5)
        return self.popen.wait(1)

    def text(self) -> str:
        return self.log_path.read_text()

    def kill_all(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        for proc in self.descendants():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self.popen.wait(10)


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def assert_nothing_left(run: Run) -> None:
    """No process the launcher started survives it, and nothing listens on the run's ports."""
    left = run.descendants()
    assert not left, [p.cmdline() for p in left]
    listening = [c.laddr.port for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port in run.ports]
    assert not listening, listening


@pytest.fixture
def launch(data, tmp_path):
    runs = []

    def start(mode: str, *, epochs: int, name: str = "run", monitor_rate: float = 0) -> Run:
        runs.append(Run(data, mode, epochs=epochs, out=tmp_path / name, monitor_rate=monitor_rate))
        return runs[-1]

    yield start
    for run in runs:  # a failed test must not leave a cluster behind either
        run.kill_all()


def read_track(path: Path) -> list[dict]:
    with open(path) as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == TRACK_COLUMNS
        return [{k: float(v) for k, v in row.items()} for row in reader]


def test_the_shared_dataset_fn_reads_the_shard_staged_in_the_working_directory(data, tmp_path, monkeypatch):
    """What makes each PS worker read its own shard: one dataset_fn, a cwd-relative path."""
    from diagnosenet.datasets.shards import load_shard
    from diagnosenet.training.grpc.data import local_shard_dataset, stage_shard

    for worker in (0, 1):
        stage_shard(data / "shards", worker, tmp_path / f"worker{worker}")
    for worker in (0, 1):
        monkeypatch.chdir(tmp_path / f"worker{worker}")
        shard = load_shard(data / "shards", "train", worker)
        n_batches = len(shard.boundaries) - 1
        batches = list(local_shard_dataset(True, (60,), n_batches, seed=1))  # one pass, then the end
        assert all(x.dense_shape[1] == 60 for x, _ in batches)  # a tf.SparseTensor batch
        labels = np.concatenate([y.numpy() for _, y in batches])
        assert np.array_equal(np.sort(labels), np.sort(shard.y)) and len(batches) == n_batches


@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", ["grpc-async", "grpc-sync"])
def test_a_monitored_grpc_run_samples_every_process_and_writes_a_manifest_that_verifies(launch, mode):
    """grpc-async: the launcher samples the parameter server and the workers (``monitor/ps0.csv``,
    ...) and stops those monitors in its teardown, after the chief wrote the run: it hashes the
    run's files again then (before, ``ps0.csv`` no longer matched the manifest). grpc-sync: every
    worker samples itself (before, only worker 0 did, so the run's energy left the others out)."""
    from diagnosenet.artifacts import read_json, verify_manifest

    run = launch(mode, epochs=2, monitor_rate=20)
    assert run.wait() == 0, run.text()
    listed = verify_manifest(run.out, stage="train")["files"]
    expected = {"monitor/ps0.csv", "monitor/chief.csv", "monitor/worker0.csv"} if mode == "grpc-async" else \
        {"monitor/worker0.csv", "monitor/worker1.csv"}
    assert expected <= set(listed), listed
    energy = read_json(run.out / "metrics.json")["energy"]   # every sampled process is in the run's energy
    counted = {name for host in energy["hosts"].values() for name in host["monitors"]}
    assert {Path(f).stem for f in expected} <= counted, counted
    assert_nothing_left(run)


def test_a_killed_parameter_server_stops_the_whole_run(launch):
    run = launch("grpc-async", epochs=1000)
    run.wait_epochs(1)
    run.find("ps", 0).kill()
    code = run.wait(timeout=120)  # bounded: raises TimeoutExpired if the launcher hangs on
    assert code != 0
    assert "parameter server ps:0 exited with code -9" in run.text()
    assert_nothing_left(run)


REPLICA_SCRIPT = '''
import sys
from diagnosenet.datasets.shards import Batching
from diagnosenet.models.graphs import SequentialGraph
from diagnosenet.models.layers import Linear, Relu
from diagnosenet.models.optim import Adam
from diagnosenet.training.grpc.api import DistributedGRPC

job_name, task_index = sys.argv[1], int(sys.argv[2])
model = SequentialGraph(input_size=60, output_size=3, layers=[Relu(60, 16), Linear(16, 3)],
                        optimizer=Adam(lr=0.01), dropout=0.8)
platform = DistributedGRPC(model=model, datamanager=Batching(devices_number=2, batch_size={batch}),
                           max_epochs=2)
platform.synchronous_training({data!r} + "/dataset", {data!r} + "/shards", {out!r},
                              job_name=job_name, task_index=task_index)
'''


@pytest.mark.timeout(900)
def test_paper_api_runs_the_replica_script_on_every_task(data, tmp_path):
    from diagnosenet.training.grpc.api import between_graph_replication

    out = tmp_path / "paper"
    (tmp_path / "grpc_replica.py").write_text(
        REPLICA_SCRIPT.format(batch=BATCH, data=str(data), out=str(out)))
    code = between_graph_replication(d_replica_path=str(tmp_path), d_replica_name="grpc_replica.py",
                                     ip_ps="127.0.0.1", ip_workers="127.0.0.1,127.0.0.1", num_ps=1,
                                     num_workers=2, mode="grpc-sync", base_port=free_base_port(2),
                                     timeout_s=300, wall_limit_s=500)
    assert code == 0
    assert [r["epoch"] for r in read_track(out / "track.csv")] == [1, 2]
    assert (out / "metrics.json").exists()
    assert not [p for p in psutil.Process().children(recursive=True) if alive(p)]


@pytest.mark.timeout(300)
def test_sigterm_to_the_launcher_stops_every_process(launch):
    run = launch("grpc-async", epochs=1000)
    deadline = time.monotonic() + 120
    while "started worker:1 " not in run.text():
        assert time.monotonic() < deadline and run.popen.poll() is None, run.text()
        time.sleep(0.2)
    assert len(run.descendants()) == 3  # ps:0, worker:0, worker:1, still importing TensorFlow
    run.popen.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 128 + signal.SIGTERM
    assert "received signal 15; stopping every process" in run.text()
    assert_nothing_left(run)
