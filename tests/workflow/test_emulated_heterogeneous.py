"""``emulate-cluster up`` with one CPU share and one link rate per node: heterogeneous boards
(issue 24). Checks what the kernel was told (CFS quotas, tbf rates); what the shares do to
training speed is measured by ``bench/bench_scaling.py``, not asserted here."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.emulated
BIN = Path(sys.executable).parent


def diagnosenet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "diagnosenet"), *args], text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture
def heterogeneous():
    if os.geteuid() != 0:
        pytest.skip("the emulated cluster needs root (network namespaces, tc, cgroups)")
    diagnosenet("emulate-cluster", "down")
    up = diagnosenet("emulate-cluster", "up", "--nodes", "3", "--cpu", "0.5,0.25,0.25", "--link", "1gbit,100mbit,100mbit")
    assert up.returncode == 0, up.stdout
    try:
        yield up.stdout
    finally:
        assert diagnosenet("emulate-cluster", "down").returncode == 0


@pytest.mark.timeout(120)
def test_each_node_gets_its_own_cpu_share_and_link_rate(heterogeneous):
    quota = {node: int(Path(f"/sys/fs/cgroup/cpu/dn-{node}/cpu.cfs_quota_us").read_text())
             for node in ("node0", "node1", "node2")}
    assert quota == {"node0": 50000, "node1": 25000, "node2": 25000}
    rates = {node: subprocess.run(["ip", "netns", "exec", f"dn-{node}", "tc", "qdisc", "show", "dev", "eth0"],
                                  capture_output=True, text=True).stdout for node in ("node0", "node1")}
    assert "rate 1Gbit" in rates["node0"] and "rate 100Mbit" in rates["node1"], rates
    assert "node0 0.5" in heterogeneous and "node1 100mbit" in heterogeneous
