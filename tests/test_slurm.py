"""Reading a Slurm allocation (no Slurm needed: these are the environment's strings), and the
emulated Slurm's configuration."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from diagnosenet import slurm
from diagnosenet.emulation_slurm import slurm_conf, slurmdbd_conf


#: `scontrol show job -d` of a 4-task job on 3 nodes of the emulated Slurm (22.05), abridged
SHOW_JOB = """JobId=1 JobName=wrap
   NodeList=node[0-2]
   BatchHost=node0
   NumNodes=3 NumCPUs=4 NumTasks=4 CPUs/Task=1 ReqB:S:C:T=0:0:*:*
   JOB_GRES=(null)
     Nodes=node0 CPU_IDs=0-1 Mem=0 GRES=
     Nodes=node[1-2] CPU_IDs=0 Mem=0 GRES=
   MinCPUsNode=1 MinMemoryNode=0 MinTmpDiskNode=0
"""


def test_the_allocation_is_read_from_the_controllers_view_of_the_job():
    assert slurm.parse_job(SHOW_JOB) == ("node[0-2]", [("node0", 2), ("node[1-2]", 1)], 1)
    assert slurm.count_ids("0-1,4,6-7") == 5 and slurm.count_ids("3") == 1
    with pytest.raises(ValueError, match="no NodeList"):
        slurm.parse_job("JobId=1 JobName=wrap")


def test_an_allocation_gives_hydra_a_hostfile_in_allocation_order():
    allocation = slurm.Allocation("42", ("node3", "node1"), (2, 1))
    assert allocation.hostfile() == "node3:2\nnode1:1\n"
    assert slurm.allocation({"PATH": "/bin"}) is None          # outside Slurm: nothing to read


def test_the_record_keeps_the_job_and_nothing_outside_slurm():
    env = {"SLURM_JOB_ID": "7", "SLURM_CLUSTER_NAME": "emu", "SLURM_JOB_NODELIST": "node[0-2]", "HOME": "/root"}
    assert slurm.record(env) == {"job_id": "7", "cluster": "emu", "nodelist": "node[0-2]"}
    assert slurm.record({}) is None


def test_the_ssh_stand_in_starts_one_job_step_on_the_named_host(tmp_path):
    import subprocess

    script = tmp_path / "srun-as-ssh"
    fake_srun = tmp_path / "bin" / "srun"     # prints its arguments: what Hydra's call becomes
    fake_srun.parent.mkdir()
    fake_srun.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake_srun.chmod(0o755)
    script.write_text(slurm.ssh_standin())
    script.chmod(0o755)
    out = subprocess.run([str(script), "-x", "-o", "BatchMode=yes", "node2", "proxy", "--port", "5"],
                         capture_output=True, text=True, check=True,
                         env={"PATH": f"{fake_srun.parent}:/usr/bin:/bin"}).stdout.splitlines()
    assert out == [*shlex.split(slurm.STEP_PREFIX.format(host="node2"))[1:], "sh", "-c", "proxy --port 5"]


def test_the_emulated_slurm_conf_declares_every_node_and_finds_its_private_munge():
    text = slurm_conf(Path("/run/x/slurm"), ("head", "10.0.0.1"), [("node0", "10.0.0.2", 0.25),
                                                                    ("node1", "10.0.0.3", 3.5)], 16000)
    assert "SlurmctldHost=head(10.0.0.1)" in text
    assert "AuthInfo=socket=/run/x/slurm/munge/munge.socket" in text
    assert "NodeName=node0 NodeAddr=10.0.0.2 CPUs=2 RealMemory=16000" in text   # at least 2 slots
    assert "NodeName=node1 NodeAddr=10.0.0.3 CPUs=4 " in text
    assert "PartitionName=emulated Nodes=node0,node1 Default=YES" in text
    assert "MinJobAge=300" in text     # squeue status must still see finished jobs
    assert "AccountingStorageType=accounting_storage/slurmdbd" in text and "AccountingStorageHost=10.0.0.1" in text


def test_the_emulated_slurmdbd_runs_on_the_head_and_keeps_jobs_in_the_private_database():
    text = slurmdbd_conf(Path("/run/x/slurm"), ("head", "10.0.0.1")).splitlines()
    assert {"DbdHost=head", "DbdAddr=10.0.0.1", "AuthInfo=socket=/run/x/slurm/munge/munge.socket",
            "StorageType=accounting_storage/mysql", "StorageHost=127.0.0.1"} <= set(text)
    assert "LogFile=/run/x/slurm/log/slurmdbd.log" in text
