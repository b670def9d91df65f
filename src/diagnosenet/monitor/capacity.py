"""How many cores a process may use: its CPU affinity, capped by the CFS quota of its cgroups.

Why: a server's time per request measured in CPU seconds becomes wall seconds only through the
share of a core it gets (an emulated 0.25-core node, a Slurm job's ``--cpus-per-task``, a
container's ``cpu.max``), which is what the cost model of the asynchronous modes needs. Reads
cgroup v2 (``cpu.max``) and v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) wherever they
are mounted, every level from the process's cgroup up to the root (the tightest quota wins).
"""
from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def _mounts(proc: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(v2 mounts, v1 cpu-controller mounts)`` as ``(root within the hierarchy, mount point)``."""
    v2, v1 = [], []
    try:
        lines = (proc / "self" / "mountinfo").read_text().splitlines()
    except OSError:
        return v2, v1
    for line in lines:
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        fstype, *rest = line.split(" - ", 1)[1].split()
        options = rest[1].split(",") if len(rest) > 1 else []
        if fstype == "cgroup2":
            v2.append((fields[3], fields[4]))
        elif fstype == "cgroup" and "cpu" in options:
            v1.append((fields[3], fields[4]))
    return v2, v1


def _levels(mount_root: str, mount_point: str, path: str) -> list[Path]:
    """The directories of ``path`` (a cgroup path) and its parents under one mount."""
    if not path.startswith(mount_root):
        return []
    relative = path[len(mount_root):].strip("/")
    parts = relative.split("/") if relative else []
    return [Path(mount_point, *parts[:i]) for i in range(len(parts), -1, -1)]


def _quota(directory: Path, v2: bool) -> float | None:
    try:
        if v2:
            quota, period = (directory / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
        return None if quota < 0 else quota / period
    except (OSError, ValueError):
        return None


def cpu_capacity(proc: Path = PROC) -> float:
    """Cores this process may use: ``len(affinity)``, or less under a CFS quota (``proc``: for tests)."""
    try:
        cores = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = float(os.cpu_count() or 1)
    try:
        memberships = (proc / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return cores
    v2_mounts, v1_mounts = _mounts(proc)
    for line in memberships:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "":
            mounts, v2 = v2_mounts, True
        elif "cpu" in controllers.split(","):
            mounts, v2 = v1_mounts, False
        else:
            continue
        for root, point in mounts:
            for directory in _levels(root, point, path):
                quota = _quota(directory, v2)
                if quota is not None:
                    cores = min(cores, quota)
    return cores
