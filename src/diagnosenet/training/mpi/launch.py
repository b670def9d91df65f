"""``diagnosenet launch-mpi``: run an MPI training job, name a lost node, re-form mpi-async without it.

Process managers end the whole job when a node's daemon dies: MPICH's Hydra asserts
(``control_cb: assert (!closed)``) and Open MPI's PRRTE "cannot recover" once it loses a
remote daemon, even with ULFM; neither says which node. So fault tolerance to a *dead node*
lives one level up, as in elastic launchers (torchrun, Horovod elastic):

1. ``launch-mpi`` runs ``LAUNCHER -n TASKS diagnosenet train-mpi ARGS``, with Hydra's remote
   launcher (``ssh``, or ``$HYDRA_LAUNCHER_EXEC``) wrapped by a script that appends one line
   per host when that host's launcher exits: time, exit status, host
   (``RUN/launch/launcher-exits.txt``).
2. If the launcher fails, the host whose launcher failed *first*, killed by a signal or with
   ssh's connection-lost status 255, is the lost node (the others exit when the process
   manager tears the job down: within milliseconds, and their exits can be recorded first, so
   "first" means the first such status within :data:`SAME_MOMENT_S` of the first exit).
   Rank 0 wrote which rank ran on which host at start-up (``RUN/launch/ranks.json``).
   Inside a Slurm allocation every node's proxy is a job step, and the step of a failed node
   does not end until the controller declares the node down (minutes); so there, when no
   launcher failed, the node whose ``slurmd`` accepts no connection is the lost one
   (:func:`diagnosenet.slurm.silent_nodes`; ``docs/slurm.md``).
3. ``mpi-sync`` (and any mode whose master's node is lost) stops there with a message naming
   the node; rerunning the rule resumes from the last checkpoint. ``mpi-async`` is re-formed
   on the remaining hosts (a hostfile without the lost node, fewer ranks) and resumes from
   the last checkpoint without the lost node's workers, which are recorded in
   ``metrics.json`` → ``mpi.lost_workers`` like workers dropped for silence.

A run can also be complete although ``mpirun`` failed: an asynchronous master that dropped a
silent worker leaves without ``MPI_Finalize``, and Hydra was seen to die of ``SIGPIPE`` while
tearing down a 5-node job whose outputs were all written. :func:`finished_since` accepts a run
whose outputs verify and were written by this launch (with a warning), and nothing else.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: options of ``mpirun`` (Hydra and Open MPI spellings) that name the hosts
HOSTFILE_OPTIONS = ("-f", "-hostfile", "--hostfile", "-machinefile", "--machinefile")
HOSTLIST_OPTIONS = ("-hosts", "-host", "--host", "--hosts")
SSH_LOST = 255  # ssh's status when the connection to the remote host fails or drops
SAME_MOMENT_S = 0.5  # launcher exits this close to the first one belong to the same failure
FINISH_GRACE_S = 10.0  # beyond timeout_s, for a job whose outputs are written to exit by itself
CLEANUP_TIMEOUT_S = 10.0  # to reach a host and stop what a job left there
JOB_POLL_S = 0.5

RECORDING_LAUNCHER = """#!/bin/sh
# Written by `diagnosenet launch-mpi`: runs the real remote launcher and appends, when it exits,
# "<epoch seconds> <exit status> <host>" to the file below, so that a lost node can be named.
host=
skip=
for a in "$@"; do
  if [ -n "$skip" ]; then skip=; continue; fi
  case "$a" in
    -[bcDEeFIiJLlmOopQRSWw]) skip=1 ;;
    -*) ;;
    *) host=$a; break ;;
  esac
done
{launcher} "$@"
status=$?
printf '%s %s %s\\n' "$(date +%s.%N)" "$status" "$host" >> {record}
exit $status
"""

#: every rank runs as ``sh -c RANK_SUPERVISOR diagnosenet-rank:TOKEN COMMAND...`` (see :func:`rank_argv`)
RANK_SUPERVISOR = """trap '' USR1
if command -v setpriv >/dev/null 2>&1; then setpriv --pdeathsig KILL -- "$@"; else "$@"; fi
status=$?
if [ "$status" -gt 128 ] && [ "$status" -lt 192 ]; then
  echo "diagnosenet launch-mpi: rank ${PMI_RANK:-?} on $(hostname) ended by signal $((status - 128))" >&2
fi
exit "$status"
"""


@dataclass(frozen=True)
class LauncherExit:
    at: float
    status: int
    host: str

    @property
    def lost(self) -> bool:
        """Killed by a signal (the shell reports 128 + signal) or ssh's lost connection."""
        return self.status == SSH_LOST or 128 < self.status < 255


def read_exits(path: Path) -> list[LauncherExit]:
    exits = []
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split(maxsplit=2)
            if len(parts) == 3 and parts[1].lstrip("-").isdigit():
                exits.append(LauncherExit(float(parts[0]), int(parts[1]), parts[2]))
    return sorted(exits, key=lambda e: e.at)


def lost_host(exits: list[LauncherExit]) -> LauncherExit | None:
    """The node whose launcher failed first with a lost node's status (see module doc), if that
    was at the moment the job failed: within :data:`SAME_MOMENT_S` of the first exit. The
    process manager tears the other hosts down within milliseconds of the loss, and their
    wrappers can record that before the lost node's wrapper does (seen in CI: 1 ms apart);
    a lost status long after the first exit is a consequence of a failure elsewhere."""
    if not exits:
        return None
    return next((e for e in exits if e.lost and e.at - exits[0].at <= SAME_MOMENT_S), None)


def failed_at_start(exits: list[LauncherExit], roster: Path) -> LauncherExit | None:
    """The host whose launcher failed first when the job never started (rank 0 wrote no
    ``roster``): a node unreachable from the start, whose proxy cannot connect back to
    ``mpiexec`` (Hydra's proxy then exits 5 and the others are torn down after it), is a lost
    node like a killed one."""
    if roster.exists():
        return None
    return next((e for e in exits if e.status != 0), None)


def wait_for_lost_host(record: Path, grace_s: float = 3.0) -> LauncherExit | None:
    """:func:`lost_host`, waiting up to ``grace_s`` for it: the process manager can exit (Hydra's
    ``assert (!closed)``) before the killed node's launcher wrapper has appended its line, and
    reading at once then misses the lost node (a race next to the one seen in CI, guarded the same way)."""
    deadline = time.monotonic() + grace_s
    while True:
        lost = lost_host(read_exits(record))
        if lost is not None or time.monotonic() >= deadline:
            return lost
        time.sleep(0.05)


# -- hosts ----------------------------------------------------------------------------------
def parse_hostfile(text: str) -> list[tuple[str, int]]:
    """``host[:slots]`` (Hydra) or ``host slots=N`` (Open MPI) lines → ``[(host, slots)]``."""
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        host, slots = line.split()[0], 1
        if ":" in host:
            host, _, count = host.partition(":")
            slots = int(count or 1)
        for word in line.split()[1:]:
            if word.startswith("slots="):
                slots = int(word.split("=", 1)[1])
        entries.append((host, slots))
    return entries


def rank_hosts(entries: list[tuple[str, int]], tasks: int) -> list[str]:
    """Hydra's default placement: ranks fill each host's slots in hostfile order, round robin."""
    if not entries:
        return []
    hosts: list[str] = []
    while len(hosts) < tasks:
        for host, slots in entries:
            hosts.extend([host] * slots)
    return hosts[:tasks]


def same_host(a: str, b: str) -> bool:
    return a == b or a.split(".")[0] == b.split(".")[0]


@dataclass
class Launcher:
    """``mpirun`` and its options, with the hosts it places ranks on (empty: this host only)."""

    argv: list[str]
    hosts: list[tuple[str, int]]
    host_option: int | None = None   # index in argv of the hostfile / host list value

    @classmethod
    def parse(cls, command: str) -> "Launcher":
        argv = shlex.split(command)
        for i, word in enumerate(argv[:-1]):
            if word in HOSTFILE_OPTIONS:
                return cls(argv, parse_hostfile(Path(argv[i + 1]).read_text()), i + 1)
            if word in HOSTLIST_OPTIONS:
                return cls(argv, parse_hostfile(argv[i + 1].replace(",", "\n")), i + 1)
        return cls(argv, [])

    def without(self, host: str, hostfile: Path) -> "Launcher":
        """The same launcher on every host but ``host`` (written to ``hostfile``)."""
        kept = [(h, s) for h, s in self.hosts if not same_host(h, host)]
        hostfile.parent.mkdir(parents=True, exist_ok=True)
        hostfile.write_text("".join(f"{h}:{s}\n" for h, s in kept))
        argv = list(self.argv)
        argv[self.host_option - 1:self.host_option + 1] = ["-f", str(hostfile)]
        return Launcher(argv, kept, self.host_option)


# -- the job --------------------------------------------------------------------------------
def finished_since(out: Path, started: float) -> bool:
    """The run's outputs verify and its manifest was written after ``started`` (this launch)."""
    from diagnosenet.artifacts import ArtifactError, verify_manifest

    try:
        if (out / "manifest.json").stat().st_mtime < started:   # an earlier launch's: not hashed again
            return False
        verify_manifest(out, stage="train")
    except (ArtifactError, OSError):
        return False
    return True


def _settings_of(train_args: list[str]):
    from diagnosenet.training.arguments import add_train_arguments, settings_from_args

    parser = argparse.ArgumentParser(prog="train-mpi")
    add_train_arguments(parser, ("mpi-sync", "mpi-async"))
    return settings_from_args(parser.parse_args(train_args))


def _recording_launcher(launch_dir: Path, real: str) -> tuple[Path, Path]:
    record = launch_dir / "launcher-exits.txt"
    script = launch_dir / "launcher"
    script.write_text(RECORDING_LAUNCHER.replace("{launcher}", shlex.quote(real))
                      .replace("{record}", shlex.quote(str(record))))
    script.chmod(0o755)
    return script, record


def run_token(out: Path) -> str:
    """A name for every process of one run's jobs (its ranks' supervisors carry it): a digest
    of the run directory, so leftovers of an earlier launch of the same run are found too."""
    import hashlib

    return hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]


def rank_argv(token: str, command: list[str]) -> list[str]:
    """``command`` under the rank supervisor: Hydra's ``SIGUSR1`` notices are ignored, a rank
    killed by a signal becomes an ordinary exit status (Hydra was seen to end the whole job at
    once, despite ``-disable-auto-cleanup``, when a rank died *by a signal*: the master's fault
    line was then lost), and the rank gets ``SIGKILL`` when its supervisor is killed
    (``setpriv --pdeathsig``), so stopping the supervisors stops the ranks."""
    return ["sh", "-c", RANK_SUPERVISOR, f"diagnosenet-rank:{token}", *command]


def leftover_pattern(token: str, launch_dir: Path) -> str:
    """``pkill -f`` pattern of a run's rank supervisors and Hydra proxies (whose command line
    names this run's recording launcher); the bracket keeps it from matching the shell that runs it."""
    import re

    proxies = re.escape(str(launch_dir.resolve() / "launcher")).replace("/launcher", "/[l]auncher")
    return f"[d]iagnosenet-rank:{token}|{proxies}"


def stop_leftovers(hosts: list[str], pattern: str, timeout_s: float = CLEANUP_TIMEOUT_S,
                   remote: str | None = None) -> dict[str, str]:
    """SIGKILL every process matching ``pattern`` on each host (here when ``hosts`` is empty),
    all hosts at once, each within ``timeout_s``, through ``remote`` (default: Hydra's remote
    launcher, ``$HYDRA_LAUNCHER_EXEC`` or ssh); ``{host: what happened}`` for the hosts where
    something was stopped or that could not be reached."""
    from concurrent.futures import ThreadPoolExecutor

    remote = remote or os.environ.get("HYDRA_LAUNCHER_EXEC") or "ssh"
    options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(timeout_s)}"] if Path(remote).name == "ssh" else []

    def stop(host: str) -> str | None:
        command = ["pkill", "-KILL", "-f", pattern]
        argv = [remote, *options, host, shlex.join(command)] if host else command
        try:
            status = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            return f"unreachable (no answer within {timeout_s:g} s); its processes may still run"
        except OSError as exc:
            return f"unreachable ({exc})"
        return {0: "stopped processes left running", 1: None}.get(status, f"unreachable (status {status})")

    targets = list(dict.fromkeys(hosts)) or [""]
    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        outcomes = dict(zip(targets, pool.map(stop, targets)))
    return {host or socket.gethostname(): what for host, what in outcomes.items() if what}


def run_job(argv: list[str], env: dict, out: Path, started: float, grace_s: float) -> tuple[int, bool]:
    """Run ``mpirun``; ``(status, stopped)``. Once this launch's outputs are complete, the job
    gets ``grace_s`` to exit (the master's goodbyes are bounded by ``timeout_s``), then its
    process group is stopped: an unreachable node's proxy would keep ``mpirun`` waiting for ever."""
    job = subprocess.Popen(argv, env=env, start_new_session=True)
    finished_at = None
    try:
        while True:
            try:
                return job.wait(timeout=JOB_POLL_S), False
            except subprocess.TimeoutExpired:
                pass
            if finished_at is None and finished_since(out, started):
                finished_at = time.monotonic()
            elif finished_at is not None and time.monotonic() - finished_at > grace_s:
                log.warning("%s: every output was written %.0f s ago and %s is still running; stopping it",
                            out, grace_s, argv[0])
                _stop_group(job)
                return job.returncode, True
    except BaseException:
        _stop_group(job)
        raise


def _stop_group(job: subprocess.Popen) -> None:
    import signal

    for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, None)):
        try:
            os.killpg(job.pid, sig)
        except ProcessLookupError:
            pass
        try:
            job.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def is_hydra(launcher: Launcher) -> bool:
    return Path(launcher.argv[0]).name in ("mpirun", "mpiexec", "mpiexec.hydra")


def in_allocation(launcher: Launcher, allocation, launch_dir: Path) -> tuple[Launcher, str]:
    """Hydra inside a Slurm allocation: a hostfile of the allocated nodes (rank 0 on the first,
    where the job script runs) and, as Hydra's remote launcher, one job step per node
    (``slurm.SSH_STANDIN``), so that each node's launcher exit is seen as with ssh."""
    from diagnosenet import slurm

    launch_dir.mkdir(parents=True, exist_ok=True)
    hostfile, standin = launch_dir / "hostfile-slurm", launch_dir / "srun-as-ssh"
    hostfile.write_text(allocation.hostfile())
    standin.write_text(slurm.ssh_standin())
    standin.chmod(0o755)
    argv = [*launcher.argv, "-f", str(hostfile)]
    log.info("Slurm job %s: ranks on %s, each node's proxy started as a job step", allocation.job_id,
             ", ".join(f"{n} ({t} task{'s' if t > 1 else ''})" for n, t in zip(allocation.nodes, allocation.tasks_per_node)))
    return Launcher(argv, parse_hostfile(hostfile.read_text()), len(argv) - 1), str(standin)


def launch(launcher_command: str, tasks: int, train_args: list[str], *, max_reforms: int | None = None) -> int:
    """Run the job (see the module docstring); the exit status of the whole run."""
    from diagnosenet import slurm

    settings = _settings_of(train_args)
    out, mode = settings.out_dir, settings.mode
    launch_dir = out / "launch"
    launcher = Launcher.parse(launcher_command)
    remote, env = os.environ.get("HYDRA_LAUNCHER_EXEC") or "ssh", dict(os.environ)
    allocation = slurm.allocation() if is_hydra(launcher) and not launcher.hosts else None
    if allocation is not None:
        launcher, remote = in_allocation(launcher, allocation, launch_dir)
        env["HYDRA_LAUNCHER"] = "ssh"
    lost_workers = dict(settings.lost_workers)
    token = run_token(out)
    reforms = 0
    max_reforms = settings.workers - 1 if max_reforms is None else max_reforms
    while True:
        launch_dir.mkdir(parents=True, exist_ok=True)
        (launch_dir / "ranks.json").unlink(missing_ok=True)
        script, record = _recording_launcher(launch_dir, remote)
        record.unlink(missing_ok=True)
        argv = [*launcher.argv, "-n", str(tasks), *rank_argv(token, [
            "diagnosenet", "train-mpi", *train_args, "--lost-workers-json", json.dumps(lost_workers)])]
        log.info("launching %s", shlex.join(argv).replace(shlex.quote(RANK_SUPERVISOR), "<rank supervisor>"))
        sys.stdout.flush()
        started = time.time()
        status, stopped = run_job(argv, {**env, "HYDRA_LAUNCHER_EXEC": str(script)}, out, started,
                                  settings.timeout_s + FINISH_GRACE_S)
        for host, what in stop_leftovers([h for h, _ in launcher.hosts], leftover_pattern(token, launch_dir),
                                         remote=remote).items():
            log.warning("%s: %s", host, what)
        if status == 0 and not stopped:
            return 0
        if finished_since(out, started):
            lost = read_lost(out)
            how = "was stopped" if stopped else f"exited with {status}"
            log.warning("%s: %s %s after the run had written every output%s", out, argv[0], how,
                        f" (without worker(s) {', '.join(lost)})" if lost else "")
            return 0
        lost = wait_for_lost_host(record) or failed_at_start(read_exits(record), launch_dir / "ranks.json")
        if lost is None and allocation is not None:   # a failed node's job step outlives Hydra
            silent = slurm.silent_nodes([h for h, _ in launcher.hosts])
            lost = LauncherExit(time.time(), SSH_LOST, silent[0]) if silent else None
        if lost is None:
            log.error("%s failed (exit %d) and no node's launcher failed: see the ranks' messages above (they name "
                      "a rank that went silent, and its node)", argv[0], status)
            return status or 1
        ranks = _ranks_on(lost.host, launch_dir / "ranks.json", launcher, tasks)
        how = f"its launcher exited with status {lost.status}" + (
            f" (signal {lost.status - 128})" if 128 < lost.status < 255 else " (connection lost)" if lost.lost
            else " before the job started: unreachable, or its MPI proxy could not connect back")
        epoch = _last_epoch(out)
        where = f"after epoch {epoch}" if epoch else "before the first epoch ended"
        if mode != "mpi-async" or 0 in ranks or not ranks or reforms >= max_reforms:
            reason = ("the master's node" if 0 in ranks else "a synchronous run needs every worker"
                      if mode != "mpi-async" else "no re-forming left" if ranks else "its ranks are unknown")
            log.error("%s: node %s was lost (%s; rank(s) %s); the run stopped %s (%s). Rerun the same command "
                      "to resume from %s once %s is back.", mode, lost.host, how,
                      ", ".join(map(str, ranks)) or "?", where, reason, out / "checkpoint", lost.host)
            return status or 1
        ids = dataclasses.replace(settings, lost_workers=lost_workers).worker_ids  # rank r: ids[r - 1]
        gone = {str(ids[r - 1]): f"{lost.host}: node lost ({how}) {where}; the job was re-formed without it"
                for r in ranks}
        lost_workers.update(gone)
        reforms += 1
        launcher = launcher.without(lost.host, launch_dir / f"hostfile-reformed-{reforms}")
        tasks -= len(ranks)
        log.warning("mpi-async: node %s was lost (%s; worker(s) %s); re-forming on %s with %d rank(s) and resuming "
                    "%s", lost.host, how, ", ".join(gone), ", ".join(h for h, _ in launcher.hosts), tasks, where)


def read_lost(out: Path) -> dict:
    from diagnosenet.artifacts import read_json

    return read_json(f"{out}/metrics.json").get("mpi", {}).get("lost_workers") or {}


def _ranks_on(host: str, roster: Path, launcher: Launcher, tasks: int) -> list[int]:
    """Ranks that ran on ``host``: from rank 0's roster (host names), else Hydra's placement."""
    names = json.loads(roster.read_text())["hosts"] if roster.exists() else []
    ranks = [r for r, name in enumerate(names) if same_host(name, host)]
    if not ranks:
        ranks = [r for r, name in enumerate(rank_hosts(launcher.hosts, tasks)) if same_host(name, host)]
    return ranks


def _last_epoch(out: Path) -> int:
    import csv

    track = out / "track.csv"
    if not track.exists():
        return 0
    with open(track, newline="") as handle:
        return max((int(row["epoch"]) for row in csv.DictReader(handle)), default=0)


def _launch_mpi(args: argparse.Namespace) -> int:
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    return launch(args.launcher, args.tasks, train_args, max_reforms=args.max_reforms)


def register(subparsers) -> None:
    p = subparsers.add_parser("launch-mpi", help="run an MPI training job (mpirun ... train-mpi); names a lost "
                                                 "node, re-forms mpi-async without it")
    p.add_argument("--launcher", default="mpirun -disable-auto-cleanup",
                   help="the mpirun command and options (a hostfile via -f places ranks on nodes)")
    p.add_argument("--tasks", type=int, required=True, help="ranks: workers + 1")
    p.add_argument("--max-reforms", type=int, default=None,
                   help="mpi-async: how many lost nodes to re-form without (default: workers - 1)")
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then the train-mpi arguments")
    p.set_defaults(func=_launch_mpi)
