"""Running inside a Slurm allocation: its nodes, one job step per node, and what to record.

A training job submitted by ``snakemake --profile slurm`` gets an allocation of several
nodes and starts on the first. The launchers then need three things from Slurm, and
nothing else (no site-specific code):

- the allocated nodes and how many tasks each may run (``scontrol show job -d
  $SLURM_JOB_ID``: its CPUs per node ÷ CPUs per task), in allocation order: rank 0 / the
  parameter server and chief land on the first node, where the job script runs;
- a way to start a command on one of them: a job step, ``srun --overlap --nodes=1
  --ntasks=1 --nodelist=HOST`` (:data:`STEP_PREFIX`), used by ``launch-mpi`` as Hydra's
  per-node launcher (instead of Hydra's own Slurm bootstrap, which starts every node's proxy in
  *one* step, so a lost node could not be told from the others) and by ``train-grpc`` as its
  remote prefix. ``--overlap``: the steps share the allocation's CPUs with each other. srun
  exits 0 when its node fails ("Node failure on HOST", seen with Slurm 22.05), so the stand-in
  then asks ``sinfo`` and exits 255, ssh's "connection lost", which ``launch-mpi`` reads as a
  lost node;
- the job id and nodes, for ``metrics.json`` (:func:`record`).
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

#: a command on one allocated node, as a job step (``{host}`` is replaced; the command follows)
STEP_PREFIX = "srun --overlap --nodes=1 --ntasks=1 --kill-on-bad-exit=0 --nodelist={host}"

#: the ssh stand-in Hydra calls as ``EXEC [options] HOST COMMAND``: a job step on HOST
SSH_STANDIN = """#!/bin/sh
# ssh stand-in inside a Slurm allocation (written by `diagnosenet launch-mpi`): a job step on HOST
{ssh_arguments}{step} sh -c "$*"
status=$?
# srun exits 0 after "Node failure on HOST": ask the controller, and say "connection lost" (255)
case "$(sinfo -h -N -n "$host" -o %t 2>/dev/null)" in
  *down*|*fail*|*\\**) echo "srun-as-ssh: node $host is down or not responding (sinfo)" >&2; exit 255 ;;
esac
exit $status
"""


@dataclass(frozen=True)
class Allocation:
    job_id: str
    nodes: tuple[str, ...]          # in allocation order
    tasks_per_node: tuple[int, ...]

    def hostfile(self) -> str:
        """Hydra's hostfile of the allocation: ``node:tasks`` per line."""
        return "".join(f"{n}:{t}\n" for n, t in zip(self.nodes, self.tasks_per_node))


def count_ids(text: str) -> int:
    """``"0-1,4"`` → 3 (Slurm's CPU_IDs)."""
    total = 0
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        total += int(high or low) - int(low) + 1
    return total


def parse_job(text: str) -> tuple[str, list[tuple[str, int]], int]:
    """From ``scontrol show job -d``: the node list, ``(nodes, CPUs on each)`` per detail line,
    and CPUs per task."""
    nodelist = re.search(r"\bNodeList=(\S+)", text)
    per_task = re.search(r"\bCPUs/Task=(\d+)", text)
    details = [(m.group(1), count_ids(m.group(2))) for m in re.finditer(r"^\s*Nodes=(\S+) CPU_IDs=(\S+)", text, re.M)]
    if not nodelist or not details:
        raise ValueError(f"scontrol show job -d: no NodeList or per-node CPU_IDs in {text[:300]!r}")
    return nodelist.group(1), details, int(per_task.group(1)) if per_task else 1


def _hostnames(expression: str) -> list[str]:
    return subprocess.run(["scontrol", "show", "hostnames", expression], check=True, capture_output=True,
                          text=True, timeout=30).stdout.split()


def allocation(environ=None) -> Allocation | None:
    """The allocation of the job this process runs in (None outside Slurm), asked of the
    controller by ``SLURM_JOB_ID``: the executor's jobstep plugin strips every other ``SLURM_*``
    variable (node list and tasks per node included) before it runs a rule, and inside a job
    step those describe the step, not the allocation."""
    env = os.environ if environ is None else environ
    job = env.get("SLURM_JOB_ID")
    if not job:
        return None
    text = subprocess.run(["scontrol", "show", "job", "-d", job], check=True, capture_output=True, text=True,
                          timeout=30).stdout
    nodelist, details, per_task = parse_job(text)
    cpus = {node: count for expression, count in details for node in _hostnames(expression)}
    nodes = tuple(_hostnames(nodelist))
    return Allocation(job, nodes, tuple(max(1, cpus.get(n, per_task) // per_task) for n in nodes))


def ssh_standin() -> str:
    from diagnosenet.cluster import SSH_ARGUMENTS

    step = STEP_PREFIX.replace("{host}", '"$host"')
    return SSH_STANDIN.replace("{ssh_arguments}", SSH_ARGUMENTS).replace("{step}", step)


def record(environ=None) -> dict | None:
    """What ``metrics.json`` keeps of the Slurm job that ran the training (None outside Slurm)."""
    env = os.environ if environ is None else environ
    if not env.get("SLURM_JOB_ID"):
        return None
    keys = {"job_id": "SLURM_JOB_ID", "job_name": "SLURM_JOB_NAME", "cluster": "SLURM_CLUSTER_NAME",
            "partition": "SLURM_JOB_PARTITION", "nodelist": "SLURM_JOB_NODELIST", "submit_host": "SLURM_SUBMIT_HOST"}
    return {k: env[v] for k, v in keys.items() if env.get(v)}


def slurmd_port() -> int:
    """The nodes' slurmd port (``scontrol show config``; Slurm's default 6818)."""
    try:
        text = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 6818
    match = re.search(r"^SlurmdPort\s*=\s*(\d+)", text, re.M)
    return int(match.group(1)) if match else 6818


def silent_nodes(nodes, timeout_s: float = 3.0) -> list[str]:
    """Nodes whose slurmd accepts no connection: crashed, powered off or cut off. A job step
    on such a node does not end until the controller declares it down (``SlurmdTimeout``,
    300 s by default), so a launcher that waits for the step would wait that long."""
    import socket

    port, silent = slurmd_port(), []
    for node in nodes:
        try:
            socket.create_connection((node, port), timeout=timeout_s).close()
        except OSError:
            silent.append(node)
    return silent
