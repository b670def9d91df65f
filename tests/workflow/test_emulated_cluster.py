"""``snakemake --profile jetson`` for real, on an emulated 3-node cluster (namespaces, 1 Gbit/s
links, CPU quotas; ``diagnosenet emulate-cluster``): mpi-sync, mpi-async and grpc-async each
place one process per node, and the cluster is removed afterwards, also when a test fails.

Needs root (CI runs as root). The profile is the real jetson profile: only the cluster
description (``config/emulated.yaml``) and small data are layered on top.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
from shlex import quote as shlex_quote
import sys
from pathlib import Path

import pytest
import yaml

from smk import REPO, emulated_cluster

pytestmark = [pytest.mark.snakemake, pytest.mark.tensorflow, pytest.mark.mpi, pytest.mark.emulated]

BIN = Path(sys.executable).parent
SMALL = {
    "tasks": ["pmsi"],
    "pmsi": {"synthetic": {"patients": 300, "seed": 5}},
    "shards": {"batch_size": 64, "seed": 1},
    "models": {"pmsi": {"hidden_units": [16], "dropout_keep": 0.8}},
    "train": {"max_epochs": 2, "patience": 2, "timeout_s": 60, "startup_timeout_s": 900},
    "monitor": {"rate_hz": 1.0},
    # the scalability target at small size: mpi-sync on 1 and 2 worker nodes (+ rank 0's)
    "experiments": {"scalability": {"tasks": ["pmsi"], "modes": ["mpi-sync"], "workers": [1, 2]}},
}
MODES = ("mpi-sync", "mpi-async", "grpc-async")


def diagnosenet(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "diagnosenet"), *args], text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, **kw)


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the emulated cluster needs root (network namespaces, tc, cgroups)")
    with emulated_cluster("--nodes", "3", "--link", "1gbit", "--cpu", "1.0"):
        yield


@pytest.fixture(scope="module")
def jetson_run(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("emulated")
    for name in ("workflow", "profiles", "config"):
        (workdir / name).symlink_to(REPO / name)
    (workdir / "jetson").symlink_to(REPO / "profiles" / "jetson")
    (workdir / "small.yaml").write_text(yaml.safe_dump(SMALL))
    targets = [f"results/pmsi/runs/{mode}-w2/metrics.json" for mode in MODES] + ["scalability"]
    configs = "--configfile config/config.yaml config/jetson.yaml config/emulated.yaml small.yaml"
    command = [str(BIN / "diagnosenet"), "emulate-cluster", "run", "--",
               "sh", "-c", f"cd {workdir} && PATH={BIN}:$PATH snakemake {' '.join(targets)} --profile jetson "
               f"--cores 2 {configs} && PATH={BIN}:$PATH snakemake scalability --report report.html {configs}"]
    proc = subprocess.run(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return workdir, proc.stdout


@pytest.mark.timeout(1800)
def test_mpi_ranks_run_one_per_emulated_node(jetson_run):
    workdir, _ = jetson_run
    for mode in ("mpi-sync", "mpi-async"):
        metrics = json.loads((workdir / f"results/pmsi/runs/{mode}-w2/metrics.json").read_text())
        assert metrics["mpi"]["hosts"] == ["node0", "node1", "node2"], metrics["mpi"]
        assert metrics["epochs_run"] == 2


@pytest.mark.timeout(1800)
def test_the_scalability_target_runs_on_the_emulated_nodes_and_reaches_the_report(jetson_run):
    import csv

    workdir, _ = jetson_run
    experiments = workdir / "results/experiments"
    with open(experiments / "scalability.csv", newline="") as handle:
        table = {int(r["workers"]): r for r in csv.DictReader(handle)}
    assert set(table) == {1, 2} and float(table[2]["efficiency"]) > 0
    assert float(table[2]["bytes_per_step"]) > 0 and table[2]["exchange"] == "sparse"
    one = json.loads((workdir / "results/pmsi/runs/mpi-sync-w1/metrics.json").read_text())
    assert one["mpi"]["hosts"] == ["node0", "node1"]
    from diagnosenet.training.timeline import read_timeline

    steps = json.loads((workdir / "results/pmsi/runs/mpi-sync-w2/metrics.json").read_text())["steps_per_epoch"]
    timeline = read_timeline(workdir / "results/pmsi/runs/mpi-sync-w2")   # one row per step per worker rank
    assert sorted((r["rank"], r["epoch"], r["step"]) for r in timeline) == [
        (rank, epoch, step) for rank in (1, 2) for epoch in (1, 2) for step in range(1, steps + 1)]
    html = (workdir / "report.html").read_text()
    for name in ("scalability.png", "scalability-timeline.png", "scalability-recommendation.md"):
        assert name in html, name


@pytest.mark.timeout(1800)
def test_grpc_tasks_run_on_their_emulated_nodes(jetson_run):
    workdir, _ = jetson_run
    metrics = json.loads((workdir / "results/pmsi/runs/grpc-async-w2/metrics.json").read_text())
    assert metrics["hosts"] == {"ps:0": "node0", "chief:0": "node0", "worker:0": "node1", "worker:1": "node2"}
    log = (workdir / "results/logs/train/pmsi_grpc-async-w2.log").read_text()
    assert "started worker:0 at node1:" in log and "started worker:1 at node2:" in log


# -- faults on the emulated cluster (NumPy model: the exchange, without TensorFlow's import) --
def _training_fixtures():
    import importlib.util

    path = REPO / "tests" / "training" / "conftest.py"
    spec = importlib.util.spec_from_file_location("training_conftest_emulated", path)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look it up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    fixtures = _training_fixtures()
    root = tmp_path_factory.mktemp("emulated-tiny")
    dataset = fixtures.make_dataset(root, "pmsi")
    return dataset, fixtures.make_shards(dataset, root / "shards", workers=2, batch_size=32), root


def mpi_on_cluster(tiny, mode: str, out: Path, *, model: dict, epochs: int, timeout: float) -> list[str]:
    dataset, shards, root = tiny
    hostfile = root / "hostfile"
    hostfile.write_text("node0:1\nnode1:1\nnode2:1\n")
    return [str(BIN / "diagnosenet"), "emulate-cluster", "run", "--", "env", f"PATH={BIN}:{os.environ['PATH']}",
            "mpirun", "-disable-auto-cleanup", "-f", str(hostfile), "-n", "3", "python", "-m", "diagnosenet",
            "train-mpi", "--task", "pmsi", "--mode", mode, "--workers", "2", "--dataset", str(dataset),
            "--shards", str(shards), "--out", str(out), "--batch-size", "32", "--model-json", json.dumps(model),
            "--max-epochs", str(epochs), "--lr", "0.01", "--seed", "3", "--timeout", str(timeout),
            "--startup-timeout", "600", "--monitor-rate", "0"]


def track_epochs(out: Path) -> list[int]:
    import csv

    with open(out / "track.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


@pytest.mark.timeout(600)
def test_a_node_throttled_to_ten_percent_of_a_core_is_not_lost_in_mpi_async(cluster, tiny, tmp_path):
    """(c): node2 at 0.1 core, ten times slower than the others: mpi-async finishes with it,
    not lost (heartbeats from a thread; epochs longer than the bound are (d)'s). At 0.05 core
    the run took 37-346 s, most of it node2's start-up."""
    quota = Path("/sys/fs/cgroup/cpu/dn-node2/cpu.cfs_quota_us")
    quota.write_text("10000")
    try:
        out = tmp_path / "slow"
        proc = subprocess.run(launch_on_cluster(tiny, "mpi-async", out, model={"backend": "numpy", "hidden_units": [64]},
                                                epochs=3, timeout=5), text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=550)
    finally:
        quota.write_text("100000")
    assert proc.returncode == 0, proc.stdout[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mpi"]["lost_workers"] == {} and metrics["mpi"]["hosts"] == ["node0", "node1", "node2"]
    assert track_epochs(out) == [1, 2, 3]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["mpi-sync", "mpi-async"])
def test_epochs_longer_than_the_timeout_complete_across_nodes(cluster, tiny, tmp_path, mode):
    """(d): 4 s steps (12 s epochs) under timeout_s = 3 over the shaped links (a bound of 1 s
    was seen to expire on a heavily loaded 2-core machine: heartbeats come every timeout_s / 4)."""
    out = tmp_path / mode
    proc = subprocess.run(launch_on_cluster(tiny, mode, out, model={"backend": "numpy", "hidden_units": [16], "delay_s": 4.0},
                                            epochs=2, timeout=3), text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=550)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert track_epochs(out) == [1, 2]
    assert not json.loads((out / "metrics.json").read_text())["mpi"].get("lost_workers")


def launch_on_cluster(tiny, mode: str, out: Path, *, epochs: int, timeout: float,
                      model: dict | None = None) -> list[str]:
    """``diagnosenet launch-mpi`` (what rule train_mpi runs) on the head node, ranks on node0..2.

    Tests of a run that should succeed go through it, not through a bare ``mpirun``: Hydra
    itself was seen to die of SIGPIPE while tearing down a job whose outputs were all written
    (exit 243 = -13 from ``emulate-cluster run``, fresh-clone suite of 2026-12-07), and
    launch-mpi is where that is told apart from a failed run (``finished_since``)."""
    command = mpi_on_cluster(tiny, mode, out, model=model or {"backend": "numpy", "hidden_units": [16], "delay_s": 0.05},
                             epochs=epochs, timeout=timeout)
    launcher = " ".join(command[command.index("mpirun"):command.index("-n")])
    train = command[command.index("train-mpi") + 1:]
    return [*command[:command.index("mpirun")], "diagnosenet", "launch-mpi", "--launcher", launcher,
            "--tasks", "3", "--", *train]


def node_pids(node: str) -> list[str]:
    return subprocess.run(["ip", "netns", "pids", f"dn-{node}"], capture_output=True, text=True).stdout.split()


def kill_node(node: str) -> None:
    """SIGKILL every process of ``node`` (a node that crashes or loses power)."""
    pids = node_pids(node)
    assert pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), 9)


def set_link(node: str, state: str) -> None:
    """``down``: ``node`` is cut off from the network, its processes keep running (a pulled cable)."""
    subprocess.run(["ip", "netns", "exec", f"dn-{node}", "ip", "link", "set", "eth0", state], check=True)


def fault_after_epochs(command: list[str], out: Path, epochs: int, fault) -> tuple[subprocess.Popen, float]:
    """Start ``command``; once ``track.csv`` has ``epochs`` rows, call ``fault()``; return the job
    and when the fault happened."""
    import time

    launch = subprocess.Popen(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)   # finish_within can end all it started
    deadline = time.monotonic() + 300
    while not ((out / "track.csv").exists() and len(track_epochs(out)) >= epochs):
        assert launch.poll() is None and time.monotonic() < deadline, launch.stdout.read()[-3000:]
        time.sleep(0.05)
    fault()
    return launch, time.monotonic()


def kill_node_after_epochs(command: list[str], out: Path, node: str, epochs: int) -> tuple[subprocess.Popen, float]:
    return fault_after_epochs(command, out, epochs, lambda: kill_node(node))


def nothing_left_running() -> dict[str, list[str]]:
    """Processes still in the nodes' namespaces (a test that ends a job leaves none)."""
    return {node: node_pids(node) for node in ("head", "node0", "node1", "node2") if node_pids(node)}


def finish_within(launch: subprocess.Popen, seconds: float) -> str:
    """The output of ``launch`` once it ends; past ``seconds``, its whole process group is
    killed (a child that keeps the pipe open would make ``communicate`` wait for ever)."""
    try:
        return launch.communicate(timeout=seconds)[0]
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(launch.pid, 9)   # the group of a launch started with start_new_session
        launch.kill()
        output = launch.communicate()[0]
        if isinstance(exc, subprocess.TimeoutExpired):
            exc.output = output   # what it printed before it was killed, for the failure message
        raise


def assert_the_rerun_resumes(command: list[str], out: Path) -> None:
    """A job stopped after epoch 2 of 12: the same command resumes it to the last epoch."""
    assert 2 <= len(track_epochs(out)) < 12
    rerun = subprocess.run(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=400)
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    assert f"resuming {out} after epoch" in rerun.stdout
    assert track_epochs(out) == list(range(1, 13))


@pytest.mark.timeout(600)
def test_a_killed_node_stops_mpi_sync_naming_the_node_and_the_rerun_resumes(cluster, tiny, tmp_path):
    """(b): SIGKILL of every process of node2 mid-run. The process manager ends the job at once
    (Hydra: ``control_cb: assert (!closed)``); launch-mpi names the node from its launchers' exits,
    and the same command resumes from the last checkpoint."""
    import time

    out = tmp_path / "mpi-sync"
    command = launch_on_cluster(tiny, "mpi-sync", out, epochs=12, timeout=5)
    launch, killed_at = kill_node_after_epochs(command, out, "node2", 2)
    try:
        output, _ = launch.communicate(timeout=120)
    finally:
        if launch.poll() is None:
            launch.kill()
    assert launch.returncode != 0
    assert time.monotonic() - killed_at < 5 + 10  # within the liveness bound (+ slack)
    assert "node node2 was lost" in output and "signal 9" in output and "rank(s) 2" in output, output[-3000:]
    assert_the_rerun_resumes(command, out)


@pytest.mark.timeout(600)
def test_mpi_async_completes_with_the_survivors_when_a_node_is_killed(cluster, tiny, tmp_path):
    """(a) for MPI: every process of node2 (worker 2) SIGKILLed mid-run. launch-mpi re-forms the
    job on node0 and node1 from the last checkpoint; the run completes and records the loss."""
    import csv

    out = tmp_path / "mpi-async"
    launch, _ = kill_node_after_epochs(launch_on_cluster(tiny, "mpi-async", out, epochs=12, timeout=5), out, "node2", 2)
    try:
        output, _ = launch.communicate(timeout=400)
    finally:
        if launch.poll() is None:
            launch.kill()
    assert launch.returncode == 0, output[-4000:]
    assert "node node2 was lost" in output and "re-forming on node0, node1 with 2 rank(s)" in output, output[-3000:]
    assert track_epochs(out) == list(range(1, 13))
    mpi = json.loads((out / "metrics.json").read_text())["mpi"]
    assert set(mpi["lost_workers"]) == {"2"} and "node2" in mpi["lost_workers"]["2"]
    assert mpi["hosts"] == ["node0", "node1"] and mpi["rank_workers"] == {"1": 1}
    shards = json.loads((tiny[1] / "manifest.json").read_text())["shards"]["train"]
    with open(out / "track.csv", newline="") as handle:
        assert int(list(csv.DictReader(handle))[-1]["samples"]) == shards[0]["rows"]   # worker 1's shard only


def grpc_on_cluster(workdir: Path, mode: str, out: Path, *, epochs: int, timeout: float) -> list[str]:
    """``diagnosenet train-grpc`` on the head node, tasks on node0 (ps, chief), node1 and node2
    (worker:0, worker:1), on the data and shards of the jetson run."""
    args = json.loads((workdir / "results/pmsi/runs/grpc-async-w2/run.json").read_text())["settings"]
    shards = args["shards_dir"] if args["shards_dir"].startswith("/") else str(workdir / args["shards_dir"])
    train = ["--task", "pmsi", "--mode", mode, "--workers", "2", "--dataset", str(workdir / "results/pmsi/dataset"),
             "--shards", shards, "--out", str(out), "--batch-size", str(args["batch_size"]),
             "--model-json", json.dumps(args["model"]), "--max-epochs", str(epochs), "--patience", str(epochs),
             "--lr", "0.001", "--timeout", str(timeout), "--startup-timeout", "600", "--monitor-rate", "0"]
    return [str(BIN / "diagnosenet"), "emulate-cluster", "run", "--", "sh", "-c",
            f"cd {out.parent} && PATH={BIN}:$PATH exec diagnosenet train-grpc --mode {mode} --workers 2 "
            f"--base-port 23450 --timeout 600 --wall-limit 800 --hosts-file {workdir}/results/cluster/hosts.json "
            f"--remote-prefix '/run/diagnosenet-emulated/ssh {{host}}' -- " + " ".join(map(shlex_quote, train))]


def start_logged(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as handle:
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)


def wait_epochs(launch: subprocess.Popen, out: Path, epochs: int, log: Path, timeout: float = 600) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not ((out / "track.csv").exists() and len(track_epochs(out)) >= epochs):
        assert launch.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.02)


@pytest.mark.timeout(900)
def test_grpc_async_survives_a_killed_worker_node(jetson_run, tmp_path):
    """(a) for gRPC: every process of node2 (worker:1) killed mid-run; the launcher restarts the
    worker on its node, the coordinator re-runs its steps and the run completes."""
    workdir, _ = jetson_run
    out, log = tmp_path / "run", tmp_path / "grpc.log"
    launch = start_logged(grpc_on_cluster(workdir, "grpc-async", out, epochs=8, timeout=60), log)
    try:
        wait_epochs(launch, out, 2, log)
        kill_node("node2")
        assert launch.wait(timeout=800) == 0, log.read_text()[-4000:]
    finally:
        if launch.poll() is None:
            launch.kill()
    text = log.read_text()
    assert "worker:1 exited with code" in text and "restarting it" in text
    assert track_epochs(out) == list(range(1, 9))
    assert json.loads((out / "metrics.json").read_text())["hosts"]["worker:1"] == "node2"


@pytest.mark.timeout(900)
def test_grpc_async_re_forms_without_a_worker_node_cut_off_from_the_network(jetson_run, tmp_path):
    """Issue 23: node2 (worker:1) loses its link after epoch 1, its processes alive. Its port
    stops answering; after timeout_s the launcher stops every task and re-forms the cluster on
    node0 and node1, the chief resumes from its checkpoint and completes the run; the node is
    recorded as lost and nothing is left running."""
    import time

    workdir, _ = jetson_run
    out, log = tmp_path / "run", tmp_path / "grpc.log"
    launch = start_logged(grpc_on_cluster(workdir, "grpc-async", out, epochs=4, timeout=10), log)
    try:
        wait_epochs(launch, out, 1, log)
        set_link("node2", "down")
        cut_at = time.monotonic()
        while "re-forming with 1 worker(s)" not in log.read_text():
            assert launch.poll() is None and time.monotonic() - cut_at < 10 + 30, log.read_text()[-3000:]
            time.sleep(0.2)
        assert launch.wait(timeout=600) == 0, log.read_text()[-4000:]
    finally:
        set_link("node2", "up")
        if launch.poll() is None:
            launch.kill()
    text = log.read_text()
    assert "worker:1 at node2 has not answered" in text, text[-3000:]
    assert track_epochs(out) == [1, 2, 3, 4]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["lost_workers"]) == {"2"} and "node2" in metrics["lost_workers"]["2"]
    assert metrics["hosts"] == {"ps:0": "node0", "chief:0": "node0", "worker:0": "node1"}
    assert nothing_left_running() == {}


@pytest.mark.timeout(900)
def test_grpc_sync_stops_naming_a_worker_node_cut_off_from_the_network_and_resumes(jetson_run, tmp_path):
    """Issue 23: the same cut in grpc-sync ends the run (exit 3) within timeout_s + a probe
    period, naming worker:1 and node2; once the link is back the same command resumes.

    A grpc-sync epoch of this data takes ~0.03 s, and no step can complete once node2 is cut
    off (every step all-reduces with it), so the run has many epochs: with 4 of them, the three
    after epoch 1 were once all done in the 0.1 s between the test seeing epoch 1 and the cut
    (the run then rightly exited 0)."""
    import time

    epochs = 200
    workdir, _ = jetson_run
    out, log = tmp_path / "run", tmp_path / "grpc.log"
    command = grpc_on_cluster(workdir, "grpc-sync", out, epochs=epochs, timeout=10)
    launch = start_logged(command, log)
    try:
        wait_epochs(launch, out, 1, log)
        set_link("node2", "down")
        cut_at = time.monotonic()
        code = launch.wait(timeout=120)
        ended_after = time.monotonic() - cut_at
    finally:
        set_link("node2", "up")
        if launch.poll() is None:
            launch.kill()
    text = log.read_text()
    assert code == 3, text[-3000:]
    assert ended_after < 10 + 20, text[-3000:]
    assert "worker:1 at node2 has not answered" in text, text[-3000:]
    assert nothing_left_running() == {}
    done = len(track_epochs(out))
    assert 1 <= done < epochs
    rerun = start_logged(command, tmp_path / "rerun.log")
    assert rerun.wait(timeout=600) == 0, (tmp_path / "rerun.log").read_text()[-4000:]
    assert f"after epoch {done}" in (tmp_path / "rerun.log").read_text()
    assert track_epochs(out) == list(range(1, epochs + 1))
    assert nothing_left_running() == {}


@pytest.mark.timeout(600)
def test_mpi_async_completes_when_a_worker_node_is_cut_off_from_the_network(cluster, tiny, tmp_path):
    """Issue 23: node2's link goes down after epoch 2, its processes keep running. The master
    drops rank 2 after timeout_s of silence and writes the run; launch-mpi returns success within
    timeout_s + its finish grace, whatever node2's processes do, and leaves nothing running."""
    import time

    out = tmp_path / "mpi-async"
    launch, cut_at = fault_after_epochs(launch_on_cluster(tiny, "mpi-async", out, epochs=12, timeout=5), out, 2,
                                        lambda: set_link("node2", "down"))
    try:
        output = finish_within(launch, 200)
        ended_after = time.monotonic() - cut_at
    finally:
        set_link("node2", "up")
    assert launch.returncode == 0, output[-4000:]
    assert ended_after < 5 + 10 + 45, output[-3000:]   # silence + finish grace + the epochs left (liveness bound)
    assert track_epochs(out) == list(range(1, 13))
    lost = json.loads((out / "metrics.json").read_text())["mpi"]["lost_workers"]
    assert set(lost) == {"2"} and "node2" in lost["2"] and "silent" in lost["2"], lost
    assert nothing_left_running() == {}


@pytest.mark.timeout(600)
def test_mpi_sync_stops_naming_a_node_cut_off_from_the_network_and_resumes_when_it_is_back(cluster, tiny, tmp_path):
    """Issue 23: the same cut in mpi-sync ends the job (non-zero) within the liveness bound,
    naming node2; once the link is back the same command resumes to the last epoch."""
    import time

    out = tmp_path / "mpi-sync"
    command = launch_on_cluster(tiny, "mpi-sync", out, epochs=12, timeout=5)
    launch, cut_at = fault_after_epochs(command, out, 2, lambda: set_link("node2", "down"))
    try:
        output = finish_within(launch, 200)
        ended_after = time.monotonic() - cut_at
    finally:
        set_link("node2", "up")
    assert launch.returncode != 0
    assert ended_after < 5 + 10 + 15, output[-3000:]
    assert "node2" in output and "silent" in output, output[-3000:]
    assert nothing_left_running() == {}
    assert_the_rerun_resumes(command, out)
    assert nothing_left_running() == {}


@pytest.mark.timeout(600)
def test_a_node_unreachable_from_the_start_is_a_lost_node(cluster, tiny, tmp_path):
    """node2's link is down before the job starts: Hydra's proxy there cannot connect back
    (it exits 5, the others are torn down). launch-mpi names node2: mpi-sync stops, mpi-async
    re-forms on node0 and node1 and completes without worker 2."""
    outs = {mode: tmp_path / mode for mode in ("mpi-sync", "mpi-async")}
    set_link("node2", "down")
    try:
        runs = {mode: subprocess.run(launch_on_cluster(tiny, mode, out, epochs=3, timeout=5), text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
                for mode, out in outs.items()}
    finally:
        set_link("node2", "up")
    sync, asynchronous = runs["mpi-sync"], runs["mpi-async"]
    assert sync.returncode != 0 and "node node2 was lost" in sync.stdout, sync.stdout[-3000:]
    assert "before the job started" in sync.stdout
    assert asynchronous.returncode == 0, asynchronous.stdout[-3000:]
    assert "re-forming on node0, node1 with 2 rank(s)" in asynchronous.stdout
    assert track_epochs(outs["mpi-async"]) == [1, 2, 3]
    assert set(json.loads((outs["mpi-async"] / "metrics.json").read_text())["mpi"]["lost_workers"]) == {"2"}
    assert nothing_left_running() == {}
