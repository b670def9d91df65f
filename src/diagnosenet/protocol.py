"""An evaluation protocol that cannot fool itself (issue 15; docs/ecg-quality.md).

1. **Development records only** for every choice: the final records are removed from the
   development set first (:func:`development_mask`; the shared ``physionet2017-train-a``
   *contains* the 300 ``physionet2017-validation`` records).
2. **Record-level cross-validation** (:func:`record_folds`): every row of one record (ECG
   windows) lands in the same fold, folds stratified by the record's label.
3. **One final score** on records never used for a choice, with every input record scored
   (:func:`complete_predictions`: a record the model could not process counts as the
   unclassifiable class) and a **95 % bootstrap interval over records**
   (:func:`bootstrap_interval`).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from diagnosenet import metrics
from diagnosenet.datasets.splits import group_labels


def development_mask(records: Sequence[str], held_out: Sequence[str]) -> np.ndarray:
    """True for the rows whose record is not held out."""
    return ~np.isin(np.asarray(records, dtype=str), np.asarray(list(held_out), dtype=str))


def record_folds(labels: np.ndarray, records: Sequence[str], n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index (0 … n_folds − 1) of every row; all rows of a record share one fold, and
    each fold holds about 1/n_folds of every class's records."""
    from sklearn.model_selection import StratifiedKFold

    names, record_label, row_record = group_labels(np.asarray(labels), np.asarray(records, dtype=str))
    fold_of_record = np.empty(len(names), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(names)), record_label)):
        fold_of_record[held] = fold
    return fold_of_record[row_record]


def complete_predictions(all_records: Sequence[str], scored_records: Sequence[str], predicted: np.ndarray,
                         fallback: int) -> np.ndarray:
    """One predicted label per record of ``all_records``: the model's where it scored the
    record, ``fallback`` (the unclassifiable/noisy class) where it could not."""
    by_record = dict(zip(np.asarray(scored_records, dtype=str).tolist(), np.asarray(predicted).tolist()))
    return np.array([by_record.get(name, fallback) for name in np.asarray(all_records, dtype=str).tolist()],
                    dtype=np.int64)


def official_f1(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> float:
    """mean(F1_N, F1_AF, F1_Other) of label vectors."""
    return metrics.challenge_f1(metrics.confusion_matrix(y_true, y_pred, len(classes)), classes)["challenge_f1"]


def bootstrap_interval(y_true: np.ndarray, y_pred: np.ndarray, score: Callable[[np.ndarray, np.ndarray], float],
                       n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``score`` over ``n_boot`` resamples of the rows (one row per record)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    values = np.array([score(y_true[d], y_pred[d]) for d in _resamples(len(y_true), n_boot, seed)])
    return _percentiles(values, level)


def paired_bootstrap_difference(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                                score: Callable[[np.ndarray, np.ndarray], float], n_boot: int = 2000,
                                seed: int = 0) -> dict:
    """``score(a) − score(b)`` with its 95 % percentile interval, both models scored on the **same**
    resample each time: two models' own intervals overlap far more than their difference varies,
    so only the paired interval says whether the records can tell the two apart."""
    y_true, pred_a, pred_b = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)
    values = np.array([score(y_true[d], pred_a[d]) - score(y_true[d], pred_b[d])
                       for d in _resamples(len(y_true), n_boot, seed)])
    return {"difference": float(score(y_true, pred_a) - score(y_true, pred_b)),
            "ci95": list(_percentiles(values, 0.95)),
            "share_a_better": float(np.mean(values > 0))}


def _resamples(n_rows: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_rows, size=(n_boot, n_rows))


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def final_report(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], *, n_boot: int = 2000,
                 seed: int = 0) -> dict:
    """The final score of one model: official F1 with its bootstrap interval, per-class F1
    (noisy apart), accuracy, confusion."""
    summary = metrics.summarise(y_true, y_pred, classes, challenge=True)
    low, high = bootstrap_interval(y_true, y_pred, lambda t, p: official_f1(t, p, classes), n_boot, seed=seed)
    return {"official_f1": summary["challenge_f1"], "official_f1_ci95": [low, high],
            **{k: summary[k] for k in ("f1_N", "f1_AF", "f1_Other", "f1_Noisy", "accuracy", "n_test", "confusion")}}


def final_reports(y_true: np.ndarray, predictions: dict[str, np.ndarray], classes: Sequence[str], *, baseline: str,
                  n_boot: int = 2000, seed: int = 0) -> dict[str, dict]:
    """:func:`final_report` of every model on the final records; each model other than
    ``baseline`` also gets ``minus_baseline``, its paired difference from it
    (:func:`paired_bootstrap_difference`): the comparison the target is about."""
    reports = {}
    for name, y_pred in predictions.items():
        reports[name] = final_report(y_true, y_pred, classes, n_boot=n_boot, seed=seed)
        if name != baseline:
            reports[name]["minus_baseline"] = paired_bootstrap_difference(
                y_true, y_pred, predictions[baseline], lambda t, p: official_f1(t, p, classes), n_boot, seed=seed)
    return reports


def describe_final(name: str, report: dict) -> str:
    """One line: official F1 [95 % CI], per-class F1, and the paired difference from the baseline."""
    low, high = report["official_f1_ci95"]
    line = (f"final {name:14s} {report['official_f1']:.3f} [{low:.3f}, {high:.3f}] N {report['f1_N']:.3f} "
            f"AF {report['f1_AF']:.3f} O {report['f1_Other']:.3f} ~ {report['f1_Noisy']:.3f}")
    if "minus_baseline" in report:
        diff = report["minus_baseline"]
        line += f" | − baseline {diff['difference']:+.3f} [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}]"
    return line
