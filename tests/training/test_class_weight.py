"""``train.class_weight``: weights from the training split only, the weighted loss's gradient,
and the same definition in the NumPy model, the TensorFlow loss and the validation loss."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from diagnosenet.models.numpy_backend import NumpyReplica
from diagnosenet.training.replica import mean_cross_entropy
from diagnosenet.training.run import class_weights
from diagnosenet.training.settings import TrainSettings


def _settings(tmp_path, class_weight="balanced") -> TrainSettings:
    return TrainSettings(task="ecg", mode="desktop", workers=1, dataset_dir=tmp_path, shards_dir=tmp_path,
                         out_dir=tmp_path / "run", class_weight=class_weight)


def _write_class_table(directory, train_rows, other_rows):
    with open(directory / "class_table.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["class", "label", "train_rows", "valid_rows", "test_rows"])
        writer.writeheader()
        for index, (train, other) in enumerate(zip(train_rows, other_rows)):
            writer.writerow({"class": index, "label": f"c{index}", "train_rows": train, "valid_rows": other,
                             "test_rows": other})


def test_balanced_weights_are_scikit_learns_over_the_training_rows_only(tmp_path):
    from sklearn.utils.class_weight import compute_class_weight

    train_rows = [600, 90, 300, 10]
    _write_class_table(tmp_path, train_rows, other_rows=[5, 500, 5, 5])   # other splits must not count
    y = np.repeat(np.arange(4), train_rows)
    expected = compute_class_weight("balanced", classes=np.arange(4), y=y)
    np.testing.assert_allclose(class_weights(_settings(tmp_path)), expected, rtol=1e-6)
    assert class_weights(_settings(tmp_path, "none")) is None
    _write_class_table(tmp_path, [600, 0, 300, 100], [5, 5, 5, 5])           # a class absent from training
    weights = class_weights(_settings(tmp_path))
    assert weights[1] == 1.0 and weights[0] == pytest.approx(1000 / (3 * 600))
    with pytest.raises(ValueError, match="class_weight"):
        _settings(tmp_path, "inverse")


def test_weighted_numpy_gradient_is_the_gradient_of_the_weighted_mean_loss():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=12)
    weights = np.array([0.5, 3.0, 1.25], np.float32)
    model = NumpyReplica(5, 3, [4], seed=1, class_weights=weights)
    grads, loss, _ = model.compute_gradients(X, y)
    w0 = model.get_weights()

    def loss_at(flat):
        model.set_weights(flat)
        return mean_cross_entropy(model._forward(X)[1], y, weights=weights)

    assert loss == pytest.approx(loss_at(w0), rel=1e-6)
    step = 1e-3
    for index in rng.choice(w0.size, size=12, replace=False):   # central differences, float64 enough
        plus, minus = w0.astype(np.float64), w0.astype(np.float64)
        plus[index] += step
        minus[index] -= step
        numeric = (loss_at(plus.astype(np.float32)) - loss_at(minus.astype(np.float32))) / (2 * step)
        assert grads[index] == pytest.approx(numeric, rel=2e-2, abs=2e-4)
    unweighted, _, _ = NumpyReplica(5, 3, [4], seed=1).compute_gradients(X, y)
    assert not np.allclose(grads, unweighted)   # the weights changed the step


def test_weighted_validation_loss_weighs_each_row_by_its_class():
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5]])
    y = np.array([0, 1, 2])
    terms = -np.log([0.7, 0.8, 0.5])
    assert mean_cross_entropy(proba, y) == pytest.approx(terms.mean())
    assert mean_cross_entropy(proba, y, weights=np.array([2.0, 1.0, 0.5])) == pytest.approx(
        (terms * [2.0, 1.0, 0.5]).mean())


@pytest.mark.tensorflow
def test_tensorflow_loss_equals_the_numpy_definition():
    import tensorflow as tf

    from diagnosenet.models.optim import CrossEntropy

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(9, 4)).astype(np.float32)
    y = rng.integers(0, 4, size=9)
    weights = np.array([1.0, 0.25, 4.0, 2.0], np.float32)
    proba = tf.nn.softmax(logits).numpy()
    assert float(CrossEntropy(weights)(logits, y)) == pytest.approx(mean_cross_entropy(proba, y, weights=weights), rel=1e-5)
    assert float(CrossEntropy()(logits, y)) == pytest.approx(mean_cross_entropy(proba, y), rel=1e-5)
