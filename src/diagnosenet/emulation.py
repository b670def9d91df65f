"""An emulated multi-node cluster on one Linux machine (root): namespaces, a bridge, shaped links.

``diagnosenet emulate-cluster up --nodes 3 --link 1gbit --cpu 0.25`` creates a head node and
``node0..node{N-1}``, each a network namespace ``dn-<name>`` with its own address on a private
bridge (no route anywhere else), its own host name (``unshare --uts``), a ``tbf``-shaped link
and a CPU-quota cgroup; ``down`` removes exactly what ``up`` recorded, also after a failure.
The real launchers then run across the nodes over real TCP: Hydra's ``mpirun`` through
:data:`SSH` (``HYDRA_LAUNCHER_EXEC``, set by ``emulate-cluster run``), the gRPC launcher
through ``cluster.remote_prefix`` (``config/emulated.yaml``). Nothing in the jetson or slurm
profiles knows about the emulation: it is one more cluster description.

``emulate-cluster run -- COMMAND`` runs COMMAND (e.g. ``snakemake --profile jetson ...``) on
the head node with the environment that makes MPI use TCP between nodes (by default MPICH
moves data through shared memory even between namespaces, bypassing the shaped links).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import subprocess
import time
from pathlib import Path

from diagnosenet.cluster import SSH_ARGUMENTS

log = logging.getLogger(__name__)

PREFIX = "dn-"
BRIDGE = "dn-br0"
SUBNET = "10.213.0"           # private, on the bridge only: the project's own test hosts
STATE_DIR = Path("/run/diagnosenet-emulated")
STATE = STATE_DIR / "state.json"
#: the ssh stand-in (same options, host, command) that runs a command on an emulated node
SSH = STATE_DIR / "ssh"
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
#: the same cpu hierarchy mounted where `ip netns exec` (which remounts /sys) still sees it
CGROUP_MOUNT = STATE_DIR / "cpu"
HEAD = "head"
#: environment of every MPI job on the emulated cluster: TCP between ranks, no shared memory
MPI_ENV = {"UCX_TLS": "tcp,self", "MPIR_CVAR_NOLOCAL": "1", "HYDRA_LAUNCHER": "ssh",
           "HYDRA_LAUNCHER_EXEC": str(SSH)}

SSH_SCRIPT = """#!/bin/sh
# ssh stand-in for the emulated cluster (written by `diagnosenet emulate-cluster up`):
#   ssh [options] HOST COMMAND...  ->  COMMAND in HOST's namespace, cgroup and host name
{ssh_arguments}ns={prefix}$host
cg={cgroup}/$ns
[ -d "$cg" ] && echo $$ > "$cg/cgroup.procs"   # children inherit the node's CPU share
exec ip netns exec "$ns" unshare --uts sh -c 'hostname "$0"; exec sh -c "$*"' "$host" "$*"
"""


def _run(*command: str) -> None:
    subprocess.run(command, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _quiet(*command: str) -> None:
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def node_names(nodes: int) -> list[str]:
    return [f"node{i}" for i in range(nodes)]


def describe(nodes: int) -> dict:
    """The cluster description (config keys) of an emulated cluster of ``nodes`` nodes."""
    return {"cluster": {"hosts": node_names(nodes), "slots_per_host": 1, "remote_prefix": f"{SSH} {{host}}"},
            "grpc": {"host": "0.0.0.0"}}


def per_node(value, nodes: int, option: str, kind=str) -> list:
    """``value`` for each of ``nodes`` nodes: one value for all, or a list (or ``"a,b,c"``) of
    exactly one per node (a heterogeneous cluster)."""
    values = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    values = [kind(v.strip() if isinstance(v, str) else v) for v in values]
    if len(values) == 1:
        return values * nodes
    if len(values) != nodes:
        raise ValueError(f"{option}: {len(values)} values for {nodes} nodes (give one, or one per node)")
    return values


def up(nodes: int, link="1gbit", cpu=0.25, cpu_period_ms: float = 100.0, slurm: bool = False,
       slurm_mem_mb: int = 16000) -> dict:
    """Create the cluster; on any failure remove what was created and re-raise.

    ``cpu`` cores per node are a CFS quota of ``cpu × cpu_period_ms`` per ``cpu_period_ms``: a
    shorter period makes a node behave more like a slower core (a process that never waits
    is throttled in short slices instead of long pauses; docs/cluster-emulation.md). ``cpu``
    and ``link`` are one value for every node or one per node (``[0.5, 0.25, 0.25]``, or
    ``"1gbit,100mbit,100mbit"``): heterogeneous boards. ``slurm``: also a real Slurm, its
    controller on the head and a slurmd on every node (``emulation_slurm``)."""
    if not 1.0 <= cpu_period_ms <= 1000.0:
        raise ValueError(f"--cpu-period-ms must be in 1..1000, got {cpu_period_ms}")
    if not 1 <= nodes <= 200:
        raise ValueError(f"--nodes must be in 1..200, got {nodes}")
    cpus, links = per_node(cpu, nodes, "--cpu", float), per_node(link, nodes, "--link")
    if not all(0 < c <= 64 for c in cpus):
        raise ValueError(f"--cpu: every share must be in (0, 64] cores, got {cpus}")
    if os.geteuid() != 0:
        raise PermissionError("emulate-cluster needs root (network namespaces, tc, cgroups)")
    if slurm:
        from diagnosenet import emulation_slurm

        why = emulation_slurm.why_not_available()
        if why:
            raise RuntimeError(f"emulate-cluster up --slurm: {why}")
    if STATE.exists():
        raise RuntimeError(f"an emulated cluster is already up ({STATE}); run `diagnosenet emulate-cluster down`")
    names = [HEAD, *node_names(nodes)]
    state: dict = {"nodes": names, "addresses": {name: f"{SUBNET}.{i + 1}" for i, name in enumerate(names)},
                   "link": dict(zip(names[1:], links)), "cpu": dict(zip(names[1:], cpus)), "cpu_period_ms": cpu_period_ms, "namespaces": [], "links": [], "cgroups": [],
                   "netns_dirs": [], "bridge": None}
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    try:
        CGROUP_MOUNT.mkdir(exist_ok=True)
        _run("mount", "-t", "cgroup", "-o", "cpu", "none", str(CGROUP_MOUNT))
        state["cgroup_mount"] = str(CGROUP_MOUNT)
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        state["bridge"] = BRIDGE
        _run("ip", "link", "set", BRIDGE, "up")
        hosts = "127.0.0.1 localhost\n" + "".join(f"{SUBNET}.{i + 1} {name}\n" for i, name in enumerate(names))
        for i, name in enumerate(names):
            ns, veth = PREFIX + name, f"dnv{i}"
            _run("ip", "netns", "add", ns)
            state["namespaces"].append(ns)
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            state["links"].append(veth)
            _run("ip", "link", "set", veth, "master", BRIDGE)
            _run("ip", "link", "set", veth, "up")
            for command in (("ip", "link", "set", "lo", "up"), ("ip", "link", "set", "eth0", "up"),
                            ("ip", "addr", "add", f"{SUBNET}.{i + 1}/24", "dev", "eth0")):
                _run("ip", "netns", "exec", ns, *command)
            if name != HEAD:  # the nodes' egress at the paper's link speed
                _run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", links[i - 1],
                     "burst", "256kb", "latency", "20ms")
                cgroup = CGROUP_CPU / ns
                cgroup.mkdir()
                state["cgroups"].append(str(cgroup))
                period_us = int(cpu_period_ms * 1000)
                (cgroup / "cpu.cfs_period_us").write_text(str(period_us))
                (cgroup / "cpu.cfs_quota_us").write_text(str(max(1000, int(cpus[i - 1] * period_us))))
            netns_dir = Path("/etc/netns") / ns
            netns_dir.mkdir(parents=True, exist_ok=True)
            state["netns_dirs"].append(str(netns_dir))
            (netns_dir / "hosts").write_text(hosts)
        SSH.write_text(SSH_SCRIPT.replace("{ssh_arguments}", SSH_ARGUMENTS).replace("{prefix}", PREFIX)
                       .replace("{cgroup}", str(CGROUP_MOUNT)))
        SSH.chmod(0o755)
        STATE.write_text(json.dumps(state, indent=2))
        if slurm:
            from diagnosenet import emulation_slurm

            emulation_slurm.start(state, STATE_DIR / "slurm", lambda name: PREFIX + name, SSH, slurm_mem_mb)
            STATE.write_text(json.dumps(state, indent=2))
    except BaseException:
        _teardown(state)
        _forget()   # nothing left to `down`: the next `up` may start at once
        raise
    log.info("emulated cluster up: head + %d nodes; links %s; cores %s%s", nodes,
             ", ".join(f"{n} {r}" for n, r in state["link"].items()), ", ".join(f"{n} {c:g}" for n, c in state["cpu"].items()),
             "; Slurm controller on head, slurmd on every node" if slurm else "")
    return state


def _kill_namespace_processes(ns: str) -> None:
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)


def _teardown(state: dict) -> None:
    for ns in state.get("namespaces", []):
        _kill_namespace_processes(ns)
    for cgroup in state.get("cgroups", []):
        path = Path(cgroup)
        if path.exists():
            for pid in (path / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 9)
    if state.get("slurm"):   # its daemons in the namespaces are dead by now; munged is not in one
        from diagnosenet import emulation_slurm

        emulation_slurm.stop(state["slurm"])
    for ns in state.get("namespaces", []):
        _quiet("ip", "netns", "del", ns)
    for veth in state.get("links", []):
        _quiet("ip", "link", "del", veth)
    if state.get("bridge"):
        _quiet("ip", "link", "del", state["bridge"])
    for cgroup in state.get("cgroups", []):
        for _ in range(50):  # a killed process leaves its cgroup a moment later
            try:
                Path(cgroup).rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
    if state.get("cgroup_mount"):
        _quiet("umount", state["cgroup_mount"])
        with contextlib.suppress(OSError):
            Path(state["cgroup_mount"]).rmdir()
    for netns_dir in state.get("netns_dirs", []):
        with contextlib.suppress(FileNotFoundError):
            (Path(netns_dir) / "hosts").unlink()
        with contextlib.suppress(OSError):
            Path(netns_dir).rmdir()


def _forget() -> None:
    """Remove the ssh stand-in and the state file (after ``_teardown``)."""
    for path in (SSH, STATE):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    with contextlib.suppress(OSError):
        STATE_DIR.rmdir()


def down() -> bool:
    """Remove everything ``up`` recorded (processes in its namespaces included); ``False`` if none."""
    if not STATE.exists():
        return False
    _teardown(json.loads(STATE.read_text()))
    _forget()
    log.info("emulated cluster down")
    return True


def head_command(command: list[str]) -> list[str]:
    """``command`` on the head node (its namespace and host name) with :data:`MPI_ENV`."""
    if not STATE.exists():
        raise RuntimeError("no emulated cluster is up; run `diagnosenet emulate-cluster up` first")
    env = [f"{k}={v}" for k, v in MPI_ENV.items()]
    inner = f"hostname {HEAD}; exec env {' '.join(env)} {shlex.join(command)}"
    return ["ip", "netns", "exec", PREFIX + HEAD, "unshare", "--uts", "sh", "-c", inner]


def _up(args) -> int:
    up(args.nodes, args.link, args.cpu, args.cpu_period_ms, slurm=args.slurm, slurm_mem_mb=args.slurm_mem_mb)
    if args.describe:
        import yaml

        Path(args.describe).parent.mkdir(parents=True, exist_ok=True)
        Path(args.describe).write_text(yaml.safe_dump(describe(args.nodes), sort_keys=False))
    return 0


def _down(args) -> int:
    if not down():
        log.info("no emulated cluster was up")
    return 0


def _run_on_head(args) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SystemExit("emulate-cluster run: give a command after --")
    return subprocess.call(head_command(command))


def register(subparsers) -> None:
    p = subparsers.add_parser("emulate-cluster", help="an emulated multi-node 1 GbE cluster on this machine (root)")
    actions = p.add_subparsers(dest="action", required=True)
    u = actions.add_parser("up", help="create head + N nodes (namespaces, bridge, tbf links, CPU quotas)")
    u.add_argument("--nodes", type=int, default=3)
    u.add_argument("--link", default="1gbit",
                   help="tc rate of every node's link (1gbit, 100mbit), or one per node: 1gbit,100mbit,...")
    u.add_argument("--cpu", default="0.25", help="CPU share of every node in cores, or one per node: 0.5,0.25,0.25")
    u.add_argument("--cpu-period-ms", type=float, default=100.0,
                   help="CFS period of the CPU quota (shorter: closer to a slower core; default the kernel's 100 ms)")
    u.add_argument("--describe", help="also write the cluster description (config keys) to this YAML file")
    u.add_argument("--slurm", action="store_true",
                   help="also start a real Slurm: slurmctld, slurmdbd and its MariaDB on the head, a slurmd per node "
                        "(Debian slurm-wlm, slurmdbd, mariadb-server, munge)")
    u.add_argument("--slurm-mem-mb", type=int, default=16000, help="memory Slurm is told each node has (not enforced)")
    u.set_defaults(func=_up)
    d = actions.add_parser("down", help="remove everything `up` created, processes included")
    d.set_defaults(func=_down)
    r = actions.add_parser("run", help="run a command on the head node, e.g. -- snakemake --profile jetson ...")
    r.add_argument("command", nargs=argparse.REMAINDER)
    r.set_defaults(func=_run_on_head)
