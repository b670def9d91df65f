"""``snakemake --profile jetson`` for real, on an emulated 3-node cluster (namespaces, 1 Gbit/s
links, CPU quotas; ``diagnosenet emulate-cluster``): mpi-sync, mpi-async and grpc-async each
place one process per node, and the cluster is removed afterwards, also when a test fails.

Needs root (CI runs as root). The profile is the real jetson profile: only the cluster
description (``config/emulated.yaml``) and small data are layered on top.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smk import REPO

pytestmark = [pytest.mark.snakemake, pytest.mark.tensorflow, pytest.mark.mpi, pytest.mark.emulated]

BIN = Path(sys.executable).parent
SMALL = {
    "tasks": ["pmsi"],
    "pmsi": {"synthetic": {"patients": 300, "seed": 5}},
    "shards": {"batch_size": 64, "seed": 1},
    "models": {"pmsi": {"hidden_units": [16], "dropout_keep": 0.8}},
    "train": {"max_epochs": 2, "patience": 2, "timeout_s": 60, "startup_timeout_s": 900},
    "monitor": {"rate_hz": 1.0},
}
MODES = ("mpi-sync", "mpi-async", "grpc-async")


def diagnosenet(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "diagnosenet"), *args], text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, **kw)


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the emulated cluster needs root (network namespaces, tc, cgroups)")
    diagnosenet("emulate-cluster", "down")  # a cluster left by a killed earlier run
    up = diagnosenet("emulate-cluster", "up", "--nodes", "3", "--link", "1gbit", "--cpu", "1.0")
    assert up.returncode == 0, up.stdout
    try:
        yield
    finally:
        down = diagnosenet("emulate-cluster", "down")
        assert down.returncode == 0, down.stdout
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert "dn-" not in left, left
        assert not Path("/run/diagnosenet-emulated").exists()


@pytest.fixture(scope="module")
def jetson_run(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("emulated")
    for name in ("workflow", "profiles", "config"):
        (workdir / name).symlink_to(REPO / name)
    (workdir / "jetson").symlink_to(REPO / "profiles" / "jetson")
    (workdir / "small.yaml").write_text(yaml.safe_dump(SMALL))
    targets = [f"results/pmsi/runs/{mode}-w2/metrics.json" for mode in MODES]
    command = [str(BIN / "diagnosenet"), "emulate-cluster", "run", "--",
               "sh", "-c", f"cd {workdir} && PATH={BIN}:$PATH exec snakemake {' '.join(targets)} --profile jetson "
               "--cores 2 --configfile config/config.yaml config/jetson.yaml config/emulated.yaml small.yaml"]
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
def test_grpc_tasks_run_on_their_emulated_nodes(jetson_run):
    workdir, _ = jetson_run
    metrics = json.loads((workdir / "results/pmsi/runs/grpc-async-w2/metrics.json").read_text())
    assert metrics["hosts"] == {"ps:0": "node0", "chief:0": "node0", "worker:0": "node1", "worker:1": "node2"}
    log = (workdir / "results/logs/train/pmsi_grpc-async-w2.log").read_text()
    assert "started worker:0 at node1:" in log and "started worker:1 at node2:" in log
