"""`diagnosenet baseline`: the non-neural reference every report shows next to the net (no TensorFlow)."""
import json

import numpy as np
import pytest

from diagnosenet.artifacts import verify_manifest
from diagnosenet.cli import main


def test_pmsi_baseline_cli_writes_scored_metrics(tiny_inputs, tmp_path):
    inputs = tiny_inputs("pmsi")
    assert main(["baseline", "--task", "pmsi", "--dataset", str(inputs.dataset), "--out", str(tmp_path / "b")]) == 0
    result = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert result["model"] == "multinomial logistic regression"
    assert result["accuracy"] > 0.5  # one indicator feature per class is learnable
    assert np.asarray(result["confusion"]).sum() == result["n_test"]
    verify_manifest(tmp_path / "b", stage="baseline")


def test_ecg_baseline_scores_each_test_record_once_from_its_whole_record_features(tiny_inputs, tmp_path):
    """The feature model is fitted on every featurised record outside the test split (train,
    valid, and records the windowing could not use) and scores the test split's records, one
    decision per record whatever their number of windows."""
    from diagnosenet.datasets.materialise import load_split
    from diagnosenet.ecg.feature_table import FeatureRow, write_features
    from diagnosenet.ecg.features import FEATURE_NAMES

    inputs = tiny_inputs("ecg")
    rng = np.random.default_rng(0)
    records, labels = [], []
    for split in ("train", "valid", "test"):
        _, y, groups = load_split(inputs.dataset, split)
        records += groups.tolist()
        labels += y.tolist()
    rows = []
    for record, label in zip(records, labels):
        values = rng.normal(size=len(FEATURE_NAMES))
        values[FEATURE_NAMES.index("irregular_frac")] = label + 0.1 * rng.normal()  # learnable
        rows.append(FeatureRow(record, label, values[None, :]))
    rows.append(FeatureRow("not-windowed", 1, np.r_[rng.normal(size=len(FEATURE_NAMES) - 1), 1.0][None, :]))
    rows.append(FeatureRow("unreadable-one", None, reason="unreadable", detail="test"))
    write_features(tmp_path / "features", rows, {"detector": "xqrs"})
    assert main(["baseline", "--task", "ecg", "--dataset", str(inputs.dataset), "--out", str(tmp_path / "b"),
                 "--features", str(tmp_path / "features")]) == 0
    result = json.loads((tmp_path / "b" / "metrics.json").read_text())
    test_records = np.unique(load_split(inputs.dataset, "test")[2])
    assert result["n_test"] == len(test_records) == result["record_level"]["n_test"]
    assert result["model"] == "whole-record features + gradient boosting"
    assert result["n_train"] == len(records) - len(test_records) + 1  # + the record windowing could not use
    assert result["challenge_f1"] > 0.8 and "f1_Noisy" in result
    with pytest.raises(ValueError, match="--features"):
        main(["baseline", "--task", "ecg", "--dataset", str(inputs.dataset), "--out", str(tmp_path / "c")])
