"""What both gRPC modes share: the task's role, the model built in a strategy scope, batch sums."""
from __future__ import annotations

import json
import os

import numpy as np

from diagnosenet.training.settings import TrainSettings


def task_from_tf_config() -> tuple[str, int]:
    """``(type, index)`` of this process in ``TF_CONFIG`` (set by the launcher)."""
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    if "type" not in task:
        raise RuntimeError("TF_CONFIG names no task; gRPC modes are started by `diagnosenet train-grpc`")
    return task["type"], int(task.get("index", 0))


def build_model(settings: TrainSettings, input_size: int, n_classes: int, graph=None):
    """Graph and optimizer with all their variables (call inside a strategy scope to place them)."""
    import tensorflow as tf

    from diagnosenet.models.graphs import build_graph
    from diagnosenet.models.optim import CrossEntropy, make_optimizer
    from diagnosenet.training.run import class_weights

    tf.random.set_seed(settings.seed)
    if graph is None:  # the workflow's graph, at the run's learning rate and class weights
        graph = build_graph(settings.task, settings.model, input_size, n_classes, seed=settings.seed)
        graph.loss = CrossEntropy(class_weights(settings))
        optimizer = make_optimizer(settings.optimizer, settings.learning_rate, graph)
    else:  # the paper's API: the graph carries its optimizer
        optimizer = graph.optimizer
    graph.build()
    optimizer.build(graph.trainable_variables)
    return graph, optimizer


def model_bytes(graph) -> int:
    return 4 * int(sum(np.prod(v.shape) for v in graph.trainable_variables))


def batch_sums(graph, x, y, training: bool, dropout_step=None):
    """Sum of cross-entropy, rows predicted right, and rows of one batch (``dropout_step``: the
    step whose dropout masks to draw; ``None``: the graph's own counter)."""
    import tensorflow as tf

    logits = graph(x, training=training) if dropout_step is None else \
        graph(x, training=training, dropout_step=dropout_step)
    losses = graph.loss.per_row(logits, y)   # the graph's loss: class weights included
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1), y), tf.float32))
    return tf.stack([tf.reduce_sum(losses), correct, tf.cast(tf.size(y), tf.float32)])


def task_hosts(cluster_spec: dict) -> dict[str, str]:
    """``{"worker:1": "node2", ...}``: where each task of the cluster ran (``metrics.json``)."""
    return {f"{role}:{index}": address.rsplit(":", 1)[0]
            for role, addresses in cluster_spec.items() for index, address in enumerate(addresses)}
