"""``predict`` rebuilds a run's ECG input from the lineage: the same samples as ``window-ecg``
for every preprocessing option (sample rule, record features). No TensorFlow."""
from __future__ import annotations

import json

import numpy as np
import pytest

from diagnosenet.cli import main
from diagnosenet.ecg.synth import write_dataset
from diagnosenet.ecg.features import FEATURE_NAMES
from diagnosenet.predict.ecg import read_records
from diagnosenet.predict.lineage import ecg_preprocessing


@pytest.mark.parametrize("options", [[], ["--sample-rule", "paper", "--record-features"],
                                     ["--sample-rule", "contiguous", "--record-features"]])
def test_predict_windows_records_exactly_as_the_training_stage_did(tmp_path, options):
    records, windows = tmp_path / "records", tmp_path / "windows"
    write_dataset(records, records=8, seed=4)
    assert main(["window-ecg", "--records", str(records), "--out", str(windows), "--detector", "pantompkins",
                 "--jobs", "1", *options]) == 0
    preprocessing = ecg_preprocessing(json.loads((windows / "manifest.json").read_text())["params"])
    X, groups = np.load(windows / "X.npy"), np.load(windows / "groups.npy")
    for item in read_records(records, [preprocessing], jobs=1)[0]:
        if item.samples is None:
            assert item.record not in groups
            continue
        np.testing.assert_array_equal(item.samples, X[groups == item.record])
    assert X.shape[1] == 1300 + (len(FEATURE_NAMES) if "--record-features" in options else 0)


def test_a_blend_reads_each_record_once_for_windows_and_features_in_parallel(tmp_path):
    """A net on windows + the feature model: one read per record over 2 processes gives what
    ``window-ecg`` and ``ecg-features`` wrote, record for record."""
    records, windows, features = tmp_path / "records", tmp_path / "windows", tmp_path / "features"
    write_dataset(records, records=10, seed=5)
    assert main(["window-ecg", "--records", str(records), "--out", str(windows), "--record-features", "--jobs", "1"]) == 0
    assert main(["ecg-features", "--records", str(records), "--out", str(features), "--jobs", "1"]) == 0
    preprocessing = ecg_preprocessing(json.loads((windows / "manifest.json").read_text())["params"])
    as_windows, as_features = read_records(records, [preprocessing, {"input": "record-features", "detector": "xqrs"}],
                                           jobs=2)
    X, groups = np.load(windows / "X.npy"), np.load(windows / "groups.npy")
    table, names = np.load(features / "features.npy"), np.load(features / "records.npy").tolist()
    assert [i.record for i in as_windows] == [i.record for i in as_features]
    for item in as_windows:
        if item.samples is not None:
            np.testing.assert_array_equal(item.samples, X[groups == item.record])
    for item in as_features:
        np.testing.assert_array_equal(item.samples[0], table[names.index(item.record)])


def test_the_feature_baseline_predicts_new_records_with_its_own_detector(tmp_path):
    """The ECG baseline keeps its model: ``predict --model results/ecg/baseline`` scores every
    record of a directory from its whole-record features (no TensorFlow), unreadable ones as Noisy."""
    import csv

    records = tmp_path / "records"
    write_dataset(records, records=40, seed=6)
    (records / "A09999.hea").write_text("A09999 1 300 9000\nA09999.mat 16+24 1000/mV 16 0 0 0 0 ECG\n")  # no signal file
    for stage, args in (("window-ecg", ["--out", str(tmp_path / "windows")]),
                        ("ecg-features", ["--out", str(tmp_path / "features")])):
        assert main([stage, "--records", str(records), "--detector", "pantompkins", "--jobs", "1", *args]) == 0
    assert main(["materialise", "--input", str(tmp_path / "windows"), "--out", str(tmp_path / "dataset"),
                 "--valid-fraction", "0.1", "--test-fraction", "0.3"]) == 0
    assert main(["baseline", "--task", "ecg", "--dataset", str(tmp_path / "dataset"), "--out", str(tmp_path / "baseline"),
                 "--features", str(tmp_path / "features")]) == 0
    assert main(["predict", "--model", str(tmp_path / "baseline"), "--records", str(records),
                 "--out", str(tmp_path / "predicted")]) == 0
    with open(tmp_path / "predicted" / "predictions.csv", newline="") as handle:
        rows = {row["record"]: row for row in csv.DictReader(handle)}
    assert len(rows) == 41 and rows["A09999"]["predicted"] == "Noisy" and rows["A09999"]["reason"].startswith("unreadable")
    scored = [row for name, row in rows.items() if name != "A09999"]
    assert all(row["windows"] == "1" and not row["reason"] for row in scored)
    assert abs(sum(float(scored[0][f"p_{c}"]) for c in ("Normal", "AF", "Other", "Noisy")) - 1) < 1e-6
    # the paper config's model (a bag of boosters that chooses its rounds inside the fit) the same way
    assert main(["baseline", "--task", "ecg", "--dataset", str(tmp_path / "dataset"), "--out", str(tmp_path / "bag"),
                 "--features", str(tmp_path / "features"), "--model", "gbm-bag"]) == 0
    assert json.loads((tmp_path / "bag" / "metrics.json").read_text())["model"].endswith("rounds chosen by CV")
    assert main(["predict", "--model", str(tmp_path / "bag"), "--records", str(records),
                 "--out", str(tmp_path / "predicted-bag")]) == 0
    with open(tmp_path / "predicted-bag" / "predictions.csv", newline="") as handle:
        bag_rows = {row["record"]: row for row in csv.DictReader(handle)}
    assert bag_rows.keys() == rows.keys() and bag_rows["A09999"]["predicted"] == "Noisy"


def test_predict_blends_nets_with_the_feature_model_record_by_record(tmp_path):
    """``predict --model net baseline --weights 0.3 0.7``: each record's probabilities are
    ``0.3 × net + 0.7 × feature model``; a record too short to window is scored by the feature
    model alone; one neither can read stays Noisy with its reason. Two nets (two seeds) and no
    weights: their mean. (The nets are the NumPy model: no TensorFlow.)"""
    import csv

    from diagnosenet.ecg.records import load_signal, write_record

    records = tmp_path / "records"
    write_dataset(records, records=40, seed=6)
    first = sorted(p.stem for p in records.glob("*.hea"))[0]
    write_record(records, "A09998", load_signal(records, first, 300)[:900])           # 3 s: too few beats to window
    (records / "A09999.hea").write_text("A09999 1 300 9000\nA09999.mat 16+24 1000/mV 16 0 0 0 0 ECG\n")  # no signal
    for stage, args in (("window-ecg", ["--out", str(tmp_path / "windows")]),
                        ("ecg-features", ["--out", str(tmp_path / "features")])):
        assert main([stage, "--records", str(records), "--detector", "pantompkins", "--jobs", "1", *args]) == 0
    assert main(["materialise", "--input", str(tmp_path / "windows"), "--out", str(tmp_path / "dataset"),
                 "--valid-fraction", "0.1", "--test-fraction", "0.3"]) == 0
    assert main(["shard", "--dataset", str(tmp_path / "dataset"), "--out", str(tmp_path / "shards"), "--workers", "1",
                 "--batch-size", "16"]) == 0
    for seed, net_dir in ((1, "net"), (2, "net-seed2")):
        assert main(["train-desktop", "--task", "ecg", "--dataset", str(tmp_path / "dataset"), "--shards",
                     str(tmp_path / "shards"), "--out", str(tmp_path / net_dir), "--seed", str(seed), "--model-json",
                     json.dumps({"backend": "numpy", "hidden_units": [8]}), "--max-epochs", "2", "--batch-size", "16",
                     "--monitor-rate", "0"]) == 0
    assert main(["baseline", "--task", "ecg", "--dataset", str(tmp_path / "dataset"), "--out", str(tmp_path / "baseline"),
                 "--features", str(tmp_path / "features")]) == 0

    def predicted(name, *args):
        assert main(["predict", "--records", str(records), "--out", str(tmp_path / name), *args]) == 0
        with open(tmp_path / name / "predictions.csv", newline="") as handle:
            return {row["record"]: row for row in csv.DictReader(handle)}

    classes = ("Normal", "AF", "Other", "Noisy")
    net = predicted("net", "--model", str(tmp_path / "net"))
    features = predicted("features", "--model", str(tmp_path / "baseline"))
    blended = predicted("blend", "--model", str(tmp_path / "net"), str(tmp_path / "baseline"), "--weights", "3", "7")
    assert set(blended) == set(net) == set(features) and len(blended) == 42
    assert net["A09998"]["reason"] and not features["A09998"]["reason"]   # the case the blend is for
    for name, row in blended.items():
        p = np.array([float(row[f"p_{c}"]) for c in classes])
        p_net = np.array([float(net[name][f"p_{c}"]) for c in classes])
        p_features = np.array([float(features[name][f"p_{c}"]) for c in classes])
        if name == "A09999":
            assert row["predicted"] == "Noisy" and row["reason"].startswith("unreadable")
        elif name == "A09998":
            np.testing.assert_allclose(p, p_features)
            assert not row["reason"]
        else:
            np.testing.assert_allclose(p, 0.3 * p_net + 0.7 * p_features, rtol=1e-6)
        assert row["predicted"] == classes[int(np.argmax(p))]
    counts = json.loads((tmp_path / "blend" / "counts.json").read_text())
    assert counts["combination"]["weights"] == [0.3, 0.7] and counts["records_unclassifiable"] == 1
    assert counts["combination"]["records_scored_by_some_models_only"] == 1

    def p(table, name):
        return np.array([float(table[name][f"p_{c}"]) for c in classes])

    second = predicted("net-seed2", "--model", str(tmp_path / "net-seed2"))
    nets = [str(tmp_path / "net"), str(tmp_path / "net-seed2")]
    ensemble = predicted("ensemble", "--model", *nets)
    ensemble_blend = predicted("ensemble-blend", "--model", *nets, str(tmp_path / "baseline"), "--weights", "0.15", "0.15", "0.7")
    windowed = [name for name in net if not net[name]["reason"]]
    assert any(not np.allclose(p(net, name), p(second, name)) for name in windowed)   # two different nets
    for name in windowed:
        np.testing.assert_allclose(p(ensemble, name), (p(net, name) + p(second, name)) / 2, rtol=1e-6)
        np.testing.assert_allclose(p(ensemble_blend, name), 0.3 * p(ensemble, name) + 0.7 * p(features, name), rtol=1e-6)
    np.testing.assert_allclose(p(ensemble_blend, "A09998"), p(features, "A09998"))
    assert ensemble["A09998"]["predicted"] == "Noisy" and ensemble["A09998"]["reason"]
    assert ensemble_blend["A09999"]["reason"].startswith("unreadable")
    with pytest.raises(SystemExit, match="one non-negative weight per model"):
        main(["predict", "--records", str(records), "--out", str(tmp_path / "bad"), "--model", *nets, "--weights", "1"])

    # decision weights on the blend: its probabilities times them, renormalised, and their arg-max
    decision = np.array([0.5, 2.0, 1.0, 3.0])
    decided = predicted("blend-decided", "--model", str(tmp_path / "net"), str(tmp_path / "baseline"),
                        "--weights", "3", "7", "--class-weights", *map(str, decision))
    moved = 0
    for name, row in decided.items():
        expected = p(blended, name) * decision / np.sum(p(blended, name) * decision)
        np.testing.assert_allclose(p(decided, name), expected, rtol=1e-6)
        assert row["predicted"] == classes[int(np.argmax(expected))] and row["reason"] == blended[name]["reason"]
        moved += row["predicted"] != blended[name]["predicted"]
    assert moved > 0   # the weights changed some decisions (else this would not test them)
    assert json.loads((tmp_path / "blend-decided" / "counts.json").read_text())["class_weights"] == dict(zip(classes, decision))
    with pytest.raises(SystemExit, match="one positive weight per class"):
        main(["predict", "--records", str(records), "--out", str(tmp_path / "bad"), "--model", *nets,
              "--class-weights", "1", "2"])


def test_weighted_mean_uses_only_the_models_that_scored_each_record():
    """Record 0: both models, weights 1:3; record 1: only the second; record 2: only the first,
    whose weight is 0 (its plain mean, not a division by zero); record 3: none (NaN)."""
    from diagnosenet.predict.ecg import weighted_mean

    nan = [np.nan, np.nan]
    first = [[1.0, 0.0], nan, [0.2, 0.8], nan]
    second = [[0.0, 1.0], [0.4, 0.6], nan, nan]
    mean = weighted_mean(np.array([first, second]), [1.0, 3.0])
    np.testing.assert_allclose(mean[:3], [[0.25, 0.75], [0.4, 0.6], [0.2, 0.8]])
    assert np.isnan(mean[3]).all()
    np.testing.assert_allclose(weighted_mean(np.array([first, second]), [0.0, 1.0])[2], [0.2, 0.8])
