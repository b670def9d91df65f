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

#: the PhysioNet/CinC 2017 challenge score averages F1 over the first three; noisy is reported apart.
#: output key -> accepted class names (the ECG stage's names and the challenge's label letters)
CHALLENGE_CLASSES = {"N": ("Normal", "N"), "AF": ("AF", "A"), "Other": ("Other", "O")}
NOISY_CLASS = ("Noisy", "~")


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
    """PhysioNet 2017 score ``(F1_N + F1_AF + F1_Other) / 3`` and the noisy class's F1 apart.

    Keys are fixed (``f1_N``, ``f1_AF``, ``f1_Other``, ``f1_Noisy``) whichever of the accepted
    names (:data:`CHALLENGE_CLASSES`) the data set uses.
    """
    index = {name: k for k, name in enumerate(classes)}

    def find(names):
        return next((index[n] for n in names if n in index), None)

    found = {key: find(names) for key, names in CHALLENGE_CLASSES.items()}
    missing = [names[0] for key, names in CHALLENGE_CLASSES.items() if found[key] is None]
    if missing:
        raise ValueError(f"challenge F1 needs classes {[n[0] for n in CHALLENGE_CLASSES.values()]}; "
                         f"missing {missing} in {list(classes)}")
    scores = {f"f1_{key}": _f1(C, k) for key, k in found.items()}
    result = {"challenge_f1": float(np.mean(list(scores.values()))), **scores}
    noisy = find(NOISY_CLASS)
    if noisy is not None:
        result["f1_Noisy"] = _f1(C, noisy)
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


def per_group(y_true: np.ndarray, proba: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One ``(label, mean probability)`` per group: ECG windows -> one decision per record.

    The challenge scores records, not windows; averaging the windows' probabilities is the
    simplest record-level rule. Refuses groups whose windows disagree on the reference label.
    """
    names, _, inverse, counts, mean = group_means(proba, groups)
    labels = np.full(len(names), -1, dtype=np.int64)
    labels[inverse] = y_true
    if np.any(labels[inverse] != y_true):
        raise ValueError("a group's rows carry different reference labels")
    return labels, mean


def group_means(proba: np.ndarray, groups) -> tuple[np.ndarray, ...]:
    """``(sorted group names, each group's first row, row -> group, rows per group, mean
    probability per group)``: the record-level rule of the runs' scores and of ``predict``."""
    names, first, inverse = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(names))
    mean = np.zeros((len(names), proba.shape[1]))
    np.add.at(mean, inverse, proba)
    return names, first, inverse, counts, mean / counts[:, None]


def score_task(task: str, y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str],
               groups: np.ndarray | None = None) -> dict:
    """What every run and baseline reports: :func:`summarise`, plus for ECG the challenge score
    and, given the record of each window, the same scores per record (``record_level``)."""
    result = summarise(y_true, proba, classes, challenge=task == "ecg")
    if task == "ecg" and groups is not None:
        record = summarise(*per_group(y_true, proba, groups), classes, challenge=True)
        result["record_level"] = {k: v for k, v in record.items() if k != "per_class"}
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
