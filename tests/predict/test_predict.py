"""``diagnosenet predict`` and ``export`` on runs trained by the real stages on synthetic data.

ECG: ``synth-ecg`` → ``window-ecg`` → ``materialise`` → ``shard`` → ``train-desktop`` (the
TensorFlow CNN, 2 epochs), then ``predict`` on a fresh directory holding a flat record, a
too-short record and an unlabelled one, and ``export`` loaded by a process that never imports
``diagnosenet``. PMSI: the same chain with the NumPy MLP, then ``predict`` on RHS files of
another seed (codes the run never saw).
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diagnosenet import metrics
from diagnosenet.ecg.records import write_record
from diagnosenet.privacy import PSEUDONYM_HEX_CHARS

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.tensorflow
ECG_MODEL = {"filters": [4, 8], "blocks_per_stage": 1, "kernel_size": 5, "dropout_keep": 0.8}


def diagnosenet(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "diagnosenet"), *args], text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc


def train(root: Path, task: str, stage_dir: Path, model: dict) -> Path:
    dataset, shards, run = root / "dataset", root / "shards", root / "run"
    diagnosenet("materialise", "--input", str(stage_dir), "--out", str(dataset), "--valid-fraction", "0.2",
                "--test-fraction", "0.2", "--seed", "1")
    diagnosenet("shard", "--dataset", str(dataset), "--out", str(shards), "--workers", "1", "--batch-size", "16")
    diagnosenet("train-desktop", "--task", task, "--dataset", str(dataset), "--shards", str(shards), "--out", str(run),
                "--model-json", json.dumps(model), "--max-epochs", "2", "--patience", "2", "--batch-size", "16",
                "--lr", "0.01", "--monitor-rate", "0")
    return run


@pytest.fixture(scope="module")
def ecg_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict-ecg")
    diagnosenet("synth-ecg", "--records", "40", "--seed", "3", "--out", str(root / "records"))
    diagnosenet("window-ecg", "--records", str(root / "records"), "--out", str(root / "windows"), "--jobs", "1")
    return train(root, "ecg", root / "windows", ECG_MODEL)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.timeout(900)
def test_ecg_predict_gives_every_record_a_row_with_its_reason_and_the_training_scores(ecg_run, tmp_path):
    fresh = tmp_path / "fresh"
    diagnosenet("synth-ecg", "--records", "6", "--seed", "11", "--out", str(fresh))
    write_record(fresh, "Z0001", np.full(9000, 0.2))                       # flat: unreadable as ECG
    write_record(fresh, "Z0002", np.sin(np.linspace(0, 6, 300)) * 0.5)     # 1 s: too short for 5 beats
    (fresh / "REFERENCE.csv").write_text((fresh / "REFERENCE.csv").read_text() + "Z0001,~\nZ0002,N\n")
    unlabelled = sorted(p.stem for p in fresh.glob("*.hea"))[0]             # a synthetic record, its row removed
    reference = [line for line in (fresh / "REFERENCE.csv").read_text().splitlines()
                 if not line.startswith(unlabelled + ",")]
    (fresh / "REFERENCE.csv").write_text("\n".join(reference) + "\n")
    out = tmp_path / "pred"
    diagnosenet("predict", "--model", str(ecg_run), "--records", str(fresh), "--out", str(out))
    rows = {r["record"]: r for r in read_rows(out / "predictions.csv")}
    assert set(rows) == {p.stem for p in fresh.glob("*.hea")}                # one row per input record
    assert rows["Z0001"]["reason"].startswith("flat") and rows["Z0001"]["predicted"] == "Noisy"
    assert rows["Z0002"]["reason"].split(":")[0] in ("few_beats", "no_complete_sample", "detector_error")
    assert rows[unlabelled]["label"] == "" and rows[unlabelled]["reason"] == "" and int(rows[unlabelled]["windows"]) > 0
    classes = ["Normal", "AF", "Other", "Noisy"]
    for row in rows.values():
        assert sum(float(row[f"p_{c}"]) for c in classes) == pytest.approx(1.0, abs=1e-5)
    labelled = [r for r in rows.values() if r["label"]]
    scores = json.loads((out / "scores.json").read_text())
    expected = metrics.summarise(np.array([classes.index(r["label"]) for r in labelled]),
                                 np.array([[float(r[f"p_{c}"]) for c in classes] for r in labelled]), classes,
                                 challenge=True)
    assert scores["n_test"] == len(labelled) == len(rows) - 1
    for key in ("accuracy", "macro_f1", "challenge_f1", "confusion"):
        assert scores[key] == pytest.approx(expected[key]) if key != "confusion" else scores[key] == expected[key]
    counts = json.loads((out / "counts.json").read_text())
    assert counts["records_in"] == counts["records_windowed"] + counts["records_unclassifiable"] == len(rows)


@pytest.mark.timeout(900)
def test_a_training_run_keeps_its_test_predictions_per_record(ecg_run):
    rows = read_rows(ecg_run / "test_predictions.csv")
    record_level = json.loads((ecg_run / "metrics.json").read_text())["record_level"]
    assert len(rows) == record_level["n_test"]
    right = sum(r["label"] == r["predicted"] for r in rows)
    assert right / len(rows) == pytest.approx(record_level["accuracy"])


@pytest.mark.timeout(900)
def test_export_is_usable_without_diagnosenet_and_reproduces_the_test_probabilities(ecg_run, tmp_path):
    out = tmp_path / "export"
    diagnosenet("export", "--run", str(ecg_run), "--out", str(out))
    card = json.loads((out / "model_card.json").read_text())
    assert card["task"] == "ecg" and card["classes"] == ["Normal", "AF", "Other", "Noisy"]
    assert card["preprocessing"]["window"] == 260 and "not a medical device" in card["intended_use"].lower()
    assert card["training"]["mode"] == "desktop" and "record_level" in card["test_scores"]
    assert "# Model card" in (out / "model_card.md").read_text()
    dataset = json.loads((ecg_run / "run.json").read_text())["settings"]["dataset_dir"]
    script = f"""
import sys, numpy as np, tensorflow as tf
model = tf.saved_model.load({str(out)!r})
x = np.load({str(Path(dataset) / 'test' / 'X.npy')!r}).astype(np.float32)
p = model.signatures["serving_default"](x=tf.constant(x))["probabilities"].numpy()
ref = np.load({str(ecg_run / 'test_proba.npy')!r})
assert "diagnosenet" not in sys.modules
print(float(np.max(np.abs(p - ref))))
"""
    proc = subprocess.run([sys.executable, "-c", script], text=True, capture_output=True, timeout=300,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 1e-5
    fresh = tmp_path / "fresh"                     # predict runs from the export as from the run
    diagnosenet("synth-ecg", "--records", "4", "--seed", "12", "--out", str(fresh))
    a, b = tmp_path / "from-run", tmp_path / "from-export"
    diagnosenet("predict", "--model", str(ecg_run), "--records", str(fresh), "--out", str(a))
    diagnosenet("predict", "--model", str(out), "--records", str(fresh), "--out", str(b))
    for ra, rb in zip(read_rows(a / "predictions.csv"), read_rows(b / "predictions.csv")):
        assert ra["record"] == rb["record"] and ra["predicted"] == rb["predicted"]
        assert float(ra["p_AF"]) == pytest.approx(float(rb["p_AF"]), abs=1e-5)


@pytest.mark.timeout(900)
def test_pmsi_predict_counts_codes_never_seen_in_training(tmp_path):
    root = tmp_path
    salt = root / "salt"
    diagnosenet("synth-pmsi", "--patients", "300", "--seed", "5", "--out", str(root / "raw"))
    diagnosenet("compose-pmsi", "--rhs", str(root / "raw" / "rhs_*.txt"), "--labels", str(root / "raw" / "labels.csv"),
                "--out", str(root / "composed"), "--salt-file", str(salt))
    run = train(root, "pmsi", root / "composed", {"backend": "numpy", "hidden_units": [16]})
    diagnosenet("synth-pmsi", "--patients", "120", "--seed", "6", "--out", str(root / "new"))
    rhs = sorted(map(str, (root / "new").glob("rhs_*.txt")))
    out = root / "pred"
    proc = diagnosenet("predict", "--model", str(run), "--rhs", *rhs, "--labels", str(root / "new" / "labels.csv"),
                       "--salt-file", str(salt), "--out", str(out))
    counts = json.loads((out / "counts.json").read_text())
    assert counts["unseen_features"] > 0 and "unseen in training" in proc.stdout
    rows = read_rows(out / "predictions.csv")
    assert len(rows) == counts["stays_predicted"] == 120
    stay_numbers = {line.split(",")[0] for line in (root / "new" / "labels.csv").read_text().splitlines()[1:]}
    assert not {r["record"] for r in rows} & stay_numbers                 # pseudonyms only
    assert all(len(r["record"]) == PSEUDONYM_HEX_CHARS and int(r["record"], 16) >= 0 for r in rows)
    assert json.loads((out / "scores.json").read_text())["n_test"] == 120

    # two runs (another seed): --model both averages their probabilities stay by stay
    second = root / "run-seed2"
    diagnosenet("train-desktop", "--task", "pmsi", "--dataset", str(root / "dataset"), "--shards", str(root / "shards"),
                "--out", str(second), "--model-json", json.dumps({"backend": "numpy", "hidden_units": [16]}), "--seed", "2",
                "--max-epochs", "2", "--patience", "2", "--batch-size", "16", "--lr", "0.01", "--monitor-rate", "0")
    common = ["--rhs", *rhs, "--salt-file", str(salt)]
    diagnosenet("predict", "--model", str(second), *common, "--out", str(root / "pred2"))
    diagnosenet("predict", "--model", str(run), str(second), *common, "--out", str(root / "both"))
    probabilities = {name: {r["record"]: np.array([float(v) for k, v in r.items() if k.startswith("p_")])
                            for r in read_rows(root / name / "predictions.csv")} for name in ("pred", "pred2", "both")}
    assert any(not np.allclose(probabilities["pred"][r], probabilities["pred2"][r]) for r in probabilities["pred"])
    for record, mean in probabilities["both"].items():
        np.testing.assert_allclose(mean, (probabilities["pred"][record] + probabilities["pred2"][record]) / 2, rtol=1e-6)
