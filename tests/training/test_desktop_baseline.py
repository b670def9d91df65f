"""`diagnosenet baseline`: the non-neural reference every report shows next to the net (no TensorFlow)."""
import json

import numpy as np
import pytest

from diagnosenet.artifacts import verify_manifest
from diagnosenet.baselines import FS, rr_features
from diagnosenet.cli import main


def test_pmsi_baseline_cli_writes_scored_metrics(tiny_inputs, tmp_path):
    inputs = tiny_inputs("pmsi")
    assert main(["baseline", "--task", "pmsi", "--dataset", str(inputs.dataset), "--out", str(tmp_path / "b")]) == 0
    result = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert result["model"] == "multinomial logistic regression"
    assert result["accuracy"] > 0.5  # one indicator feature per class is learnable
    assert np.asarray(result["confusion"]).sum() == result["n_test"]
    verify_manifest(tmp_path / "b", stage="baseline")


def test_ecg_baseline_reports_the_challenge_score(tiny_inputs, tmp_path):
    inputs = tiny_inputs("ecg")
    assert main(["baseline", "--task", "ecg", "--dataset", str(inputs.dataset), "--out", str(tmp_path / "b")]) == 0
    result = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert 0.0 <= result["challenge_f1"] <= 1.0 and "f1_Noisy" in result


def test_rr_features_measure_regular_and_irregular_rhythms():
    regular = np.zeros(1300)
    regular[50::FS] = 1.0  # one beat per second
    irregular = np.zeros(1300)
    irregular[[50, 250, 600, 700, 1100]] = 1.0
    features = rr_features(np.stack([regular, irregular]))
    n_peaks, rr_mean, rr_std = features[:, 0], features[:, 1], features[:, 2]
    assert n_peaks.tolist() == [5, 5]
    assert rr_mean[0] == pytest.approx(1.0) and rr_std[0] == pytest.approx(0.0)
    assert rr_std[1] > 0.3
