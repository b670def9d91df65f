"""``mpi-async``: asynchronous parameter-server training (appendix B, done right).

Rank 0 (master) owns the global model and its Adam optimizer, and the
:class:`~diagnosenet.training.run.Run` (validation, early stopping, track, checkpoints).
Workers (ranks 1..N) hold a copy of the weights: a worker computes the mean gradient of one
micro-batch on the weights it holds, sends it with the weight version it used, its rows and
its BatchNorm moving statistics, and waits for the master's reply (the current weights).

``weighting`` = *k*: the master collects gradients as they arrive and, once it holds
``min(k, workers still in the epoch)`` of them, applies their **row-weighted mean** as one
optimizer step, publishes a new version and replies to exactly those workers. ``k = 1`` is
fully asynchronous (gradients may be stale: computed on an older version than the one they
update); ``k = N`` waits for every worker each version (no staleness). ``metrics.json``
records gradients, versions and staleness, so each value's effect is visible.

What travels: a gradient goes as its non-zero input-block rows plus the rest (``mpi.exchange:
sparse``); a reply is every weight, except under ``lazy-adam`` with the sparse exchange, where
it is only the input-block rows changed since the version the worker holds, plus the rest
(:class:`~diagnosenet.training.exchange.RowServer`: lossless, and the last reply carries a
digest of the master's weights that every worker checks its copy against). There the master
steps a NumPy copy of the model (TensorFlow's lazy Adam step, bit for bit) and hands it to
its TensorFlow replica only at the end of an epoch, for validation and the checkpoint.

Semantics shared with every mode (docs/training.md): an epoch is one pass of every worker
over its shard — a worker that finished its shard waits at the epoch's end while the others
finish theirs; then the master sets its moving statistics to the mean of the workers' latest
(the master never runs a forward pass in training mode, so without them its BatchNorm would
keep its initial statistics), validates once, checkpoints, and sends every worker the
decision with the current weights. After the last one each worker closes its monitor and
timeline and says so (``TAG_FILES_FINAL``); the master writes the run, whose manifest hashes them, only then.

Liveness: every rank runs a heartbeat thread, so a wait bounds *silence*, never the length
of an epoch or an evaluation. A worker silent for ``timeout_s`` is dropped and recorded, and
the others carry on; if it speaks again it is told to stop (its gradient is not applied). A
master silent for ``timeout_s`` makes the workers abort with a message. Surviving a dead
rank needs the launcher not to kill the job (MPICH: ``mpirun -disable-auto-cleanup``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from diagnosenet.monitor.capacity import cpu_capacity
from diagnosenet.training.exchange import (RowGradient, RowServer, apply_reply, input_block, pack_rows, reply_floats,
                                           row_weighted_mean, unpack_rows)
from diagnosenet.training.mpi import common as mc
from diagnosenet.training.settings import TrainSettings

log = logging.getLogger(__name__)

TAG_HEAD, TAG_GRAD, TAG_REPLY_HEAD, TAG_REPLY, TAG_EPOCH, TAG_BEAT, TAG_BYE, TAG_FILES_FINAL = range(21, 29)
HEAD_FLOATS = 5      # version used, batch mean loss, batch rows, rows right, packed input-row floats (-1: dense)
CONTINUE, STOP, DROPPED = 0, 1, 2   # the second value of every reply head
#: reply head: version, code, rows of a row reply (-1: every weight), digest of the master's weights (STOP only)
REPLY_HEAD = 4


def weights_digest(weights: np.ndarray) -> int:
    """64 bits of the sha256 of a weight vector: the worker checks its copy against the master's."""
    import hashlib

    return int.from_bytes(hashlib.sha256(np.ascontiguousarray(weights, np.float32).tobytes()).digest()[:8],
                          "little", signed=True)


def row_replies(settings: TrainSettings, replica) -> bool:
    """Replies with the changed rows only: ``lazy-adam`` (rows without a gradient stay put) and
    the sparse exchange, on a model with an input block; else every reply is every weight."""
    return settings.optimizer == "lazy-adam" and settings.exchange == "sparse" and input_block(replica) is not None


def train(settings: TrainSettings) -> dict | None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    hosts = mc.start_up(comm, settings)
    rank = comm.Get_rank()
    if rank == 0 and settings.exchange_precision != "float32":   # no all-reduce here: messages stay exact
        log.warning("exchange_precision %s applies to mpi-sync only; mpi-async exchanges float32",
                    settings.exchange_precision)
    peers = range(1, comm.Get_size()) if rank == 0 else [0]
    live = mc.Liveness(comm, peers, settings.timeout_s, TAG_BEAT, hosts)

    def describe(exc: BaseException) -> str:
        checkpoint = settings.out_dir / "checkpoint"
        if rank == 0:
            return f"mpi-async master: {exc}; aborting. Rerun the same command to resume from {checkpoint}."
        return (f"mpi-async worker rank {rank}: {exc}; the master is unreachable, aborting. Rerun the same "
                f"command to resume from the last checkpoint in {checkpoint}.")

    body = _master if rank == 0 else _worker
    with live:
        result, lost = mc.run_guarded(comm, lambda: body(settings, comm, live), describe)
    if lost:
        mc.exit_without_finalize("a worker was lost")
    return result


@dataclass
class Exchange:
    """What the master saw: the numbers that show ``weighting``'s effect, and the faults."""

    weighting: int
    gradients: int = 0
    updates: int = 0
    staleness: list[int] = field(default_factory=list)
    lost: dict[int, str] = field(default_factory=dict)
    dropped_gradients: int = 0
    service_cpu_s: float = 0.0   # the master's thread CPU receiving, applying and replying

    def summary(self) -> dict:
        s = np.asarray(self.staleness or [0])
        return {"weighting": self.weighting, "gradients": self.gradients, "updates": self.updates,
                "mean_staleness": float(s.mean()), "max_staleness": int(s.max()),
                "service_cpu_ms_per_gradient": round(1000 * self.service_cpu_s / max(self.gradients, 1), 3),
                "dropped_gradients": self.dropped_gradients,
                "lost_workers": {str(k): v for k, v in self.lost.items()}}


# -- master --------------------------------------------------------------------------------
class _Master:
    def __init__(self, settings: TrainSettings, comm, live):
        from diagnosenet.training.run import Run, data_shape, make_replica, shard_manifest

        self.settings, self.comm, self.live, self.timeout = settings, comm, live, settings.timeout_s
        shard_manifest(settings)
        self.replica = make_replica(settings, *data_shape(settings))
        self.run = Run(settings, self.replica, name="rank0")
        meta = mc.exchange_state(comm, settings, self.replica, self.run)
        self.version = int(meta.get("version", 0))
        self.n, self.n_stats = self.replica.n_params, self.replica.get_statistics().size
        self.block = input_block(self.replica)
        self.message_bytes = 0   # gradient messages and replies of the epoch
        self.workers = set(range(1, comm.Get_size()))   # ranks; rank r trains worker worker_of[r]'s shard
        self.worker_of = dict(zip(range(1, comm.Get_size()), settings.worker_ids))
        self.ex = Exchange(settings.weighting, lost={int(w): why for w, why in settings.lost_workers.items()})
        self.latest_stats: dict[int, np.ndarray] = {}
        self.sends: dict[int, list] = {w: [] for w in self.workers}
        #: under row replies the model the master steps and replies from (TensorFlow holds it
        #: only for validation and checkpoints, handed over at each epoch's end)
        self.server = RowServer(self.replica) if row_replies(settings, self.replica) else None
        self.held: dict[int, int] = {}   # the version each worker's weights are at (its last reply)

    def reply(self, worker: int, code: int) -> None:
        """Send the reply head and the weights — with row replies, only what changed since the
        worker's version — (non-blocking; mpi4py keeps the buffers alive with the requests)."""
        if self.server is None:
            body, rows = self.replica.get_weights(), -1
        else:
            body, rows = self.server.message(None if code == DROPPED else self.held.get(worker))
        digest = weights_digest(self.weights()) if code == STOP else 0
        head = np.array([self.version, code, rows, digest], np.int64)
        self.held[worker] = self.version
        self.message_bytes += head.nbytes + body.nbytes
        self.sends[worker] = [r for r in self.sends[worker] if not r.Test()] + [
            self.comm.Isend(head, dest=worker, tag=TAG_REPLY_HEAD), self.comm.Isend(body, dest=worker, tag=TAG_REPLY)]

    def weights(self) -> np.ndarray:
        return self.replica.get_weights() if self.server is None else self.server.weights

    def _gradient(self, buffer: np.ndarray, packed: int, dense_head: int):
        """A received gradient: dense, or a :class:`RowGradient` under row replies."""
        rest = buffer[max(packed, 0):max(packed, 0) + self.n - dense_head]
        if self.server is not None:
            return RowGradient.from_packed(buffer[:packed], rest, self.block[1]) if packed >= 0 else \
                RowGradient.from_dense(buffer[:self.n], self.block)
        return buffer[:self.n] if packed < 0 else np.concatenate([unpack_rows([buffer[:packed]], self.block), rest])

    def lose(self, worker: int, why: str) -> None:
        """Carry on without ``worker`` and send it nothing more (sends to a dead or stopped rank
        never complete, and MPI_Finalize would wait for them); if it speaks again, it is told
        to stop."""
        log.warning("mpi-async: worker %s lost (%s); carrying on with the others", self.live.name(worker), why)
        self.ex.lost[self.worker_of[worker]] = f"{self.live.name(worker)}: {why}"
        self.workers.discard(worker)
        self.latest_stats.pop(worker, None)
        self.held.pop(worker, None)
        if not self.workers:
            raise mc.RankTimeout("every worker is lost")
        self.live.forget(worker)
        mc.cancel(self.sends[worker])
        self.sends[worker] = []

    def await_final_files(self) -> None:
        """Wait until every live worker has closed its monitor and timeline (it says so after its
        last reply); a worker silent for ``timeout_s`` here is named and not waited for: the run
        is trained, and its files are hashed as they are."""
        for worker in sorted(self.workers):
            try:
                self.live.wait(self.comm.Irecv(np.empty(1, np.int64), source=worker, tag=TAG_FILES_FINAL),
                               f"final monitor and timeline files of rank {worker}", [worker])
            except mc.RankTimeout as exc:
                log.warning("mpi-async: %s; writing the run without waiting for it", exc)

    def complete_sends(self) -> None:
        """Wait for the replies to live workers (those to lost ones may never complete)."""
        for worker in sorted(self.workers):
            for request in self.sends[worker]:
                self.live.wait(request, f"replies to rank {worker}", [worker])

    def epoch(self):
        """Serve gradients until every live worker has passed over its shard once."""
        from mpi4py import MPI

        from diagnosenet.training.loop import EpochStats, weighted_mean

        comm, status = self.comm, MPI.Status()
        stats, at_end, pending = EpochStats(), set(), []   # pending: (worker, version used, rows, grads)
        gradients, since = 0, time.monotonic()
        while at_end != self.workers or pending:
            if comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, status):
                source, tag = status.Get_source(), status.Get_tag()
                self.live.heard(source)
                if tag == TAG_BEAT:
                    self.live.listen()
                elif tag == TAG_HEAD:
                    cpu = time.thread_time()
                    head = np.empty(HEAD_FLOATS)
                    comm.Recv(head, source=source, tag=TAG_HEAD)
                    packed = int(head[4])
                    dense_head = 0 if packed < 0 else self.block[0] * self.block[1]
                    buffer = np.empty(max(packed, 0) + self.n - dense_head + self.n_stats, np.float32)
                    self.live.wait(comm.Irecv(buffer, source=source, tag=TAG_GRAD), f"gradient from rank {source}", [source])
                    self.message_bytes += head.nbytes + buffer.nbytes   # (replies: counted by reply())
                    if source not in self.workers:  # spoke again after being dropped: tell it to stop
                        self.ex.dropped_gradients += 1
                        self.live.remember(source)  # it waits for the goodbye with liveness
                        self.reply(source, DROPPED)
                        continue
                    grads = self._gradient(buffer, packed, dense_head)
                    pending.append((source, int(head[0]), int(head[2]), grads))
                    if self.n_stats:
                        self.latest_stats[source] = buffer[buffer.size - self.n_stats:].copy()
                    stats.add(head[1], head[3], int(head[2]))
                    self.ex.service_cpu_s += time.thread_time() - cpu
                elif tag == TAG_EPOCH:
                    comm.Recv(np.empty(1, np.int64), source=source, tag=TAG_EPOCH)
                    if source in self.workers:
                        at_end.add(source)
                else:
                    raise RuntimeError(f"unexpected message tag {tag} from rank {source}")
            else:
                for worker in self.live.silent(sorted(self.workers), since):
                    self.lose(worker, f"silent (no message, no heartbeat) for more than {self.timeout:g} s")
                time.sleep(mc.POLL_S)
            pending = [p for p in pending if p[0] in self.workers]
            in_epoch = self.workers - at_end
            if pending and len(pending) >= min(self.settings.weighting, len(in_epoch)):
                cpu = time.thread_time()
                counts = [r for _, _, r, _ in pending]
                self.ex.staleness += [self.version - used for _, used, _, _ in pending]
                self.version += 1
                if self.server is None:
                    self.replica.apply_gradients(weighted_mean([g for *_, g in pending], counts))
                else:   # rows in, rows out: nothing of the block's size (33 MB for the paper's MLP)
                    self.server.apply(row_weighted_mean([g for *_, g in pending], counts), self.version)
                self.ex.gradients += len(pending)
                self.ex.updates += 1
                gradients += len(pending)
                for worker, *_ in pending:
                    self.reply(worker, CONTINUE)
                pending = []
                self.ex.service_cpu_s += time.thread_time() - cpu
        if self.server is not None:   # validation and the checkpoint read the replica
            self.server.into(self.replica)
        if self.latest_stats:  # the workers' moving statistics, averaged: the master's BatchNorm state
            self.replica.set_statistics(np.mean(list(self.latest_stats.values()), axis=0, dtype=np.float32))
        return stats, gradients


def _master(settings: TrainSettings, comm, live) -> tuple[dict, bool]:
    master = _Master(settings, comm, live)
    run = master.run
    monitor, monitor_status = run.monitor()
    exchanged = 0
    with monitor:
        stop = run.should_stop
        for worker in sorted(master.workers):
            master.reply(worker, STOP if stop else CONTINUE)
        while not stop:
            run.begin_epoch()
            master.message_bytes = 0
            stats, gradients = master.epoch()
            exchanged = master.message_bytes
            stop = run.end_epoch(stats, bytes_exchanged=exchanged, extra={"version": master.version})
            for worker in sorted(master.workers):
                master.reply(worker, STOP if stop else CONTINUE)
        master.complete_sends()
    # the manifest hashes every rank's monitor CSV and timeline: each must be closed first
    master.await_final_files()
    result = run.finish({
        "n_params": master.n, "bytes_exchanged_per_epoch": exchanged, "monitor": monitor_status,
        "mpi": {**master.ex.summary(), "ranks": comm.Get_size(), "hosts": live.hosts,
                "master_cpu_cores": cpu_capacity(),
                "rank_workers": master.worker_of,
                "replies": "every weight" if master.server is None else "changed rows"}})
    lost_in_job = len(master.ex.lost) > len(settings.lost_workers)   # not those of an earlier, re-formed job
    bye = np.array([lost_in_job], np.int64)
    goodbyes = {w: comm.Isend(bye, dest=w, tag=TAG_BYE) for w in live.dests}  # live or spoke again
    for worker in sorted(master.workers):
        live.wait(goodbyes[worker], "goodbye", [worker])
    return result, lost_in_job


# -- worker --------------------------------------------------------------------------------
def _worker(settings: TrainSettings, comm, live) -> tuple[None, bool]:
    from diagnosenet.training.evaluation import monitor_for
    from diagnosenet.training.loop import batch_order
    from diagnosenet.training.run import data_shape, load_worker_shard, make_replica
    from diagnosenet.training.timeline import StepTimeline

    rank = comm.Get_rank()
    worker = settings.worker_ids[rank - 1] - 1   # the same after a re-formation without a lost worker
    replica = make_replica(settings, *data_shape(settings), worker=worker)
    meta = mc.exchange_state(comm, settings, replica)
    epoch = int(meta["epoch"])
    shard = load_worker_shard(settings, worker)
    n_batches = len(shard.boundaries) - 1
    block = input_block(replica) if settings.exchange == "sparse" else None
    dense_head = block[0] * block[1] if block else 0
    row_reply = row_replies(settings, replica)
    weights, reply_head = replica.get_weights(), np.empty(REPLY_HEAD, np.int64)
    reply = np.empty(reply_floats(block, replica.n_params) if row_reply else replica.n_params, np.float32)

    def await_reply(what: str) -> int:
        requests = [comm.Irecv(reply_head, source=0, tag=TAG_REPLY_HEAD), comm.Irecv(reply, source=0, tag=TAG_REPLY)]
        for request in requests:
            live.wait(request, what, [0])
        return int(reply_head[1])

    by_rows = row_reply and hasattr(replica, "set_rows")   # no copy of the block's size per step

    def take_reply() -> None:
        count = int(reply_head[2])
        if by_rows and count >= 0:
            table = reply[:count * (block[1] + 1)].reshape(count, block[1] + 1)
            replica.set_rows(table[:, 0].astype(np.int64), table[:, 1:],
                             reply[count * (block[1] + 1):count * (block[1] + 1) + replica.n_params - dense_head])
        else:
            apply_reply(weights, reply, count, block if row_reply else None)
            replica.set_weights(weights)
        if reply_head[1] == STOP:   # the master's digest of its final weights: is this copy the same?
            if weights_digest(replica.get_weights() if by_rows else weights) == int(reply_head[3]):
                log.info("mpi-async rank %d: final weights equal the master's (sha256)", rank)
            else:
                log.error("mpi-async rank %d: final weights differ from the master's (sha256): a reply was lost "
                          "or misapplied", rank)

    monitor, _ = monitor_for(settings, f"rank{rank}")
    with monitor, StepTimeline(settings.out_dir, rank, resumed_epoch=epoch) as timeline:
        code = await_reply("start decision from the master")
        take_reply()
        while code == CONTINUE:
            epoch += 1
            for step, (X_b, y_b) in enumerate(shard.microbatches(batch_order(n_batches, settings.seed, epoch)), 1):
                start, t0 = time.time(), time.perf_counter()
                if by_rows:
                    grad_rows, values, rest, loss, correct = replica.compute_row_gradients(X_b, y_b)
                    t1 = time.perf_counter()
                    packed = np.column_stack([grad_rows.astype(np.float32), values]).ravel()
                    parts = [packed, rest]
                else:
                    grads, loss, correct = replica.compute_gradients(X_b, y_b)
                    t1 = time.perf_counter()
                    packed = pack_rows(grads, block) if block else None
                    parts = [grads] if packed is None else [packed, grads[dense_head:]]
                buffer = np.concatenate([*parts, replica.get_statistics()]).astype(np.float32, copy=False)
                head = np.array([reply_head[0], loss, len(y_b), correct, -1 if packed is None else packed.size],
                                dtype=np.float64)
                for request in (comm.Isend(head, dest=0, tag=TAG_HEAD), comm.Isend(buffer, dest=0, tag=TAG_GRAD)):
                    live.wait(request, "sending a gradient to the master", [0])
                code = await_reply("weights from the master")
                t2 = time.perf_counter()
                take_reply()
                timeline.record(epoch, step, start, t1 - t0, t2 - t1, time.perf_counter() - t2, len(y_b),
                                head.nbytes + buffer.nbytes)
                if code != CONTINUE:
                    break
            else:
                live.wait(comm.Isend(np.ones(1, np.int64), dest=0, tag=TAG_EPOCH), "end of epoch", [0])
                code = await_reply("the master's decision after the epoch")
                take_reply()
                timeline.flush()
        if code == DROPPED:
            log.warning("mpi-async rank %d: the master dropped this worker as silent; stopping", rank)
    if code == STOP:   # monitor and timeline closed: the master may hash them into the manifest
        live.wait(comm.Isend(np.ones(1, np.int64), dest=0, tag=TAG_FILES_FINAL), "final files to the master", [0])
    # stay alive until the master has written the outputs (after a lost rank, any exit ends the job)
    lost = np.zeros(1, np.int64)
    live.wait(comm.Irecv(lost, source=0, tag=TAG_BYE), "goodbye from the master", [0])
    return None, bool(lost[0]) or code == DROPPED
