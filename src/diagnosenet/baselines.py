"""Non-neural baselines the networks must beat, scored with the same metrics.

PMSI: multinomial logistic regression on the sparse stay x feature matrix (no densifying).
ECG: per-sample features from the 1,300-sample window (five 260-sample windows centred on R
peaks): RR intervals from peaks found with ``scipy.signal.find_peaks`` plus amplitude
statistics, classified by a histogram gradient-boosting ensemble. AF shows as irregular RR
intervals, which these features capture.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from diagnosenet import metrics
from diagnosenet.artifacts import write_json, write_manifest

#: samples per second of the PhysioNet 2017 recordings
FS = 300

#: whole-record ECG feature models (ecg/features.py), compared by record-level CV in
#: bench/bench_ecg_quality.py; ``gbm`` won it and is the pipeline's ECG baseline
ECG_FEATURE_MODELS = ("logistic", "gbm", "gbm-balanced")


def ecg_feature_model(name: str = "gbm", seed: int = 1):
    """A scikit-learn classifier of whole-record features (NaN = undefined feature).

    ``logistic``: median imputation, standardisation, multinomial logistic regression with
    balanced class weights. ``gbm``: histogram gradient boosting (NaN handled natively), small
    trees, shrinkage 0.05, 300 rounds, L2 1.0; ``gbm-balanced``: the same with class weights
    inversely proportional to class frequency (AF is 9 % of the records)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    if name == "logistic":
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                             LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000, random_state=seed))
    if name in ("gbm", "gbm-balanced"):
        return HistGradientBoostingClassifier(learning_rate=0.05, max_iter=300, max_leaf_nodes=15, l2_regularization=1.0,
                                              class_weight="balanced" if name == "gbm-balanced" else None,
                                              early_stopping=False, random_state=seed)
    raise ValueError(f"unknown ECG feature model {name!r}; choose from {ECG_FEATURE_MODELS}")


def rr_features(X: np.ndarray, fs: int = FS) -> np.ndarray:
    """RR-interval statistics and amplitude statistics of each row (one window of 1,300 samples)."""
    with warnings.catch_warnings():  # rows with < 3 peaks give NaN features on purpose: the trees handle NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray([_row_features(x, fs) for x in np.asarray(X, dtype=np.float64)], dtype=np.float64)


def _row_features(x: np.ndarray, fs: int) -> list[float]:
    from scipy.signal import find_peaks
    from scipy.stats import kurtosis, skew

    centred = x - np.median(x)
    scale = np.max(np.abs(centred)) or 1.0
    # R peaks: prominent maxima at least 0.25 s apart (240 beats/min at most)
    peaks, _ = find_peaks(np.abs(centred) / scale, distance=int(0.25 * fs), prominence=0.3)
    rr = np.diff(peaks) / fs if len(peaks) > 1 else np.array([np.nan])
    drr = np.diff(rr) if len(rr) > 1 else np.array([np.nan])
    return [
        len(peaks), np.nanmean(rr), np.nanstd(rr), np.nanmin(rr), np.nanmax(rr),
        np.nanstd(rr) / np.nanmean(rr) if np.nanmean(rr) else np.nan,
        np.sqrt(np.nanmean(drr ** 2)), np.nanmean(np.abs(drr) > 0.05),
        x.mean(), x.std(), skew(x), kurtosis(x), np.percentile(x, 5), np.percentile(x, 95),
        np.mean(np.abs(np.diff(x))),
    ]


def fit_predict(task: str, X_train, y_train, X_test, *, seed: int = 1) -> tuple[np.ndarray, str]:
    """Class probabilities on ``X_test`` and the model's name."""
    if task == "pmsi":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(max_iter=1000, random_state=seed)
        model.fit(X_train, y_train)
        name = "multinomial logistic regression"
    elif task == "ecg":
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(random_state=seed)  # handles the NaN of peak-less rows
        model.fit(rr_features(X_train), y_train)
        X_test = rr_features(X_test)
        name = "RR features + histogram gradient boosting"
    else:
        raise ValueError(f"task must be 'pmsi' or 'ecg', got {task!r}")
    proba = np.zeros((X_test.shape[0], int(np.max(y_train)) + 1))
    proba[:, model.classes_] = model.predict_proba(X_test)
    return proba, name


def run_baseline(task: str, dataset_dir: str | Path, out_dir: str | Path, *, seed: int = 1) -> dict:
    """Train on train+valid, score on test; write metrics.json, per_class.csv, confusion.csv."""
    import scipy.sparse as sp

    from diagnosenet.datasets.materialise import load_classes, load_split

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = load_classes(dataset_dir)
    parts = [load_split(dataset_dir, split, verify=split == "train") for split in ("train", "valid")]
    X_train = sp.vstack([p[0] for p in parts]).tocsr() if sp.issparse(parts[0][0]) else np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    X_test, y_test, groups_test = load_split(dataset_dir, "test")
    proba, name = fit_predict(task, X_train, y_train, X_test, seed=seed)
    if proba.shape[1] < len(classes):
        proba = np.pad(proba, ((0, 0), (0, len(classes) - proba.shape[1])))
    result = {"task": task, "model": name, "n_train": int(len(y_train)),
              **metrics.score_task(task, y_test, proba, classes, groups_test)}
    write_json(out_dir / "metrics.json", result)
    metrics.write_per_class_csv(out_dir / "per_class.csv", result["per_class"])
    metrics.write_confusion_csv(out_dir / "confusion.csv", result["confusion"], classes)
    write_manifest(out_dir, stage="baseline", files=["metrics.json", "per_class.csv", "confusion.csv"],
                   params={"task": task, "seed": seed})
    return result
