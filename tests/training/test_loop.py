"""The shared step and epoch (``training/loop.py``): one definition of the gradient and the epoch."""
import numpy as np
import pytest
import scipy.sparse as sp

from diagnosenet.training.exchange import RowWeighted as row_weighted
from diagnosenet.training.loop import EpochStats, run_epoch, weighted_mean
from diagnosenet.models.numpy_backend import NumpyReplica


def data(rows: int, seed: int):
    rng = np.random.default_rng(seed)
    return sp.random(rows, 9, density=0.5, format="csr", dtype=np.float32, random_state=seed), rng.integers(0, 3, rows)


def test_row_weighted_reduction_of_two_workers_is_the_gradient_of_their_union():
    """Two workers with 7 and 2 rows (a short micro-batch): the applied gradient is that of the
    9-row batch, not the plain mean of the two (which over-weighs the 2 rows)."""
    (Xa, ya), (Xb, yb) = data(7, 1), data(2, 2)
    replica = NumpyReplica(9, 3, [5], seed=4)
    ga, _, _ = replica.compute_gradients(Xa, ya)
    gb, _, _ = replica.compute_gradients(Xb, yb)
    union, _, _ = replica.compute_gradients(sp.vstack([Xa, Xb]).tocsr(), np.concatenate([ya, yb]))
    buffers = []

    def fake_allreduce(values):  # the collective of 2 workers, called by each in turn
        buffers.append(values.copy())
        return buffers[0] + buffers[1] if len(buffers) == 2 else values

    reduce = row_weighted(fake_allreduce)
    reduce(ga, 7)
    combined = reduce(gb, 2)
    np.testing.assert_allclose(combined, union, rtol=1e-5, atol=1e-7)
    assert not np.allclose((ga + gb) / 2, union, rtol=1e-3)
    np.testing.assert_allclose(weighted_mean([ga, gb], [7, 2]), union, rtol=1e-5, atol=1e-7)


def test_a_worker_past_its_last_batch_takes_part_with_zero_rows():
    (X, y) = data(5, 3)
    replica = NumpyReplica(9, 3, [], seed=1)
    seen = []

    def reduce(grads, rows):
        seen.append(rows)
        return grads

    stats = run_epoch(replica, [(X, y)], reduce, steps=3)
    assert seen == [5, 0, 0] and stats.samples == 5


def test_epoch_stats_add_up_across_workers():
    a, b = EpochStats(), EpochStats()
    a.add(0.5, 3, 4)
    b.add(1.0, 1, 2)
    total = EpochStats.from_array(a.as_array() + b.as_array())
    assert total.samples == 6 and total.loss == pytest.approx((0.5 * 4 + 1.0 * 2) / 6)
    assert total.metric == pytest.approx(4 / 6)
