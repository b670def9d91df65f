"""``launch-mpi``'s reading of a failed job: hostfiles, rank placement, which node was lost.

The whole path (a node's every process SIGKILLed, the job re-formed or stopped) runs on the
emulated cluster in ``tests/workflow/test_emulated_cluster.py``.
"""
from __future__ import annotations

import threading
from pathlib import Path

from diagnosenet.training.mpi.launch import (Launcher, LauncherExit, lost_host, parse_hostfile, rank_hosts, read_exits,
                                             wait_for_lost_host)


def test_hostfiles_in_hydra_and_open_mpi_spelling():
    text = "node0:2\nnode1  # a comment\n\nnode2 slots=3 max_slots=4\n"
    assert parse_hostfile(text) == [("node0", 2), ("node1", 1), ("node2", 3)]


def test_ranks_fill_each_hosts_slots_in_order_then_wrap():
    assert rank_hosts([("a", 2), ("b", 1)], 5) == ["a", "a", "b", "a", "a"]
    assert rank_hosts([], 3) == []


def test_the_first_launcher_to_die_by_a_signal_or_lost_connection_names_the_node(tmp_path):
    record = tmp_path / "exits"
    record.write_text("100.30 7 node1\n100.10 137 node2\n100.35 7 node0\n")
    assert lost_host(read_exits(record)) == LauncherExit(100.10, 137, "node2")
    record.write_text("5.0 7 node1\n6.5 255 node2\n")   # torn down long before: the job failed for another reason
    assert lost_host(read_exits(record)) is None
    # the teardown of the others recorded a millisecond before the killed node's own exit (seen in CI)
    record.write_text("1796194120.403234271 7 node0\n1796194120.404310733 137 node2\n1796194120.404360206 7 node1\n")
    assert lost_host(read_exits(record)).host == "node2"
    record.write_text("5.0 255 node1.cluster.local\n")   # ssh lost its connection
    assert lost_host(read_exits(record)).host == "node1.cluster.local"
    assert lost_host(read_exits(tmp_path / "absent")) is None


def test_a_lost_node_recorded_after_the_process_manager_exited_is_still_named(tmp_path):
    """mpirun can exit before the killed node's launcher wrapper appends its line."""
    record = tmp_path / "exits"
    late = threading.Timer(0.3, lambda: record.write_text("100.10 137 node2\n100.30 7 node1\n"))
    late.start()
    try:
        assert wait_for_lost_host(record, grace_s=30) == LauncherExit(100.10, 137, "node2")
    finally:
        late.cancel()
    record.write_text("5.0 7 node1\n")   # a failure that is no lost node's: given up after the grace
    assert wait_for_lost_host(record, grace_s=0.2) is None


def test_a_launcher_without_the_lost_node_gets_its_own_hostfile(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node0:1\nnode1.cluster:2\nnode2:1\n")
    launcher = Launcher.parse(f"mpirun -disable-auto-cleanup -f {hostfile} -genv X 1")
    assert launcher.hosts == [("node0", 1), ("node1.cluster", 2), ("node2", 1)]
    reformed = launcher.without("node1", tmp_path / "launch" / "hostfile-1")
    assert reformed.argv == ["mpirun", "-disable-auto-cleanup", "-f", str(tmp_path / "launch" / "hostfile-1"),
                             "-genv", "X", "1"]
    assert (tmp_path / "launch" / "hostfile-1").read_text() == "node0:1\nnode2:1\n"
    listed = Launcher.parse("mpirun -hosts a,b:2,c")
    assert listed.hosts == [("a", 1), ("b", 2), ("c", 1)]
    assert listed.without("c", tmp_path / "h").hosts == [("a", 1), ("b", 2)]
    assert Launcher.parse("mpirun -disable-auto-cleanup").hosts == []   # this host only: nothing to re-form


def test_only_a_run_finished_by_this_launch_counts_when_mpirun_fails(tmp_path):
    import os
    import time

    from diagnosenet.artifacts import write_json, write_manifest
    from diagnosenet.training.mpi.launch import finished_since

    def finished_run(out, lost):
        out.mkdir()
        write_json(out / "metrics.json", {"mode": "mpi-async", "mpi": {"lost_workers": lost}})
        write_manifest(out, stage="train", files=["metrics.json"], params={"mode": "mpi-async"})
        return out

    started = time.time() - 1
    assert finished_since(finished_run(tmp_path / "lost", {"2": "silent for 120 s"}), started)
    assert finished_since(finished_run(tmp_path / "torn-down", {}), started)   # mpirun died after the outputs
    old = finished_run(tmp_path / "old", {})
    os.utime(old / "manifest.json", (started - 3600, started - 3600))         # left by an earlier run
    assert not finished_since(old, started)
    unfinished = finished_run(tmp_path / "unfinished", {"1": "killed"})
    (unfinished / "metrics.json").unlink()  # the master died before writing its outputs
    assert not finished_since(unfinished, started)
    assert not finished_since(tmp_path / "absent", started)


def test_inside_a_slurm_allocation_hydra_gets_its_nodes_and_one_job_step_per_node(tmp_path):
    from diagnosenet import slurm
    from diagnosenet.training.mpi.launch import Launcher, in_allocation, is_hydra

    launcher = Launcher.parse("mpirun -disable-auto-cleanup")
    assert is_hydra(launcher) and not launcher.hosts and not is_hydra(Launcher.parse("srun --mpi=pmi2"))
    placed, remote = in_allocation(launcher, slurm.Allocation("9", ("node0", "node1", "node2"), (1, 1, 1)), tmp_path)
    assert placed.argv == ["mpirun", "-disable-auto-cleanup", "-f", str(tmp_path / "hostfile-slurm")]
    assert placed.hosts == [("node0", 1), ("node1", 1), ("node2", 1)]
    assert Path(remote).read_text() == slurm.ssh_standin()
    reformed = placed.without("node1", tmp_path / "hostfile-reformed-1")   # mpi-async after losing node1
    assert reformed.hosts == [("node0", 1), ("node2", 1)] and reformed.argv[-1] == str(tmp_path / "hostfile-reformed-1")
