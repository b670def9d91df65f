"""Classification metrics from a confusion matrix (rows = reference, columns = prediction).

Everything derives from the confusion matrix so that every mode and the baselines report the
same numbers. Values stay floats end to end: the original wrote its per-class table with an
integer format, so precision/recall/F1 printed as 0 or 1. No TensorFlow here.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

#: the PhysioNet/CinC 2017 challenge score averages F1 over these classes; noisy is reported apart
CHALLENGE_CLASSES = ("N", "AF", "Other")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``C[i, j]`` = samples of reference class ``i`` predicted as ``j``."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _f1(C: np.ndarray, k: int) -> float:
    """``2 C[k,k] / (row_k + col_k)``: the challenge's definition, equal to the harmonic mean of P and R."""
    denominator = C[k, :].sum() + C[:, k].sum()
    return float(2.0 * C[k, k] / denominator) if denominator else 0.0


def per_class(C: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 (floats) and support (int) per class; 0.0 where undefined."""
    out = {}
    for k, name in enumerate(classes):
        predicted, support = C[:, k].sum(), C[k, :].sum()
        out[name] = {
            "precision": float(C[k, k] / predicted) if predicted else 0.0,
            "recall": float(C[k, k] / support) if support else 0.0,
            "f1": _f1(C, k),
            "support": int(support),
        }
    return out


def challenge_f1(C: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """PhysioNet 2017 score ``(F1_N + F1_AF + F1_Other) / 3`` and the noisy class's F1 apart."""
    index = {name: k for k, name in enumerate(classes)}
    missing = [c for c in CHALLENGE_CLASSES if c not in index]
    if missing:
        raise ValueError(f"challenge F1 needs classes {CHALLENGE_CLASSES}; missing {missing} in {list(classes)}")
    scores = {f"f1_{c}": _f1(C, index[c]) for c in CHALLENGE_CLASSES}
    result = {"challenge_f1": float(np.mean(list(scores.values()))), **scores}
    noisy = next((name for name in classes if name not in CHALLENGE_CLASSES), None)
    if noisy is not None:
        result[f"f1_{noisy}"] = _f1(C, index[noisy])
    return result


def summarise(y_true: np.ndarray, proba_or_pred: np.ndarray, classes: Sequence[str], *,
              challenge: bool = False) -> dict:
    """Accuracy, macro F1, per-class table and confusion matrix of one prediction set.

    ``proba_or_pred`` is either class probabilities ``(n, K)`` or predicted labels ``(n,)``.
    """
    pred = np.argmax(proba_or_pred, axis=1) if np.ndim(proba_or_pred) == 2 else np.asarray(proba_or_pred)
    C = confusion_matrix(y_true, pred, len(classes))
    table = per_class(C, classes)
    result = {
        "accuracy": float(np.trace(C) / C.sum()) if C.sum() else 0.0,
        "macro_f1": float(np.mean([row["f1"] for row in table.values()])),
        "per_class": table,
        "confusion": C.tolist(),
        "n_test": int(C.sum()),
    }
    if challenge:
        result.update(challenge_f1(C, classes))
    return result


def write_per_class_csv(path: str | Path, table: dict[str, dict[str, float]]) -> None:
    """``class,precision,recall,f1,support`` with floats at full precision (``repr``)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "precision", "recall", "f1", "support"])
        for name, row in table.items():
            writer.writerow([name, repr(row["precision"]), repr(row["recall"]), repr(row["f1"]), row["support"]])


def write_confusion_csv(path: str | Path, C, classes: Sequence[str]) -> None:
    """Square table with a header row of predicted classes and a first column of reference classes."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["reference\\predicted", *classes])
        for name, row in zip(classes, np.asarray(C).tolist()):
            writer.writerow([name, *row])
