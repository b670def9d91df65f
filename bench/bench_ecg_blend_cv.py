"""Weights of a blend of several ECG nets and the feature model, chosen on out-of-fold
probabilities of the development records, with an honest (nested) CV estimate; then one
final score of the chosen blend.

    B=bench/out/ecg-quality
    .venv/bin/python bench/bench_ecg_blend_cv.py --oof rf=$B/cv-small/oof.csv windows=$B/cv-windows/oof.csv \\
        --out $B/blend-cv.json
    # once each net (and the feature model) trained on every development record scored the final records:
    .venv/bin/python bench/bench_ecg_blend_cv.py ... --final rf=$B/small/predict-final/predictions.csv \\
        windows=$B/windows-net/predict-final/predictions.csv features=$B/small/predict-gbm/predictions.csv

Each ``oof.csv`` is ``bench_ecg_net_cv.py``'s: every development record with its fold, label,
the net's out-of-fold probabilities (empty where the net had no windows) and the feature
model's (``--feature-model``), on the same folds (the files must agree on folds and on the
feature model). The weights run over the simplex in steps of ``--step`` (nets first, the
feature model takes the rest); a record a net
could not score takes the other models' combination (``predict``'s own ``weighted_mean``).
The weight chosen on all folds is optimistic by construction (it is the best of many on those
folds), so the **nested** estimate chooses the weights on four folds and scores the fifth.
``--class-weights`` adds per-class decision weights on the blend (``ecg.classifier.choose_weights``:
the four-class mean F1 of ``argmax(p × w)``): in the nested estimate chosen on the same four
folds as the blend's weights; for use, chosen on every fold with the chosen blend
(``chosen_class_weights``: ``predict --class-weights``, ``predict.class_weights``), and applied
to the blend in ``--final``.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
from pathlib import Path

import numpy as np
from diagnosenet import protocol
from diagnosenet.ecg.records import CLASSES
from diagnosenet.predict.ecg import weighted_mean

NOISY = CLASSES.index("Noisy")


def read_oof(path: Path) -> dict[str, dict]:
    with open(path, newline="") as handle:
        return {row["record"]: row for row in csv.DictReader(handle)}


def probabilities(rows: list[dict], prefix: str) -> np.ndarray:
    """(records, classes), NaN where the model scored nothing."""
    return np.array([[float(r[f"{prefix}{c}"]) if r.get(f"{prefix}{c}") not in (None, "") else np.nan
                      for c in CLASSES] for r in rows])


def simplex(models: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector over ``models`` in multiples of ``step`` that sums to 1."""
    n = round(1 / step)
    return [tuple(k / n for k in ks) for ks in itertools.product(range(n + 1), repeat=models) if sum(ks) == n]


def official_f1(y: np.ndarray, proba: np.ndarray) -> float:
    return protocol.official_f1(y, proba.argmax(axis=1), CLASSES)


def class_f1(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """F1 of each class (Noisy included: the issue's noise target), over the records given."""
    from sklearn.metrics import f1_score

    return dict(zip(CLASSES, f1_score(y, predicted, labels=range(len(CLASSES)), average=None, zero_division=0).round(4).tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oof", nargs="+", required=True, metavar="NAME=OOF.CSV", help="bench_ecg_net_cv.py's oof.csv per net")
    parser.add_argument("--step", type=float, default=0.1)
    parser.add_argument("--final", nargs="+", default=None, metavar="NAME=PREDICTIONS.CSV",
                        help="predict's predictions.csv on the final records, one per net (same names) and features=")
    parser.add_argument("--seed", type=int, default=1, help="bootstrap seed")
    parser.add_argument("--class-weights", action="store_true",
                        help="also: class decision weights on the blend, chosen in the nested estimate (reported only)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    named = dict(item.split("=", 1) for item in args.oof)
    oofs = {name: read_oof(Path(path)) for name, path in named.items()}
    first = next(iter(oofs.values()))
    records = sorted(first)
    for name, oof in oofs.items():
        if sorted(oof) != records or any(oof[r]["fold"] != first[r]["fold"] for r in records):
            raise SystemExit(f"--oof {name}: other records or folds than {next(iter(named))}")
        gap = np.nanmax(np.abs(probabilities([oof[r] for r in records], "features_")
                               - probabilities([first[r] for r in records], "features_")))
        if gap > 1e-5:
            raise SystemExit(f"--oof {name}: another feature model than {next(iter(named))} (differs by {gap:.2g})")
    y = np.array([CLASSES.index(first[r]["label"]) for r in records])
    folds = np.array([int(first[r]["fold"]) for r in records])
    names = [*named, "features"]
    tables = [probabilities([oofs[n][r] for r in records], "net_") for n in named]
    tables.append(probabilities([first[r] for r in records], "features_"))
    grid = simplex(len(names), args.step)

    def fold_scores(weights, which=None) -> list[float]:
        proba = weighted_mean(tables, weights)
        return [official_f1(y[folds == k], proba[folds == k]) for k in sorted(set(folds)) if which is None or k in which]

    cv = {w: fold_scores(w) for w in grid}
    chosen = max(cv, key=lambda w: (np.mean(cv[w]), -np.std(cv[w])))
    nested, nested_predicted = [], np.empty(len(records), np.int64)
    weighted_predicted = np.empty(len(records), np.int64)
    for k in sorted(set(folds)):
        others = set(folds) - {k}
        best = max(grid, key=lambda w: np.mean(fold_scores(w, others)))
        nested.append({"fold": int(k), "weights": dict(zip(names, best)), "f1": fold_scores(best, {k})[0]})
        blended = weighted_mean(tables, best)
        nested_predicted[folds == k] = blended[folds == k].argmax(axis=1)
        if args.class_weights:
            from diagnosenet.ecg.classifier import choose_weights

            decision = choose_weights(y[folds != k], blended[folds != k])
            weighted_predicted[folds == k] = (blended[folds == k] * decision).argmax(axis=1)
            nested[-1]["class_weights"] = dict(zip(CLASSES, decision.tolist()))
    single = {name: cv[tuple(float(i == j) for j in range(len(names)))] for i, name in enumerate(names)}
    decision = np.ones(len(CLASSES))
    if args.class_weights:
        from diagnosenet.ecg.classifier import choose_weights

        decision = choose_weights(y, weighted_mean(tables, chosen))
    summary = {
        "models": names, "step": args.step, "records": len(records),
        "alone_cv": {n: [float(np.mean(s)), float(np.std(s, ddof=1))] for n, s in single.items()},
        "chosen_weights": dict(zip(names, chosen)), "chosen_cv": [float(np.mean(cv[chosen])), float(np.std(cv[chosen], ddof=1))],
        "chosen_f1_by_fold": [float(v) for v in cv[chosen]],
        "nested_cv": [float(np.mean([f["f1"] for f in nested])), float(np.std([f["f1"] for f in nested], ddof=1))],
        "nested_folds": nested,
        "chosen_class_f1": class_f1(y, weighted_mean(tables, chosen).argmax(axis=1)),
        "nested_class_f1": class_f1(y, nested_predicted),
        **({"nested_with_class_weights": {
            "cv": [float(np.mean(by_fold := [protocol.official_f1(y[folds == k], weighted_predicted[folds == k], CLASSES)
                                             for k in sorted(set(folds))])), float(np.std(by_fold, ddof=1))],
            "class_f1": class_f1(y, weighted_predicted)},
            "chosen_class_weights": dict(zip(CLASSES, decision.tolist()))} if args.class_weights else {}),
        "top": [{"weights": dict(zip(names, w)), "cv": float(np.mean(cv[w]))}
                for w in sorted(cv, key=lambda w: -np.mean(cv[w]))[:10]],
    }
    for name, (mean, sd) in summary["alone_cv"].items():
        print(f"{name:10s} alone CV {mean:.3f} ± {sd:.3f}")
    print(f"chosen {summary['chosen_weights']}: CV {summary['chosen_cv'][0]:.3f} ± {summary['chosen_cv'][1]:.3f} "
          f"(folds {', '.join(f'{v:.3f}' for v in cv[chosen])}); nested CV {summary['nested_cv'][0]:.3f} ± "
          f"{summary['nested_cv'][1]:.3f}")
    print(f"class F1, chosen: {summary['chosen_class_f1']}; nested: {summary['nested_class_f1']}")
    if args.class_weights:
        weighted = summary["nested_with_class_weights"]
        print(f"nested with class weights: CV {weighted['cv'][0]:.3f} ± {weighted['cv'][1]:.3f}, class F1 "
              f"{weighted['class_f1']}; for use (every fold): --class-weights {' '.join(f'{w:g}' for w in decision)}")
    if args.final:
        finals = dict(item.split("=", 1) for item in args.final)
        if set(finals) != set(names):
            raise SystemExit(f"--final: give one predictions.csv per model: {', '.join(names)}")
        rows = {n: read_oof(Path(finals[n])) for n in names}
        final_records = list(rows["features"])
        y_final = np.array([CLASSES.index(rows["features"][r]["label"]) for r in final_records])
        # a record a model could not score has its reason and no usable probabilities
        final_tables = [np.array([probabilities([rows[n][r]], "p_")[0] if not rows[n][r]["reason"]
                                  else np.full(len(CLASSES), np.nan) for r in final_records]) for n in names]
        predicted = {}
        for name, proba in (("features", final_tables[-1]), ("blend", weighted_mean(final_tables, chosen) * decision)):
            unscored = np.isnan(proba).any(axis=1)
            predicted[name] = np.where(unscored, NOISY, np.nan_to_num(proba).argmax(axis=1))
        summary["final"] = protocol.final_reports(y_final, predicted, CLASSES, baseline="features", seed=args.seed)
        for name, report in summary["final"].items():
            print(protocol.describe_final(name, report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
