"""The class-probability function of a trained model: a run directory or an exported one.

A run directory rebuilds the run's replica (TensorFlow or NumPy, from ``run.json``) and loads
its best checkpoint; an export directory (``diagnosenet export``) loads the SavedModel and
its lineage, so ``predict`` needs neither the training code's config nor the run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from diagnosenet.artifacts import read_json
from diagnosenet.predict.lineage import Lineage, from_run

ProbaFn = Callable[[object], np.ndarray]
LINEAGE_FILE = "lineage.json"
BATCH = 1024


def is_export(path: str | Path) -> bool:
    return (Path(path) / "saved_model.pb").exists() and (Path(path) / LINEAGE_FILE).exists()


def run_replica(run_dir: str | Path, lineage: Lineage | None = None):
    """The run's replica with its best checkpoint's state."""
    from diagnosenet.training.checkpoint import BEST, load_checkpoint
    from diagnosenet.training.run import make_replica
    from diagnosenet.training.settings import TrainSettings

    lineage = lineage or from_run(run_dir)
    settings = TrainSettings(**{**lineage.settings, "out_dir": str(run_dir)})
    replica = make_replica(settings, lineage.input_size, len(lineage.classes))
    best = load_checkpoint(Path(run_dir) / "checkpoint", BEST)
    if best is None:
        raise FileNotFoundError(f"{run_dir}/checkpoint/{BEST}: the run has no best checkpoint (did it finish?)")
    replica.set_state(best["replica_state"])
    return replica


def lineage_of(source: str | Path) -> Lineage:
    """The lineage of a model directory without loading the model (no TensorFlow): what
    ``predict`` needs to read the records before any model starts threads."""
    source = Path(source)
    if (source / LINEAGE_FILE).exists() and ((source / "model.joblib").exists() or is_export(source)):
        return Lineage.from_json(read_json(source / LINEAGE_FILE))
    if not (source / "run.json").exists():
        raise FileNotFoundError(f"{source}: neither a run directory (run.json) nor an export (saved_model.pb, "
                                f"{LINEAGE_FILE})")
    return from_run(source)


def load(source: str | Path) -> tuple[Lineage, ProbaFn]:
    """``(lineage, X -> probabilities)`` of a run directory, an export directory or the ECG
    feature model of a baseline directory (``model.joblib``: load only models you trust, a
    pickle runs code)."""
    source = Path(source)
    lineage = lineage_of(source)
    if (source / "model.joblib").exists() and (source / LINEAGE_FILE).exists():
        import joblib

        model = joblib.load(source / "model.joblib")

        def feature_proba(X) -> np.ndarray:
            out = np.zeros((X.shape[0], len(lineage.classes)))
            if X.shape[0]:
                out[:, model.classes_] = model.predict_proba(X)
            return out

        return lineage, feature_proba
    if is_export(source):
        import tensorflow as tf

        serve = tf.saved_model.load(str(source)).signatures["serving_default"]

        def proba(X) -> np.ndarray:
            parts = []
            for lo in range(0, X.shape[0], BATCH):
                chunk = X[lo:lo + BATCH]
                dense = chunk.toarray() if hasattr(chunk, "toarray") else np.asarray(chunk)
                parts.append(serve(x=tf.constant(dense, tf.float32))["probabilities"].numpy())
            return np.concatenate(parts) if parts else np.zeros((0, len(lineage.classes)), np.float32)

        return lineage, proba
    replica = run_replica(source, lineage)
    return lineage, lambda X: replica.predict_proba(X, batch_size=BATCH)
