"""What both MPI modes share: bounded waits, heartbeats, state broadcast, start-up.

No MPI call here blocks without a deadline, and deadlines bound *silence*: requests are
polled (``Test``); heartbeats from a live peer reset the deadline, so only a rank silent for
``settings.timeout_s`` (dead, hung, or cut off) turns into a clear error instead of a job
that hangs forever (the original waited for ever); start-up has its own bound.

Hydra (MPICH's ``mpirun``) under ``-disable-auto-cleanup`` sends ``SIGUSR1`` to the
survivors when a rank dies, and to ranks still finalising when others exit first. Its
default action kills the process, and with a Python handler installed the job was still
torn down at random in our trials (probably the signal interrupting MPICH inside a system
call), so :func:`ignore_peer_signals` ignores it: faults are found by the timeouts alone.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable

import numpy as np

from diagnosenet.training.checkpoint import pack_state, unpack_state
from diagnosenet.training.settings import TrainSettings

log = logging.getLogger(__name__)

POLL_S = 0.0005
ABORT_GRACE_S = 1.0  # for mpirun to forward the last line before MPI_Abort ends every rank
ABORT_DEADLINE_S = 10.0  # MPI_Abort waits on the process manager: on a node cut off, for ever


class RankTimeout(RuntimeError):
    """A message or collective did not complete within ``timeout_s``."""


def ignore_peer_signals() -> None:
    """Ignore Hydra's SIGUSR1 notices (see the module docstring); an ignored signal also stays
    ignored through interpreter shutdown, when MPI is finalised."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def wait(request, timeout_s: float, what: str) -> None:
    """Poll ``request`` until it completes; :class:`RankTimeout` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not request.Test():
        if time.monotonic() > deadline:
            raise RankTimeout(f"{what}: nothing after {timeout_s:g} s (timeout_s)")
        time.sleep(POLL_S)


def bcast_bytes(comm, payload: np.ndarray | None, root: int, timeout_s: float, what: str) -> np.ndarray:
    """Broadcast a ``uint8`` buffer of unknown length from ``root`` (two bounded ``Ibcast``s)."""
    size = np.array([0 if payload is None else payload.size], dtype=np.int64)
    wait(comm.Ibcast(size, root=root), timeout_s, f"{what} (size)")
    buffer = payload if comm.Get_rank() == root else np.empty(int(size[0]), dtype=np.uint8)
    wait(comm.Ibcast(buffer, root=root), timeout_s, what)
    return buffer


def weights_sha256(weights: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(weights, dtype=np.float32).tobytes()).hexdigest()


def exchange_state(comm, settings: TrainSettings, replica, run=None) -> dict:
    """Give every rank rank 0's replica state (fresh, or its resumed checkpoint) and return the
    checkpoint progress (``epoch``: the epoch training continues after). ``run`` (rank 0 only)
    decides resume-or-start."""
    payload = None
    if comm.Get_rank() == 0:
        resumed = run.resume_or_start()
        payload = pack_state(replica.get_state(), {"epoch": resumed.epoch, **resumed.progress})
    state, meta = unpack_state(bcast_bytes(comm, payload, 0, settings.startup_timeout_s, "initial replica state"))
    if comm.Get_rank() != 0:
        replica.set_state(state)
    return meta


def start_up(comm, settings: TrainSettings) -> list[str]:
    """Check the world, ignore Hydra's notices, meet every rank within ``startup_timeout_s``
    (a bound of its own: ``import tensorflow`` alone takes minutes on a busy node); returns
    every rank's host name, so that faults name the node."""
    check_world(comm, settings)
    ignore_peer_signals()
    wait(comm.Ibarrier(), settings.startup_timeout_s, "start-up barrier (startup_timeout_s)")
    name = np.zeros(HOST_BYTES, np.uint8)
    encoded = socket.gethostname().encode()[:HOST_BYTES]
    name[:len(encoded)] = np.frombuffer(encoded, np.uint8)
    names = np.zeros((comm.Get_size(), HOST_BYTES), np.uint8)
    wait(comm.Iallgather(name, names), settings.startup_timeout_s, "host names")
    hosts = [bytes(row).rstrip(b"\0").decode(errors="replace") for row in names]
    if comm.Get_rank() == 0:  # which rank runs where, for launch-mpi to name a lost node
        from diagnosenet.artifacts import atomic_write_text

        roster = settings.out_dir / "launch" / "ranks.json"
        roster.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(roster, json.dumps({"hosts": hosts, "workers": settings.worker_ids}))
    return hosts


HOST_BYTES = 64
#: payload of heartbeat messages (kept alive for the whole process: sends are non-blocking)
_BEAT = np.ones(1, np.int64)


class Liveness:
    """Heartbeats to ``peers`` from a thread, and when each peer was last heard.

    Inside ``with``, this rank sends a heartbeat to every peer every ``timeout_s / 4`` s
    whatever its main thread is doing (a long step, an evaluation), so a wait fails only when a
    peer it depends on has been *silent* for ``timeout_s``: dead, hung, stopped or cut off.
    """

    def __init__(self, comm, peers, timeout_s: float, tag: int, hosts: list[str] | None = None):
        self.comm, self.timeout_s, self.tag = comm, float(timeout_s), tag
        self.dests = sorted(peers)
        self.hosts = hosts or []
        now = time.monotonic()
        self.last_heard = {peer: now for peer in self.dests}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: list = []

    def name(self, rank: int) -> str:
        return f"rank {rank} on {self.hosts[rank]}" if rank < len(self.hosts) else f"rank {rank}"

    # -- sending ----------------------------------------------------------------------------
    def _beat(self) -> None:
        kept = []
        for dest, request in self._pending:
            try:
                if not request.Test():
                    kept.append((dest, request))
            except Exception:  # noqa: BLE001 - an MPI error from a dead peer
                pass
        for dest in list(self.dests):
            try:
                kept.append((dest, self.comm.Isend(_BEAT, dest=dest, tag=self.tag)))
            except Exception as exc:  # noqa: BLE001
                log.warning("heartbeat to %s failed (%s); not sending it more", self.name(dest), exc)
                self.dests.remove(dest)
        self._pending = kept

    def forget(self, rank: int) -> None:
        """Send ``rank`` no more heartbeats (it is lost) and cancel those it never received."""
        with contextlib.suppress(ValueError):
            self.dests.remove(rank)
        cancel([request for dest, request in self._pending if dest == rank])

    def remember(self, rank: int) -> None:
        if rank not in self.dests:
            self.dests.append(rank)

    def _run(self) -> None:
        while not self._stop.wait(self.timeout_s / 4):
            self._beat()

    def __enter__(self) -> "Liveness":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mpi-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    # -- receiving --------------------------------------------------------------------------
    def listen(self) -> None:
        """Receive every waiting heartbeat and note who sent it."""
        from mpi4py import MPI

        status, sink = MPI.Status(), np.empty(1, np.int64)
        while self.comm.Iprobe(MPI.ANY_SOURCE, self.tag, status):
            source = status.Get_source()
            self.comm.Recv(sink, source=source, tag=self.tag)
            self.heard(source)

    def heard(self, rank: int) -> None:
        self.last_heard[rank] = time.monotonic()

    def silent(self, peers=None, listening_since: float = 0.0) -> list[int]:
        """Peers (default: all) not heard from for ``timeout_s`` while this rank was listening
        (a busy rank reads its heartbeats late: that is not its peers' silence)."""
        now = time.monotonic()
        return [p for p in (self.last_heard if peers is None else peers)
                if now - max(self.last_heard.get(p, now), listening_since) > self.timeout_s]

    def wait(self, request, what: str, peers=None) -> None:
        """Poll ``request`` until it completes; :class:`RankTimeout` naming the node of any of
        ``peers`` silent for ``timeout_s`` (never because the wait itself is long)."""
        since = time.monotonic()
        while not request.Test():
            self.listen()
            silent = self.silent(peers, since)
            if silent:
                names = ", ".join(self.name(p) for p in silent)
                raise RankTimeout(f"{what}: {names} silent (no message, no heartbeat) for more than "
                                  f"{self.timeout_s:g} s (timeout_s)")
            time.sleep(POLL_S)


def cancel(requests) -> None:
    """Cancel sends a lost peer will never receive: MPI_Finalize would wait for them for ever."""
    for request in requests:
        with contextlib.suppress(Exception):
            request.Cancel()
            request.Wait()  # completes at once once cancelled


def exit_without_finalize(why: str) -> None:
    """End this rank now, skipping ``MPI_Finalize``: its barrier over every rank never completes
    once one is dead. Outputs are on disk already; ``mpirun`` exits non-zero."""
    import logging as logging_
    import os

    log.warning("leaving without MPI_Finalize (%s)", why)
    logging_.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def check_world(comm, settings: TrainSettings) -> None:
    expected = len(settings.worker_ids) + 1
    if comm.Get_size() != expected:
        lost = f" of which {len(settings.lost_workers)} lost" if settings.lost_workers else ""
        raise SystemExit(f"{settings.mode} with --workers {settings.workers}{lost} needs mpirun -n "
                         f"{expected} (1 master + workers), got {comm.Get_size()} ranks")


def abort(comm, message: str, code: int = 3) -> None:
    """Print one clear line and take the whole job down (``MPI_Abort``): the synchronous fault path.

    The line travels through ``mpirun``'s output forwarding, which the abort tears down: without
    a pause it was once lost under load (the job still failed, but without saying why). On a
    node cut off from the network the abort itself never returns (it waits on the process
    manager): the rank then ends itself after :data:`ABORT_DEADLINE_S`."""
    import os

    print(f"diagnosenet {message}", file=sys.stderr, flush=True)
    time.sleep(ABORT_GRACE_S)
    watchdog = threading.Timer(ABORT_DEADLINE_S, os._exit, args=(code,))
    watchdog.daemon = True
    watchdog.start()
    comm.Abort(code)


def run_guarded(comm, body: Callable[[], Any], describe: Callable[[BaseException], str]):
    """Run ``body``; a timeout aborts the whole job with ``describe(exc)``."""
    try:
        return body()
    except RankTimeout as exc:
        abort(comm, describe(exc))


def stop_every_rank_on_error(comm, settings: TrainSettings, body: Callable[[], Any]):
    """Run ``body``; any error on any rank ends every rank at once (``MPI_Abort``) with one line
    naming the rank, its host and the error. Without it a rank that fails, e.g. rank 0 reading a
    damaged checkpoint during start-up, leaves the others waiting for ``startup_timeout_s``."""
    from diagnosenet.cli import is_clear_error
    from diagnosenet.training.checkpoint import CheckpointError

    try:
        return body()
    except Exception as exc:  # noqa: BLE001 - every error ends the job; an unexpected one keeps its traceback
        if not (isinstance(exc, RankTimeout) or is_clear_error(exc)):
            log.exception("%s rank %d: unexpected error", settings.mode, comm.Get_rank())
        error = exc
    resume = "" if isinstance(error, CheckpointError) else (
        f" Rerun the same command once this is fixed: it resumes from {settings.out_dir / 'checkpoint'}.")
    abort(comm, f"{settings.mode} rank {comm.Get_rank()} on {socket.gethostname()}: {error}; stopping every "
                f"rank.{resume}", code=1)
