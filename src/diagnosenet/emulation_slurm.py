"""A real Slurm on the emulated nodes: ``emulate-cluster up --slurm``.

Debian's ``slurm-wlm`` and ``munge`` (``make slurm-packages`` installs them as root): a
private ``munged`` on the host (its own key and socket, never the system's), ``slurmctld``
on the head node and one ``slurmd`` per node, each in the node's namespace, host name and
CPU-quota cgroup, so job steps inherit the node's CPU share and link. Every process in a
namespace sees ``/etc/slurm`` through ``/etc/netns/<ns>/slurm`` (``ip netns exec``
bind-mounts that directory over ``/etc``): the Snakemake jobstep plugin deletes every
``SLURM_*`` variable, ``SLURM_CONF`` included, before its inner ``srun``, so a config found
only through ``SLURM_CONF`` breaks every job. A node has ``CPUs`` = its ``--cpu`` share rounded
up, and at least 2 (slots, not speed: the CPU quota sets the speed), so that a gRPC job's
parameter server and chief can share the first node; memory is declared, not enforced
(``--slurm-mem-mb``).

Measured pitfalls this follows (``docs/slurm.md``): ``CgroupPlugin=cgroup/v1`` because ``ip
netns exec`` remounts ``/sys``; ``SlurmdParameters=config_overrides`` so declared CPUs and
memory need not match the machine; ``MinJobAge=300`` so the executor's ``squeue`` status
sees finished jobs; ``batch_sched_delay=0``.

Accounting as at a real site, so the executor's default status query (``sacct``) is the one
exercised: a private MariaDB (Debian's ``mariadb-server``; its own data directory, socket and
port on the head's loopback, which no other namespace sees) and ``slurmdbd`` on the head,
started before ``slurmctld``, which registers the cluster itself.
"""
from __future__ import annotations

import contextlib
import math
import os
import pwd
import random
import shutil
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "slurmdbd", "sinfo", "sbatch", "srun", "squeue", "scontrol", "sacct",
            "mariadbd", "mariadb-install-db", "mariadb-admin")
PACKAGES = ("slurm-wlm", "munge", "slurmdbd", "mariadb-server")
#: slurmdbd's port on the head; MariaDB's on the head's own loopback
DBD_PORT, DB_PORT = 6819, 3306
#: the lock wait slurmdbd asks for
SERVER_OPTIONS = ("--innodb-lock-wait-timeout=900",)
PARTITION = "emulated"
START_TIMEOUT_S = 30.0


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]


def why_not_available() -> str | None:
    """Why a Slurm cluster cannot be emulated here (None when it can)."""
    if os.geteuid() != 0:
        return "an emulated Slurm needs root (namespaces, daemons)"
    missing = missing_binaries()
    if missing:
        return (f"Slurm/munge not installed ({', '.join(missing)} missing): `make slurm-packages` "
                f"installs Debian's {' '.join(PACKAGES)} as root")
    return None


def slurm_conf(slurm_dir: Path, head: tuple[str, str], nodes: list[tuple[str, str, float]], mem_mb: int) -> str:
    """``slurm.conf`` for controller ``head`` = (name, address) and ``nodes`` = (name, address, cores)."""
    lines = [
        "ClusterName=diagnosenet-emulated",
        f"SlurmctldHost={head[0]}({head[1]})",
        "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={slurm_dir}/munge/munge.socket",
        f"StateSaveLocation={slurm_dir}/state", f"SlurmctldPidFile={slurm_dir}/state/slurmctld.pid",
        f"SlurmctldLogFile={slurm_dir}/log/slurmctld.log",
        f"SlurmdSpoolDir={slurm_dir}/spool/%n", f"SlurmdPidFile={slurm_dir}/spool/%n/slurmd.pid",
        f"SlurmdLogFile={slurm_dir}/log/slurmd-%n.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
        "SchedulerType=sched/backfill", "SchedulerParameters=batch_sched_delay=0",
        "MpiDefault=none", "SwitchType=switch/none",
        "AccountingStorageType=accounting_storage/slurmdbd", f"AccountingStorageHost={head[1]}",
        f"AccountingStoragePort={DBD_PORT}", "JobAcctGatherType=jobacct_gather/none",
        # the munge socket for slurmdbd connections (AuthInfo's is not used for them)
        f"AccountingStoragePass={slurm_dir}/munge/munge.socket",
        "JobCompType=jobcomp/none",
        "SlurmdParameters=config_overrides", "ReturnToService=2",
        "SlurmctldTimeout=30", "SlurmdTimeout=30", "KillWait=5", "MinJobAge=300",
        "MailProg=/bin/true",
    ]
    lines += [f"NodeName={name} NodeAddr={address} CPUs={max(2, math.ceil(cores))} RealMemory={mem_mb} "
              "State=UNKNOWN" for name, address, cores in nodes]
    lines.append(f"PartitionName={PARTITION} Nodes={','.join(n for n, _, _ in nodes)} Default=YES "
                 "MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def slurmdbd_conf(slurm_dir: Path, head: tuple[str, str]) -> str:
    """``slurmdbd.conf``: the daemon on ``head``, its jobs in the private MariaDB on the head's
    loopback (root without a password: nothing outside the head's namespace can reach it)."""
    return "\n".join([
        "AuthType=auth/munge", f"AuthInfo=socket={slurm_dir}/munge/munge.socket",
        f"DbdHost={head[0]}", f"DbdAddr={head[1]}", f"DbdPort={DBD_PORT}", "SlurmUser=root",
        "StorageType=accounting_storage/mysql", "StorageHost=127.0.0.1", f"StoragePort={DB_PORT}",
        "StorageUser=root", "StorageLoc=slurm_acct_db",
        f"PidFile={slurm_dir}/state/slurmdbd.pid", f"LogFile={slurm_dir}/log/slurmdbd.log",
    ]) + "\n"


def _munge_key(path: Path, munge: pwd.struct_passwd) -> None:
    path.write_bytes(random.SystemRandom().randbytes(1024))
    os.chown(path, munge.pw_uid, munge.pw_gid)
    path.chmod(0o400)


def start(state: dict, slurm_dir: Path, namespace_of, ssh: Path, mem_mb: int = 16000) -> None:
    """Start munged, slurmctld and the slurmds for the cluster ``state`` describes (recording
    in ``state["slurm"]`` what to remove); wait until every node is idle."""
    why = why_not_available()
    if why:
        raise RuntimeError(why)
    names = state["nodes"]
    head, nodes = names[0], names[1:]
    addresses = state["addresses"]
    record = state.setdefault("slurm", {"dir": str(slurm_dir), "links": []})
    for sub in ("etc", "state", "spool", "log"):
        (slurm_dir / sub).mkdir(parents=True, exist_ok=True)
    munge = pwd.getpwnam("munge")
    munge_dir = slurm_dir / "munge"
    munge_dir.mkdir(exist_ok=True)
    os.chown(munge_dir, munge.pw_uid, munge.pw_gid)
    munge_dir.chmod(0o711)   # munged: the socket's directory searchable by all, writable by munge only
    _munge_key(munge_dir / "munge.key", munge)
    (slurm_dir / "etc" / "slurm.conf").write_text(slurm_conf(
        slurm_dir, (head, addresses[head]), [(n, addresses[n], state["cpu"][n]) for n in nodes], mem_mb))
    (slurm_dir / "etc" / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\n")
    record["munged_pid_file"] = str(munge_dir / "munged.pid")
    _daemon("munged", ["runuser", "-u", "munge", "--", _binary("munged"), f"--socket={munge_dir}/munge.socket",
                        f"--key-file={munge_dir}/munge.key", f"--pid-file={munge_dir}/munged.pid",
                        f"--log-file={munge_dir}/munged.log", f"--seed-file={munge_dir}/munged.seed"])
    for name in names:
        link = Path("/etc/netns") / namespace_of(name) / "slurm"
        link.symlink_to(slurm_dir / "etc")
        record["links"].append(str(link))
    _start_accounting(slurm_dir, namespace_of(head), (head, addresses[head]))
    _daemon("slurmctld", ["ip", "netns", "exec", namespace_of(head), "unshare", "--uts", "sh", "-c",
                          f"hostname {head}; exec {_binary('slurmctld')}"])
    for name in nodes:   # through the ssh stand-in: the node's namespace, host name and CPU cgroup
        _daemon(f"slurmd on {name}", [str(ssh), name, _binary("slurmd")])
    wait_idle(namespace_of(head), nodes, slurm_dir)


def _start_accounting(slurm_dir: Path, head_namespace: str, head: tuple[str, str]) -> None:
    """MariaDB, then slurmdbd, in the head's namespace; back once slurmdbd listens."""
    data = slurm_dir / "mariadb"
    init = subprocess.run([_binary("mariadb-install-db"), "--no-defaults", f"--datadir={data}", "--user=root",
                           "--auth-root-authentication-method=normal", "--skip-test-db", *SERVER_OPTIONS],
                          capture_output=True, text=True, timeout=120)
    if init.returncode != 0:
        raise RuntimeError(f"mariadb-install-db failed (exit {init.returncode}): {(init.stdout + init.stderr)[-800:]}")
    # mariadbd stays in the foreground: started detached, it dies with the namespace at `down`
    subprocess.Popen(["ip", "netns", "exec", head_namespace, _binary("mariadbd"), "--no-defaults",
                      f"--datadir={data}", "--user=root", f"--socket={data}/mariadb.sock",
                      "--bind-address=127.0.0.1", f"--port={DB_PORT}", f"--pid-file={data}/mariadbd.pid",
                      f"--log-error={slurm_dir}/log/mariadb.log", "--skip-name-resolve", *SERVER_OPTIONS],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    _wait_for(f"MariaDB on {head[0]}", lambda: in_head(head_namespace, _binary("mariadb-admin"), "--no-defaults",
                                                       f"--socket={data}/mariadb.sock", "-u", "root", "ping"),
              slurm_dir / "log" / "mariadb.log")
    conf = slurm_dir / "etc" / "slurmdbd.conf"
    conf.write_text(slurmdbd_conf(slurm_dir, head))
    conf.chmod(0o600)   # slurmdbd refuses a config others can read
    _daemon("slurmdbd", ["ip", "netns", "exec", head_namespace, "unshare", "--uts", "sh", "-c",
                         f"hostname {head[0]}; exec {_binary('slurmdbd')}"])
    _wait_for(f"slurmdbd on {head[0]}", lambda: in_head(head_namespace, "bash", "-c",
                                                       f"exec 3<>/dev/tcp/{head[1]}/{DBD_PORT}"),
              slurm_dir / "log" / "slurmdbd.log")


def _wait_for(what: str, probe, log: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while probe().returncode != 0:
        if time.monotonic() > deadline:
            tail = log.read_text()[-800:] if log.exists() else "no log"
            raise RuntimeError(f"{what} not ready after {timeout_s:g} s; its log ends: {tail}")
        time.sleep(0.2)


def _daemon(what: str, command: list[str]) -> None:
    """Start a daemon that forks into the background; its own words if it cannot."""
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} did not start (exit {proc.returncode}): {(proc.stdout + proc.stderr).strip()[-800:]}")


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def in_head(namespace: str, *command: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", namespace, *command], capture_output=True, text=True,
                          timeout=timeout)


def wait_idle(head_namespace: str, nodes: list[str], slurm_dir: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline, states = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        out = in_head(head_namespace, "sinfo", "-h", "-N", "-o", "%N %t")
        states = dict(line.split() for line in out.stdout.splitlines() if len(line.split()) == 2)
        if all(states.get(n) == "idle" for n in nodes):
            return
        time.sleep(0.2)
    logs = "; ".join(f"{p.name}: {p.read_text()[-300:]!r}" for p in sorted((slurm_dir / "log").glob("*.log")))
    raise RuntimeError(f"Slurm nodes not idle after {timeout_s:g} s (sinfo: {states or 'no answer'}); logs: {logs}")


def _end(pid: int, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``: the private munged never outlives the cluster."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, 9)


def stop(record: dict) -> None:
    """Remove what :func:`start` recorded (the daemons in the namespaces die with them)."""
    pid_file = Path(record.get("munged_pid_file", "/nonexistent"))
    with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
        _end(int(pid_file.read_text().split()[0]))
    for link in record.get("links", []):
        with contextlib.suppress(FileNotFoundError):
            Path(link).unlink()
    if record.get("dir"):
        shutil.rmtree(record["dir"], ignore_errors=True)
