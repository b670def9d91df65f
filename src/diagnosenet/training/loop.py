"""The step and epoch every mode shares; modes differ only in how gradients travel.

One definition of *the gradient*: the applied update is the **row-weighted mean** of the
micro-batch gradients that contributed to it, so a short last micro-batch weighs by its rows
and one worker of a distributed mode takes exactly the desktop step. One definition of an
*epoch*: one pass over every training row (each worker over its own shard). Synchronous
modes run ``steps`` = the largest worker's micro-batch count so that collectives pair up; a
worker past its last micro-batch contributes zero rows, which the row weighting ignores.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from diagnosenet.progress_log import Progress
from diagnosenet.training.replica import Replica, mean_cross_entropy

log = logging.getLogger(__name__)

#: ``(local mean gradient, local rows) -> the gradient every worker applies``
#: (``training.exchange``: dense or sparse input rows)
GradientReducer = Callable[[np.ndarray, int], np.ndarray]


@dataclass
class EpochStats:
    """Sums over an epoch's training rows (training mode), additive across workers."""

    loss_sum: float = 0.0
    correct: float = 0.0
    samples: int = 0

    @property
    def loss(self) -> float:
        return self.loss_sum / self.samples if self.samples else float("nan")

    @property
    def metric(self) -> float:
        return self.correct / self.samples if self.samples else float("nan")

    def add(self, loss: float, correct: float, rows: int) -> None:
        self.loss_sum += float(loss) * rows
        self.correct += float(correct)
        self.samples += int(rows)

    def as_array(self) -> np.ndarray:
        return np.array([self.loss_sum, self.correct, self.samples], dtype=np.float64)

    @classmethod
    def from_array(cls, values) -> "EpochStats":
        loss_sum, correct, samples = (float(v) for v in values)
        return cls(loss_sum, correct, int(round(samples)))


def batch_order(n_batches: int, seed: int, epoch: int) -> np.ndarray:
    """The order micro-batches are visited in: a permutation fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n_batches)


def weighted_mean(grads: list[np.ndarray], rows: list[int]) -> np.ndarray:
    """Row-weighted mean of gradients held in one process (the asynchronous master's ``weighting``)."""
    weights = np.asarray(rows, np.float64) / float(np.sum(rows))
    return np.tensordot(weights, np.stack(grads), axes=1).astype(np.float32)


def train_step(replica: Replica, X, y: np.ndarray, reduce: GradientReducer | None = None) -> tuple[float, int]:
    """One optimizer step on one micro-batch; ``(batch mean loss, rows right)``."""
    if reduce is None and hasattr(replica, "train_step"):
        return replica.train_step(X, y)
    grads, loss, correct = replica.compute_gradients(X, y)
    replica.apply_gradients(grads if reduce is None else reduce(grads, len(y)))
    return loss, correct


def _timed_step(replica: Replica, X, y: np.ndarray, reduce: GradientReducer | None, timeline, epoch: int,
                step: int) -> tuple[float, int]:
    """:func:`train_step` with its compute, exchange and apply times on ``timeline``."""
    start, t0 = time.time(), time.perf_counter()
    if X is None:   # a synchronous step past this worker's last micro-batch: zero rows
        grads, loss, correct, rows = np.zeros(replica.n_params, np.float32), 0.0, 0, 0
    else:
        grads, loss, correct = replica.compute_gradients(X, y)
        rows = len(y)
    t1 = time.perf_counter()
    update = grads if reduce is None else reduce(grads, rows)
    t2 = time.perf_counter()
    replica.apply_gradients(update)
    t3 = time.perf_counter()
    timeline.record(epoch, step, start, t1 - t0, t2 - t1, t3 - t2, rows, getattr(reduce, "payload_bytes", 0))
    return loss, correct


def _step_progress(batches, steps: int | None, timeline, epoch: int) -> Progress:
    """"epoch E: step s/S, rows/s, ETA" at most every 10 s: a long epoch is otherwise silent
    until ``Run.end_epoch``. One clock read per step; each worker rank logs its own line."""
    total = steps if steps is not None else (len(batches) if hasattr(batches, "__len__") else None)
    where = f"epoch {epoch}" if epoch else "epoch"   # callers that do not number epochs pass 0
    rank = getattr(timeline, "rank", None)
    if rank is not None:
        where = f"rank {rank} {where}"
    return Progress(total, f"{where}: step", final=False, logger=log)


def run_epoch(replica: Replica, batches: Iterable[tuple[object, np.ndarray]], reduce: GradientReducer | None = None,
              steps: int | None = None, *, timeline=None, epoch: int = 0) -> EpochStats:
    """Train on every ``(X_b, y_b)`` of ``batches``; with ``steps``, take part in exactly that
    many (synchronous) steps, contributing zero rows after the last batch. ``timeline``
    (a :class:`~diagnosenet.training.timeline.StepTimeline`) gets one row per step."""
    stats = EpochStats()
    progress = _step_progress(batches, steps, timeline, epoch)
    iterator: Iterator = iter(batches)
    count = 0
    for X_b, y_b in iterator:
        if timeline is None:
            stats.add(*train_step(replica, X_b, y_b, reduce), len(y_b))
        else:
            stats.add(*_timed_step(replica, X_b, y_b, reduce, timeline, epoch, count + 1), len(y_b))
        count += 1
        progress.update(1, rows=len(y_b))
    if steps is not None:
        if count > steps:
            raise ValueError(f"{count} micro-batches for {steps} synchronous steps")
        zero = np.zeros(replica.n_params, np.float32)
        for step in range(count + 1, steps + 1):
            if timeline is None:
                replica.apply_gradients(reduce(zero, 0))
            else:
                _timed_step(replica, None, None, reduce, timeline, epoch, step)
            progress.update(1, rows=0)
    progress.close()
    if timeline is not None:
        timeline.flush()
    if not stats.samples and not steps:
        raise ValueError("an epoch with no training samples: the shard is empty")
    return stats


def evaluate(replica: Replica, X, y: np.ndarray, batch_size: int = 1024, *,
             class_weights: np.ndarray | None = None) -> tuple[float, float, np.ndarray]:
    """``(mean cross-entropy, accuracy, probabilities)`` of a whole split in inference mode;
    the loss weighted like the training loss (``class_weights``), so early stopping watches
    the objective being trained."""
    proba = replica.predict_proba(X, batch_size=batch_size)
    loss = mean_cross_entropy(proba, y, weights=class_weights)
    return loss, float(np.mean(np.argmax(proba, axis=1) == y)), proba
