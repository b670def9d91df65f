"""Cluster files derived from the one host list the user edits (config ``cluster.hosts``).

The MPI hostfile (MPICH/Hydra ``host:slots`` format; rank 0, the master, lands on the first
host) and a JSON host list for the gRPC launcher (first host = parameter server) are written
by a rule, so no host name is ever hard-coded in a profile or a rule.
"""
from __future__ import annotations

from pathlib import Path

from diagnosenet.artifacts import write_json

#: the start of every ssh stand-in (the emulated nodes' and Slurm's job steps): reads
#: ``ssh [options] HOST COMMAND...`` into ``$host``, leaving COMMAND in ``"$@"``
SSH_ARGUMENTS = """while [ $# -gt 0 ]; do
  case "$1" in
    -o|-p|-i|-l|-F|-E|-b|-c|-D|-e|-I|-L|-m|-O|-Q|-R|-S|-W|-w) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
host=$1; shift
"""


def write_cluster_files(hosts: list[str], out_dir: str | Path, slots_per_host: int = 1) -> None:
    if len(hosts) < 2:
        raise ValueError("a cluster needs at least two hosts: one master and one worker")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "hostfile").write_text("".join(f"{host}:{slots_per_host}\n" for host in hosts))
    write_json(out_dir / "hosts.json", {"ps": hosts[:1], "workers": hosts[1:]})


def _command(args) -> int:
    write_cluster_files(args.hosts, args.out, args.slots_per_host)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("cluster-files", help="MPI hostfile and gRPC host list from the configured hosts")
    p.add_argument("--hosts", nargs="+", required=True, help="first host = MPI rank 0 / gRPC parameter server")
    p.add_argument("--slots-per-host", type=int, default=1)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_command)
