"""A small pure-NumPy MLP implementing the replica contract, for exchange tests without TensorFlow.

Distributed modes only move flat ``float32`` vectors, so their exchange logic (broadcast,
all-reduce, asynchronous updates, timeouts, resume) can be tested with this model in a
fraction of a second per rank instead of paying TensorFlow's 15-60 s import per rank.
It is selected with ``"backend": "numpy"`` in the model config (``--model-json``).
ReLU hidden layers, softmax output, mean cross-entropy, Adam (Keras defaults) or lazy Adam
(``optimizer="lazy-adam"``: the first layer's rows move only when they have a gradient, as
:class:`diagnosenet.models.optim.LazyAdam`); no dropout.
``delay_s`` sleeps in every gradient computation to emulate a slower device (fault and
staleness tests need steps that take a known, non-trivial time).
"""
from __future__ import annotations

import copy
import time
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from diagnosenet.models.flat_adam import FlatAdam
from diagnosenet.training.replica import mean_cross_entropy
from diagnosenet.training.settings import OPTIMIZERS


def _matmul(X, W: np.ndarray) -> np.ndarray:
    out = X @ W
    return np.asarray(out, dtype=np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class NumpyReplica:
    """ReLU MLP (``hidden_units`` may be empty: softmax regression) with Adam, as flat buffers."""

    def __init__(self, input_size: int, n_classes: int, hidden_units: Sequence[int] = (), *, seed: int = 1,
                 learning_rate: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-7,
                 delay_s: float = 0.0, class_weights=None, optimizer: str = "adam"):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        self.lazy = optimizer == "lazy-adam"
        self.class_weights = None if class_weights is None else np.asarray(class_weights, np.float32)
        sizes = [int(input_size), *map(int, hidden_units), int(n_classes)]
        self.shapes = [s for a, b in zip(sizes, sizes[1:]) for s in ((a, b), (b,))]
        self.n_params = int(sum(np.prod(s) for s in self.shapes))
        #: the leading weight block fed by the input: row i is zero when feature i is absent (exchange.py)
        self.input_block = self.shapes[0]
        rng = np.random.default_rng(seed)
        parts = []
        for shape in self.shapes:
            if len(shape) == 2:  # Glorot uniform, zero biases
                limit = np.sqrt(6.0 / (shape[0] + shape[1]))
                parts.append(rng.uniform(-limit, limit, size=shape).ravel())
            else:
                parts.append(np.zeros(shape))
        self._w = np.concatenate(parts).astype(np.float32)
        #: Adam, or lazy Adam on the input block, in TensorFlow's arithmetic (one NumPy Adam)
        self.adam = FlatAdam(self.n_params, learning_rate, beta1, beta2, epsilon,
                             block=self.input_block if self.lazy else None)
        self.delay_s = float(delay_s)

    def _layers(self, flat: np.ndarray) -> list[np.ndarray]:
        out, offset = [], 0
        for shape in self.shapes:
            size = int(np.prod(shape))
            out.append(flat[offset:offset + size].reshape(shape))
            offset += size
        return out

    def _forward(self, X) -> tuple[list, np.ndarray]:
        params = self._layers(self._w)
        activations, h = [X], X
        for i in range(0, len(params), 2):
            z = _matmul(h, params[i]) + params[i + 1]
            h = np.maximum(z, 0) if i + 2 < len(params) else z
            activations.append(h)
        return activations, _softmax(activations[-1])

    # -- the contract ------------------------------------------------------------------
    def get_weights(self) -> np.ndarray:
        return self._w.copy()

    def set_weights(self, flat: np.ndarray) -> None:
        flat = np.asarray(flat, dtype=np.float32)
        if flat.size != self.n_params:
            raise ValueError(f"flat vector has {flat.size} values, the model needs {self.n_params}")
        self._w = flat.copy()

    def compute_gradients(self, X: Any, y: np.ndarray) -> tuple[np.ndarray, float]:
        if self.delay_s:
            time.sleep(self.delay_s)
        activations, proba = self._forward(X)
        params = self._layers(self._w)
        delta = proba.copy()
        delta[np.arange(len(y)), y] -= 1.0
        if self.class_weights is not None:   # the gradient of the class-weighted mean (CrossEntropy's)
            delta *= self.class_weights[y][:, None]
        delta /= len(y)
        grads: list[np.ndarray] = []
        for i in range(len(params) - 2, -1, -2):
            h = activations[i // 2]
            gW = (h.T @ delta) if sp.issparse(h) else h.T @ delta
            grads[:0] = [np.asarray(gW, dtype=np.float32), delta.sum(axis=0).astype(np.float32)]
            if i:
                delta = (delta @ params[i].T) * (activations[i // 2] > 0)
        flat = np.concatenate([g.ravel() for g in grads]).astype(np.float32)
        return flat, mean_cross_entropy(proba, y, weights=self.class_weights), int(np.sum(np.argmax(proba, axis=1) == y))

    def apply_gradients(self, flat_grads: np.ndarray) -> None:
        self.adam.apply(self._w, np.asarray(flat_grads, dtype=np.float32))

    def flat_adam(self) -> FlatAdam:
        """A copy of this replica's optimizer and its state (the ``mpi-async`` master steps with it)."""
        return copy.deepcopy(self.adam)

    def get_statistics(self) -> np.ndarray:
        return np.zeros(0, np.float32)  # no batch normalisation

    def set_statistics(self, flat: np.ndarray) -> None:
        if np.asarray(flat).size:
            raise ValueError(f"the NumPy model has no statistics, got {np.asarray(flat).size} values")

    def predict_proba(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        parts = [self._forward(X[lo:lo + batch_size])[1] for lo in range(0, X.shape[0], batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.shapes[-1][0]), np.float32)

    def get_state(self) -> dict[str, np.ndarray]:
        return {"weights": self._w.copy(), **self.adam.state()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.set_weights(state["weights"])
        self.adam.load(state)
