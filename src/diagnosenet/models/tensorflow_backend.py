"""TensorFlow implementation of the replica contract (:mod:`diagnosenet.training.replica`).

:func:`graph_state` / :func:`assign_graph_state` define the one checkpoint format (weights,
Adam slots and step, moving statistics, dropout step) of every mode, also of gRPC parameter-
server runs whose variables live on another process.

Gradients and weights leave TensorFlow as one flat ``float32`` vector in the order of
``graph.trainable_variables``; every transport exchanges that vector. CSR batches become
``tf.SparseTensor``s (indices of the non-zeros only), never dense matrices.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from diagnosenet.models.graphs import Graph
from diagnosenet.models.optim import input_kernel


def to_tensor(X):
    """A ``tf.SparseTensor`` for a CSR batch (canonical row-major order), else a dense tensor."""
    if sp.issparse(X):
        X = X.tocsr()
        if not X.has_sorted_indices:
            X = X.sorted_indices()
        rows = np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))
        indices = np.stack([rows, X.indices.astype(np.int64)], axis=1)
        return tf.SparseTensor(indices, X.data.astype(np.float32, copy=False), X.shape)
    return tf.convert_to_tensor(np.asarray(X, dtype=np.float32))


def _flat(tensors) -> np.ndarray:
    return np.concatenate([np.asarray(t).ravel() for t in tensors]).astype(np.float32, copy=False) \
        if tensors else np.zeros(0, np.float32)


def _assign_flat(variables, flat: np.ndarray) -> None:
    flat = np.asarray(flat, dtype=np.float32)
    expected = sum(int(np.prod(v.shape)) for v in variables)
    if flat.size != expected:
        raise ValueError(f"flat vector has {flat.size} values, the variables need {expected}")
    offset = 0
    for v in variables:
        size = int(np.prod(v.shape))
        v.assign(flat[offset:offset + size].reshape(v.shape))
        offset += size


class TFReplica:
    """A built graph with its Adam optimizer, seen as flat numpy buffers."""

    def __init__(self, graph: Graph, optimizer=None):
        self.graph = graph.build()
        self.optimizer = optimizer if optimizer is not None else graph.optimizer
        self.variables = list(graph.trainable_variables)
        self.optimizer.build(self.variables)
        self.n_params = int(sum(np.prod(v.shape) for v in self.variables))
        self._sizes = [int(np.prod(v.shape)) for v in self.variables]
        #: the leading weight block fed by the input (an MLP's first kernel): row i is zero in a
        #: gradient whose batch lacks feature i (training/exchange.py); None for the ECG CNN
        self.input_block = input_kernel(graph)
        self._gradients = tf.function(self._gradients_fn, reduce_retracing=True)
        self._apply = tf.function(self._apply_fn, reduce_retracing=True)
        self._step = tf.function(self._step_fn, reduce_retracing=True)
        self._row_gradients = tf.function(self._row_gradients_fn, reduce_retracing=True)
        self._proba = tf.function(lambda x: tf.nn.softmax(self.graph(x, training=False)), reduce_retracing=True)

    # -- traced bodies ---------------------------------------------------------------
    def _loss(self, x, y):
        logits = self.graph(x, training=True)
        return self.graph.loss(logits, y), logits

    def _gradients_fn(self, x, y):
        with tf.GradientTape() as tape:
            loss, logits = self._loss(x, y)
        grads = tape.gradient(loss, self.variables)
        return tf.concat([tf.reshape(g, [-1]) for g in grads], axis=0), loss, correct_count(logits, y)

    def _apply_fn(self, flat):
        grads = [tf.reshape(g, v.shape) for g, v in zip(tf.split(flat, self._sizes), self.variables)]
        self.optimizer.apply_gradients(zip(grads, self.variables))

    def _row_gradients_fn(self, x, y):
        first = self.graph.layers[0]
        first.read_rows = True        # traced with the kernel read by rows: its gradient is those rows
        try:
            with tf.GradientTape() as tape:
                loss, logits = self._loss(x, y)
        finally:
            first.read_rows = False
        kernel, *rest = tape.gradient(loss, self.variables)
        return (kernel.indices, kernel.values, tf.concat([tf.reshape(g, [-1]) for g in rest], axis=0), loss,
                correct_count(logits, y))

    def _step_fn(self, x, y):
        with tf.GradientTape() as tape:
            loss, logits = self._loss(x, y)
        self.optimizer.apply_gradients(zip(tape.gradient(loss, self.variables), self.variables))
        return loss, correct_count(logits, y)

    # -- the contract ------------------------------------------------------------------
    def get_weights(self) -> np.ndarray:
        return _flat([v.numpy() for v in self.variables])

    def set_weights(self, flat: np.ndarray) -> None:
        _assign_flat(self.variables, flat)

    def get_statistics(self) -> np.ndarray:
        return _flat([v.numpy() for v in self.graph.non_trainable_variables])

    def set_statistics(self, flat: np.ndarray) -> None:
        _assign_flat(list(self.graph.non_trainable_variables), flat)

    def recompute_statistics(self, batches) -> np.ndarray:
        """Moving statistics recomputed from scratch: the mean over ``batches`` of each BatchNorm
        layer's batch moments (training-mode forward passes, weights unchanged). A calibration
        pass, and the reference the modes' statistics are tested against; returns and sets them."""
        from diagnosenet.models.layers import BatchNorm

        layers = [layer for layer in self.graph.layers_in_order() if isinstance(layer, BatchNorm)]
        momenta = [layer.momentum for layer in layers]
        try:
            for k, (X, _) in enumerate(batches, start=1):
                for layer in layers:  # moving = running mean of the batch moments
                    layer.momentum = (k - 1) / k
                self.graph(to_tensor(X), training=True)  # eager: reads the momentum set just now
        finally:
            for layer, momentum in zip(layers, momenta):
                layer.momentum = momentum
        return self.get_statistics()

    def compute_gradients(self, X, y):
        flat, loss, correct = self._gradients(to_tensor(X), tf.convert_to_tensor(y, tf.int64))
        return flat.numpy(), float(loss), int(correct)

    def apply_gradients(self, flat_grads: np.ndarray) -> None:
        self._apply(tf.convert_to_tensor(np.asarray(flat_grads, dtype=np.float32)))

    # -- the asynchronous master's optimizer, and a worker's rows (training/exchange.py) ----------
    def flat_adam(self):
        """This replica's optimizer, state included, as a :class:`~diagnosenet.models.flat_adam.FlatAdam`
        that takes TensorFlow's steps bit for bit (``β`` powers from TensorFlow's ``pow``): the
        ``mpi-async`` master steps with it on flat NumPy weights."""
        from diagnosenet.models.flat_adam import FlatAdam
        from diagnosenet.models.optim import LazyAdam

        opt = self.optimizer
        beta_1, beta_2 = (tf.constant(b, tf.float32) for b in (opt.beta_1, opt.beta_2))

        def powers(t: int):
            t = tf.constant(t, tf.float32)
            return tf.pow(beta_1, t).numpy(), tf.pow(beta_2, t).numpy()

        lazy = isinstance(opt, LazyAdam) and opt.lazy_first and self.input_block is not None
        adam = FlatAdam(self.n_params, opt.lr, opt.beta_1, opt.beta_2, opt.epsilon,
                        block=self.input_block if lazy else None, powers=powers)
        adam.load(self.get_state())
        return adam

    def compute_row_gradients(self, X, y) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:
        """:meth:`compute_gradients` of a sparse batch with the input kernel's part as rows:
        ``(rows, their gradient, every gradient after the kernel, loss, rows right)``, rows
        sorted; nothing of the kernel's size is built (an ``mpi-async`` worker's step)."""
        rows, values, rest, loss, correct = self._row_gradients(to_tensor(X), tf.convert_to_tensor(y, tf.int64))
        rows = rows.numpy()
        order = np.argsort(rows, kind="stable")
        return rows[order].astype(np.int64), values.numpy()[order], rest.numpy(), float(loss), int(correct)

    def set_rows(self, rows: np.ndarray, values: np.ndarray, rest: np.ndarray) -> None:
        """Overwrite those rows of the input kernel and every weight after it (a row reply)."""
        self.variables[0].scatter_update(tf.IndexedSlices(tf.convert_to_tensor(np.asarray(values, np.float32)),
                                                          tf.convert_to_tensor(np.asarray(rows, np.int64))))
        _assign_flat(self.variables[1:], rest)

    def train_step(self, X, y) -> tuple[float, int]:
        """Gradient and update fused in one traced call: the desktop path, nothing leaves TensorFlow."""
        loss, correct = self._step(to_tensor(X), tf.convert_to_tensor(y, tf.int64))
        return float(loss), int(correct)

    def predict_proba(self, X, batch_size: int = 1024) -> np.ndarray:
        parts = [self._proba(to_tensor(X[lo:lo + batch_size])).numpy() for lo in range(0, X.shape[0], batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.graph_outputs()), np.float32)

    def graph_outputs(self) -> int:
        return int(self.variables[-1].shape[-1])

    def get_state(self) -> dict[str, np.ndarray]:
        return graph_state(self.graph, self.optimizer)

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        assign_graph_state(self.graph, self.optimizer, state)


def correct_count(logits, y):
    return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1), tf.cast(y, tf.int64)), tf.int64))


def graph_state(graph: Graph, optimizer) -> dict[str, np.ndarray]:
    """A graph and its Adam optimizer as named flat arrays: the checkpoint format of every mode."""
    return {
        "weights": _flat([v.numpy() for v in graph.trainable_variables]),
        "adam_m": _flat([m.numpy() for m in optimizer.m]),
        "adam_v": _flat([v.numpy() for v in optimizer.v]),
        "adam_iterations": np.asarray([optimizer.iterations.numpy()], dtype=np.int64),
        "moving_statistics": _flat([v.numpy() for v in graph.non_trainable_variables]),
        "dropout_step": np.asarray([graph.dropout_step.numpy()], dtype=np.int64),
    }


def assign_graph_state(graph: Graph, optimizer, state: dict[str, np.ndarray]) -> None:
    """Restore a :func:`graph_state` into a graph of the same architecture (wherever its variables live)."""
    _assign_flat(list(graph.trainable_variables), state["weights"])
    _assign_flat(optimizer.m, state["adam_m"])
    _assign_flat(optimizer.v, state["adam_v"])
    optimizer.iterations.assign(int(state["adam_iterations"][0]))
    _assign_flat(list(graph.non_trainable_variables), state["moving_statistics"])
    graph.dropout_step.assign(int(state["dropout_step"][0]))


def tensorflow_replica(task: str, model_config: dict, input_size: int, n_classes: int, *, seed: int,
                       learning_rate: float, class_weights=None, optimizer: str = "adam",
                       dropout_stream: int = 0) -> TFReplica:
    """The replica every mode trains: graph from the config, ``optimizer`` (``train.optimizer``)
    at the run's learning rate, cross-entropy weighted by ``class_weights`` (one per class) when
    given, dropout masks of worker ``dropout_stream`` (``Graph.dropout_stream``)."""
    from diagnosenet.models.graphs import build_graph
    from diagnosenet.models.optim import CrossEntropy, make_optimizer

    tf.random.set_seed(seed)
    graph = build_graph(task, model_config, input_size, n_classes, seed=seed)
    graph.loss = CrossEntropy(class_weights)
    graph.dropout_stream = int(dropout_stream)
    return TFReplica(graph, make_optimizer(optimizer, learning_rate, graph))
