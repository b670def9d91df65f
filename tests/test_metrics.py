"""Metrics against confusion matrices computed by hand (no TensorFlow)."""
import csv

import numpy as np
import pytest

from diagnosenet import metrics

CLASSES = ["N", "AF", "Other", "Noisy"]
#: reference (rows) x predicted (columns), 20 samples
C = np.array([
    [5, 1, 0, 0],
    [0, 3, 1, 0],
    [1, 0, 4, 1],
    [0, 0, 2, 2],
])


def labels_of(C):
    """``(y_true, y_pred)`` pairs realising a confusion matrix."""
    pairs = [(i, j) for i in range(len(C)) for j in range(len(C)) for _ in range(C[i, j])]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def test_confusion_matrix_rows_are_reference_columns_predictions():
    y_true, y_pred = labels_of(C)
    np.testing.assert_array_equal(metrics.confusion_matrix(y_true, y_pred, 4), C)
    with pytest.raises(ValueError, match="shape"):
        metrics.confusion_matrix(y_true, y_pred[:-1], 4)


def test_summary_matches_hand_computed_values():
    y_true, y_pred = labels_of(C)
    s = metrics.summarise(y_true, y_pred, CLASSES, challenge=True)
    assert s["accuracy"] == pytest.approx(14 / 20)
    # by hand: P = TP / column sum, R = TP / row sum, F1 = 2 TP / (row + column)
    assert s["per_class"]["N"] == pytest.approx({"precision": 5 / 6, "recall": 5 / 6, "f1": 10 / 12, "support": 6})
    assert s["per_class"]["AF"] == pytest.approx({"precision": 3 / 4, "recall": 3 / 4, "f1": 6 / 8, "support": 4})
    assert s["per_class"]["Other"] == pytest.approx({"precision": 4 / 7, "recall": 4 / 6, "f1": 8 / 13, "support": 6})
    assert s["per_class"]["Noisy"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 4, "f1": 4 / 7, "support": 4})
    assert s["macro_f1"] == pytest.approx((10 / 12 + 6 / 8 + 8 / 13 + 4 / 7) / 4)
    # PhysioNet 2017 score: mean over N, AF, Other only; noisy reported apart
    assert s["challenge_f1"] == pytest.approx((10 / 12 + 6 / 8 + 8 / 13) / 3)
    assert s["f1_Noisy"] == pytest.approx(4 / 7)
    assert s["confusion"] == C.tolist() and s["n_test"] == 20


def test_f1_is_the_harmonic_mean_of_precision_and_recall():
    y_true, y_pred = labels_of(C)
    for row in metrics.summarise(y_true, y_pred, CLASSES)["per_class"].values():
        p, r = row["precision"], row["recall"]
        assert row["f1"] == pytest.approx(2 * p * r / (p + r))


def test_probabilities_are_scored_by_their_argmax_and_empty_classes_score_zero():
    proba = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    s = metrics.summarise(np.array([0, 1, 1]), proba, ["a", "b", "c"])
    assert s["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert s["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_challenge_f1_accepts_the_ecg_stage_names_and_names_missing_classes():
    by_letters = metrics.challenge_f1(C, ["N", "A", "O", "~"])
    by_names = metrics.challenge_f1(C, ["Normal", "AF", "Other", "Noisy"])
    assert by_letters == by_names and by_names["f1_N"] == pytest.approx(10 / 12)
    with pytest.raises(ValueError, match="AF"):
        metrics.challenge_f1(np.eye(3, dtype=int), ["N", "Atrial", "Other"])


def test_csv_files_keep_float_precision(tmp_path):
    y_true, y_pred = labels_of(C)
    s = metrics.summarise(y_true, y_pred, CLASSES)
    metrics.write_per_class_csv(tmp_path / "per_class.csv", s["per_class"])
    metrics.write_confusion_csv(tmp_path / "confusion.csv", s["confusion"], CLASSES)
    with open(tmp_path / "per_class.csv") as handle:
        rows = {row["class"]: row for row in csv.DictReader(handle)}
    assert float(rows["Other"]["f1"]) == 8 / 13
    with open(tmp_path / "confusion.csv") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["reference\\predicted", *CLASSES]
    assert [[int(v) for v in row[1:]] for row in table[1:]] == C.tolist()


def test_record_level_scores_average_the_windows_of_each_record():
    # record r1 (Normal): windows say Normal, Normal, AF -> mean favours Normal
    # record r2 (AF): windows say Other (0.6) and AF (0.9) -> mean favours AF
    # record r3 (Other): one window predicting Normal
    groups = np.array(["r1", "r2", "r1", "r3", "r1", "r2"])
    y = np.array([0, 1, 0, 2, 0, 1])
    proba = np.array([
        [0.8, 0.1, 0.1, 0.0], [0.1, 0.3, 0.6, 0.0], [0.7, 0.3, 0.0, 0.0],
        [0.9, 0.0, 0.1, 0.0], [0.2, 0.8, 0.0, 0.0], [0.0, 0.9, 0.1, 0.0],
    ])
    labels, mean = metrics.per_group(y, proba, groups)
    assert labels.tolist() == [0, 1, 2]
    np.testing.assert_allclose(mean[1], [0.05, 0.6, 0.35, 0.0])
    s = metrics.score_task("ecg", y, proba, CLASSES, groups)
    assert s["n_test"] == 6 and s["accuracy"] == pytest.approx(3 / 6)  # window level
    record = s["record_level"]
    assert record["confusion"] == [[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert record["challenge_f1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    assert "record_level" not in metrics.score_task("pmsi", y, proba, CLASSES, groups)
    with pytest.raises(ValueError, match="different reference labels"):
        metrics.per_group(np.array([0, 1]), proba[:2], np.array(["r", "r"]))


def test_bootstrap_interval_brackets_the_score_and_unscored_records_count_as_noisy():
    from diagnosenet.protocol import bootstrap_interval, complete_predictions, final_report, official_f1

    classes = ["Normal", "AF", "Other", "Noisy"]
    rng = np.random.default_rng(0)
    y = rng.choice(4, size=300, p=[0.5, 0.15, 0.25, 0.1])
    pred = np.where(rng.random(300) < 0.8, y, rng.integers(0, 4, size=300))
    low, high = bootstrap_interval(y, pred, lambda t, p: official_f1(t, p, classes), n_boot=500)
    score = official_f1(y, pred, classes)
    assert low < score < high and high - low < 0.2
    assert official_f1(y, y, classes) == 1.0
    records = [f"A{i}" for i in range(4)]
    completed = complete_predictions(records, ["A2", "A0"], np.array([2, 1]), fallback=3)
    assert completed.tolist() == [1, 3, 2, 3]
    report = final_report(np.array([0, 1, 2, 3]), completed, classes, n_boot=50)
    assert report["n_test"] == 4 and report["official_f1_ci95"][0] <= report["official_f1"]


def test_paired_bootstrap_difference_is_zero_for_one_model_and_positive_for_a_clearly_better_one():
    from diagnosenet.protocol import official_f1, paired_bootstrap_difference

    classes = ["Normal", "AF", "Other", "Noisy"]
    rng = np.random.default_rng(1)
    y = rng.choice(4, size=300, p=[0.5, 0.15, 0.25, 0.1])
    good = np.where(rng.random(300) < 0.9, y, rng.integers(0, 4, size=300))
    poor = np.where(rng.random(300) < 0.5, y, rng.integers(0, 4, size=300))
    f1 = lambda t, p: official_f1(t, p, classes)  # noqa: E731
    same = paired_bootstrap_difference(y, good, good, f1, n_boot=200)
    assert same == {"difference": 0.0, "ci95": [0.0, 0.0], "share_a_better": 0.0}
    better = paired_bootstrap_difference(y, good, poor, f1, n_boot=200)
    assert better["difference"] == pytest.approx(f1(y, good) - f1(y, poor))
    assert 0 < better["ci95"][0] < better["difference"] < better["ci95"][1] and better["share_a_better"] == 1.0
    # a model one record better than another: the paired interval straddles zero
    one_off = good.copy()
    wrong = np.flatnonzero(good != y)[0]
    one_off[wrong] = y[wrong]
    close = paired_bootstrap_difference(y, one_off, good, f1, n_boot=200)
    assert close["difference"] > 0 and close["ci95"][0] <= 0 < close["ci95"][1] + 1e-12


def test_final_reports_score_every_model_and_pair_each_with_the_baseline():
    from diagnosenet.protocol import describe_final, final_reports, official_f1

    classes = ["Normal", "AF", "Other", "Noisy"]
    rng = np.random.default_rng(2)
    y = rng.choice(4, size=200, p=[0.5, 0.15, 0.25, 0.1])
    models = {"gbm": np.where(rng.random(200) < 0.8, y, 0), "net": np.where(rng.random(200) < 0.6, y, 0)}
    reports = final_reports(y, {**models, "copy": models["gbm"]}, classes, baseline="gbm", n_boot=100)
    assert "minus_baseline" not in reports["gbm"]
    assert reports["copy"]["minus_baseline"]["difference"] == 0.0
    assert reports["net"]["minus_baseline"]["difference"] == pytest.approx(
        official_f1(y, models["net"], classes) - official_f1(y, models["gbm"], classes))
    assert reports["net"]["minus_baseline"]["ci95"][1] < 0   # clearly worse: the whole interval below 0
    assert "− baseline" in describe_final("net", reports["net"]) and "− baseline" not in describe_final("gbm", reports["gbm"])
