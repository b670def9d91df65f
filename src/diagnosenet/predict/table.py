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


def write_predictions(path: str | Path, rows: list[dict], classes: Sequence[str]) -> None:
    fields = ["record", "label", "predicted", *[f"p_{c}" for c in classes], "windows", "reason"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
