"""Official and Noisy F1 of a square-root-balanced gradient-boosting bag after every 50 rounds:
5-fold record-level CV on the development records, over several fold assignments, from one
fit per fold (staged probabilities). It shows where the rounds stop helping and what the
tree size and the bag change; it chooses nothing (``gbm-bag`` chooses its rounds inside
``fit``).

    B=bench/out/s21
    .venv/bin/python bench/bench_ecg_gbm_curves.py --development $B/features-train-a \\
        --final $B/features-validation --fold-seeds 1 2 3 4 5 --rounds 600                     # 15 leaves, 1 booster
    .venv/bin/python bench/bench_ecg_gbm_curves.py ... --boosters 3 --max-features 0.5 --leaves 31 --rounds 250
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_ecg_quality import class_f1, development_set
from diagnosenet import protocol
from diagnosenet.ecg.classifier import BoosterBag, class_balance_weights
from diagnosenet.ecg.records import CLASSES

NOISY = CLASSES.index("Noisy")


def staged_out_of_fold(X, y, folds: np.ndarray, stages: list[int], bag: dict) -> dict[int, np.ndarray]:
    """Out-of-fold probabilities of every record after each number of rounds in ``stages``."""
    oof = {r: np.zeros((len(y), len(CLASSES))) for r in stages}
    for fold in range(folds.max() + 1):
        train, held = folds != fold, folds == fold
        model = BoosterBag(max_iter=stages[-1], **bag).fit(X[train], y[train],
                                                           sample_weight=class_balance_weights(y[train], 0.5))
        for r, proba in zip(stages, model.staged_predict_proba(X[held], stages)):
            oof[r][held] = proba
    return oof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--development", type=Path, required=True)
    parser.add_argument("--final", type=Path, required=True, help="only to remove the final records from development")
    parser.add_argument("--fold-seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=300, help="the last stage (stages every 50 rounds)")
    parser.add_argument("--boosters", type=int, default=1)
    parser.add_argument("--max-features", type=float, default=1.0)
    parser.add_argument("--leaves", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    X, y, records, *_ = development_set(args.development, args.final)
    stages = list(range(50, args.rounds + 1, 50))
    bag = {"n_boosters": args.boosters, "max_features": args.max_features, "max_leaf_nodes": args.leaves}
    curves = {r: {"official_f1": [], "noisy_f1": []} for r in stages}
    for seed in args.fold_seeds:
        folds = protocol.record_folds(y, records, 5, seed=seed)
        for r, proba in staged_out_of_fold(X, y, folds, stages, bag).items():
            pred = proba.argmax(axis=1)
            curves[r]["official_f1"].append(float(np.mean([protocol.official_f1(y[folds == f], pred[folds == f], CLASSES)
                                                           for f in range(folds.max() + 1)])))
            curves[r]["noisy_f1"].append(class_f1(y, pred, NOISY))
        print(f"fold seed {seed} done", flush=True)
    for r, row in curves.items():
        print(f"rounds {r:4d}: official F1 {np.mean(row['official_f1']):.4f} "
              f"({' '.join(f'{v:.3f}' for v in row['official_f1'])}), Noisy F1 {np.mean(row['noisy_f1']):.3f}")
    if args.out:
        args.out.write_text(json.dumps({"settings": bag, "fold_seeds": args.fold_seeds, "curves": curves}, indent=1))


if __name__ == "__main__":
    main()
