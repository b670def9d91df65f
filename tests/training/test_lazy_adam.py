"""``train.optimizer: lazy-adam``: a first-layer row moves only on a step whose gradient has it.

The rule is checked on both backends (NumPy, TensorFlow's ``LazyAdam``) against a reference
written out element by element, then across modes with real commands: with one worker the
desktop, mpi-sync and mpi-async (k = 1) steps are the same step, so their weights are equal.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from diagnosenet.models.numpy_backend import NumpyReplica
from diagnosenet.training.checkpoint import LAST, load_checkpoint

BIN = Path(sys.executable).parent
INPUTS, UNITS, CLASSES = 12, 5, 3


def reference_lazy_step(w, m, v, g, t, block, lr=0.01, b1=0.9, b2=0.999, eps=1e-7):
    """Adam on every element except the block rows whose gradient is all zero (left as they are)."""
    w, m, v = w.copy(), m.copy(), v.copy()
    inputs, units = block
    keep = np.zeros(w.size, bool)
    keep[:inputs * units] = np.repeat(~g[:inputs * units].reshape(inputs, units).any(axis=1), units)
    lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    for i in np.flatnonzero(~keep):
        m[i] = b1 * m[i] + (1 - b1) * g[i]
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
        w[i] = w[i] - lr_t * m[i] / (np.sqrt(v[i]) + eps)
    return w, m, v


def sparse_batch(rng, rows: int, present: list[int]) -> sp.csr_matrix:
    """A batch whose only non-zero input features are ``present``."""
    X = np.zeros((rows, INPUTS), np.float32)
    X[:, present] = rng.random((rows, len(present)), dtype=np.float32) + 0.1
    return sp.csr_matrix(X)


def test_numpy_lazy_adam_leaves_absent_rows_and_their_moments_exactly_as_they_were():
    rng = np.random.default_rng(0)
    lazy = NumpyReplica(INPUTS, CLASSES, [UNITS], seed=1, learning_rate=0.01, optimizer="lazy-adam")
    dense = NumpyReplica(INPUTS, CLASSES, [UNITS], seed=1, learning_rate=0.01)
    for t, present in enumerate(([0, 3], [3, 7, 8], [1]), start=1):
        X, y = sparse_batch(rng, 6, present), rng.integers(0, CLASSES, 6)
        g, _, _ = lazy.compute_gradients(X, y)
        before = lazy.get_state()
        expected = reference_lazy_step(before["weights"], before["adam_m"], before["adam_v"], g, t, (INPUTS, UNITS))
        lazy.apply_gradients(g)
        after = lazy.get_state()
        np.testing.assert_allclose(after["weights"], expected[0], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(after["adam_m"], expected[1], rtol=1e-6, atol=1e-9)
        absent = [r for r in range(INPUTS) if r not in present]
        rows = lambda flat: flat[:INPUTS * UNITS].reshape(INPUTS, UNITS)[absent]   # noqa: E731
        for key in ("weights", "adam_m", "adam_v"):
            np.testing.assert_array_equal(rows(after[key]), rows(before[key]))    # bit for bit
        dense.apply_gradients(dense.compute_gradients(X, y)[0])
    # Adam moves every row (the moments decay): the default is not lazy
    assert not np.array_equal(dense.get_weights()[:UNITS], NumpyReplica(INPUTS, CLASSES, [UNITS], seed=1).get_weights()[:UNITS])


@pytest.mark.tensorflow
def test_tensorflow_lazy_adam_takes_the_numpy_step():
    import tensorflow as tf

    from diagnosenet.models.optim import Adam, LazyAdam

    rng = np.random.default_rng(2)
    kernel = tf.Variable(rng.normal(size=(INPUTS, UNITS)).astype(np.float32))
    bias = tf.Variable(np.zeros(UNITS, np.float32))
    variables = [kernel, bias]
    optimizer = LazyAdam(lr=0.01)
    optimizer.build(variables)
    w = np.concatenate([kernel.numpy().ravel(), bias.numpy()])
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t in (1, 2, 3):
        g_kernel = np.zeros((INPUTS, UNITS), np.float32)
        g_kernel[rng.choice(INPUTS, 3, replace=False)] = rng.normal(size=(3, UNITS))
        g_bias = rng.normal(size=UNITS).astype(np.float32)
        optimizer.apply_gradients(zip([tf.constant(g_kernel), tf.constant(g_bias)], variables))
        w, m, v = reference_lazy_step(w, m, v, np.concatenate([g_kernel.ravel(), g_bias]), t, (INPUTS, UNITS))
        np.testing.assert_allclose(np.concatenate([kernel.numpy().ravel(), bias.numpy()]), w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(optimizer.m[0].numpy().ravel(), m[:INPUTS * UNITS], rtol=1e-5, atol=1e-7)
    assert int(optimizer.iterations.numpy()) == 3
    # lazy_first=False, or a first variable that is not a 2-D kernel: Adam itself
    dense_kernel, dense = tf.Variable(kernel.numpy()), Adam(lr=0.01)
    lazy_off_kernel, lazy_off = tf.Variable(kernel.numpy()), LazyAdam(lr=0.01, lazy_first=False)
    dense.build([dense_kernel])
    lazy_off.build([lazy_off_kernel])
    g = tf.constant(np.where(np.arange(INPUTS)[:, None] < 2, 1.0, 0.0).astype(np.float32) * np.ones((1, UNITS), np.float32))
    dense.apply_gradients([(g, dense_kernel)])
    lazy_off.apply_gradients([(g, lazy_off_kernel)])
    np.testing.assert_array_equal(dense_kernel.numpy(), lazy_off_kernel.numpy())


def _train(command: list[str], out: Path) -> np.ndarray:
    proc = subprocess.run(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    return load_checkpoint(out / "checkpoint", LAST)["replica_state"]["weights"]


@pytest.mark.mpi
@pytest.mark.timeout(600)
def test_one_worker_of_desktop_mpi_sync_and_mpi_async_takes_the_same_lazy_step(tiny_inputs, tmp_path):
    inputs = tiny_inputs("pmsi", workers=1)

    def args(mode: str) -> list[str]:
        return ["--task", "pmsi", "--mode", mode, "--workers", "1", "--dataset", str(inputs.dataset),
                "--shards", str(inputs.shards), "--out", str(tmp_path / mode), "--batch-size", str(inputs.batch_size),
                "--model-json", json.dumps({"backend": "numpy", "hidden_units": [8]}), "--max-epochs", "2",
                "--patience", "10", "--lr", "0.01", "--seed", "3", "--optimizer", "lazy-adam", "--weighting", "1",
                "--timeout", "30", "--startup-timeout", "300", "--monitor-rate", "0"]

    desktop = _train([str(BIN / "diagnosenet"), "train-desktop", *args("desktop")], tmp_path / "desktop")
    weights = {mode: _train([str(BIN / "diagnosenet"), "launch-mpi", "--launcher", "mpirun -disable-auto-cleanup",
                             "--tasks", "2", "--", *args(mode)], tmp_path / mode) for mode in ("mpi-sync", "mpi-async")}
    np.testing.assert_array_equal(weights["mpi-sync"], desktop)
    np.testing.assert_array_equal(weights["mpi-async"], desktop)
    adam = _train([str(BIN / "diagnosenet"), "train-desktop", *[a if a != "lazy-adam" else "adam" for a in args("desktop")],
                   ], tmp_path / "desktop")
    assert not np.array_equal(adam, desktop)   # the option changes the run (a fresh start: other settings)


@pytest.mark.mpi
@pytest.mark.timeout(600)
def test_a_resumed_mpi_async_run_under_row_replies_takes_the_uninterrupted_runs_steps(tiny_inputs, tmp_path):
    """The master's NumPy model (``RowServer``) starts from the restored replica on a resume and
    hands its state back at each epoch's end: 2 epochs, then the same command to 4, ends with
    the weights, Adam moments and step count of 4 epochs in one go, bit for bit (one worker,
    k = 1: the order of updates is fixed)."""
    inputs = tiny_inputs("pmsi", workers=1)

    def launch(out: Path, epochs: int) -> None:
        _train([str(BIN / "diagnosenet"), "launch-mpi", "--launcher", "mpirun -disable-auto-cleanup", "--tasks", "2",
                "--", "--task", "pmsi", "--mode", "mpi-async", "--workers", "1", "--dataset", str(inputs.dataset),
                "--shards", str(inputs.shards), "--out", str(out), "--batch-size", str(inputs.batch_size),
                "--model-json", json.dumps({"backend": "numpy", "hidden_units": [8]}), "--max-epochs", str(epochs),
                "--patience", "10", "--lr", "0.01", "--seed", "3", "--optimizer", "lazy-adam", "--weighting", "1",
                "--timeout", "30", "--startup-timeout", "300", "--monitor-rate", "0"], out)

    launch(tmp_path / "straight", 4)
    launch(tmp_path / "resumed", 2)
    launch(tmp_path / "resumed", 4)
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint", LAST)["replica_state"]
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint", LAST)["replica_state"]
    with open(tmp_path / "resumed" / "track.csv") as handle:
        assert [row.split(",")[0] for row in handle.read().split()[1:]] == ["1", "2", "3", "4"]
    for key in ("weights", "adam_m", "adam_v", "adam_iterations"):
        np.testing.assert_array_equal(resumed[key], straight[key])
    assert json.loads((tmp_path / "resumed" / "metrics.json").read_text())["mpi"]["replies"] == "changed rows"


@pytest.mark.tensorflow
def test_the_traced_tensorflow_step_of_an_mlp_leaves_absent_feature_rows_alone():
    """The replica every TensorFlow mode trains (``train_step``: desktop; ``apply_gradients``:
    MPI), on a sparse batch: only the present features' first-layer rows move."""
    from diagnosenet.models.tensorflow_backend import tensorflow_replica

    replica = tensorflow_replica("pmsi", {"hidden_units": [UNITS], "dropout_keep": 1.0}, INPUTS, CLASSES, seed=1,
                                 learning_rate=0.01, optimizer="lazy-adam")
    assert replica.input_block == (INPUTS, UNITS) and type(replica.optimizer).__name__ == "LazyAdam"
    rng = np.random.default_rng(4)
    first = lambda: replica.get_weights()[:INPUTS * UNITS].reshape(INPUTS, UNITS)   # noqa: E731
    before = first()
    replica.train_step(sparse_batch(rng, 8, [2, 5]), rng.integers(0, CLASSES, 8))
    grads, _, _ = replica.compute_gradients(sparse_batch(rng, 8, [2, 9]), rng.integers(0, CLASSES, 8))
    replica.apply_gradients(grads)
    after = first()
    moved = [r for r in range(INPUTS) if not np.array_equal(after[r], before[r])]
    assert moved == [2, 5, 9], moved


@pytest.mark.mpi
@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", ["numpy", "tensorflow"])
def test_mpi_async_row_replies_leave_every_worker_with_the_masters_weights(tiny_inputs, tmp_path, backend):
    """Two workers, lazy Adam, the sparse exchange: the master replies with changed rows only,
    and at the end each worker's copy has the master's digest (each rank logs the check). With
    TensorFlow the master takes the row path (``apply_row_gradient``, ``get_rows``)."""
    from diagnosenet.artifacts import read_json

    inputs, out = tiny_inputs("pmsi", workers=2), tmp_path / "run"
    command = [str(BIN / "diagnosenet"), "launch-mpi", "--launcher", "mpirun -disable-auto-cleanup", "--tasks", "3",
               "--", "--task", "pmsi", "--mode", "mpi-async", "--workers", "2", "--dataset", str(inputs.dataset),
               "--shards", str(inputs.shards), "--out", str(out), "--batch-size", str(inputs.batch_size),
               "--model-json", json.dumps({"backend": backend, "hidden_units": [8]}), "--max-epochs", "3",
               "--patience", "10", "--lr", "0.01", "--seed", "3", "--optimizer", "lazy-adam", "--exchange", "sparse",
               "--timeout", "30", "--startup-timeout", "300", "--monitor-rate", "0"]
    proc = subprocess.run(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    for rank in (1, 2):
        assert f"mpi-async rank {rank}: final weights equal the master's" in proc.stdout, proc.stdout[-3000:]
    assert "differ from the master's" not in proc.stdout
    assert read_json(out / "metrics.json")["mpi"]["replies"] == "changed rows"


@pytest.mark.tensorflow
@pytest.mark.parametrize("optimizer", ["adam", "lazy-adam"])
def test_reading_the_first_layer_by_rows_takes_the_same_step(optimizer):
    """``grpc-async`` reads the input kernel by rows (``Dense.read_rows``): the gradient is the
    present features' rows only (what travels to the parameter server), and the step, lazy or
    dense Adam, is the one the whole kernel gives."""
    import tensorflow as tf

    from diagnosenet.models.graphs import build_graph
    from diagnosenet.models.optim import CrossEntropy, make_optimizer
    from diagnosenet.models.tensorflow_backend import to_tensor

    rng = np.random.default_rng(5)
    X, y = to_tensor(sparse_batch(rng, 8, [1, 4, 7])), tf.constant(rng.integers(0, CLASSES, 8))
    graphs = []
    for read_rows in (False, True):
        graph = build_graph("pmsi", {"hidden_units": [UNITS], "dropout_keep": 1.0}, INPUTS, CLASSES, seed=1)
        graph.loss = CrossEntropy()
        graph.layers[0].read_rows = read_rows
        graph.build()
        opt = make_optimizer(optimizer, 0.01, graph)
        opt.build(graph.trainable_variables)
        for _ in range(2):
            with tf.GradientTape() as tape:
                loss = graph.loss(graph(X, training=True), y)
            grads = tape.gradient(loss, graph.trainable_variables)
            opt.apply_gradients(zip(grads, graph.trainable_variables))
        graphs.append((graph, grads[0]))
    (dense, dense_grad), (by_rows, rows_grad) = graphs
    assert isinstance(rows_grad, tf.IndexedSlices) and not isinstance(dense_grad, tf.IndexedSlices)
    assert sorted(rows_grad.indices.numpy().tolist()) == [1, 4, 7]
    for a, b in zip(dense.trainable_variables, by_rows.trainable_variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-7)
