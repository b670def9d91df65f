"""The real TensorFlow model under mpirun, once per MPI mode (each rank pays TensorFlow's import)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from diagnosenet.artifacts import verify_manifest

from test_mpi import metrics, read_track, train_command  # same folder

pytestmark = [pytest.mark.mpi, pytest.mark.tensorflow]

TF_MODEL = {"hidden_units": [16], "dropout_keep": 0.8}


@pytest.mark.timeout(420)
def test_sync_with_one_worker_equals_desktop_training(tiny_inputs, tmp_path):
    inputs = tiny_inputs("pmsi", workers=1)
    mpi = train_command(inputs, tmp_path / "mpi", "mpi-sync", model=TF_MODEL, workers=1, max_epochs=3, timeout=300)
    desktop = [sys.executable, "-m", "diagnosenet", *mpi[mpi.index("train"):]]
    desktop[desktop.index("mpi-sync")] = "desktop"
    desktop[desktop.index(str(tmp_path / "mpi"))] = str(tmp_path / "desktop")
    runs = [subprocess.Popen(c, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c in (mpi, desktop)]
    outputs = [p.communicate(timeout=400)[0] for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outputs
    for column in ("train_loss", "valid_loss", "valid_metric"):
        got = [float(r[column]) for r in read_track(tmp_path / "mpi" / "track.csv")]
        want = [float(r[column]) for r in read_track(tmp_path / "desktop" / "track.csv")]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=column)
    m, d = metrics(tmp_path / "mpi"), metrics(tmp_path / "desktop")
    assert m["accuracy"] == pytest.approx(d["accuracy"]) and m["best_epoch"] == d["best_epoch"]
    assert m["mpi"]["replicas_identical"] and len(m["mpi"]["replica_sha256"]) == 2


@pytest.mark.timeout(420)
def test_async_trains_the_tensorflow_model_with_two_workers(tiny_inputs, tmp_path):
    inputs = tiny_inputs("pmsi", workers=2)
    out = tmp_path / "async"
    proc = subprocess.run(train_command(inputs, out, "mpi-async", model=TF_MODEL, max_epochs=3, timeout=300),
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=400)
    assert proc.returncode == 0, proc.stdout
    verify_manifest(out, stage="train")
    result = metrics(out)
    assert result["mpi"]["updates"] == result["mpi"]["gradients"] > 0
    assert result["accuracy"] > 0.5  # one indicator feature per class: learnable
    assert json.loads((out / "run.json").read_text())["versions"].get("tensorflow")
