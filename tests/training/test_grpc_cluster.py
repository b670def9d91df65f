"""The gRPC cluster layout and the launcher's checks that need no TensorFlow process."""
import io
import json
import socket

import pytest

from diagnosenet.artifacts import write_manifest
from diagnosenet.training.grpc.cluster import cluster_spec, plan_cluster, port_free, read_hosts_file, tf_config
from diagnosenet.training.grpc.launcher import launch_training, parse_train_args, wrap_remote


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
