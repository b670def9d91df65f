"""``cpu_capacity``: the cores a process may use, from its affinity and its cgroups' CFS quotas."""
from __future__ import annotations

import os
from pathlib import Path

from diagnosenet.monitor.capacity import cpu_capacity

AFFINITY = float(len(os.sched_getaffinity(0)))


def fake_proc(tmp_path: Path, cgroup: str, mounts: list[str]) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "self" / "mountinfo").write_text("".join(f"{i} 1 0:{i} {m}\n" for i, m in enumerate(mounts, 30)))
    return proc


def write(directory: Path, **files: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name.replace("__", ".")).write_text(text)


def test_a_v1_quota_on_the_process_cgroup_or_a_parent_caps_the_affinity(tmp_path):
    """An emulated node's cgroup (v1 cpu controller mounted outside /sys, as emulate-cluster does)."""
    mount = tmp_path / "cpu"
    write(mount, cpu__cfs_quota_us="-1", cpu__cfs_period_us="100000")
    write(mount / "node0", cpu__cfs_quota_us="25000", cpu__cfs_period_us="100000")
    write(mount / "node0" / "job", cpu__cfs_quota_us="-1", cpu__cfs_period_us="100000")
    proc = fake_proc(tmp_path, "2:cpuacct:/\n1:cpu:/node0/job\n0::/\n",
                     [f"/ {mount} rw,relatime shared:9 - cgroup none rw,cpu",
                      f"/ {tmp_path}/acct rw - cgroup none rw,cpuacct"])
    assert cpu_capacity(proc=proc) == min(AFFINITY, 0.25)


def test_a_v2_cpu_max_is_read_and_max_means_no_quota(tmp_path):
    mount = tmp_path / "unified"
    write(mount / "slurm" / "job_7", cpu__max="150000 100000")
    write(mount / "slurm", cpu__max="max 100000")
    proc = fake_proc(tmp_path, "0::/slurm/job_7\n", [f"/ {mount} rw,nosuid - cgroup2 cgroup2 rw"])
    assert cpu_capacity(proc=proc) == min(AFFINITY, 1.5)
    write(mount / "slurm" / "job_7", cpu__max="max 100000")
    assert cpu_capacity(proc=proc) == AFFINITY


def test_no_cgroup_information_leaves_the_affinity(tmp_path):
    assert cpu_capacity(proc=tmp_path / "nowhere") == AFFINITY
    proc = fake_proc(tmp_path, "0::/\n", [])
    assert cpu_capacity(proc=proc) == AFFINITY
