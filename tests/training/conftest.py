"""Tiny training inputs shared by every training-mode test (desktop, MPI, gRPC).

The data go through the project's own stages (materialise, shard), so every mode reads the
same on-disk formats as a real run. Stable interface, for use by any test under tests/training:

- fixture ``tiny_inputs(task, workers=1, batch_size=32) -> RunInputs`` (session-cached):
  ``RunInputs.dataset`` (materialised dir), ``.shards`` (shards for ``workers``), ``.root``.
  ``task`` is ``"pmsi"`` (sparse CSR, 240 rows x 60 features, 4 classes) or ``"ecg"``
  (dense, 160 rows x 1300 samples, classes Normal/AF/Other/Noisy). Both carry a learnable signal.
- fixture ``tiny_settings(inputs, out_dir, **overrides) -> TrainSettings``: a desktop-sized
  run (3 epochs, tiny model, monitor off); pass ``mode=``/``workers=`` to change transport.
- plain functions ``make_dataset``, ``make_shards`` and ``TINY_MODELS`` for custom sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from diagnosenet.artifacts import write_json, write_manifest
from diagnosenet.datasets.materialise import materialise
from diagnosenet.datasets.shards import Batching, write_shards
from diagnosenet.training.settings import TrainSettings

#: the ``models.<task>`` config of the tiny runs (seconds per epoch on 2 shared cores)
TINY_MODELS = {
    "pmsi": {"hidden_units": [16], "dropout_keep": 0.8},
    "ecg": {"filters": [4, 8], "blocks_per_stage": 1, "kernel_size": 5, "dropout_keep": 0.8},
}
TINY_SIZES = {"pmsi": (240, 60), "ecg": (160, 1300)}


@dataclass(frozen=True)
class RunInputs:
    task: str
    root: Path
    dataset: Path
    shards: Path
    workers: int
    batch_size: int


def make_dataset(root: Path, task: str, n_rows: int | None = None, n_features: int | None = None,
                 seed: int = 0) -> Path:
    """Composed-stage arrays with a learnable signal, materialised into ``root/dataset``."""
    n_rows = n_rows or TINY_SIZES[task][0]
    n_features = n_features or TINY_SIZES[task][1]
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n_rows)
    stage = root / ("composed" if task == "pmsi" else "windows")
    stage.mkdir(parents=True)
    if task == "pmsi":
        X = sp.random(n_rows, n_features, density=0.05, format="lil", dtype=np.float32, random_state=seed)
        X[np.arange(n_rows), y] = 1.0  # one indicator feature per class makes it learnable
        x_name, classes = "X.npz", [f"c{k}" for k in range(4)]
        sp.save_npz(stage / x_name, X.tocsr())
    else:
        t = np.arange(n_features)
        X = (rng.normal(size=(n_rows, n_features)) + np.sin(t[None, :] * (y[:, None] + 1) / 20)).astype(np.float32)
        x_name, classes = "X.npy", ["Normal", "AF", "Other", "Noisy"]  # as window-ecg writes them
        np.save(stage / x_name, X)
    np.save(stage / "y.npy", y.astype(np.int64))
    np.save(stage / "groups.npy", np.array([f"g{i:04d}" for i in range(n_rows)]))
    write_json(stage / "classes.json", classes)
    write_manifest(stage, stage="test", files=[x_name, "y.npy", "groups.npy", "classes.json"])
    materialise(stage, root / "dataset", valid_fraction=0.15, test_fraction=0.15, seed=1)
    return root / "dataset"


def make_shards(dataset: Path, out: Path, workers: int = 1, batch_size: int = 32, seed: int = 1) -> Path:
    write_shards(dataset, out, Batching(devices_number=workers, batch_size=batch_size), seed=seed)
    return out


@pytest.fixture(scope="session")
def tiny_inputs(tmp_path_factory):
    """``tiny_inputs(task, workers=1, batch_size=32)``: data set + shards, built once per session."""
    datasets: dict[str, Path] = {}
    cache: dict[tuple, RunInputs] = {}

    def get(task: str, workers: int = 1, batch_size: int = 32) -> RunInputs:
        key = (task, workers, batch_size)
        if key not in cache:
            if task not in datasets:
                datasets[task] = make_dataset(tmp_path_factory.mktemp(f"tiny-{task}"), task)
            dataset = datasets[task]
            shards = make_shards(dataset, dataset.parent / f"shards-w{workers}-b{batch_size}", workers, batch_size)
            cache[key] = RunInputs(task, dataset.parent, dataset, shards, workers, batch_size)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def tiny_settings():
    """``tiny_settings(inputs, out_dir, **overrides)``: a tiny desktop run on ``inputs``."""

    def make(inputs: RunInputs, out_dir: Path, **overrides) -> TrainSettings:
        base = dict(task=inputs.task, mode="desktop", workers=inputs.workers, dataset_dir=inputs.dataset,
                    shards_dir=inputs.shards, out_dir=out_dir, model=dict(TINY_MODELS[inputs.task]), seed=3,
                    max_epochs=3, patience=5, learning_rate=0.01, batch_size=inputs.batch_size,
                    monitor_rate_hz=0)
        return TrainSettings(**{**base, **overrides})

    return make
