"""The whole-record classifier's noise decision and decision weights (ecg/classifier.py)."""
from __future__ import annotations

import numpy as np
import pytest

from diagnosenet.ecg.classifier import (BoosterBag, QuantileBins, RecordClassifier, choose_weights, class_balance_weights,
                                        four_class_f1, official_f1)
from diagnosenet.ecg.feature_table import signal_features
from diagnosenet.ecg.records import FS
from diagnosenet.ecg.synth import synth_signal

N, AF, OTHER, NOISY = range(4)


def test_decision_weights_undo_a_bias_against_a_class_and_leave_a_fair_model_alone():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    truth = np.eye(4)[y] * 0.5 + rng.uniform(0, 0.5, (400, 4))
    biased = truth.copy()
    biased[:, NOISY] *= 0.3                   # a model that under-calls Noisy
    weights = choose_weights(y, biased)
    assert weights[0] == 1.0 and weights[NOISY] >= 1.5
    assert four_class_f1(y, np.argmax(biased * weights, axis=1)) > four_class_f1(y, np.argmax(biased, axis=1)) + 0.1
    assert np.array_equal(choose_weights(y, np.eye(4)[y]), np.ones(4))   # perfect already: no change


def test_weights_for_the_official_score_undo_a_bias_against_other():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    truth = np.eye(4)[y] * 0.5 + rng.uniform(0, 0.5, (400, 4))
    n_normal, n_noisy = np.sum(y == N), np.sum(y == NOISY)
    # the score leaves Noisy's own F1 out: Noisy records called Normal cost only Normal's precision
    assert official_f1(y, np.where(y == NOISY, N, y)) == pytest.approx((2 * n_normal / (2 * n_normal + n_noisy) + 2) / 3)
    biased = truth.copy()
    biased[:, OTHER] *= 0.3                   # a model that under-calls Other
    weights = choose_weights(y, biased, objective=official_f1)
    assert weights[0] == 1.0 and weights[OTHER] >= 1.5
    assert official_f1(y, np.argmax(biased * weights, axis=1)) > official_f1(y, np.argmax(biased, axis=1)) + 0.1


@pytest.fixture(scope="module")
def synthetic_features():
    """Features of the generator's records (the real detector and features), 12 noisy of 40."""
    letters = ["N"] * 12 + ["A"] * 8 + ["O"] * 8 + ["~"] * 12
    label = {"N": N, "A": AF, "O": OTHER, "~": NOISY}
    X = np.array([signal_features(synth_signal(letter, np.random.default_rng([11, k])), "xqrs")
                  for k, letter in enumerate(letters)])
    return X, np.array([label[letter] for letter in letters])


def test_the_cascade_calls_unseen_noise_and_a_nearly_flat_record_noisy_and_a_clean_one_not(synthetic_features):
    X, y = synthetic_features
    model = RecordClassifier(inner_folds=3, max_iter=60, max_leaf_nodes=7, random_state=1).fit(X, y)
    rng = np.random.default_rng(99)
    noise = [synth_signal("~", np.random.default_rng([12, k])) for k in range(4)]
    nearly_flat = 0.002 * rng.normal(size=int(30 * FS))        # a lead off: quantisation noise only
    clean = synth_signal("N", np.random.default_rng([12, 9]))
    predicted = model.predict(np.array([signal_features(s, "xqrs") for s in [*noise, nearly_flat, clean]]))
    assert predicted[:5].tolist() == [NOISY] * 5
    assert predicted[5] != NOISY
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert model.noise_ is not None and model.weights_.shape == (4,) and model.weight_folds_ == 3


def test_without_the_noise_model_and_weights_it_is_the_plain_booster(synthetic_features):
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = synthetic_features
    plain = RecordClassifier(noise_model=False, tune_weights=False, max_iter=30, random_state=1).fit(X, y)
    booster = HistGradientBoostingClassifier(learning_rate=0.05, max_iter=30, max_leaf_nodes=15, l2_regularization=1.0,
                                             early_stopping=False, random_state=1).fit(X, y)
    np.testing.assert_allclose(plain.predict_proba(X), booster.predict_proba(X))


def test_square_root_class_balance_weighs_each_record_by_its_class_rarity(synthetic_features):
    from sklearn.ensemble import HistGradientBoostingClassifier

    y = np.array([0] * 16 + [1] * 4 + [3])
    np.testing.assert_allclose(class_balance_weights(y, 0.5), [1.0] * 16 + [2.0] * 4 + [4.0])
    assert class_balance_weights(y, 0.0) is None
    X, y = synthetic_features
    balanced = RecordClassifier(noise_model=False, tune_weights=False, class_weight_power=0.5, max_iter=30,
                                random_state=1).fit(X, y)
    counts = np.bincount(y)
    booster = HistGradientBoostingClassifier(learning_rate=0.05, max_iter=30, max_leaf_nodes=15, l2_regularization=1.0,
                                             early_stopping=False, random_state=1)
    booster.fit(X, y, sample_weight=np.sqrt(counts.max() / counts)[y])
    np.testing.assert_allclose(balanced.predict_proba(X), booster.predict_proba(X))


def continuous_table(rows: int = 700, seed: int = 5):
    """Features with thousands of distinct values (so quantiles, not midpoints, make the bins),
    some NaN, and four classes that depend on them."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 6)) * [1, 10, 0.01, 1, 1, 1]
    y = np.digitize(X[:, 0] + 0.1 * X[:, 1] + 50 * X[:, 2] + rng.normal(scale=0.7, size=rows), [-1.0, 0.3, 1.2])
    X[rng.random(X.shape) < 0.05] = np.nan
    return X, y


def test_quantile_bins_split_the_data_as_scikit_learns_own_unweighted_bins():
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = continuous_table()
    bins = QuantileBins().fit(X)
    assert max(len(t) for t in bins.thresholds_) == 254                       # quantiles, not distinct values
    binned = bins.transform(X)
    assert np.array_equal(np.isnan(binned), np.isnan(X)) and np.nanmax(binned) == 254
    settings = dict(max_iter=40, max_leaf_nodes=15, early_stopping=False, random_state=1)
    raw = HistGradientBoostingClassifier(**settings).fit(X, y)
    prebinned = HistGradientBoostingClassifier(**settings).fit(binned, y)
    X_new = continuous_table(300, seed=6)[0]
    np.testing.assert_allclose(prebinned.predict_proba(bins.transform(X_new)), raw.predict_proba(X_new))


def test_a_bag_averages_boosters_of_successive_seeds_and_its_stages_end_at_its_prediction():
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = continuous_table()
    bag = BoosterBag(n_boosters=3, max_iter=30, max_features=0.5, random_state=4).fit(X, y)
    binned = QuantileBins().fit(X).transform(X)
    members = [HistGradientBoostingClassifier(learning_rate=0.05, max_iter=30, max_leaf_nodes=15, l2_regularization=1.0,
                                              max_features=0.5, early_stopping=False, random_state=seed).fit(binned, y)
               for seed in (4, 5, 6)]
    np.testing.assert_allclose(bag.predict_proba(X), np.mean([m.predict_proba(binned) for m in members], axis=0))
    assert not np.allclose(members[0].predict_proba(binned), members[1].predict_proba(binned))   # they differ
    ten, thirty = bag.staged_predict_proba(X, [10, 30])
    np.testing.assert_allclose(thirty, bag.predict_proba(X))
    np.testing.assert_allclose(ten, BoosterBag(n_boosters=3, max_iter=10, max_features=0.5, random_state=4)
                               .fit(X, y).predict_proba(X))


def test_the_rounds_are_chosen_on_inner_folds_and_the_model_refitted_with_them():
    X, y = continuous_table(400)
    settings = dict(noise_model=False, tune_weights=False, class_weight_power=0.5, n_boosters=2, max_features=0.5,
                    max_leaf_nodes=7, random_state=2)
    model = RecordClassifier(max_iter=50, rounds_grid=(3, 20, 50), **settings).fit(X, y)
    assert set(model.rounds_cv_f1_) == {3, 20, 50} and model.inner_folds_ == 4
    assert model.rounds_cv_f1_[model.rounds_] == max(model.rounds_cv_f1_.values())
    assert model.rounds_cv_f1_[3] < max(model.rounds_cv_f1_.values())        # 3 rounds of shrinkage 0.05 underfit
    refit = RecordClassifier(max_iter=model.rounds_, **settings).fit(X, y)
    np.testing.assert_allclose(model.predict_proba(X), refit.predict_proba(X))
    with pytest.raises(ValueError, match="rounds_grid"):
        RecordClassifier(max_iter=50, rounds_grid=(10, 60), **settings).fit(X, y)   # 60 > max_iter
