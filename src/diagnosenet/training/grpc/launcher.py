"""Start, watch and tear down every process of one gRPC training run (no TensorFlow here).

The launcher is what makes a TensorFlow gRPC cluster safe to run from a workflow: it checks
the shards before anything starts, starts each task in its own process group (locally or
through a command prefix such as ``ssh {host}`` or ``srun -w {host}``), waits until the
servers listen, streams every log line prefixed with ``role:index``, restarts a worker that
dies in asynchronous mode (TensorFlow's coordinator re-runs the lost steps once the worker is
back), and kills every process group on success, failure, timeout or SIGINT/SIGTERM, so no
server is ever left listening.

A node cut off from the network shows no exit: its processes live on, TensorFlow's RPCs to it
simply never return. So the launcher probes every task's port (a TCP connect, answered by the
node's kernel however busy the task is, so a long epoch or collective never looks silent) and
a task that has not answered for the run's ``timeout_s`` is lost: in ``grpc-async`` a lost
worker's node is dropped and the cluster re-formed on the others, resuming from the chief's
last checkpoint; any other lost task stops the run, naming the task and its host.

TensorFlow may see the loss first (its coordination heartbeat, a collective's deadline) and
fail a healthy task. So when a training task fails, the launcher asks every other host once
(:func:`~diagnosenet.training.grpc.cluster.host_answers`) before blaming it: a host that does
not answer is the cause, and is named and handled as a silent one.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from diagnosenet.artifacts import MANIFEST_NAME, ArtifactError, rehash_manifest, verify_manifest
from diagnosenet.training.grpc.cluster import (Task, host_answers, is_local, plan_cluster, port_free, port_open,
                                               tf_config, without_worker)
from diagnosenet.training.settings import TrainSettings

log = logging.getLogger(__name__)

POLL_S = 0.2
KILL_GRACE_S = 5.0
PROBE_TIMEOUT_S = 1.0
SILENT_EXIT = 3   # as a silent rank in the MPI modes


class LaunchError(RuntimeError):
    """The run cannot go on; the message says which process and why."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class WorkerLost(LaunchError):
    """An asynchronous worker's node stopped answering: re-form the cluster without it."""

    def __init__(self, task: Task, message: str):
        super().__init__(message, code=SILENT_EXIT)
        self.task = task


@dataclass
class TrainArgs:
    """The few training arguments (those after ``--``) the launcher itself needs."""

    argv: list[str]
    workers: int
    shards: Path
    out: Path
    batch_size: int | None
    monitor_rate: float
    timeout_s: float                  # the run's bound on a peer's silence
    lost_workers: dict[str, str]


def parse_train_args(argv: list[str]) -> TrainArgs:
    parser = argparse.ArgumentParser(prog="diagnosenet train-grpc -- ...", add_help=False)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--shards", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--monitor-rate", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=TrainSettings.timeout_s)
    parser.add_argument("--lost-workers-json", default="{}")
    known, _ = parser.parse_known_args(argv)
    return TrainArgs(list(argv), known.workers, known.shards, known.out, known.batch_size, known.monitor_rate,
                     known.timeout, json.loads(known.lost_workers_json))


def with_lost_workers(argv: list[str], lost: dict[str, str]) -> list[str]:
    """``argv`` whose ``--lost-workers-json`` is ``lost`` (the tasks of a re-formed run read it)."""
    argv = list(argv)
    if "--lost-workers-json" in argv:
        at = argv.index("--lost-workers-json")
        del argv[at:at + 2]
    return [*argv, "--lost-workers-json", json.dumps(lost)] if lost else argv


def diagnosenet_command(*args: str) -> list[str]:
    """The same interpreter and package on every host (clusters share the install path)."""
    return [sys.executable, "-m", "diagnosenet", *args]


def task_command(mode: str, tasks: list[Task], task: Task, train: TrainArgs) -> list[str]:
    """``diagnosenet grpc-task``: its role comes from ``TF_CONFIG``; a server stages and serves,
    the chief (or every synchronous worker) trains."""
    return diagnosenet_command("grpc-task", "--threads", str(train.workers + 1), *train.argv)


def wrap_remote(command: list[str], env: dict[str, str], host: str, prefix: str | None) -> list[str]:
    """``command`` run on ``host`` through ``prefix``; ssh gets one shell-quoted string."""
    if not prefix or is_local(host):
        return command
    words = [word.format(host=host) for word in shlex.split(prefix)]
    remote = ["env", *(f"{k}={v}" for k, v in env.items()), *command]
    return words + ([shlex.join(remote)] if Path(words[0]).name == "ssh" else remote)


@dataclass
class Process:
    task: Task
    popen: subprocess.Popen
    trains: bool                      # runs the training program (chief, or every sync worker)
    restarts: int = 0
    reader: threading.Thread | None = field(default=None, repr=False)
    started: float = field(default_factory=time.monotonic)
    answered: float | None = None     # when its port last accepted a connection (None: not yet)
    stopped: threading.Event = field(default_factory=threading.Event, repr=False)


class Launcher:
    """One run: ``run()`` returns the exit status and always leaves no process behind.

    ``command_for(task)`` is the command of each task (``diagnosenet grpc-task``
    for the workflow, the user's replica script for the paper's API).
    """

    def __init__(self, mode: str, tasks: list[Task], command_for: Callable[[Task], list[str]], *,
                 timeout_s: float, silence_s: float = 0.0, wall_limit_s: float = 0.0,
                 remote_prefix: str | None = None, max_restarts: int = 3, reform: bool = False,
                 monitor_dir: Path | None = None, monitor_rate: float = 0.0, stream=None):
        """``timeout_s`` bounds start-up (a task listening), ``silence_s`` (0: not watched) a
        listening task's silence; ``reform``: a silent asynchronous worker raises
        :class:`WorkerLost` (the caller re-forms) instead of stopping the run."""
        self.mode, self.tasks, self.command_for = mode, tasks, command_for
        self.timeout_s, self.silence_s, self.wall_limit_s, self.reform = timeout_s, silence_s, wall_limit_s, reform
        self.remote_prefix, self.max_restarts = remote_prefix, max_restarts
        self.monitor_dir, self.monitor_rate = monitor_dir, monitor_rate
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()
        self._procs: list[Process] = []
        self._monitors = contextlib.ExitStack()

    # -- output ---------------------------------------------------------------------------
    def say(self, name: str, line: str) -> None:
        with self._lock:
            self.stream.write(f"[{name}] {line.rstrip()}\n")
            self.stream.flush()

    def _pump(self, proc: Process) -> None:
        for line in proc.popen.stdout:
            self.say(proc.task.name, line)

    # -- processes ------------------------------------------------------------------------
    def _start(self, task: Task, restarts: int = 0) -> Process:
        env = {"TF_CONFIG": tf_config(self.tasks, task), "PYTHONUNBUFFERED": "1"}
        if task.type == "chief":  # let the coordinator see a lost worker at once, not after retries
            env["GRPC_FAIL_FAST"] = "use_caller"
        command = wrap_remote(self.command_for(task), env, task.host, self.remote_prefix)
        popen = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                 errors="replace", start_new_session=True)
        proc = Process(task, popen, trains=task.type == "chief" or self.mode == "grpc-sync", restarts=restarts)
        proc.reader = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        proc.reader.start()
        if self.silence_s > 0:
            threading.Thread(target=self._probe, args=(proc,), daemon=True).start()
        self._monitor(proc)
        self.say("launcher", f"started {task.name} at {task.address} (pid {popen.pid})")
        return proc

    def _monitor(self, proc: Process) -> None:
        """One monitor CSV per local server process (ps, asynchronous workers), when the monitor
        package is installed; the training processes monitor themselves (``Run.monitor``)."""
        if self.monitor_dir is None or self.monitor_rate <= 0 or not is_local(proc.task.host) or proc.trains:
            return
        try:
            from diagnosenet.monitor import Monitor
        except ImportError:
            return
        suffix = f"-restart{proc.restarts}" if proc.restarts else ""
        path = self.monitor_dir / f"{proc.task.type}{proc.task.index}{suffix}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._monitors.enter_context(Monitor(path, pids=[proc.popen.pid], rate_hz=self.monitor_rate))

    def _probe(self, proc: Process) -> None:
        """Connect to the task's port every ``silence_s / 4``: ``proc.answered`` is the last success."""
        period = min(max(self.silence_s / 4, POLL_S), 5.0)
        while not proc.stopped.is_set() and proc.popen.poll() is None:
            if port_open(proc.task.host, proc.task.port, timeout=min(PROBE_TIMEOUT_S, period)):
                proc.answered = time.monotonic()
            proc.stopped.wait(period)

    def _check_answering(self, now: float) -> None:
        """A live task that stopped answering for ``silence_s``, or never listened within
        ``timeout_s`` of its start, is lost (see the module docstring)."""
        for proc in self._procs:
            if proc.popen.poll() is not None:
                continue
            task = proc.task
            if proc.answered is None and now - proc.started > self.timeout_s:
                raise LaunchError(f"{task.name} at {task.host} not listening on {task.address} "
                                  f"{self.timeout_s:.0f} s after it started (--timeout): is {task.host} reachable?",
                                  code=124)
            if proc.answered is not None and now - proc.answered > self.silence_s:
                raise self._lost(task, f"for {now - proc.answered:.0f} s (train timeout {self.silence_s:g} s)")

    def _lost(self, task: Task, how_long: str) -> LaunchError:
        """The error for a task whose host is gone: :class:`WorkerLost` where the run re-forms."""
        what = f"{task.name} at {task.host} has not answered on {task.address} {how_long}: {task.host} is " \
               "unreachable or down"
        if self.reform and task.type == "worker":
            return WorkerLost(task, what)
        return LaunchError(f"{what}; stopping every process (rerun the same command to resume from the "
                           f"last checkpoint once {task.host} is back)", code=SILENT_EXIT)

    def _failed(self, proc: Process, code: int) -> LaunchError:
        """The error for a training task that exited ``code``: a host that no longer answers
        (every remote task probed once, at the same time) is named as the cause, else the task."""
        remote = [p.task for p in self._procs if not is_local(p.task.host)]  # its own host too: it may be the cut one
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(remote))) as pool:
            answers = list(pool.map(lambda t: host_answers(t.host, t.port, PROBE_TIMEOUT_S), remote))
        gone = [t for t, answered in zip(remote, answers) if not answered]
        if gone:
            self.say("launcher", f"{proc.task.name} exited with code {code} and "
                                 f"{', '.join(sorted({t.host for t in gone}))} does not answer")
            return self._lost(gone[0], f"since {proc.task.name} failed")
        return LaunchError(f"{proc.task.name} exited with code {code}", code=code if code > 0 else 1)

    def _kill(self, proc: Process) -> None:
        """SIGTERM the process group, then SIGKILL whatever of the group is left."""
        proc.stopped.set()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(KILL_GRACE_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait()
        if proc.reader is not None:
            proc.reader.join(timeout=KILL_GRACE_S)

    def teardown(self) -> None:
        for proc in reversed(self._procs):
            self._kill(proc)
        self._monitors.close()

    # -- the run --------------------------------------------------------------------------
    def _check_ports(self) -> None:
        busy = [t.name + f" ({t.port})" for t in self.tasks if is_local(t.host) and not port_free(t.port)]
        if busy:
            raise LaunchError(f"ports already in use: {', '.join(busy)}; choose another --base-port")

    def _wait_ready(self, servers: list[Process], deadline: float) -> None:
        pending = list(servers)
        while pending:
            for proc in list(pending):
                if proc.popen.poll() is not None:
                    raise LaunchError(f"{proc.task.name} exited with code {proc.popen.returncode} before listening")
                if port_open(proc.task.host, proc.task.port):
                    self.say("launcher", f"{proc.task.name} is listening on {proc.task.address}")
                    pending.remove(proc)
            if pending and time.monotonic() > deadline:
                names = ", ".join(p.task.name for p in pending)
                raise LaunchError(f"{names} not listening after {self.timeout_s:.0f} s (--timeout)", code=124)
            time.sleep(POLL_S)

    def _on_server_exit(self, index: int, proc: Process) -> None:
        code = proc.popen.returncode
        if proc.task.type == "ps":
            raise LaunchError(f"parameter server {proc.task.name} exited with code {code}: the model "
                              "variables are lost, the run cannot continue; stopping every process")
        if proc.restarts >= self.max_restarts:
            raise LaunchError(f"{proc.task.name} exited with code {code} after {proc.restarts} restarts")
        self.say("launcher", f"{proc.task.name} exited with code {code}; restarting it "
                             f"({proc.restarts + 1}/{self.max_restarts}), the coordinator re-runs its steps")
        self._kill(proc)
        deadline = time.monotonic() + self.timeout_s
        while is_local(proc.task.host) and not port_free(proc.task.port):
            if time.monotonic() > deadline:
                raise LaunchError(f"port {proc.task.port} of {proc.task.name} still busy after {self.timeout_s:.0f} s")
            time.sleep(POLL_S)
        self._procs[index] = self._start(proc.task, restarts=proc.restarts + 1)

    def _supervise(self, start: float) -> int:
        grace_deadline = None
        while True:
            now = time.monotonic()
            if self.wall_limit_s and now - start > self.wall_limit_s:
                raise LaunchError(f"run exceeded the wall limit of {self.wall_limit_s:.0f} s", code=124)
            trainers = [p for p in self._procs if p.trains]
            for index, proc in enumerate(self._procs):
                code = proc.popen.poll()
                if code is None:
                    continue
                if proc.trains and code != 0:
                    raise self._failed(proc, code)
                if not proc.trains:
                    self._on_server_exit(index, proc)
            if self.silence_s > 0:
                self._check_answering(now)
            if all(p.popen.poll() == 0 for p in trainers):
                return 0
            # the chief finishes last (it writes the outputs); others still running after it are stuck
            if any(p.popen.poll() == 0 and p.task.index == 0 for p in trainers):
                grace_deadline = grace_deadline or now + self.timeout_s
                if now > grace_deadline:
                    late = ", ".join(p.task.name for p in trainers if p.popen.poll() is None)
                    raise LaunchError(f"{late} still running {self.timeout_s:.0f} s after the chief "
                                      "finished (--timeout)", code=124)
            time.sleep(POLL_S)

    def run(self) -> int:
        start = time.monotonic()
        previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._check_ports()
            for task in self.tasks:  # async: the servers first, then the chief once they listen
                if self.mode == "grpc-async" and task.type != "chief":
                    self._procs.append(self._start(task))
            self._wait_ready(list(self._procs), start + self.timeout_s)
            for task in self.tasks:
                if task.type == "chief" or self.mode == "grpc-sync":
                    self._procs.append(self._start(task))
            code = self._supervise(start)
            self.say("launcher", f"training finished in {time.monotonic() - start:.1f} s")
            return code
        except WorkerLost as exc:
            self.say("launcher", f"{exc}; stopping every process to re-form the cluster without it")
            raise
        except LaunchError as exc:
            self.say("launcher", f"error: {exc}")
            return exc.code
        except Interrupted as exc:
            self.say("launcher", f"received signal {exc.signum}; stopping every process")
            return 128 + exc.signum
        except OSError as exc:  # a command that cannot start: same teardown, clear message
            self.say("launcher", f"error: {exc}")
            return 1
        finally:
            for sig in previous:  # a second Ctrl-C must not cut the teardown short
                signal.signal(sig, signal.SIG_IGN)
            self.teardown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def launch_training(mode: str, train_argv: list[str], *, workers: int, base_port: int, timeout_s: float,
                    host: str = "127.0.0.1", hosts: dict | None = None, wall_limit_s: float = 0.0,
                    remote_prefix: str | None = None, max_restarts: int = 3, parameter_servers: int = 1,
                    stream=None) -> int:
    """``diagnosenet train-grpc``: check the shards, then run the cluster of one training run
    (``parameter_servers`` ps tasks in ``grpc-async``, round-robin over the hosts' ``ps`` list)."""
    stream = stream or sys.stdout
    train = parse_train_args(train_argv)
    problem = None
    if train.workers != workers:
        problem = f"--workers {workers} differs from the train arguments' --workers {train.workers}"
    elif parameter_servers < 1 or (parameter_servers > 1 and mode != "grpc-async"):
        problem = f"--parameter-servers {parameter_servers}: grpc-async takes 1 or more, grpc-sync has none"
    else:
        try:  # refuse shards written for other workers / micro-batch size before any process starts
            verify_manifest(train.shards, stage="shard", params={
                k: v for k, v in {"workers": workers, "batch_size": train.batch_size}.items() if v is not None})
        except ArtifactError as exc:
            problem = str(exc)
    if problem:
        stream.write(f"[launcher] error: {problem}\n")
        return 1
    lost = dict(train.lost_workers)
    tasks = plan_cluster(mode, workers, host=host, base_port=base_port, hosts=hosts, num_ps=parameter_servers)
    for worker_id in sorted(map(int, lost), reverse=True):   # a rerun of a re-formed run: the same cluster
        tasks = without_worker(tasks, worker_id - 1)
    while True:
        run_args = dataclasses.replace(train, argv=with_lost_workers(train.argv, lost))
        live_ids = [w for w in range(1, workers + 1) if str(w) not in lost]
        launcher = Launcher(mode, tasks, lambda task, args=run_args, tasks=tasks: task_command(mode, tasks, task, args),
                            timeout_s=timeout_s, silence_s=train.timeout_s, wall_limit_s=wall_limit_s,
                            remote_prefix=remote_prefix, max_restarts=max_restarts,
                            reform=mode == "grpc-async" and len(live_ids) > 1,
                            monitor_dir=train.out / "monitor", monitor_rate=train.monitor_rate, stream=stream)
        try:
            code = launcher.run()
        except WorkerLost as exc:
            lost[str(live_ids[exc.task.index])] = f"{exc}; the run was re-formed without it"
            tasks = without_worker(tasks, exc.task.index)
            stream.write(f"[launcher] grpc-async: re-forming with {len(live_ids) - 1} worker(s) on "
                         f"{', '.join(t.host for t in tasks if t.type == 'worker')}, resuming from the last "
                         "checkpoint\n")
            stream.flush()
            continue
        if code == 0 and (train.out / MANIFEST_NAME).exists():
            rehash_manifest(train.out)   # the servers' and workers' monitor files, final only now
        return code


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_interrupt(signum, _frame):
    raise Interrupted(signum)
