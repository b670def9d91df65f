"""The reducers of ``training/exchange.py`` on simulated workers (no MPI): what each returns
and what it hands to the collectives; ``test_mpi.py`` runs them under a real ``mpirun``."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from diagnosenet.training.exchange import (
    RowWeighted, SparseInputRows, from_bfloat16, pack_rows, payload_formula, sum_bfloat16, to_bfloat16,
)

BLOCK = (40, 8)          # a first layer of 40 sparse inputs × 8 units
REST = 8 * 3 + 3 + 8     # then a dense 8 → 3 layer and biases
N_PARAMS = BLOCK[0] * BLOCK[1] + REST


class Collective:
    """``workers`` threads meeting at a barrier: each collective call returns what MPI's would
    (sums in worker order; the bfloat16 sum one bfloat16 hop per worker)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.barrier = threading.Barrier(workers)
        self.slots: list = [None] * workers

    def _meet(self, rank: int, values: np.ndarray, combine):
        self.slots[rank] = np.array(values)
        self.barrier.wait()
        result = combine(list(self.slots))
        self.barrier.wait()
        return result

    def _sum_half(self, parts):
        total = parts[0].copy()
        for part in parts[1:]:
            sum_bfloat16(part, total)
        return total

    def run(self, make_reducer, grads: list[np.ndarray], rows: list[int]) -> tuple[list[np.ndarray], list[int]]:
        """Each worker's reduced gradient and the bytes it handed to the collectives."""
        outs, sent = [None] * self.workers, [0] * self.workers

        def worker(rank):
            reducer = make_reducer(lambda v: self._meet(rank, v, lambda p: np.sum(p, axis=0, dtype=np.float32)),
                                   lambda v: self._meet(rank, v, list),
                                   lambda v: self._meet(rank, v, self._sum_half))
            outs[rank] = reducer(grads[rank], rows[rank])
            sent[rank] = reducer.payload_bytes

        threads = [threading.Thread(target=worker, args=(rank,)) for rank in range(self.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return outs, sent


def _worker_grads(rng, workers: int) -> tuple[list[np.ndarray], list[int]]:
    grads, rows = [], []
    for w in range(workers):
        g = rng.normal(size=N_PARAMS).astype(np.float32)
        block = g[:BLOCK[0] * BLOCK[1]].reshape(BLOCK)
        block[rng.random(BLOCK[0]) < 0.7] = 0.0       # features absent from this micro-batch
        grads.append(g)
        rows.append(int(rng.integers(5, 17)))
    return grads, rows


def _exact_mean(grads, rows) -> np.ndarray:
    return sum(g.astype(np.float64) * r for g, r in zip(grads, rows)) / sum(rows)


def test_bfloat16_codec_rounds_to_nearest_even_and_round_trips():
    values = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, -2.5, 0.0, np.inf], np.float32)
    half = to_bfloat16(values)
    assert half.dtype == np.uint16
    # 1 + 2^-8 is half-way between 1 and 1 + 2^-7: ties go to the even mantissa (1); 1 + 3·2^-8 to 1 + 2^-6
    np.testing.assert_array_equal(from_bfloat16(half), np.array([1.0, 1.0, 1 + 2**-6, -2.5, 0.0, np.inf], np.float32))
    assert np.isnan(from_bfloat16(to_bfloat16(np.float32([np.nan])))[0])
    a, b = to_bfloat16(np.float32([1.0, -3.0])), to_bfloat16(np.float32([0.5, 1.0]))
    sum_bfloat16(a, b)
    np.testing.assert_array_equal(from_bfloat16(b), [1.5, -2.0])


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("sparse", [False, True])
def test_bfloat16_reducers_give_the_row_weighted_mean_within_bfloat16_error(sparse, workers):
    rng = np.random.default_rng(workers)
    grads, rows = _worker_grads(rng, workers)
    exact = _exact_mean(grads, rows)

    def make(allreduce_sum, allgather, allreduce_half):
        if sparse:
            return SparseInputRows(allreduce_sum, allgather, BLOCK, allreduce_half)
        return RowWeighted(allreduce_sum, allreduce_half)

    def make_f32(allreduce_sum, allgather, _half):
        return SparseInputRows(allreduce_sum, allgather, BLOCK) if sparse else RowWeighted(allreduce_sum)

    halves, sent_bytes = Collective(workers).run(make, grads, rows)
    for out in halves[1:]:   # every worker steps with the same bits
        np.testing.assert_array_equal(out, halves[0])
    head = BLOCK[0] * BLOCK[1]
    bound = 2.0 ** -8 * workers   # one rounding per operand and per hop, relative to the largest term
    scale = max(np.abs(g * r).max() for g, r in zip(grads, rows)) / sum(rows)
    if sparse:   # the gathered rows stay float32: exact but for float32 rounding
        np.testing.assert_allclose(halves[0][:head], exact[:head], rtol=1e-5, atol=1e-6)
        error = np.abs(halves[0][head:] - exact[head:]).max()
    else:
        error = np.abs(halves[0] - exact).max()
    assert 0 < error <= bound * scale    # not exact, and within bfloat16's error
    exact_f32 = Collective(workers).run(make_f32, grads, rows)[0][0]
    np.testing.assert_allclose(exact_f32, exact, rtol=1e-5, atol=1e-6)
    # the bytes handed to the collectives: the formula, half of the float32 all-reduce
    for g, sent in zip(grads, sent_bytes):
        present = int((g[:head].reshape(BLOCK) != 0).any(axis=1).sum()) if sparse else None
        block = BLOCK if sparse else None
        assert sent == payload_formula(N_PARAMS, block, present, "bfloat16")
        assert sent < payload_formula(N_PARAMS, block, present)


def test_payload_formula_by_precision():
    assert payload_formula(1000, None, None) == 4 * 1001
    assert payload_formula(1000, None, None, "bfloat16") == 2 * 1000 + 4
    # 3 rows of 8 units gathered (+ index each, + length) and 1000 − 320 parameters all-reduced
    assert payload_formula(1000, (40, 8), 3) == 4 * 3 * 9 + 4 + 4 * 681
    assert payload_formula(1000, (40, 8), 3, "bfloat16") == 4 * 3 * 9 + 4 + 4 + 2 * 680
    with pytest.raises(ValueError, match="precision"):
        payload_formula(1000, None, None, "float16")


def test_pack_rows_ships_only_the_present_rows():
    grads = np.zeros(N_PARAMS, np.float32)
    grads[3 * 8 + 1] = 2.0
    packed = pack_rows(grads, BLOCK, 2.0).reshape(-1, 9)
    assert packed.shape == (1, 9) and packed[0, 0] == 3 and packed[0, 2] == 4.0


def test_row_replies_keep_every_worker_equal_to_the_master_after_every_reply():
    """A master under lazy Adam and three workers at different versions (asynchronous order):
    after each reply the worker's copy is the master's weights bit for bit, the master's
    NumPy step is the replica's own, and a reply carries far fewer rows than the block when few
    features are present."""
    import scipy.sparse as sp

    from diagnosenet.models.numpy_backend import NumpyReplica
    from diagnosenet.training.exchange import RowGradient, RowServer, apply_reply, pack_rows, row_weighted_mean

    inputs, units = 40, 6
    master = NumpyReplica(inputs, 3, [units], seed=1, learning_rate=0.05, optimizer="lazy-adam")
    server = RowServer(master)
    rng = np.random.default_rng(3)
    version, held, copies = 0, {}, {}
    for worker in range(3):   # the start: every weight
        body, rows = server.message(held.get(worker))
        assert rows == -1
        copies[worker] = np.empty(master.n_params, np.float32)
        apply_reply(copies[worker], body, rows, master.input_block)
        held[worker] = version
    sent_rows = []
    for step in range(60):
        worker = int(rng.integers(0, 3))
        X = np.zeros((4, inputs), np.float32)
        X[:, rng.choice(inputs, 3, replace=False)] = 1.0
        worker_replica = NumpyReplica(inputs, 3, [units], seed=1)
        worker_replica.set_weights(copies[worker])   # the gradient on the (stale) copy it holds
        grads, _, _ = worker_replica.compute_gradients(sp.csr_matrix(X), rng.integers(0, 3, 4))
        head = inputs * units   # as the master receives it: packed rows and the rest
        update = row_weighted_mean([RowGradient.from_packed(pack_rows(grads, master.input_block), grads[head:], units)],
                                   [4])
        version += 1
        server.apply(update, version)
        master.apply_gradients(grads)   # the replica's own (dense-gradient) lazy step: the same bits
        np.testing.assert_array_equal(server.weights, master.get_weights())
        body, rows = server.message(held[worker])
        apply_reply(copies[worker], body, rows, master.input_block)
        held[worker] = version
        np.testing.assert_array_equal(copies[worker], server.weights)
        sent_rows.append(rows)
    assert max(sent_rows) < inputs and np.mean(sent_rows) < inputs / 2, sent_rows
    assert server.max_floats == inputs * (units + 1) + master.n_params - inputs * units
    handed = NumpyReplica(inputs, 3, [units], seed=1, learning_rate=0.05, optimizer="lazy-adam")
    server.into(handed)   # weights and optimizer state, as validation and the checkpoint read them
    for key, value in master.get_state().items():
        np.testing.assert_array_equal(handed.get_state()[key], value)
    with pytest.raises(ValueError, match="lazy-adam"):
        RowServer(NumpyReplica(inputs, 3, [units], seed=1))


def test_row_weighted_mean_is_the_dense_weighted_mean_without_the_dense_block():
    from diagnosenet.training.exchange import RowGradient, row_weighted_mean
    from diagnosenet.training.loop import weighted_mean

    rng = np.random.default_rng(8)
    dense = []
    for present in ([1, 4], [4, 6, 7], [0]):
        g = np.zeros(N_PARAMS, np.float32)
        g[:BLOCK[0] * BLOCK[1]].reshape(BLOCK)[present] = rng.normal(size=(len(present), BLOCK[1]))
        g[BLOCK[0] * BLOCK[1]:] = rng.normal(size=N_PARAMS - BLOCK[0] * BLOCK[1])
        dense.append(g)
    counts = [5, 3, 8]
    mean = row_weighted_mean([RowGradient.from_dense(g, BLOCK) for g in dense], counts)
    assert mean.rows.tolist() == [0, 1, 4, 6, 7]
    np.testing.assert_allclose(mean.dense(BLOCK), weighted_mean(dense, counts), rtol=1e-6, atol=1e-7)
    one = RowGradient.from_dense(dense[1], BLOCK)   # k = 1: exactly the gradient
    np.testing.assert_array_equal(row_weighted_mean([one], [3]).dense(BLOCK), dense[1])


@pytest.mark.tensorflow
@pytest.mark.parametrize("optimizer", ["adam", "lazy-adam"])
def test_the_numpy_adam_of_a_tensorflow_replica_takes_its_steps_bit_for_bit(optimizer):
    """``TFReplica.flat_adam``: the ``mpi-async`` master's NumPy step (lazy: :class:`RowServer`)
    equals the replica's own TensorFlow step, weights and both moments bit for bit; ``into``
    hands it back."""
    from diagnosenet.models.tensorflow_backend import tensorflow_replica
    from diagnosenet.training.exchange import RowGradient, RowServer

    def replica():
        return tensorflow_replica("pmsi", {"hidden_units": [6], "dropout_keep": 1.0}, 40, 3, seed=1,
                                  learning_rate=0.05, optimizer=optimizer)

    tf_replica, numpy_side = replica(), replica()
    block = tf_replica.input_block
    if optimizer == "lazy-adam":
        server = RowServer(numpy_side)
        weights, adam = server.weights, server.adam
    else:
        adam, weights = numpy_side.flat_adam(), numpy_side.get_weights()
    rng = np.random.default_rng(9)
    for version in range(1, 41):
        g = np.zeros(tf_replica.n_params, np.float32)
        g[:block[0] * block[1]].reshape(block)[rng.choice(block[0], 4, replace=False)] = rng.normal(size=(4, block[1]))
        g[block[0] * block[1]:] = rng.normal(size=tf_replica.n_params - block[0] * block[1])
        tf_replica.apply_gradients(g)
        if optimizer == "lazy-adam":
            server.apply(RowGradient.from_dense(g, block), version)
        else:
            adam.apply(weights, g)
    state = tf_replica.get_state()
    np.testing.assert_array_equal(weights, state["weights"])
    np.testing.assert_array_equal(adam.m, state["adam_m"])
    np.testing.assert_array_equal(adam.v, state["adam_v"])
    assert adam.t == int(state["adam_iterations"][0]) == 40
    if optimizer == "lazy-adam":
        server.into(numpy_side)
        for key in ("weights", "adam_m", "adam_v", "adam_iterations"):
            np.testing.assert_array_equal(numpy_side.get_state()[key], state[key])


@pytest.mark.tensorflow
def test_a_tensorflow_worker_computes_and_takes_rows_as_the_dense_path_does():
    """The ``mpi-async`` worker's path under row replies: ``compute_row_gradients`` is
    ``compute_gradients`` with the kernel's part as its present rows, and ``set_rows`` writes a
    row reply as ``apply_reply`` + ``set_weights`` do."""
    import scipy.sparse as sp

    from diagnosenet.models.tensorflow_backend import tensorflow_replica
    from diagnosenet.training.exchange import RowGradient

    replica = tensorflow_replica("pmsi", {"hidden_units": [6], "dropout_keep": 1.0}, 40, 3, seed=1,
                                 learning_rate=0.05, optimizer="lazy-adam")
    block = replica.input_block
    X = np.zeros((5, 40), np.float32)
    X[:, [2, 11, 30]] = np.random.default_rng(1).random((5, 3)) + 0.1
    X, y = sp.csr_matrix(X), np.array([0, 1, 2, 1, 0])
    rows, values, rest, loss, correct = replica.compute_row_gradients(X, y)
    dense, dense_loss, dense_correct = replica.compute_gradients(X, y)
    assert rows.tolist() == [2, 11, 30] and (loss, correct) == pytest.approx((dense_loss, dense_correct))
    np.testing.assert_allclose(RowGradient(rows, values, rest).dense(block), dense, rtol=1e-6, atol=1e-8)

    rng = np.random.default_rng(2)
    new_rows, new_values = np.array([5, 11]), rng.normal(size=(2, block[1])).astype(np.float32)
    new_rest = rng.normal(size=replica.n_params - block[0] * block[1]).astype(np.float32)
    expected = replica.get_weights()
    expected[:block[0] * block[1]].reshape(block)[new_rows] = new_values
    expected[block[0] * block[1]:] = new_rest
    replica.set_rows(new_rows, new_values, new_rest)
    np.testing.assert_array_equal(replica.get_weights(), expected)
