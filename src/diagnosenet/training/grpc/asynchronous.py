"""``grpc-async``: parameter-server training over TensorFlow gRPC servers, the paper's gRPC mode.

The chief (coordinator) runs this loop; the model and optimizer variables live on the ``ps``
task; each step is a closure that ``ClusterCoordinator.schedule`` hands to whichever worker
is free, which reads a micro-batch of *its own* staged shard (:mod:`.data`), computes the
mean gradient and applies it to the parameter server without waiting for the others
(Keras 3 has no parameter-server support, so the loop is custom over plain variables).

The semantics are those of every mode (docs/training.md): an epoch is one pass over every
training row — each worker's iterator makes one pass over its shard per epoch, and the chief
schedules steps until every micro-batch has been trained on (a closure that lands on a
worker whose pass is over trains nothing); BatchNorm moving statistics are variables on the
parameter server, updated by every worker's training forward pass, so the chief's model has
valid statistics; the chief owns the :class:`~diagnosenet.training.run.Run` (validation,
early stopping, track, checkpoints with the same state format as every mode, resume).
A worker that dies is restarted by the launcher and TensorFlow re-runs its lost steps; the
restarted worker starts a new pass over its shard, so that epoch may revisit some of its rows
(``track.csv`` records the rows actually seen). A worker whose node stops answering is dropped:
the launcher re-forms the cluster without it (``settings.lost_workers``) and the chief resumes
from its last checkpoint, training the live workers' shards only.
"""
from __future__ import annotations

import contextlib
import logging
import shutil

import numpy as np

from diagnosenet.training.settings import TrainSettings

log = logging.getLogger(__name__)


class ParameterServerModel:
    """The chief's view of the model on the parameter server, as the run skeleton needs it."""

    def __init__(self, graph, optimizer):
        import tensorflow as tf

        self.graph, self.optimizer = graph, optimizer
        self._proba = tf.function(lambda x: tf.nn.softmax(graph(x, training=False)), reduce_retracing=True)

    def predict_proba(self, X, batch_size: int = 1024) -> np.ndarray:
        from diagnosenet.models.tensorflow_backend import to_tensor

        parts = [self._proba(to_tensor(X[lo:lo + batch_size])).numpy() for lo in range(0, X.shape[0], batch_size)]
        return np.concatenate(parts)

    def get_state(self) -> dict[str, np.ndarray]:
        from diagnosenet.models.tensorflow_backend import graph_state

        return graph_state(self.graph, self.optimizer)

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        from diagnosenet.models.tensorflow_backend import assign_graph_state

        assign_graph_state(self.graph, self.optimizer, state)


class StepTraffic:
    """Bytes between a worker and the parameter server per step: the weights read and the
    gradient written; with row reads the first layer's part of both is the rows a batch
    names (the gradient stays the whole kernel under dense Adam, which moves every row)."""

    def __init__(self, model_bytes: int, kernel: tuple[int, int] | None, lazy: bool):
        self.kernel_bytes = 0 if kernel is None else 4 * kernel[0] * kernel[1]
        self.other_bytes, self.units, self.lazy = model_bytes - self.kernel_bytes, 0 if kernel is None else kernel[1], lazy

    def bytes(self, steps: int, rows_read: float) -> float:
        if not self.kernel_bytes:
            return 2.0 * self.other_bytes * steps
        rows_bytes = 4.0 * self.units * rows_read
        return 2.0 * self.other_bytes * steps + rows_bytes + (rows_bytes if self.lazy else self.kernel_bytes * steps)


def train(settings: TrainSettings, graph=None) -> dict:
    import tensorflow as tf

    from diagnosenet.models.optim import LazyAdam, input_kernel
    from diagnosenet.training.grpc.cluster import worker_workdir
    from diagnosenet.training.grpc.common import batch_sums, build_model, model_bytes, task_from_tf_config, task_hosts
    from diagnosenet.training.grpc.placement import BalancedPlacement, StepBytes, make_anchors, rows_per_step
    from diagnosenet.training.grpc.data import local_shard_dataset
    from diagnosenet.training.loop import EpochStats
    from diagnosenet.training.run import Run, data_shape, shard_manifest

    role, _ = task_from_tf_config()
    if role != "chief":
        raise RuntimeError(f"grpc-async runs the training loop on the chief only, not on {role}")
    # after a re-form (``train-grpc`` lost a worker's node) only the live workers' shards are trained
    shards = [shard_manifest(settings)["shards"]["train"][w - 1] for w in settings.worker_ids]
    batches_per_epoch = sum(s["micro_batches"] for s in shards)
    max_batches = max(s["micro_batches"] for s in shards)
    input_size, n_classes = data_shape(settings)
    sparse = settings.task == "pmsi"

    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    strategy = tf.distribute.experimental.ParameterServerStrategy(resolver)
    coordinator = tf.distribute.experimental.coordinator.ClusterCoordinator(strategy)
    servers = resolver.cluster_spec().num_tasks("ps")
    placement, creator = None, contextlib.nullcontext()
    if servers > 1:   # spread the variables by bytes per step; TensorFlow's round-robin is by count
        placement = BalancedPlacement(make_anchors(strategy, servers), StepBytes(
            input_size if sparse else None,
            rows_per_step(settings.shards_dir, [w - 1 for w in settings.worker_ids]) if sparse else 0.0,
            lazy=settings.optimizer == "lazy-adam"))
        creator = tf.variable_creator_scope(placement)
    with strategy.scope(), creator:
        graph, optimizer = build_model(settings, input_size, n_classes, graph)
    if placement is not None:
        strays = [v.name for v, slot in zip(graph.trainable_variables, optimizer.m) if v.device != slot.device]
        if strays:   # each lazy step reads a row's moments where the row is: never across the network
            raise RuntimeError(f"Adam slots placed away from their variables: {strays}")
        log.info("variables over %d parameter servers, estimated bytes per step %s", servers,
                 ", ".join(f"ps:{i} {b / 1e6:.2f} MB" for i, b in enumerate(placement.load)))
    variables = list(graph.trainable_variables)
    kernel = input_kernel(graph) if sparse else None
    if kernel is not None:  # each step reads (and lazy Adam writes) the rows its features name, not the kernel
        graph.layers[0].read_rows = True
    model = ParameterServerModel(graph, optimizer)
    run = Run(settings, model, name="chief")
    run.resume_or_start()

    def dataset_fn():  # traced here, run on every worker against its own staged shard
        return local_shard_dataset(sparse, (input_size,), max_batches, settings.seed)

    per_worker_dataset = coordinator.create_per_worker_dataset(dataset_fn)

    def replica_step(x, y, step):
        with tf.GradientTape() as tape:
            sums = batch_sums(graph, x, y, training=True, dropout_step=step)
            loss = sums[0] / sums[2]
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        features = tf.size(tf.unique(x.indices[:, 1])[0]) if sparse else 0   # first-layer rows read
        return tf.concat([sums, [tf.cast(features, tf.float32), 1.0]], axis=0)

    per_closure = settings.steps_per_execution

    @tf.function
    def worker_steps(iterator, first_step):
        """Up to ``per_closure`` steps on one worker, each applied to the parameter servers at once
        (Keras' ``steps_per_execution``): the chief's work per step is divided by as much.
        Step ``i`` draws the dropout masks of step ``first_step + i``: the chief numbers the
        closures, so no two steps share a mask whichever worker runs them.
        Returns the summed loss, right, rows, first-layer rows read and steps trained."""
        totals = tf.zeros(5)
        for i in tf.range(per_closure):
            batch = iterator.get_next_as_optional()
            totals += tf.cond(batch.has_value(),
                              lambda: strategy.run(replica_step, args=(*batch.get_value(), first_step + tf.cast(i, tf.int64))),
                              lambda: tf.zeros(5))
        return totals

    traffic = StepTraffic(model_bytes(graph), kernel, lazy=isinstance(optimizer, LazyAdam) and optimizer.lazy_first)

    def run_epoch() -> tuple[EpochStats, int, float]:
        iterator = iter(per_worker_dataset)  # a fresh pass over every worker's shard
        sums, remaining = np.zeros(5), batches_per_epoch
        while remaining > 0:   # a closure on a worker whose pass is over trains nothing: schedule again
            closures = -(-remaining // per_closure)
            first = int(graph.dropout_step.numpy())   # saved with the checkpoint: a resumed run goes on
            results = [coordinator.schedule(worker_steps, args=(iterator, tf.constant(first + c * per_closure, tf.int64)))
                       for c in range(closures)]
            graph.dropout_step.assign(first + closures * per_closure)
            coordinator.join()
            values = np.array([r.fetch() for r in results], np.float64).reshape(-1, 5).sum(axis=0)
            sums += values
            remaining -= int(values[4])
        steps = int(sums[4])
        return EpochStats(sums[0], sums[1], int(sums[2])), steps, traffic.bytes(steps, sums[3])

    monitor, monitor_status = run.monitor()
    sent = 0.0
    with monitor:
        while not run.should_stop:
            run.begin_epoch()
            stats, steps, sent = run_epoch()
            run.end_epoch(stats, bytes_exchanged=sent)
    # the workers' staged shards were a cache for this run: keep them out of its manifest
    shutil.rmtree(worker_workdir(settings.out_dir, 0).parent, ignore_errors=True)
    return run.finish({
        "n_params": int(model_bytes(graph) // 4), "bytes_exchanged_per_epoch": int(sent), "row_reads": kernel is not None,
        "steps_per_epoch": batches_per_epoch, "steps_per_execution": per_closure, "parameter_servers": servers,
        "parameter_server_bytes_per_step": [round(b) for b in placement.load] if placement else None,
        "hosts": task_hosts(resolver.cluster_spec().as_dict()), "lost_workers": dict(settings.lost_workers),
        "monitor": monitor_status})
