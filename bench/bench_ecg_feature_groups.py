"""What each ECG feature group adds: the 5-fold CV of a feature model on column subsets of one
``ecg-features`` table, over several fold assignments (a difference smaller than the spread
between assignments is noise). Optionally the mean of boosters that each split on a random
half of the features (``--bag``). Reported only: no choice is made here.

    B=bench/out/ecg26b
    .venv/bin/python bench/bench_ecg_feature_groups.py --development $B/features-train-a \\
        --final $B/features-validation --groups base shape wavelets all --fold-seeds 1 2 3 --bag
    .venv/bin/python bench/bench_ecg_feature_groups.py --development $B/features-train-a \
        --final $B/features-validation --model gbm-sqrt-balanced --groups all --fold-seeds 1 2 3 4 5
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_ecg_quality import cross_validate, development_set
from diagnosenet import protocol
from diagnosenet.ecg.beat_clusters import CLUSTER_NAMES
from diagnosenet.ecg.delineation import DELINEATION_NAMES
from diagnosenet.ecg.features import FEATURE_NAMES, SHAPE_NAMES
from diagnosenet.ecg.hrv import AF_EVIDENCE_NAMES
from diagnosenet.ecg.records import CLASSES
from diagnosenet.ecg.stretches import STRETCH_NAMES
from diagnosenet.ecg.wavelets import WAVELET_NAMES

#: column groups: the 85 features before 2026-12-07, each group of that day added to them
#: (shape, wavelets: 109 together), the 37 of the evening (stretches, clusters, AF evidence: 146),
#: and the 11 median-beat intervals and rhythm patterns of 2026-12-07's session 22 (157)
LATE = set(STRETCH_NAMES) | set(CLUSTER_NAMES) | set(AF_EVIDENCE_NAMES) | set(DELINEATION_NAMES)
NEW = set(SHAPE_NAMES) | set(WAVELET_NAMES) | LATE
GROUPS = {"base": [n for n in FEATURE_NAMES if n not in NEW],
          "shape": [n for n in FEATURE_NAMES if n not in NEW or n in SHAPE_NAMES],
          "wavelets": [n for n in FEATURE_NAMES if n not in NEW or n in WAVELET_NAMES],
          "109": [n for n in FEATURE_NAMES if n not in LATE],
          "146": [n for n in FEATURE_NAMES if n not in DELINEATION_NAMES],
          "all": list(FEATURE_NAMES)}


def bagged_cv(X, y, folds: np.ndarray, boosters: int = 3) -> list[float]:
    """Per-fold official F1 of the mean probabilities of ``boosters`` gbms, each splitting on a
    random half of the features (its own seed)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    scores = []
    for fold in range(folds.max() + 1):
        train, held = folds != fold, folds == fold
        proba = np.mean([HistGradientBoostingClassifier(learning_rate=0.05, max_iter=300, max_leaf_nodes=15,
                                                        l2_regularization=1.0, early_stopping=False, max_features=0.5,
                                                        random_state=seed).fit(X[train], y[train]).predict_proba(X[held])
                         for seed in range(1, boosters + 1)], axis=0)
        scores.append(protocol.official_f1(y[held], proba.argmax(axis=1), CLASSES))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--development", type=Path, required=True)
    parser.add_argument("--final", type=Path, required=True, help="only to remove the final records from development")
    parser.add_argument("--model", default="gbm")
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=GROUPS)
    parser.add_argument("--fold-seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--bag", action="store_true", help="also the mean of 3 feature-subsampled gbms on all columns")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    X, y, records, *_ = development_set(args.development, args.final)
    names = json.loads((args.development / "feature_names.json").read_text())
    result = {}
    for seed in args.fold_seeds:
        folds = protocol.record_folds(y, records, 5, seed=seed)
        for group in args.groups:
            columns = [names.index(n) for n in GROUPS[group] if n in names]   # an older table has fewer
            row = cross_validate(args.model, X[:, columns], y, folds, 1)
            result[f"{group} seed {seed}"] = row
            print(f"fold seed {seed} {group:8s} ({len(columns)} features) CV {row['cv_f1_mean']:.4f} ± "
                  f"{row['cv_f1_sd']:.3f}, Noisy {row['cv_per_class_f1']['Noisy']:.3f}", flush=True)
        if args.bag:
            scores = bagged_cv(X, y, folds)
            result[f"bag seed {seed}"] = scores
            print(f"fold seed {seed} bag of 3 (all) CV {np.mean(scores):.4f} ± {np.std(scores, ddof=1):.3f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
