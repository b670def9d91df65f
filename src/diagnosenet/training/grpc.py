"""gRPC training modes over TensorFlow's distribution runtime (run by ``diagnosenet launch-grpc``).

``grpc-async`` — parameter-server training, the paper's gRPC mode: the chief (coordinator)
runs this loop; the model and optimizer variables live on the ``ps`` task; every step is a
closure that ``ClusterCoordinator.schedule`` hands to whichever worker is free, which reads
a micro-batch of *its own* shard (see :mod:`diagnosenet.training.grpc_data`), computes the
gradient and applies it to the parameter server without waiting for the others.
Keras 3 has no parameter-server support, so the loop is custom over plain ``tf.Variable``s.

``grpc-sync`` — ``MultiWorkerMirroredStrategy``: every worker runs this same program on its
own shard; gradients are summed with one collective all-reduce per step and every replica
applies the same update (initial weights are broadcast from worker 0 when the variables are
created). Worker 0 is the chief and writes the run's outputs.

Both validate on the whole validation split after every epoch (sync: each worker its own
validation shard, sums all-reduced, so every worker takes the same early-stopping decision),
keep the best weights, and finish with the same outputs as the other modes.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from diagnosenet.training.grpc_cluster import worker_workdir
from diagnosenet.training.settings import TrainSettings

log = logging.getLogger(__name__)

EVAL_BATCH = 1024


def train(settings: TrainSettings, graph=None) -> dict | None:
    """Run this process's part of a gRPC run; the chief returns the run metrics.

    ``graph``: an unbuilt model graph (the paper's API passes its own); by default
    ``build_graph(settings.task, settings.model, ...)``.
    """
    if settings.mode == "grpc-async":
        return train_async(settings, graph)
    if settings.mode == "grpc-sync":
        return train_sync(settings, graph)
    raise ValueError(f"mode {settings.mode!r} is not a gRPC mode")


# -- shared step math ---------------------------------------------------------------------
def batch_sums(graph, x, y, training: bool):
    """Sum of cross-entropy, correct predictions and rows of one batch (sums all-reduce)."""
    import tensorflow as tf

    logits = graph(x, training=training)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1), y), tf.float32))
    return tf.stack([tf.reduce_sum(losses), correct, tf.cast(tf.size(y), tf.float32)])


def build_model(settings: TrainSettings, input_shape: tuple[int, ...], n_classes: int, graph=None):
    """Graph and optimizer with all their variables; call inside ``strategy.scope()``."""
    import tensorflow as tf

    from diagnosenet.models.graphs import build_graph
    from diagnosenet.models.optim import Adam

    tf.random.set_seed(settings.seed)
    if graph is None:  # the workflow's graph, at the run's learning rate
        graph = build_graph(settings.task, settings.model, input_shape[0], n_classes, seed=settings.seed)
        optimizer = Adam(lr=settings.learning_rate)
    else:  # the paper's API: the graph carries its optimizer
        optimizer = graph.optimizer
    graph.build()
    optimizer.build(graph.trainable_variables)
    return graph, optimizer


def model_bytes(graph) -> int:
    return 4 * int(sum(np.prod(v.shape) for v in graph.trainable_variables))


@dataclass
class EpochResult:
    loss: float
    metric: float
    samples: int
    bytes_exchanged: float


def fit(settings: TrainSettings, run_epoch: Callable[[int], EpochResult],
        validate: Callable[[], tuple[float, float]], variables: list, tracks: list[str]) -> dict:
    """The epoch loop of both modes: train, validate, track, keep the best weights, stop early.

    Returns the progress summary for :func:`finalise_run`; the best weights (and batch-norm
    statistics) are restored into ``variables`` before it returns.
    """
    from diagnosenet.training.progress import EarlyStopping, TrackWriter

    stopper = EarlyStopping(settings.patience)
    writers = [TrackWriter(settings.out_dir / name) for name in tracks]
    start = time.time()
    best = [v.numpy() for v in variables]
    samples_total = 0
    for epoch in range(1, settings.max_epochs + 1):
        tic = time.time()
        result = run_epoch(epoch)
        samples_total += result.samples
        valid_loss, valid_metric = validate()
        now = time.time()
        row = dict(epoch=epoch, train_loss=result.loss, valid_loss=valid_loss, train_metric=result.metric,
                   valid_metric=valid_metric, epoch_seconds=now - tic, wall_seconds=now - start,
                   timestamp=now, samples=result.samples, bytes_exchanged=result.bytes_exchanged)
        for writer in writers:
            writer.write(row)
        log.info("epoch %d: train loss %.4f, valid loss %.4f, valid accuracy %.3f (%.1f s)",
                 epoch, result.loss, valid_loss, valid_metric, now - tic)
        if stopper.update(row):
            best = [v.numpy() for v in variables]
        if stopper.should_stop:
            break
    for variable, value in zip(variables, best):
        variable.assign(value)
    elapsed = time.time() - start
    return {**stopper.summary(), "samples_per_second": samples_total / elapsed if elapsed > 0 else 0.0}


def predict_proba(predict, X, y, batch_size: int = EVAL_BATCH) -> np.ndarray:
    from diagnosenet.training.grpc_data import array_batches

    return np.concatenate([predict(x).numpy() for x, _ in array_batches(X, y, batch_size)])


def finish(settings: TrainSettings, predict, summary: dict, extra: dict) -> dict:
    """Test-split predictions with the best weights, then the run's metrics files."""
    from diagnosenet.datasets.materialise import load_classes, load_split
    from diagnosenet.training.evaluation import finalise_run

    X_test, y_test, _ = load_split(settings.dataset_dir, "test")
    proba = predict_proba(predict, X_test, y_test)
    return finalise_run(settings, proba, y_test, load_classes(settings.dataset_dir), {**summary, **extra})


def _task_from_tf_config() -> tuple[str, int]:
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    if "type" not in task:
        raise RuntimeError("TF_CONFIG names no task; gRPC modes are started by `diagnosenet launch-grpc`")
    return task["type"], int(task.get("index", 0))


def _shard_manifest(settings: TrainSettings) -> dict:
    from diagnosenet.artifacts import verify_manifest

    return verify_manifest(settings.shards_dir, stage="shard",
                           params={"workers": settings.workers, "batch_size": settings.batch_size},
                           check_hashes=False)


# -- grpc-async: parameter-server training ------------------------------------------------
def train_async(settings: TrainSettings, graph=None) -> dict:
    import tensorflow as tf

    from diagnosenet.datasets.materialise import load_classes, load_split
    from diagnosenet.training.grpc_data import array_batches, local_shard_dataset

    role, _ = _task_from_tf_config()
    if role != "chief":
        raise RuntimeError(f"grpc-async runs the training loop on the chief only, not on {role}")
    manifest = _shard_manifest(settings)
    steps_per_epoch = sum(s["micro_batches"] for s in manifest["shards"]["train"])
    max_batches = max(s["micro_batches"] for s in manifest["shards"]["train"])
    X_valid, y_valid, _ = load_split(settings.dataset_dir, "valid")
    sparse, input_shape = not isinstance(X_valid, np.ndarray), tuple(X_valid.shape[1:])
    n_classes = len(load_classes(settings.dataset_dir))

    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    strategy = tf.distribute.experimental.ParameterServerStrategy(resolver)
    coordinator = tf.distribute.experimental.coordinator.ClusterCoordinator(strategy)
    with strategy.scope():
        graph, optimizer = build_model(settings, input_shape, n_classes, graph)
    variables = list(graph.trainable_variables)

    def dataset_fn():  # traced here, run on every worker against its own staged shard
        return local_shard_dataset(sparse, input_shape, max_batches, settings.seed)

    iterator = iter(coordinator.create_per_worker_dataset(dataset_fn))

    @tf.function
    def worker_step(iterator):
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                sums = batch_sums(graph, x, y, training=True)
                loss = sums[0] / sums[2]
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return sums

        x, y = next(iterator)
        return strategy.run(replica_step, args=(x, y))

    @tf.function(reduce_retracing=True)
    def eval_sums(x, y):
        return batch_sums(graph, x, y, training=False)

    @tf.function(reduce_retracing=True)
    def predict(x):
        return tf.nn.softmax(graph(x, training=False))

    per_step_bytes = 2 * model_bytes(graph)  # pull the weights, push the gradient

    def run_epoch(epoch: int) -> EpochResult:
        results = [coordinator.schedule(worker_step, args=(iterator,)) for _ in range(steps_per_epoch)]
        coordinator.join()
        loss_sum, correct, n = np.sum([r.fetch() for r in results], axis=0, dtype=np.float64)
        return EpochResult(float(loss_sum / n), float(correct / n), int(n), float(per_step_bytes * steps_per_epoch))

    def validate() -> tuple[float, float]:
        loss_sum, correct, n = np.sum([eval_sums(x, y).numpy()
                                       for x, y in array_batches(X_valid, y_valid, EVAL_BATCH)], axis=0)
        return float(loss_sum / n), float(correct / n)

    settings.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    summary = fit(settings, run_epoch, validate, variables + list(graph.non_trainable_variables), ["track.csv"])
    train_seconds = time.time() - start
    # the workers' staged shards were a cache for this run: keep them out of its manifest
    shutil.rmtree(worker_workdir(settings.out_dir, 0).parent, ignore_errors=True)
    return finish(settings, predict, summary, {
        "train_seconds": train_seconds, "bytes_exchanged_per_epoch": per_step_bytes * steps_per_epoch,
        "steps_per_epoch": steps_per_epoch, "parameter_servers": resolver.cluster_spec().num_tasks("ps"),
    })


# -- grpc-sync: MultiWorkerMirroredStrategy -----------------------------------------------
def train_sync(settings: TrainSettings, graph=None) -> dict | None:
    import tensorflow as tf

    from diagnosenet.datasets.materialise import load_classes
    from diagnosenet.datasets.shards import load_shard
    from diagnosenet.training.grpc_data import array_batches, shard_dataset, to_model_input

    role, index = _task_from_tf_config()
    if role != "worker":
        raise RuntimeError(f"grpc-sync runs on worker tasks only, not on {role}")
    manifest = _shard_manifest(settings)
    steps_per_epoch = min(s["micro_batches"] for s in manifest["shards"]["train"])  # collectives pair up
    shard = load_shard(settings.shards_dir, "train", index, workers=settings.workers, batch_size=settings.batch_size)
    valid = load_shard(settings.shards_dir, "valid", index, workers=settings.workers, batch_size=settings.batch_size)
    sparse, input_shape = not isinstance(shard.X, np.ndarray), tuple(shard.X.shape[1:])
    n_classes = len(load_classes(settings.dataset_dir))

    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=settings.timeout_s)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    with strategy.scope():
        graph, optimizer = build_model(settings, input_shape, n_classes, graph)
    variables = list(graph.trainable_variables)
    n_features = input_shape[0]
    dataset = shard_dataset(shard, settings.seed).map(lambda *parts: to_model_input(parts, n_features))

    def all_reduce_sum(value):
        context = tf.distribute.get_replica_context()
        return context.all_reduce(tf.distribute.ReduceOp.SUM, value)

    @tf.function(reduce_retracing=True)
    def train_step(x, y):
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                sums = batch_sums(graph, x, y, training=True)
                loss_sum = sums[0]
            grads, sums = all_reduce_sum((tape.gradient(loss_sum, variables), sums))
            return [g / sums[2] for g in grads], sums

        grads, sums = strategy.run(replica_step, args=(x, y))
        grads = [strategy.experimental_local_results(g)[0] for g in grads]
        optimizer.apply_gradients(zip(grads, variables))  # cross-replica: every local copy
        return strategy.experimental_local_results(sums)[0]

    @tf.function(reduce_retracing=True)
    def eval_sums(x, y):
        return batch_sums(graph, x, y, training=False)

    @tf.function
    def global_sum(value):  # identity: the collective needs a tensor placed on the replica's device
        summed = strategy.run(lambda v: all_reduce_sum(tf.identity(v)), args=(value,))
        return strategy.experimental_local_results(summed)[0]

    @tf.function(reduce_retracing=True)
    def predict(x):
        return tf.nn.softmax(graph(x, training=False))

    n = settings.workers
    per_step_bytes = 2 * (n - 1) / n * model_bytes(graph) * n  # ring all-reduce, whole cluster

    def run_epoch(epoch: int) -> EpochResult:
        totals = np.zeros(3)
        for x, y in dataset.take(steps_per_epoch):
            totals += train_step(x, y).numpy()
        return EpochResult(float(totals[0] / totals[2]), float(totals[1] / totals[2]), int(totals[2]),
                           float(per_step_bytes * steps_per_epoch))

    def validate() -> tuple[float, float]:
        local = np.sum([eval_sums(x, y).numpy() for x, y in array_batches(valid.X, valid.y, EVAL_BATCH)]
                       or [np.zeros(3, np.float32)], axis=0)
        loss_sum, correct, total = global_sum(tf.constant(local, tf.float32)).numpy()
        return float(loss_sum / total), float(correct / total)

    chief = index == 0
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    tracks = ["track.csv", f"track_rank{index}.csv"] if chief else [f"track_rank{index}.csv"]
    summary = fit(settings, run_epoch, validate, variables + list(graph.non_trainable_variables), tracks)
    if not chief:
        return None
    return finish(settings, predict, summary, {
        "train_seconds": time.time() - start, "bytes_exchanged_per_epoch": per_step_bytes * steps_per_epoch,
        "steps_per_epoch": steps_per_epoch,
    })
