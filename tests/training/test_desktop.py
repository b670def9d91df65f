"""Desktop training on tiny data made by the project's own dataset stages (see conftest.py)."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from diagnosenet.artifacts import verify_manifest

pytestmark = pytest.mark.tensorflow


def read_track(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def epochs(path):
    return [int(row["epoch"]) for row in read_track(path)]


def test_desktop_run_writes_every_artefact_with_float_metrics(tiny_inputs, tiny_settings, tmp_path):
    from diagnosenet.training.desktop import train

    result = train(tiny_settings(tiny_inputs("pmsi"), tmp_path / "run"))
    out = tmp_path / "run"
    track = read_track(out / "track.csv")
    assert [int(r["epoch"]) for r in track] == [1, 2, 3]
    assert float(track[-1]["train_loss"]) < float(track[0]["train_loss"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == int(np.argmin([float(r["valid_loss"]) for r in track])) + 1
    assert metrics["accuracy"] > 0.5  # one indicator feature per class: learnable
    assert isinstance(metrics["per_class"]["c0"]["precision"], float)
    assert metrics["n_params"] == 60 * 16 + 16 + 16 * 4 + 4
    import tensorflow as tf   # which device trained: a visible GPU's name, else the CPU

    assert metrics["devices"] == ([d.name for d in tf.config.list_logical_devices("GPU")] or ["cpu"])
    with open(out / "per_class.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert any("." in row["f1"] for row in rows)  # not the original's integer format
    assert np.asarray(metrics["confusion"]).sum() == metrics["n_test"] == result["n_test"]
    assert json.loads((out / "run.json").read_text())["settings"]["mode"] == "desktop"
    verify_manifest(out, stage="train")


def test_early_stopping_restores_the_best_weights_for_the_test_metrics(tiny_inputs, tiny_settings, tmp_path):
    """A learning rate far too high makes validation loss rise; the test split is scored with best.npz."""
    from diagnosenet.datasets.materialise import load_split
    from diagnosenet.models.tensorflow_backend import tensorflow_replica
    from diagnosenet.training.checkpoint import BEST, load_checkpoint
    from diagnosenet.training.desktop import train

    inputs = tiny_inputs("pmsi")
    settings = tiny_settings(inputs, tmp_path / "run", max_epochs=30, patience=2, learning_rate=0.3)
    result = train(settings)
    track = read_track(tmp_path / "run" / "track.csv")
    assert result["stopped_early"] and result["epochs_run"] == len(track) < 30
    assert len(track) - result["best_epoch"] == 2  # stopped exactly `patience` epochs after the best
    best = load_checkpoint(tmp_path / "run" / "checkpoint", BEST)
    assert best["epoch"] == result["best_epoch"]
    replica = tensorflow_replica("pmsi", settings.model, 60, 4, seed=settings.seed, learning_rate=settings.learning_rate)
    replica.set_state(best["replica_state"])
    X_test, y_test, _ = load_split(inputs.dataset, "test")
    pred = np.argmax(replica.predict_proba(X_test), axis=1)
    assert result["accuracy"] == pytest.approx(float(np.mean(pred == y_test)))


def test_same_seed_same_run_and_resumed_run_equals_an_uninterrupted_one(tiny_inputs, tiny_settings, tmp_path):
    """Stop after 2 epochs, restart with 4: same track and metrics as 4 epochs in one go."""
    from diagnosenet.training.desktop import train

    inputs = tiny_inputs("pmsi")
    train(tiny_settings(inputs, tmp_path / "split", max_epochs=2))
    resumed = train(tiny_settings(inputs, tmp_path / "split", max_epochs=4))
    straight = train(tiny_settings(inputs, tmp_path / "straight", max_epochs=4))
    a, b = read_track(tmp_path / "split" / "track.csv"), read_track(tmp_path / "straight" / "track.csv")
    assert [r["epoch"] for r in a] == ["1", "2", "3", "4"]
    assert [r["valid_loss"] for r in a] == [r["valid_loss"] for r in b]
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert resumed["confusion"] == straight["confusion"]


def test_checkpoint_of_other_settings_is_not_resumed(tiny_inputs, tiny_settings, tmp_path):
    from diagnosenet.training.desktop import train

    inputs = tiny_inputs("pmsi")
    train(tiny_settings(inputs, tmp_path / "run", max_epochs=2))
    train(tiny_settings(inputs, tmp_path / "run", max_epochs=1, learning_rate=0.001))
    assert epochs(tmp_path / "run" / "track.csv") == [1]


@pytest.mark.timeout(300)
def test_killed_run_resumes_from_its_last_checkpoint(tiny_inputs, tiny_settings, tmp_path):
    """SIGKILL a `diagnosenet train` process mid-run; the rerun continues the epoch count."""
    from diagnosenet.training.checkpoint import load_checkpoint
    from diagnosenet.training.desktop import train

    settings = tiny_settings(tiny_inputs("pmsi"), tmp_path / "run", max_epochs=10_000, patience=10_000)
    command = [sys.executable, "-m", "diagnosenet", "train-desktop", "--task", "pmsi",
               "--dataset", str(settings.dataset_dir), "--shards", str(settings.shards_dir),
               "--out", str(settings.out_dir), "--model-json", json.dumps(settings.model),
               "--seed", str(settings.seed), "--max-epochs", "10000", "--patience", "10000",
               "--lr", str(settings.learning_rate), "--batch-size", str(settings.batch_size), "--monitor-rate", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    track = settings.out_dir / "track.csv"
    deadline = time.monotonic() + 240
    try:
        while not (track.exists() and len(read_track(track)) >= 3):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "training wrote no 3 epochs in time"
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done = load_checkpoint(settings.out_dir / "checkpoint")["epoch"]
    assert done >= 2  # flushed rows and checkpoints were on disk while the process ran
    train(tiny_settings(tiny_inputs("pmsi"), tmp_path / "run", max_epochs=done + 2, patience=10_000))
    assert epochs(track) == list(range(1, done + 3))


def test_ecg_desktop_run_reports_challenge_f1(tiny_inputs, tiny_settings, tmp_path):
    from diagnosenet.training.desktop import train

    result = train(tiny_settings(tiny_inputs("ecg"), tmp_path / "run", max_epochs=2))
    assert 0.0 <= result["challenge_f1"] <= 1.0 and "f1_Noisy" in result
    C = np.asarray(result["confusion"])
    assert result["f1_AF"] == pytest.approx(2 * C[1, 1] / (C[1].sum() + C[:, 1].sum()) if C[1].sum() + C[:, 1].sum() else 0.0)
    assert len(read_track(tmp_path / "run" / "track.csv")) == 2
    assert result["record_level"]["n_test"] == result["n_test"]  # one window per record here


def test_desktop_refuses_more_than_one_worker(tiny_inputs, tiny_settings, tmp_path):
    from diagnosenet.training.desktop import train

    with pytest.raises(ValueError, match="one worker"):
        train(tiny_settings(tiny_inputs("pmsi"), tmp_path / "w2", workers=2))
