"""``predict`` rebuilds a run's ECG input from the lineage: the same samples as ``window-ecg``
for every preprocessing option (sample rule, record features). No TensorFlow."""
from __future__ import annotations

import json

import numpy as np
import pytest

from diagnosenet.cli import main
from diagnosenet.ecg.synth import write_dataset
from diagnosenet.predict.ecg import window_records


@pytest.mark.parametrize("options", [[], ["--sample-rule", "paper", "--record-features"]])
def test_predict_windows_records_exactly_as_the_training_stage_did(tmp_path, options):
    records, windows = tmp_path / "records", tmp_path / "windows"
    write_dataset(records, records=8, seed=4)
    assert main(["window-ecg", "--records", str(records), "--out", str(windows), "--detector", "pantompkins",
                 "--jobs", "1", *options]) == 0
    params = json.loads((windows / "manifest.json").read_text())["params"]
    preprocessing = {key: params[key] for key in ("detector", "window", "per_sample", "stride", "normalisation",
                                                  "record_features", "sample_rule")}
    X, groups = np.load(windows / "X.npy"), np.load(windows / "groups.npy")
    for item in window_records(records, preprocessing):
        if item.samples is None:
            assert item.record not in groups
            continue
        np.testing.assert_array_equal(item.samples, X[groups == item.record])
    assert X.shape[1] == 1300 + (47 if "--record-features" in options else 0)
