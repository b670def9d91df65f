"""``grpc-sync``: synchronous data-parallel training with TensorFlow collectives over gRPC.

Every worker task runs this program on its own shard with the same replica and the same
epoch code as ``mpi-sync`` (:mod:`diagnosenet.training.loop`); only the transport differs:
sums travel by ``MultiWorkerMirroredStrategy``'s collective all-reduce between the workers'
gRPC servers instead of ``MPI_Iallreduce``. So the update is the row-weighted mean of the
workers' micro-batch gradients, an epoch is one pass over every training row, BatchNorm
moving statistics are averaged at the end of every epoch, and replicas stay identical.

Worker 0 is the chief: it owns the :class:`~diagnosenet.training.run.Run` (resume-or-start,
checkpoints, track, outputs) and broadcasts the initial state. Because replicas are
identical, validation is the chief's model scored on the whole validation split, computed
in parallel: each worker scores its validation shard and the sums are all-reduced. A worker
that exits, or whose node stops answering for ``timeout_s`` (the launcher's probes), makes
the launcher stop every process; rerunning resumes from the chief's last checkpoint.
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np

from diagnosenet.training.settings import TrainSettings

log = logging.getLogger(__name__)


class Collective:
    """Sums over every worker with TensorFlow's collective all-reduce (one traced op per dtype and length)."""

    def __init__(self, strategy):
        self.strategy = strategy
        self._sums: dict = {}  # one traced all-reduce per (dtype, length): gradients, statistics, sums

    def _sum_fn(self, dtype, length: int):
        import tensorflow as tf

        key = (np.dtype(dtype).str, length)
        if key not in self._sums:
            strategy = self.strategy

            def replica_sum(value):  # identity: the collective needs a tensor placed on the replica's device
                return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(value))

            self._sums[key] = tf.function(lambda value: strategy.run(replica_sum, args=(value,)))
        return self._sums[key]

    def allreduce_sum(self, values: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        values = np.ascontiguousarray(values)
        summed = self._sum_fn(values.dtype, values.size)(tf.constant(values))
        return np.asarray(self.strategy.experimental_local_results(summed)[0].numpy(), dtype=values.dtype)

    def broadcast_bytes(self, payload: np.ndarray | None, root: bool) -> np.ndarray:
        """A ``uint8`` buffer of the root on every worker (carried as ``int64`` words)."""
        size = np.array([payload.size if root else 0], np.int64)
        n = int(self.allreduce_sum(size)[0])
        words = np.zeros((n + 7) // 8, np.int64)
        if root:
            words.view(np.uint8)[:n] = payload
        return self.allreduce_sum(words).view(np.uint8)[:n].copy()


def _replica(settings: TrainSettings, graph, worker: int):
    from diagnosenet.training.run import data_shape, make_replica

    if graph is None:
        return make_replica(settings, *data_shape(settings), worker=worker)
    from diagnosenet.models.tensorflow_backend import TFReplica

    graph.dropout_stream = worker   # the paper API's graph (a models.graphs.Graph)
    return TFReplica(graph)


def _validation_sums(replica, valid, class_weights=None) -> np.ndarray:
    """``[loss sum, rows right, rows]`` of this worker's validation shard (inference mode)."""
    from diagnosenet.training.loop import evaluate

    if not valid.n_rows:
        return np.zeros(3)
    loss, accuracy, _ = evaluate(replica, valid.X, valid.y, class_weights=class_weights)
    return np.array([loss * valid.n_rows, accuracy * valid.n_rows, valid.n_rows], np.float64)


def train(settings: TrainSettings, graph=None) -> dict | None:
    import tensorflow as tf

    from diagnosenet.datasets.shards import load_shard
    from diagnosenet.training.checkpoint import pack_state, unpack_state
    from diagnosenet.training.evaluation import monitor_for
    from diagnosenet.training.grpc.common import task_from_tf_config, task_hosts
    from diagnosenet.training.exchange import RowWeighted
    from diagnosenet.training.loop import EpochStats, batch_order, run_epoch
    from diagnosenet.training.run import Run, class_weights, load_worker_shard, shard_manifest, sync_steps
    from diagnosenet.training.timeline import StepTimeline

    role, index = task_from_tf_config()
    if role != "worker":
        raise RuntimeError(f"grpc-sync runs on worker tasks only, not on {role}")
    # first: the strategy connects this process to the cluster before any other TensorFlow op
    # no timeout_seconds: it bounds a collective's *duration* and would cut a long but live step;
    # a silent peer is found by the launcher's probes (``train-grpc``, within timeout_s of silence)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    collective = Collective(strategy)
    chief = index == 0
    steps = sync_steps(shard_manifest(settings))
    replica = _replica(settings, graph, index)
    weights = class_weights(settings)
    shard = load_worker_shard(settings, index)
    valid = load_shard(settings.shards_dir, "valid", index, workers=settings.workers, batch_size=settings.batch_size)
    n_batches = len(shard.boundaries) - 1

    run = Run(settings, replica, name=f"worker{index}") if chief else None
    payload = None
    if chief:
        resumed = run.resume_or_start()
        payload = pack_state(replica.get_state(), {"epoch": resumed.epoch, "stop": run.should_stop})
    state, meta = unpack_state(collective.broadcast_bytes(payload, chief))
    if not chief:
        replica.set_state(state)
    epoch, stop = int(meta["epoch"]), bool(meta["stop"])

    reduce = RowWeighted(collective.allreduce_sum)   # TF collectives: dense only
    exchanged = 4 * (replica.n_params + 1) * steps * settings.workers   # handed to the all-reduce, all workers
    # every worker samples itself (the launcher samples only processes that do not train), so
    # the run's energy and CPU-seconds count every worker, as every rank does in mpi-sync
    monitor, monitor_status = run.monitor() if chief else monitor_for(settings, f"worker{index}")
    with monitor, StepTimeline(settings.out_dir, index + 1, resumed_epoch=epoch) as timeline:
        while not stop:
            epoch = run.begin_epoch() if chief else epoch + 1
            stats = run_epoch(replica, shard.microbatches(batch_order(n_batches, settings.seed, epoch)), reduce, steps,
                              timeline=timeline, epoch=epoch)
            statistics = replica.get_statistics()
            if statistics.size:  # BatchNorm: every replica ends the epoch with the workers' mean
                replica.set_statistics(collective.allreduce_sum(statistics) / np.float32(settings.workers))
            totals = EpochStats.from_array(collective.allreduce_sum(stats.as_array()))
            loss_sum, correct, rows = collective.allreduce_sum(_validation_sums(replica, valid, weights))
            flag = np.zeros(1, np.int64)
            if chief:
                flag[0] = run.end_epoch(totals, bytes_exchanged=exchanged, validation=(loss_sum / rows, correct / rows))
            stop = bool(collective.allreduce_sum(flag)[0])
    # every worker's monitor and timeline are closed: the run's energy and manifest read final files
    collective.allreduce_sum(np.zeros(1, np.float32))
    if not chief:
        return None
    cluster = json.loads(os.environ["TF_CONFIG"])["cluster"]
    return run.finish({"n_params": replica.n_params, "bytes_exchanged_per_epoch": exchanged,
                       "steps_per_epoch": steps, "monitor": monitor_status, "hosts": task_hosts(cluster)})

