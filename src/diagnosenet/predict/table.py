"""``predictions.csv``: one row per record (ECG) or stay (PMSI), the same for a training run's
test split and for ``predict`` (so both can be scored and compared the same way)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np


def rows_by_group(groups: Sequence[str], labels: Sequence[int] | None, proba: np.ndarray,
                  classes: Sequence[str]) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """Mean probability per group (ECG record; one row per PMSI stay), in first-seen order:
    ``(rows, group probabilities, group labels or -1)``."""
    from diagnosenet.metrics import group_means

    names, first, inverse, counts, mean = group_means(proba, groups)
    order = np.argsort(first)
    group_labels = np.full(len(names), -1, np.int64)
    if labels is not None:
        group_labels[inverse] = np.asarray(labels)
    rows = []
    for g in order:
        p = mean[g]
        rows.append({"record": str(names[g]), "label": "" if group_labels[g] < 0 else classes[group_labels[g]],
                     "predicted": classes[int(np.argmax(p))], **{f"p_{c}": float(v) for c, v in zip(classes, p)},
                     "windows": int(counts[g]), "reason": ""})
    return rows, mean[order], group_labels[order]


def weigh_classes(rows: list[dict], proba: np.ndarray, weights: Sequence[float],
                  classes: Sequence[str]) -> tuple[list[dict], np.ndarray]:
    """Decision weights per class: each row's probabilities times ``weights``, renormalised (a
    change of class priors, so still probabilities), and its arg-max as the prediction. Moves
    the decision boundaries towards rare classes (the challenge F1 of AF and Noisy), as the
    ``cascade`` does inside its fit; choose them on development records, never on those scored."""
    weights = np.asarray(weights, np.float64)
    if weights.shape != (len(classes),) or not (weights > 0).all():
        raise SystemExit(f"--class-weights {weights.tolist()}: one positive weight per class ({', '.join(classes)})")
    weighted = proba * weights[None, :]
    weighted /= np.maximum(weighted.sum(axis=1, keepdims=True), 1e-300)
    out = [{**row, "predicted": classes[int(np.argmax(p))], **{f"p_{c}": float(v) for c, v in zip(classes, p)}}
           for row, p in zip(rows, weighted)]
    return out, weighted


def write_predictions(path: str | Path, rows: list[dict], classes: Sequence[str]) -> None:
    fields = ["record", "label", "predicted", *[f"p_{c}" for c in classes], "windows", "reason"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
