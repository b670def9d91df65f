"""``mpi-sync``: synchronous data-parallel training, every step all-reduced (appendix A, done right).

Rank 0 is the master: it owns the :class:`~diagnosenet.training.run.Run` (resume-or-start,
validation, early stopping, track, checkpoints, outputs) and broadcasts the initial replica
state (weights, Adam slots, moving statistics) to every worker. Ranks 1..N are workers;
worker ``r`` trains on shard ``r - 1``.

Each step, every worker computes the mean gradient of its micro-batch, and one buffer-based
``Iallreduce`` over a workers-only communicator sums ``rows x gradient`` and the rows: every
worker applies the **row-weighted mean** (``training.exchange``: dense, or only the input rows
a sparse batch touched), so replicas stay bit-identical. An epoch is one pass over every training row: ``steps`` is the largest shard's
micro-batch count and a worker past its last micro-batch contributes zero rows. At the end of
an epoch the workers average their BatchNorm moving statistics (identical replicas again) and
sum their epoch statistics; worker 1 sends both and its state to the master, which validates
that model once, decides whether to stop and broadcasts the decision.

Liveness, not duration: every rank sends heartbeats to every other from a thread, and every
wait bounds only the *silence* of the ranks it depends on (``timeout_s``), never the length
of a step, an epoch or a validation. A dead, stopped or cut-off rank aborts the job with
``MPI_Abort`` and a message naming its node and the last checkpointed epoch; rerunning the
same command resumes from it.
"""
from __future__ import annotations

import logging

import numpy as np

from diagnosenet.training.mpi import common as mc
from diagnosenet.training.settings import TrainSettings

log = logging.getLogger(__name__)

TAG_SIZE, TAG_RESULT, TAG_BEAT = 11, 12, 13


def train(settings: TrainSettings) -> dict | None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    hosts = mc.start_up(comm, settings)
    rank = comm.Get_rank()
    progress = {"epoch": 0}
    workers_comm = comm.Split(0 if rank else MPI.UNDEFINED, rank)
    live = mc.Liveness(comm, [r for r in range(comm.Get_size()) if r != rank], settings.timeout_s, TAG_BEAT, hosts)

    def describe(exc: BaseException) -> str:
        return (f"mpi-sync rank {rank} on {hosts[rank]}: {exc}. A rank died or hangs, so synchronous training "
                f"cannot go on; aborting. The last checkpoint is epoch {progress['epoch']} in "
                f"{settings.out_dir / 'checkpoint'}; rerun the same command to resume from it.")

    body = _master if rank == 0 else _worker
    with live:
        return mc.run_guarded(comm, lambda: body(settings, comm, workers_comm, live, progress), describe)


def _master(settings: TrainSettings, comm, _workers_comm, live, progress: dict) -> dict:
    from diagnosenet.training.loop import EpochStats
    from diagnosenet.training.run import Run, data_shape, make_replica, shard_manifest, sync_steps

    workers = range(1, settings.workers + 1)
    steps = sync_steps(shard_manifest(settings))
    replica = make_replica(settings, *data_shape(settings))
    run = Run(settings, replica, name="rank0")
    meta = mc.exchange_state(comm, settings, replica, run)
    progress["epoch"] = meta["epoch"]
    exchanged = 0
    monitor, monitor_status = run.monitor()
    with monitor:
        stop = _decide(comm, live, run.should_stop, workers)
        while not stop:
            run.begin_epoch()
            size = np.empty(1, np.int64)
            live.wait(comm.Irecv(size, source=1, tag=TAG_SIZE), "epoch result from rank 1", workers)
            buffer = np.empty(int(size[0]), np.uint8)
            live.wait(comm.Irecv(buffer, source=1, tag=TAG_RESULT), "state from rank 1", workers)
            state, meta = mc.unpack_state(buffer)
            replica.set_state(state)
            exchanged = meta["payload_bytes"] + buffer.size   # what the workers handed to the collectives
            finished = run.end_epoch(EpochStats(**meta["stats"]), bytes_exchanged=exchanged)
            progress["epoch"] = run.epoch  # checkpointed before the decision goes out
            stop = _decide(comm, live, finished, workers)
    digests = _gather_hashes(comm, live, replica, workers)
    hashes = [d.tobytes().hex() for d in digests]
    if len(set(hashes)) != 1:
        log.error("replicas diverged: weight hashes %s", hashes)
    return run.finish({
        "n_params": replica.n_params, "bytes_exchanged_per_epoch": exchanged, "steps_per_epoch": steps,
        "monitor": monitor_status,
        "mpi": {"replica_sha256": hashes, "replicas_identical": len(set(hashes)) == 1, "ranks": comm.Get_size(),
                "hosts": live.hosts},
    })


def _decide(comm, live, stop: bool, peers) -> bool:
    """The master's stop decision, broadcast to every rank."""
    flag = np.array([bool(stop)], np.int64)
    live.wait(comm.Ibcast(flag, root=0), "stop decision", peers)
    return bool(flag[0])


def _gather_hashes(comm, live, replica, peers):
    digest = np.frombuffer(bytes.fromhex(mc.weights_sha256(replica.get_weights())), dtype=np.uint8).copy()
    digests = np.empty((comm.Get_size(), 32), np.uint8) if comm.Get_rank() == 0 else None
    live.wait(comm.Igather(digest, digests, root=0), "weight hashes to the master", peers)
    return digests


def _sum_bfloat16_op(incoming, inout, _datatype) -> None:
    """MPI user operation over ``MPI.UINT16_T`` buffers holding bfloat16 bit patterns."""
    from diagnosenet.training.exchange import sum_bfloat16

    sum_bfloat16(np.frombuffer(incoming, np.uint16), np.frombuffer(inout, np.uint16))


def _worker(settings: TrainSettings, comm, workers_comm, live, progress: dict) -> None:
    from mpi4py import MPI

    from diagnosenet.training.evaluation import monitor_for
    from diagnosenet.training.exchange import make_reducer
    from diagnosenet.training.loop import EpochStats, batch_order, run_epoch
    from diagnosenet.training.run import data_shape, load_worker_shard, make_replica, shard_manifest, sync_steps
    from diagnosenet.training.timeline import StepTimeline

    rank, W = comm.Get_rank(), settings.workers
    peers = [r for r in range(1, W + 1) if r != rank]
    steps = sync_steps(shard_manifest(settings))
    replica = make_replica(settings, *data_shape(settings), worker=rank - 1)
    meta = mc.exchange_state(comm, settings, replica)
    epoch = progress["epoch"] = meta["epoch"]
    shard = load_worker_shard(settings, rank - 1)
    n_batches = len(shard.boundaries) - 1

    def allreduce_sum(values: np.ndarray) -> np.ndarray:
        if W == 1:   # one worker: nothing to combine (statistics, epoch sums)
            return values
        send = np.ascontiguousarray(values)
        total = np.empty_like(send)
        live.wait(workers_comm.Iallreduce(send, total, op=MPI.SUM), "all-reduce among the workers", peers)
        return total

    def allgather(values: np.ndarray) -> list[np.ndarray]:
        if W == 1:
            return [values]
        counts = np.empty(W, np.int64)
        live.wait(workers_comm.Iallgather(np.array([values.size], np.int64), counts), "all-gather sizes", peers)
        received = np.empty(int(counts.sum()), np.float32)
        displacements = np.concatenate([[0], np.cumsum(counts)[:-1]])
        live.wait(workers_comm.Iallgatherv(np.ascontiguousarray(values, np.float32),
                                           [received, (counts, displacements), MPI.FLOAT]),
                  "all-gather of gradient rows", peers)
        return np.split(received, np.cumsum(counts)[:-1])

    def allreduce_half(values: np.ndarray) -> np.ndarray:
        total = np.empty_like(values)
        live.wait(workers_comm.Iallreduce(np.ascontiguousarray(values), total, op=sum_half),
                  "bfloat16 all-reduce among the workers", peers)
        return total

    half = settings.exchange_precision == "bfloat16" and W > 1
    sum_half = MPI.Op.Create(_sum_bfloat16_op, commute=True) if half else None
    reduce = make_reducer(settings.exchange, replica, allreduce_sum, allgather, workers=W,
                          allreduce_half=allreduce_half if half else None)
    monitor, _ = monitor_for(settings, f"rank{rank}")
    with monitor, StepTimeline(settings.out_dir, rank, resumed_epoch=epoch) as timeline:
        stop = _decide(comm, live, False, [0])
        while not stop:
            epoch += 1
            reduce.total_bytes = 0
            stats = run_epoch(replica, shard.microbatches(batch_order(n_batches, settings.seed, epoch)), reduce, steps,
                              timeline=timeline, epoch=epoch)
            statistics = replica.get_statistics()
            if statistics.size:  # BatchNorm: every replica ends the epoch with the workers' mean
                replica.set_statistics(allreduce_sum(statistics) / np.float32(W))
            sums = allreduce_sum(np.append(stats.as_array(), float(reduce.total_bytes)))
            if rank == 1:
                buffer = mc.pack_state(replica.get_state(), {"stats": vars(EpochStats.from_array(sums[:3])),
                                                             "payload_bytes": float(sums[3])})
                for request in (comm.Isend(np.array([buffer.size], np.int64), dest=0, tag=TAG_SIZE),
                                comm.Isend(buffer, dest=0, tag=TAG_RESULT)):
                    live.wait(request, "epoch result to the master", [0])
            stop = _decide(comm, live, False, [0])
            progress["epoch"] = epoch
    _gather_hashes(comm, live, replica, [0])
    if sum_half is not None:
        sum_half.Free()

