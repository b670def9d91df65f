"""TFReplica against the replica contract: flat buffers, state round trips, determinism, sparse input."""
import numpy as np
import pytest
import scipy.sparse as sp

pytestmark = pytest.mark.tensorflow


def data(n=64, d=40, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.1, format="csr", dtype=np.float32, random_state=seed)
    return X, rng.integers(0, k, n).astype(np.int64)


def replica(seed=1, task="pmsi", d=40, k=3, config=None):
    from diagnosenet.models.tensorflow_backend import tensorflow_replica

    config = config or {"hidden_units": [32, 16], "dropout_keep": 0.8}
    return tensorflow_replica(task, config, d, k, seed=seed, learning_rate=0.01)


def train(r, X, y, steps=3, fused=True):
    from diagnosenet.training.loop import train_step

    for _ in range(steps):
        if fused:
            train_step(r, X, y)
        else:
            grads, _, _ = r.compute_gradients(X, y)
            r.apply_gradients(grads)


def test_contract_shapes():
    from diagnosenet.training.replica import Replica

    r, (X, y) = replica(), data()
    assert isinstance(r, Replica)
    w = r.get_weights()
    assert w.dtype == np.float32 and w.size == r.n_params == r.graph.count_params()
    grads, loss, correct = r.compute_gradients(X, y)
    assert grads.shape == w.shape and grads.dtype == np.float32 and loss > 0
    assert isinstance(correct, int) and 0 <= correct <= len(y)
    plain = replica(config={"hidden_units": [32, 16], "dropout_keep": 1.0})  # training mode = inference mode
    _, _, right = plain.compute_gradients(X, y)
    assert right == int(np.sum(np.argmax(plain.predict_proba(X), axis=1) == y))
    proba = r.predict_proba(X, batch_size=10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="values"):
        r.set_weights(w[:-1])


def test_same_seed_same_weights_after_training_with_dropout():
    X, y = data()
    a, b, c = replica(seed=5), replica(seed=5), replica(seed=6)
    for r in (a, b, c):
        train(r, X, y)
    np.testing.assert_array_equal(a.get_weights(), b.get_weights())
    assert not np.array_equal(a.get_weights(), c.get_weights())


def test_fused_step_equals_compute_then_apply():
    X, y = data()
    a, b = replica(), replica()
    train(a, X, y, fused=True)
    train(b, X, y, fused=False)
    np.testing.assert_allclose(a.get_weights(), b.get_weights(), rtol=1e-5, atol=1e-7)


def test_state_round_trip_continues_identically():
    """Adam slots, step, dropout step and BN moving statistics all travel in the state."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(16, 1300)).astype(np.float32), rng.integers(0, 4, 16)
    config = {"filters": [4], "blocks_per_stage": 0, "kernel_size": 3, "dropout_keep": 0.7}
    a = replica(task="ecg", d=1300, k=4, config=config)
    train(a, X, y, steps=2)
    state = a.get_state()
    b = replica(task="ecg", d=1300, k=4, config=config)
    train(b, X[::-1], y[::-1], steps=3)  # other weights, slots, steps and moving statistics
    b.set_state(state)
    assert state["moving_statistics"].size > 0 and state["adam_iterations"][0] == 2
    train(a, X, y, steps=2)
    train(b, X, y, steps=2)
    np.testing.assert_array_equal(a.get_weights(), b.get_weights())
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_adam_first_step_matches_the_formula():
    """Step 1 moves each weight by lr * g / (|g| + eps / sqrt(1 - beta_2)): Keras' epsilon placement."""
    r = replica()
    w0 = r.get_weights()
    grads = np.zeros_like(w0)
    grads[:5] = [0.5, -2.0, 1e-3, 0.0, 3.0]
    r.apply_gradients(grads)
    step = w0 - r.get_weights()
    eps_hat = 1e-7 / np.sqrt(1 - 0.999)
    expected = 0.01 * grads[:5] / (np.abs(grads[:5]) + eps_hat)
    np.testing.assert_allclose(step[:5], expected, rtol=1e-5, atol=1e-9)
    assert abs(step[2] - 0.01 * 1e-3 / (1e-3 + 1e-7)) > 1e-5  # not Algorithm 1's literal epsilon


def test_adam_matches_keras_adam_over_several_steps():
    import keras
    import tensorflow as tf

    from diagnosenet.models.optim import Adam

    rng = np.random.default_rng(0)
    start = rng.normal(size=(4, 3)).astype(np.float32)
    ours, theirs = tf.Variable(start), keras.Variable(start)
    mine, reference = Adam(lr=0.01), keras.optimizers.Adam(learning_rate=0.01)
    mine.build([ours])
    for _ in range(4):
        g = rng.normal(size=(4, 3)).astype(np.float32) * rng.choice([1e-4, 1.0], size=(4, 3)).astype(np.float32)
        mine.apply_gradients([(g, ours)])
        reference.apply_gradients([(g, theirs)])
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-7)


def test_sparse_batches_are_multiplied_without_densifying():
    import tensorflow as tf

    from diagnosenet.models.tensorflow_backend import to_tensor

    X, y = data()
    r = replica()
    x = to_tensor(X)
    assert isinstance(x, tf.SparseTensor) and x.values.shape[0] == X.nnz
    graph = r._gradients.get_concrete_function(x, tf.constant(y)).graph
    ops = {op.type for op in graph.get_operations()}
    assert "SparseTensorDenseMatMul" in ops
    assert not ops & {"SparseToDense", "SparseTensorToDense"}
    dense = r.graph(tf.constant(X.toarray()), training=False).numpy()
    np.testing.assert_allclose(r.graph(x, training=False).numpy(), dense, rtol=1e-5, atol=1e-6)
