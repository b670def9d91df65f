"""Start, watch and tear down every process of one gRPC training run (no TensorFlow here).

The launcher is what makes a TensorFlow gRPC cluster safe to run from a workflow: it checks
the shards before anything starts, starts each task in its own process group (locally or
through a command prefix such as ``ssh {host}`` or ``srun -w {host}``), waits until the
servers listen, streams every log line prefixed with ``role:index``, restarts a worker that
dies in asynchronous mode (TensorFlow's coordinator re-runs the lost steps once the worker is
back), and kills every process group on success, failure, timeout or SIGINT/SIGTERM, so no
server is ever left listening.
"""
from __future__ import annotations

import argparse
import contextlib
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

from diagnosenet.artifacts import ArtifactError, verify_manifest
from diagnosenet.training.grpc.cluster import Task, is_local, plan_cluster, port_free, port_open, tf_config

log = logging.getLogger(__name__)

POLL_S = 0.2
KILL_GRACE_S = 5.0


class LaunchError(RuntimeError):
    """The run cannot go on; the message says which process and why."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass
class TrainArgs:
    """The few training arguments (those after ``--``) the launcher itself needs."""

    argv: list[str]
    workers: int
    shards: Path
    out: Path
    batch_size: int | None
    monitor_rate: float


def parse_train_args(argv: list[str]) -> TrainArgs:
    parser = argparse.ArgumentParser(prog="diagnosenet train-grpc -- ...", add_help=False)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--shards", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--monitor-rate", type=float, default=0.0)
    known, _ = parser.parse_known_args(argv)
    return TrainArgs(list(argv), known.workers, known.shards, known.out, known.batch_size, known.monitor_rate)


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


class Launcher:
    """One run: ``run()`` returns the exit status and always leaves no process behind.

    ``command_for(task)`` is the command of each task (``diagnosenet grpc-task``
    for the workflow, the user's replica script for the paper's API).
    """

    def __init__(self, mode: str, tasks: list[Task], command_for: Callable[[Task], list[str]], *,
                 timeout_s: float, wall_limit_s: float = 0.0, remote_prefix: str | None = None,
                 max_restarts: int = 3, monitor_dir: Path | None = None, monitor_rate: float = 0.0,
                 stream=None):
        self.mode, self.tasks, self.command_for = mode, tasks, command_for
        self.timeout_s, self.wall_limit_s = timeout_s, wall_limit_s
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

    def _kill(self, proc: Process) -> None:
        """SIGTERM the process group, then SIGKILL whatever of the group is left."""
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
                    raise LaunchError(f"{proc.task.name} exited with code {code}", code=code if code > 0 else 1)
                if not proc.trains:
                    self._on_server_exit(index, proc)
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
                    remote_prefix: str | None = None, max_restarts: int = 3, stream=None) -> int:
    """``diagnosenet train-grpc``: check the shards, then run the cluster of one training run."""
    stream = stream or sys.stdout
    train = parse_train_args(train_argv)
    problem = None
    if train.workers != workers:
        problem = f"--workers {workers} differs from the train arguments' --workers {train.workers}"
    else:
        try:  # refuse shards written for other workers / micro-batch size before any process starts
            verify_manifest(train.shards, stage="shard", params={
                k: v for k, v in {"workers": workers, "batch_size": train.batch_size}.items() if v is not None})
        except ArtifactError as exc:
            problem = str(exc)
    if problem:
        stream.write(f"[launcher] error: {problem}\n")
        return 1
    tasks = plan_cluster(mode, workers, host=host, base_port=base_port, hosts=hosts)
    launcher = Launcher(mode, tasks, lambda task: task_command(mode, tasks, task, train), timeout_s=timeout_s,
                        wall_limit_s=wall_limit_s, remote_prefix=remote_prefix, max_restarts=max_restarts,
                        monitor_dir=train.out / "monitor", monitor_rate=train.monitor_rate, stream=stream)
    return launcher.run()


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_interrupt(signum, _frame):
    raise Interrupted(signum)
