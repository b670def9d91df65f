"""``mpi-sync``: synchronous data-parallel training, every step all-reduced (appendix A, done right).

Rank 0 is the master: it builds the model, broadcasts the full replica state (weights and
Adam slots, from its checkpoint when one exists) to every worker, keeps the track,
decides early stopping once per epoch and broadcasts the decision, checkpoints, and writes
the run's outputs. Ranks 1..N are workers; worker ``r`` trains on shard ``r - 1``.

Each step every worker computes the gradient of its micro-batch; the gradients are summed
with one buffer-based ``Iallreduce`` (contiguous ``float32``, no pickling) over a workers-only
communicator and divided by the number of workers, and every worker applies that same
update, so replicas stay bit-identical (their weight hashes are compared at the end).
An epoch is ``min`` over workers of their micro-batch count (shards differ by at most one
row, so by at most one micro-batch): collectives must pair up, and each epoch's batch order
is a fresh permutation, so a worker's extra batch is not always the one left out.

After each epoch the workers' sums (training loss, accuracy on their shard, validation
loss and accuracy on their validation shard) are reduced to the master, which therefore
sees whole-split means; worker 1 sends its state for the checkpoint.

A dead or hung rank makes some wait exceed ``timeout_s``: the job is
aborted with ``MPI_Abort`` and a message naming the last checkpointed epoch; rerunning the
same command resumes from it.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from diagnosenet.training import mpi_common as mc
from diagnosenet.training.settings import TrainSettings

log = logging.getLogger(__name__)

TAG_STATE_SIZE, TAG_STATE = 11, 12
#: per-epoch sums each worker contributes (see _epoch_sums)
N_SUMS = 7


def _epoch_sums(replica, data, stats) -> np.ndarray:
    from diagnosenet.training.loop import evaluate

    _, train_acc, _ = evaluate(replica, data.train.X, data.train.y)
    valid_loss, valid_acc, _ = evaluate(replica, data.valid.X, data.valid.y)
    n_train, n_valid = data.train.n_rows, data.valid.n_rows
    return np.array([stats.loss * stats.samples, stats.samples, train_acc * n_train, n_train,
                     valid_loss * n_valid, valid_acc * n_valid, n_valid], dtype=np.float64)


def _send_state(comm, state: dict, timeout_s: float) -> None:
    buffer = mc.pack_state(state)
    requests = [comm.Isend(np.array([buffer.size], np.int64), dest=0, tag=TAG_STATE_SIZE),
                comm.Isend(buffer, dest=0, tag=TAG_STATE)]
    mc.wait_all(requests, timeout_s, "sending the replica state to the master")


def _recv_state(comm, timeout_s: float) -> tuple[dict, int]:
    size = np.empty(1, np.int64)
    mc.wait(comm.Irecv(size, source=1, tag=TAG_STATE_SIZE), timeout_s, "replica state size from worker 1")
    buffer = np.empty(int(size[0]), np.uint8)
    mc.wait(comm.Irecv(buffer, source=1, tag=TAG_STATE), timeout_s, "replica state from worker 1")
    return mc.unpack_state(buffer)[0], buffer.size


def train(settings: TrainSettings) -> dict | None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    mc.check_world(comm, settings)
    mc.ignore_peer_signals()
    rank = comm.Get_rank()
    progress = {"epoch": 0}
    mc.wait(comm.Ibarrier(), settings.timeout_s, "start-up barrier")
    workers_comm = comm.Split(0 if rank else MPI.UNDEFINED, rank)

    def describe(exc: BaseException) -> str:
        return (f"mpi-sync rank {rank}: {exc}. A rank died or hangs, so synchronous training cannot go on; "
                f"aborting. The last checkpoint is epoch {progress['epoch']} in {settings.out_dir / 'checkpoint'}; "
                f"rerun the same command to resume from it.")

    return mc.run_guarded(comm, lambda: _train(settings, comm, workers_comm, progress), describe)


def _train(settings: TrainSettings, comm, workers_comm, progress: dict) -> dict | None:
    from diagnosenet.training.checkpoint import BEST, load_checkpoint, save_checkpoint
    from diagnosenet.training.evaluation import monitor_for
    from diagnosenet.training.loop import batch_order, run_epoch
    from diagnosenet.training.progress import EarlyStopping, TrackWriter
    from mpi4py import MPI

    rank, W, timeout = comm.Get_rank(), settings.workers, settings.timeout_s
    out, checkpoints = settings.out_dir, settings.out_dir / "checkpoint"
    out.mkdir(parents=True, exist_ok=True)
    manifest = mc.shard_manifest(settings)
    steps = min(s["micro_batches"] for s in manifest["shards"]["train"])
    replica = mc.make_replica(settings, *mc.model_shape(settings))
    stopper = EarlyStopping(settings.patience)

    meta = mc.broadcast_start(comm, settings, replica, stopper)
    state = replica.get_state()
    progress["epoch"] = meta["epoch"]
    resumed = meta["epoch"] > 0
    track_name = "track.csv" if rank == 0 else f"track_rank{rank}.csv"
    writer = TrackWriter(out / track_name, resume=resumed, keep_epochs=meta["epoch"] if resumed else None)
    grad_bytes = 4 * replica.n_params
    data = None if rank == 0 else mc.load_worker_data(settings, rank)

    def allreduce_mean(grads: np.ndarray) -> np.ndarray:
        send = np.ascontiguousarray(grads, dtype=np.float32)
        total = np.empty_like(send)
        mc.wait(workers_comm.Iallreduce(send, total, op=MPI.SUM), timeout, "gradient all-reduce")
        return total / np.float32(W) if W > 1 else total

    monitor, monitor_status = monitor_for(settings, f"rank{rank}")
    samples_total, epoch = meta["samples"], meta["epoch"]
    exchanged = 2 * grad_bytes * steps * W
    with monitor:
        start = time.time() - meta["wall_seconds"]
        stop = stopper.should_stop or epoch >= settings.max_epochs
        while not stop:
            epoch += 1
            tic = time.time()
            sums = np.zeros(N_SUMS, np.float64)
            if rank:
                order = batch_order(len(data.train.boundaries) - 1, settings.seed, epoch)[:steps]
                stats = run_epoch(replica, data.train.microbatches(order), reduce_gradients=allreduce_mean)
                sums = _epoch_sums(replica, data, stats)
                local = _row(epoch, sums, tic, start, bytes_exchanged=2 * grad_bytes * steps)
                writer.write(local)
            totals = np.zeros_like(sums)
            mc.wait(comm.Ireduce(sums, totals, op=MPI.SUM, root=0), timeout, "epoch sums to the master")
            flag = np.zeros(1, np.int64)
            if rank == 1:
                _send_state(comm, replica.get_state(), timeout)
            if rank == 0:
                state, state_bytes = _recv_state(comm, timeout)
                samples_total += int(totals[1])
                exchanged = 2 * grad_bytes * steps * W + state_bytes
                row = _row(epoch, totals, tic, start, bytes_exchanged=exchanged)
                stopper.update(row)
                writer.write(row)
                save_checkpoint(checkpoints, epoch=epoch, replica_state=state, progress={
                    "best_epoch": stopper.best_epoch, "early_stopping": stopper.state_dict(),
                    "wall_seconds": row["wall_seconds"], "samples": samples_total,
                    "settings": mc.fingerprint(settings), "bytes_exchanged": exchanged})
                flag[0] = stopper.should_stop or epoch >= settings.max_epochs
                log.info("epoch %d: train loss %.4f, valid loss %.4f, valid accuracy %.4f (%.1f s)", epoch,
                         row["train_loss"], row["valid_loss"], row["valid_metric"], row["epoch_seconds"])
            mc.wait(comm.Ibcast(flag, root=0), timeout, "early-stopping decision")
            progress["epoch"] = epoch  # rank 0 checkpointed it before deciding
            stop = bool(flag[0])
        train_seconds = time.time() - start
    if rank == 0:
        replica.set_state(state)
    digest = np.frombuffer(bytes.fromhex(mc.weights_sha256(replica.get_weights())), dtype=np.uint8).copy()
    digests = np.empty((comm.Get_size(), 32), np.uint8) if rank == 0 else None
    mc.wait(comm.Igather(digest, digests, root=0), timeout, "weight hashes to the master")
    if rank:
        return None

    hashes = [d.tobytes().hex() for d in digests]
    if len(set(hashes)) != 1:
        log.error("replicas diverged: weight hashes %s", hashes)
    best = load_checkpoint(checkpoints, BEST)
    replica.set_state(best["replica_state"])
    return mc.finish(settings, replica, {
        **stopper.summary(), "train_seconds": train_seconds, "n_params": replica.n_params,
        "samples_per_second": samples_total / train_seconds if train_seconds > 0 else 0.0,
        "bytes_exchanged_per_epoch": exchanged, "steps_per_epoch": steps,
        "monitor": monitor_status,
        "mpi": {"replica_sha256": hashes, "replicas_identical": len(set(hashes)) == 1,
                "ranks": comm.Get_size()},
    })


def _row(epoch: int, sums: np.ndarray, tic: float, start: float, *, bytes_exchanged: float) -> dict:
    loss_sum, samples, train_correct, n_train, valid_sum, valid_correct, n_valid = sums
    now = time.time()
    return dict(epoch=epoch, train_loss=float(loss_sum / samples), valid_loss=float(valid_sum / n_valid),
                train_metric=float(train_correct / n_train), valid_metric=float(valid_correct / n_valid),
                epoch_seconds=now - tic, wall_seconds=now - start, timestamp=now, samples=int(samples),
                bytes_exchanged=int(bytes_exchanged))
