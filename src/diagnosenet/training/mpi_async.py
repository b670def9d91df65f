"""``mpi-async``: asynchronous parameter-server training (appendix B, done right).

Rank 0 (master) owns the global model and its Adam optimizer; workers (ranks 1..N) hold a
copy of the weights only. A worker computes the gradient of one micro-batch on the weights
it holds, sends it (with the weight version it used) and waits for the master's reply: the
current weights and their version. Workers run at their own pace.

``weighting`` = *k*: the master collects gradients as they arrive and, once it holds
``min(k, workers still training)`` of them, applies their mean as **one** optimizer step,
publishes a new weight version and replies to exactly those workers. ``k = 1`` is fully
asynchronous (every gradient is applied on arrival; gradients can be stale: computed on an
older version than the one they update); ``k = N`` waits for every training worker each
version (no staleness, like a synchronous step, but a dead worker only costs ``timeout_s``).
``metrics.json`` records gradients, versions (updates) and staleness, so each value's effect
is visible.

Each worker keeps its own early stopping on its validation shard and, when it converges
(or reaches ``max_epochs``), sends a flag; the master queues the flags and stops when every
live worker has converged. A *master epoch* is as many gradients as there are micro-batches
in the whole training set: then the master validates the global weights on the whole
validation split, writes ``track.csv``, checkpoints and keeps the best weights.

Faults: a worker silent for ``timeout_s`` (not counting while it waits for the master) is
declared lost; the master carries on with the others and records it. Workers wait up to
``3 × timeout_s`` for replies, since the master may itself be waiting ``timeout_s`` on a
dead peer. Surviving a dead rank needs the launcher not to kill the job
(MPICH: ``mpirun -disable-auto-cleanup``); ``mpirun`` still exits non-zero because a rank died.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from diagnosenet.training import mpi_common as mc
from diagnosenet.training.settings import TrainSettings

log = logging.getLogger(__name__)

TAG_HEAD, TAG_GRAD, TAG_REPLY_HEAD, TAG_REPLY, TAG_DONE, TAG_PING, TAG_BYE = range(21, 28)
HEAD_FLOATS = 3   # version, batch loss, batch rows
DONE_FLOATS = 4   # converged, epochs run, best epoch, best validation loss
REPLY_PATIENCE = 3


def train(settings: TrainSettings) -> dict | None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    mc.check_world(comm, settings)
    mc.ignore_peer_signals()
    rank = comm.Get_rank()
    mc.wait(comm.Ibarrier(), settings.timeout_s, "start-up barrier")

    def describe(exc: BaseException) -> str:
        checkpoint = settings.out_dir / "checkpoint"
        if rank == 0:
            return f"mpi-async master: {exc}; aborting. Rerun the same command to resume from {checkpoint}."
        return (f"mpi-async worker rank {rank}: {exc}; the master is unreachable, aborting. Rerun the same "
                f"command to resume from the last checkpoint in {checkpoint}.")

    body = _master if rank == 0 else _worker
    return mc.run_guarded(comm, lambda: body(settings, comm), describe)


def _setup(settings: TrainSettings, comm):
    from diagnosenet.training.progress import EarlyStopping

    settings.out_dir.mkdir(parents=True, exist_ok=True)
    manifest = mc.shard_manifest(settings)
    replica = mc.make_replica(settings, *mc.model_shape(settings))
    stopper = EarlyStopping(settings.patience)
    meta = mc.broadcast_start(comm, settings, replica, stopper)
    return manifest, replica, stopper, meta


# -- master --------------------------------------------------------------------------------
@dataclass
class Exchange:
    """What the master saw: the numbers that show ``weighting``'s effect and the faults."""

    weighting: int
    gradients: int = 0
    updates: int = 0
    staleness: list[int] = field(default_factory=list)
    converged_queue: list[int] = field(default_factory=list)
    lost: dict[int, str] = field(default_factory=dict)
    finished: dict[int, dict] = field(default_factory=dict)

    def summary(self) -> dict:
        s = np.asarray(self.staleness or [0])
        return {"weighting": self.weighting, "gradients": self.gradients, "updates": self.updates,
                "mean_staleness": float(s.mean()), "max_staleness": int(s.max()),
                "converged_queue": self.converged_queue,
                "lost_workers": {str(k): v for k, v in self.lost.items()},
                "workers": {str(k): v for k, v in self.finished.items()}}


def _master(settings: TrainSettings, comm) -> dict:
    from mpi4py import MPI

    from diagnosenet.datasets.materialise import load_split
    from diagnosenet.training.checkpoint import BEST, load_checkpoint, save_checkpoint
    from diagnosenet.training.evaluation import monitor_for
    from diagnosenet.training.loop import evaluate
    from diagnosenet.training.progress import TrackWriter

    manifest, replica, stopper, meta = _setup(settings, comm)
    out, timeout, n = settings.out_dir, settings.timeout_s, replica.n_params
    X_valid, y_valid, _ = load_split(settings.dataset_dir, "valid")
    epoch_quota = sum(s["micro_batches"] for s in manifest["shards"]["train"])
    resumed = meta["epoch"] > 0
    writer = TrackWriter(out / "track.csv", resume=resumed, keep_epochs=meta["epoch"] if resumed else None)
    message_bytes = 8 * n + 8 * (HEAD_FLOATS + 1)  # gradient up, weights down, both headers
    ex = Exchange(settings.weighting)
    version, epoch, samples_total = int(meta.get("version", 0)), meta["epoch"], meta["samples"]
    training = set(range(1, settings.workers + 1))
    pending: list[tuple[int, int, np.ndarray]] = []  # (worker, version used, gradient)
    last_seen = {w: time.monotonic() for w in training}
    last_ping = time.monotonic()
    epoch_loss = epoch_rows = epoch_grads = 0.0
    sends: list = []  # small in-flight sends (pings), kept alive until they complete

    monitor, monitor_status = monitor_for(settings, "rank0")

    def end_epoch(tic: float) -> None:
        nonlocal epoch, samples_total, epoch_loss, epoch_rows, epoch_grads
        epoch += 1
        valid_loss, valid_metric, _ = evaluate(replica, X_valid, y_valid)
        now = time.time()
        samples_total += int(epoch_rows)
        row = dict(epoch=epoch, train_loss=epoch_loss / max(epoch_rows, 1), valid_loss=valid_loss,
                   train_metric=math.nan, valid_metric=valid_metric, epoch_seconds=now - tic,
                   wall_seconds=now - start, timestamp=now, samples=int(epoch_rows),
                   bytes_exchanged=int(epoch_grads * message_bytes))
        stopper.update(row)
        writer.write(row)
        save_checkpoint(out / "checkpoint", epoch=epoch, replica_state=replica.get_state(), progress={
            "best_epoch": stopper.best_epoch, "early_stopping": stopper.state_dict(), "version": version,
            "wall_seconds": row["wall_seconds"], "samples": samples_total, "settings": mc.fingerprint(settings)})
        log.info("master epoch %d (version %d): train loss %.4f, valid loss %.4f, valid accuracy %.4f", epoch,
                 version, row["train_loss"], valid_loss, valid_metric)
        epoch_loss = epoch_rows = epoch_grads = 0.0

    def lose(worker: int, why: str) -> None:
        log.warning("mpi-async: worker rank %d lost (%s); carrying on with the others", worker, why)
        ex.lost[worker] = why
        training.discard(worker)

    with monitor:
        start = time.time() - meta["wall_seconds"]
        tic = time.time()
        status = MPI.Status()
        while training:
            if comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, status):
                source, tag = status.Get_source(), status.Get_tag()
                last_seen[source] = time.monotonic()
                if tag == TAG_HEAD:
                    head, grads = np.empty(HEAD_FLOATS), np.empty(n, np.float32)
                    mc.wait(comm.Irecv(head, source=source, tag=TAG_HEAD), timeout, "gradient header")
                    mc.wait(comm.Irecv(grads, source=source, tag=TAG_GRAD), timeout, f"gradient from rank {source}")
                    pending.append((source, int(head[0]), grads))
                    epoch_loss, epoch_rows = epoch_loss + head[1] * head[2], epoch_rows + head[2]
                elif tag == TAG_DONE:
                    info = np.empty(DONE_FLOATS)
                    mc.wait(comm.Irecv(info, source=source, tag=TAG_DONE), timeout, "convergence flag")
                    converged = bool(info[0])
                    if converged:
                        ex.converged_queue.append(source)
                    ex.finished[source] = {"converged": converged, "epochs": int(info[1]),
                                           "best_epoch": int(info[2]), "best_valid_loss": float(info[3])}
                    training.discard(source)
                else:
                    raise RuntimeError(f"unexpected message tag {tag} from rank {source}")
            else:
                waiting = {w for w, _, _ in pending}
                for worker in sorted(training - waiting):
                    if time.monotonic() - last_seen[worker] > timeout:
                        lose(worker, f"silent for more than {timeout:g} s")
                time.sleep(mc.POLL_S)
            pending = [p for p in pending if p[0] in training]
            if pending and len(pending) >= min(settings.weighting, len(training)):
                replica.apply_gradients(np.mean([g for _, _, g in pending], axis=0, dtype=np.float32))
                ex.staleness += [version - used for _, used, _ in pending]
                version += 1
                ex.gradients += len(pending)
                ex.updates += 1
                epoch_grads += len(pending)
                reply_head, weights = np.array([version], np.int64), replica.get_weights()
                for worker, _, _ in pending:
                    requests = [comm.Isend(reply_head, dest=worker, tag=TAG_REPLY_HEAD),
                                comm.Isend(weights, dest=worker, tag=TAG_REPLY)]
                    try:
                        mc.wait_all(requests, timeout, f"weights to rank {worker}")
                    except mc.RankTimeout as exc:
                        lose(worker, str(exc))
                pending = []
                if epoch_grads >= epoch_quota:
                    end_epoch(tic)
                    tic = time.time()
            if time.monotonic() - last_ping > timeout / 4:  # keep finished workers waiting for the end
                sends = [r for r in sends if not r.Test()]
                sends += [comm.Isend(np.zeros(1, np.int64), dest=w, tag=TAG_PING) for w in ex.finished]
                last_ping = time.monotonic()
        if epoch_grads:
            end_epoch(tic)
        train_seconds = time.time() - start

    best = load_checkpoint(out / "checkpoint", BEST)
    if best is None:
        raise RuntimeError(f"{out / 'checkpoint'}: no best checkpoint; did any worker train?")
    replica.set_state(best["replica_state"])
    lost_any = bool(ex.lost)
    result = mc.finish(settings, replica, {
        **stopper.summary(), "train_seconds": train_seconds, "n_params": n,
        "samples_per_second": samples_total / train_seconds if train_seconds > 0 else 0.0,
        "bytes_exchanged_per_epoch": epoch_quota * message_bytes, "monitor": monitor_status,
        "mpi": {**ex.summary(), "ranks": comm.Get_size()},
    })
    for worker in ex.finished:  # they may exit now: the outputs are written
        mc.wait(comm.Isend(np.array([lost_any], np.int64), dest=worker, tag=TAG_BYE), timeout, "goodbye")
    return result


# -- worker --------------------------------------------------------------------------------
def _worker(settings: TrainSettings, comm) -> None:
    from diagnosenet.training.evaluation import monitor_for
    from diagnosenet.training.loop import batch_order, evaluate
    from diagnosenet.training.progress import EarlyStopping, TrackWriter

    _, replica, _, meta = _setup(settings, comm)

    rank, timeout, n = comm.Get_rank(), settings.timeout_s, replica.n_params
    data = mc.load_worker_data(settings, rank)
    stopper = EarlyStopping(settings.patience)  # this worker's own convergence, on its validation shard
    version, epoch = int(meta.get("version", 0)), meta["epoch"]
    writer = TrackWriter(settings.out_dir / f"track_rank{rank}.csv", resume=epoch > 0,
                         keep_epochs=epoch if epoch > 0 else None)
    n_batches = len(data.train.boundaries) - 1
    weights, reply_head = np.empty(n, np.float32), np.empty(1, np.int64)
    message_bytes = 8 * n + 8 * (HEAD_FLOATS + 1)
    monitor, _ = monitor_for(settings, f"rank{rank}")
    with monitor:
        start = time.time()
        while epoch < settings.max_epochs and not stopper.should_stop:
            epoch += 1
            tic, loss_sum, rows, steps = time.time(), 0.0, 0, 0
            for X_b, y_b in data.train.microbatches(batch_order(n_batches, settings.seed, epoch)):
                grads, loss = replica.compute_gradients(X_b, y_b)
                head = np.array([version, loss, len(y_b)], dtype=np.float64)
                mc.wait_all([comm.Isend(head, dest=0, tag=TAG_HEAD), comm.Isend(grads, dest=0, tag=TAG_GRAD)],
                            timeout, "sending a gradient to the master")
                requests = [comm.Irecv(reply_head, source=0, tag=TAG_REPLY_HEAD),
                            comm.Irecv(weights, source=0, tag=TAG_REPLY)]
                mc.wait_all(requests, REPLY_PATIENCE * timeout, "weights from the master")
                replica.set_weights(weights)
                version = int(reply_head[0])
                loss_sum, rows, steps = loss_sum + loss * len(y_b), rows + len(y_b), steps + 1
            _, train_metric, _ = evaluate(replica, data.train.X, data.train.y)
            valid_loss, valid_metric, _ = evaluate(replica, data.valid.X, data.valid.y)
            now = time.time()
            row = dict(epoch=epoch, train_loss=loss_sum / rows, valid_loss=valid_loss, train_metric=train_metric,
                       valid_metric=valid_metric, epoch_seconds=now - tic, wall_seconds=now - start,
                       timestamp=now, samples=rows, bytes_exchanged=steps * message_bytes)
            stopper.update(row)
            writer.write(row)
    info = np.array([stopper.should_stop, epoch, stopper.best_epoch, stopper.best_loss], dtype=np.float64)
    mc.wait(comm.Isend(info, dest=0, tag=TAG_DONE), timeout, "convergence flag to the master")
    _await_goodbye(comm, timeout)


def _await_goodbye(comm, timeout: float) -> None:
    """Stay alive until the master has written the outputs (after a lost rank, any exit ends the job).

    The master pings finished workers every ``timeout / 4`` s; silence for ``timeout`` means it died.
    """
    from mpi4py import MPI

    status, deadline = MPI.Status(), time.monotonic() + timeout
    while True:
        if comm.Iprobe(0, MPI.ANY_TAG, status):
            tag, flag = status.Get_tag(), np.empty(1, np.int64)
            mc.wait(comm.Irecv(flag, source=0, tag=tag), timeout, "master message")
            if tag == TAG_BYE:
                return
            deadline = time.monotonic() + timeout
        elif time.monotonic() > deadline:
            raise mc.RankTimeout(f"no word from the master for {timeout:g} s after this worker finished")
        time.sleep(mc.POLL_S * 10)
