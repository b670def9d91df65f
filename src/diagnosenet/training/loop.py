"""The step/epoch code every training mode shares; modes differ only in ``reduce_gradients``.

Desktop passes no hook and, when the replica offers a fused ``train_step``, gradients never
leave TensorFlow. MPI synchronous mode passes an allreduce. The epoch's training loss is the
sample-weighted mean of the batch losses (the original's ``loss += loss/n`` fed early
stopping a wrong number); validation is on a whole split in inference mode.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from diagnosenet.training.replica import Replica, mean_cross_entropy

GradientHook = Callable[[np.ndarray], np.ndarray]


@dataclass
class EpochStats:
    loss: float       # mean training loss over the epoch's samples (training mode)
    samples: int
    batches: int


def batch_order(n_batches: int, seed: int, epoch: int) -> np.ndarray:
    """The order micro-batches are visited in: a permutation fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n_batches)


def train_step(replica: Replica, X, y: np.ndarray, reduce_gradients: GradientHook | None = None) -> float:
    """One optimizer step on one micro-batch; returns the batch's mean loss."""
    if reduce_gradients is None and hasattr(replica, "train_step"):
        return replica.train_step(X, y)
    grads, loss = replica.compute_gradients(X, y)
    if reduce_gradients is not None:
        grads = reduce_gradients(grads)
    replica.apply_gradients(grads)
    return loss


def run_epoch(replica: Replica, batches: Iterable[tuple[object, np.ndarray]],
              reduce_gradients: GradientHook | None = None) -> EpochStats:
    """Train on every ``(X_b, y_b)`` of ``batches`` (e.g. ``shard.microbatches(batch_order(...))``)."""
    total, samples, count = 0.0, 0, 0
    for X_b, y_b in batches:
        loss = train_step(replica, X_b, y_b, reduce_gradients)
        total += loss * len(y_b)
        samples += len(y_b)
        count += 1
    if not samples:
        raise ValueError("an epoch with no training samples: the shard is empty")
    return EpochStats(loss=total / samples, samples=samples, batches=count)


def evaluate(replica: Replica, X, y: np.ndarray, batch_size: int = 1024) -> tuple[float, float, np.ndarray]:
    """``(mean cross-entropy, accuracy, probabilities)`` of a whole split in inference mode."""
    proba = replica.predict_proba(X, batch_size=batch_size)
    return mean_cross_entropy(proba, y), float(np.mean(np.argmax(proba, axis=1) == y)), proba
