"""The gRPC cluster layout and the launcher's checks that need no TensorFlow process."""
import contextlib
import dataclasses
import io
import json
import socket
import types

import numpy as np
import pytest

from diagnosenet.artifacts import write_manifest
from diagnosenet.training.grpc.cluster import cluster_spec, plan_cluster, port_free, read_hosts_file, tf_config
from diagnosenet.training.grpc.launcher import launch_training, parse_train_args, wrap_remote
from diagnosenet.training.grpc.placement import BalancedPlacement, StepBytes


def test_async_cluster_has_ps_workers_and_chief_on_consecutive_ports():
    tasks = plan_cluster("grpc-async", 3, base_port=30000)
    assert [t.name for t in tasks] == ["ps:0", "worker:0", "worker:1", "worker:2", "chief:0"]
    assert [t.port for t in tasks] == list(range(30000, 30005))
    assert cluster_spec(tasks) == {"chief": ["127.0.0.1:30004"], "ps": ["127.0.0.1:30000"],
                                   "worker": ["127.0.0.1:30001", "127.0.0.1:30002", "127.0.0.1:30003"]}
    config = json.loads(tf_config(tasks, tasks[2]))
    assert config["task"] == {"type": "worker", "index": 1}


def test_sync_cluster_is_workers_only():
    assert [t.name for t in plan_cluster("grpc-sync", 2, base_port=30000)] == ["worker:0", "worker:1"]
    with pytest.raises(ValueError, match="mode"):
        plan_cluster("mpi-sync", 2, base_port=30000)


def test_hosts_file_places_ps_and_chief_on_first_host(tmp_path):
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps({"ps": ["node1"], "workers": ["node2", "node3"]}))
    tasks = plan_cluster("grpc-async", 4, base_port=30000, hosts=read_hosts_file(path))
    assert {t.name: t.host for t in tasks} == {"ps:0": "node1", "chief:0": "node1", "worker:0": "node2",
                                                "worker:1": "node3", "worker:2": "node2", "worker:3": "node3"}
    path.write_text(json.dumps({"ps": [], "workers": ["node2"]}))
    with pytest.raises(ValueError, match="'ps'"):
        read_hosts_file(path)


def test_several_parameter_servers_go_round_robin_over_the_ps_hosts_and_the_chief_on_the_first(tmp_path):
    hosts = {"ps": ["node0", "node5"], "workers": ["node1", "node2"]}
    tasks = plan_cluster("grpc-async", 2, base_port=30000, hosts=hosts, num_ps=3)
    assert {t.name: t.host for t in tasks} == {"ps:0": "node0", "ps:1": "node5", "ps:2": "node0",
                                                "worker:0": "node1", "worker:1": "node2", "chief:0": "node0"}
    assert len({t.port for t in tasks}) == len(tasks)


def test_launcher_refuses_parameter_servers_in_grpc_sync_before_starting_anything(tmp_path):
    out = io.StringIO()
    code = launch_training("grpc-sync", _train_argv(tmp_path), workers=2, base_port=30000, timeout_s=5,
                           parameter_servers=2, stream=out)
    assert code == 1 and "--parameter-servers 2" in out.getvalue() and "started" not in out.getvalue()


def test_variables_go_to_the_server_with_the_fewest_bytes_per_step_and_slots_follow_their_variable():
    """The paper's 14,707-input MLP read by rows (350 per step, lazy Adam) over two servers: the
    30 MB input kernel moves 1.4 MB per step, so it does not get a server to itself."""
    created = []

    def next_creator(**kwargs):
        created.append(kwargs)
        return types.SimpleNamespace(name=kwargs["name"], device=getattr(kwargs.get("colocate_with"), "device", "?"))

    anchors = [types.SimpleNamespace(device=f"/job:ps/task:{i}") for i in range(2)]
    placement = BalancedPlacement(anchors, StepBytes(14707, rows_per_step=350, lazy=True))
    shapes = [(14707, 512), (512,), (512, 512), (512,), (512, 512), (512,), (512, 512), (512,), (512, 14), (14,)]
    for index, shape in enumerate(shapes):
        placement(next_creator, initial_value=np.zeros(shape, np.float32), name=f"v{index}")
    slot = placement(next_creator, initial_value=np.zeros(3), name="adam_m", colocate_with=anchors[1])
    assert slot.device == "/job:ps/task:1"   # an optimizer slot is not re-placed
    servers = dict(placement.placed)
    assert {servers[f"v{i}"] for i in (0, 2, 4, 6)} == {0, 1}   # the big kernels are split
    assert max(placement.load) / min(placement.load) < 1.6, placement.load
    assert StepBytes(14707, 350, lazy=False)((14707, 512)) == 4 * 512 * 350 + 4 * 14707 * 512  # dense Adam writes all
    assert StepBytes(14707, 350, lazy=True)((512, 512)) == 2 * 4 * 512 * 512


def test_remote_prefix_quotes_the_command_for_ssh_and_passes_argv_to_srun():
    env = {"TF_CONFIG": '{"task": {"type": "worker", "index": 0}}'}
    ssh = wrap_remote(["python", "-m", "diagnosenet", "x"], env, "node2", "ssh -o BatchMode=yes {host}")
    assert ssh[:3] == ["ssh", "-o", "BatchMode=yes"] and ssh[3] == "node2" and len(ssh) == 5
    assert "'TF_CONFIG={\"task\": {\"type\": \"worker\", \"index\": 0}}'" in ssh[4]
    srun = wrap_remote(["python", "x"], env, "node2", "srun --nodes=1 -w {host}")
    assert srun == ["srun", "--nodes=1", "-w", "node2", "env", f"TF_CONFIG={env['TF_CONFIG']}", "python", "x"]
    assert wrap_remote(["python"], env, "127.0.0.1", "ssh {host}") == ["python"]  # loopback: no prefix


def _train_argv(tmp_path, workers=2, batch=32):
    return ["--task", "pmsi", "--mode", "grpc-async", "--workers", str(workers), "--dataset", str(tmp_path),
            "--shards", str(tmp_path / "shards"), "--out", str(tmp_path / "run"), "--batch-size", str(batch)]


def test_parse_train_args_keeps_every_argument(tmp_path):
    argv = _train_argv(tmp_path) + ["--seed", "3"]
    train = parse_train_args(argv)
    assert (train.workers, train.batch_size, train.argv) == (2, 32, argv)


def test_launcher_refuses_stale_shards_before_starting_anything(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "train_00.npz").write_bytes(b"x")
    write_manifest(shards, stage="shard", files=["train_00.npz"], params={"workers": 3, "batch_size": 32})
    out = io.StringIO()
    code = launch_training("grpc-async", _train_argv(tmp_path), workers=2, base_port=30000, timeout_s=5, stream=out)
    assert code == 1
    assert "'workers' is 3 on disk but 2 was requested" in out.getvalue()
    assert "started" not in out.getvalue()


def test_launcher_refuses_a_busy_port(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    write_manifest(shards, stage="shard", files=[], params={"workers": 1, "batch_size": 32})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not port_free(port)
        out = io.StringIO()
        code = launch_training("grpc-sync", _train_argv(tmp_path, workers=1), workers=1, base_port=port,
                               timeout_s=5, stream=out)
    assert code == 1
    assert f"worker:0 ({port})" in out.getvalue() and "started" not in out.getvalue()


def test_a_reformed_cluster_drops_one_worker_and_keeps_the_others_addresses():
    from diagnosenet.training.grpc.cluster import without_worker
    from diagnosenet.training.grpc.launcher import with_lost_workers

    tasks = plan_cluster("grpc-async", 3, base_port=40000, hosts={"ps": ["n0"], "workers": ["n1", "n2", "n3"]})
    workers = [t for t in without_worker(tasks, 1) if t.type == "worker"]
    assert [(t.index, t.host, t.port) for t in workers] == [(0, "n1", 40001), (1, "n3", 40003)]
    assert len(without_worker(tasks, 1)) == len(tasks) - 1
    with pytest.raises(ValueError):
        without_worker(tasks, 3)
    argv = with_lost_workers(["--out", "x", "--lost-workers-json", "{}"], {"2": "gone"})
    assert argv == ["--out", "x", "--lost-workers-json", '{"2": "gone"}']
    assert parse_train_args([*_train_argv_plain(), *argv[2:]]).lost_workers == {"2": "gone"}


def _train_argv_plain() -> list[str]:
    return ["--workers", "2", "--shards", "s", "--out", "o"]


# -- liveness: tasks that are plain listeners (a TCP server, no TensorFlow) --------------------
LISTENER = """
import json, os, socket, sys, time
task = json.loads(os.environ["TF_CONFIG"])["task"]
me = f"{task['type']}:{task['index']}"
port, silent_after, run_s = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
start = time.monotonic()
if me != sys.argv[4] or silent_after > 0:       # the task under test may never listen (silent_after 0)
    server = socket.create_server(("127.0.0.1", port), reuse_port=False)
    if me == sys.argv[4]:
        time.sleep(silent_after)
        server.close()                          # alive, but no longer answering
time.sleep(max(0.0, run_s - (time.monotonic() - start)))
"""


def _listeners(mode: str, silent: str, silent_after: float, run_s: float, **kw):
    import sys

    from diagnosenet.training.grpc.launcher import Launcher

    base = _free_base(4)
    tasks = plan_cluster(mode, 2, base_port=base)
    stream = io.StringIO()
    launcher = Launcher(mode, tasks, lambda t: [sys.executable, "-c", LISTENER, str(t.port), str(silent_after),
                                                str(run_s), silent], stream=stream, **kw)
    return launcher, tasks, stream


def _free_base(count: int) -> int:
    import random

    while True:
        base = random.randrange(30000, 60000, 10)
        if all(port_free(base + i) for i in range(count)):
            return base


def _nothing_listens(tasks) -> bool:
    return all(port_free(t.port) for t in tasks)


@pytest.mark.timeout(120)
def test_a_sync_worker_that_stops_answering_stops_the_run_naming_it_and_its_host():
    launcher, tasks, stream = _listeners("grpc-sync", "worker:1", silent_after=1.0, run_s=60,
                                         timeout_s=30, silence_s=1.0)
    assert launcher.run() == 3
    text = stream.getvalue()
    assert "worker:1 at 127.0.0.1 has not answered" in text and "rerun the same command to resume" in text, text
    assert "worker:0 at 127.0.0.1 has not answered" not in text
    assert _nothing_listens(tasks)


@pytest.mark.timeout(120)
def test_an_async_worker_that_stops_answering_is_handed_to_the_caller_to_re_form():
    from diagnosenet.training.grpc.launcher import WorkerLost

    launcher, tasks, stream = _listeners("grpc-async", "worker:1", silent_after=1.0, run_s=60,
                                         timeout_s=30, silence_s=1.0, reform=True)
    with pytest.raises(WorkerLost) as lost:
        launcher.run()
    assert lost.value.task.name == "worker:1" and "re-form the cluster" in stream.getvalue()
    assert _nothing_listens(tasks)


@pytest.mark.timeout(120)
def test_a_silent_parameter_server_stops_an_async_run_even_when_workers_re_form():
    launcher, tasks, stream = _listeners("grpc-async", "ps:0", silent_after=1.0, run_s=60,
                                         timeout_s=30, silence_s=1.0, reform=True)
    assert launcher.run() == 3
    assert "ps:0 at 127.0.0.1 has not answered" in stream.getvalue()


@pytest.mark.timeout(120)
def test_a_worker_that_never_listens_is_named_after_the_start_up_bound():
    launcher, tasks, stream = _listeners("grpc-sync", "worker:1", silent_after=0.0, run_s=60,
                                         timeout_s=2.0, silence_s=1.0)
    assert launcher.run() == 124
    assert "worker:1 at 127.0.0.1 not listening" in stream.getvalue() and "reachable" in stream.getvalue()


@pytest.mark.timeout(120)
def test_a_stopped_but_listening_task_is_not_silent():
    """The probe is a TCP connect, answered by the kernel: a task that computes (here: is
    SIGSTOPped) for many times the silence bound is never taken for a lost one."""
    import os
    import signal
    import threading
    import time

    launcher, tasks, stream = _listeners("grpc-sync", "none", silent_after=0.0, run_s=8, timeout_s=30,
                                         silence_s=1.0)

    def stop_worker_1():
        time.sleep(1.5)
        pid = launcher._procs[1].popen.pid
        os.kill(pid, signal.SIGSTOP)
        time.sleep(4)                          # four silence bounds
        os.kill(pid, signal.SIGCONT)

    threading.Thread(target=stop_worker_1, daemon=True).start()
    assert launcher.run() == 0, stream.getvalue()
    assert "has not answered" not in stream.getvalue()


# -- a training task that fails because a peer's host vanished ---------------------------------
FAILS_OR_WAITS = """
import json, os, sys, time
task = json.loads(os.environ["TF_CONFIG"])["task"]
if task["index"] == 0:
    time.sleep(0.5)
    sys.exit(1)                                 # as TensorFlow fails a task when a peer's heartbeat stops
time.sleep(60)
"""


@contextlib.contextmanager
def _host_that_does_not_answer(host: str):
    """A port on ``host`` whose accept queue is full: the kernel drops every further SYN, so a
    connect times out as it does to a node cut off from the network."""
    server = socket.socket()
    server.bind((host, 0))
    server.listen(0)
    filler = socket.create_connection(server.getsockname())
    try:
        yield server.getsockname()[1]
    finally:
        filler.close()
        server.close()


def _sync_run_with_worker_1_at(host: str, port: int):
    import sys

    from diagnosenet.training.grpc.launcher import Launcher

    tasks = plan_cluster("grpc-sync", 2, base_port=_free_base(2))
    tasks[1] = dataclasses.replace(tasks[1], host=host, port=port)
    stream = io.StringIO()
    launcher = Launcher("grpc-sync", tasks, lambda t: [sys.executable, "-c", FAILS_OR_WAITS], timeout_s=30,
                        remote_prefix="env", stream=stream)  # "remote" worker:1 runs here, through env
    return launcher, stream


def test_host_answers_tells_a_refused_port_from_a_host_that_does_not_answer():
    from diagnosenet.training.grpc.cluster import host_answers

    assert host_answers("127.0.0.2", _free_base(1), timeout=0.5)      # refused: the host is up
    with _host_that_does_not_answer("127.0.0.2") as port:
        assert not host_answers("127.0.0.2", port, timeout=0.5)


@pytest.mark.timeout(120)
def test_a_task_failing_because_a_peer_host_vanished_names_that_host_not_the_task():
    with _host_that_does_not_answer("127.0.0.2") as port:
        launcher, stream = _sync_run_with_worker_1_at("127.0.0.2", port)
        assert launcher.run() == 3
    text = stream.getvalue()
    assert "worker:0 exited with code 1 and 127.0.0.2 does not answer" in text, text
    assert f"worker:1 at 127.0.0.2 has not answered on 127.0.0.2:{port} since worker:0 failed" in text, text


@pytest.mark.timeout(120)
def test_a_task_failing_while_every_host_answers_is_blamed_itself():
    launcher, stream = _sync_run_with_worker_1_at("127.0.0.2", _free_base(1))
    assert launcher.run() == 1
    text = stream.getvalue()
    assert "error: worker:0 exited with code 1" in text and "has not answered" not in text, text
