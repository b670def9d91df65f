"""ECG diagnosis quality under the protocol of ``diagnosenet.protocol`` (docs/ecg-quality.md).

    .venv/bin/diagnosenet ecg-features --records ../shared/data/physionet2017-train-a --out bench/out/ecg-quality/features-train-a
    .venv/bin/diagnosenet ecg-features --records ../shared/data/physionet2017-validation --out bench/out/ecg-quality/features-validation
    .venv/bin/python bench/bench_ecg_quality.py --development bench/out/ecg-quality/features-train-a \\
        --final bench/out/ecg-quality/features-validation --out bench/out/ecg-quality/features.json

1. The final records (the 300 ``physionet2017-validation`` ones) are removed from the
   development records (train-a contains them).
2. Every candidate feature model is scored by 5-fold record-level cross-validation on the
   development records (official F1 per fold: mean ± s.d.); the best mean is chosen.
3. Every candidate is then fitted once on all development records and scored once on the
   final records (all of them; a record missing from the feature table counts as Noisy),
   with a 95 % bootstrap interval over records — the choice was made before this step.
4. Time and CPU-seconds to reach official F1 0.70/0.75/0.80/0.83 on the final records: the
   chosen model fitted with 25–300 boosting rounds (reported, never used for a choice).
5. Nets (``--net NAME PREDICTIONS RUN``): a training run whose test split is the final records
   (``materialise --test-groups``; its epochs chosen on its valid split of development records)
   and ``diagnosenet predict`` of it over the final records' directory (every record scored,
   unwindowable ones as Noisy): the same final report, with the run's training time.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from diagnosenet import protocol
from diagnosenet.baselines import ECG_FEATURE_MODELS, ecg_feature_model
from diagnosenet.ecg.feature_table import load_features
from diagnosenet.ecg.records import CLASSES, LABELS, list_entries

NOISY = CLASSES.index("Noisy")
TARGETS = (0.70, 0.75, 0.80, 0.83)


def development_set(development: Path, final: Path, final_records: Path | None = None):
    """The development records' features (the final records removed), the mask that removed
    them, and every labelled final record with its label (all are scored)."""
    X_dev, y_dev, rec_dev = load_features(development)
    final_dir = final_records or Path(json.loads((final / "manifest.json").read_text())["params"]["records_dir"])
    entries = [e for e in list_entries(final_dir) if e.label in LABELS]
    all_final = [e.record for e in entries]
    keep = protocol.development_mask(rec_dev, all_final)
    return (X_dev[keep], y_dev[keep], rec_dev[keep], keep, all_final,
            np.array([LABELS[e.label] for e in entries]))


def timed_fit(model, X, y):
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(X, y)
    return time.perf_counter() - wall, time.process_time() - cpu


def cross_validate(name: str, X, y, folds: np.ndarray, seed: int) -> dict:
    """Per-fold official F1 and Noisy F1, and the pooled out-of-fold per-class F1 and noise
    detection (precision, recall) of every development record scored once."""
    scores, noisy_scores, oof = [], [], np.zeros_like(y)
    wall, cpu = time.perf_counter(), time.process_time()
    for fold in range(folds.max() + 1):
        train, held = folds != fold, folds == fold
        model = ecg_feature_model(name, seed)
        model.fit(X[train], y[train])
        oof[held] = model.predict(X[held])
        scores.append(protocol.official_f1(y[held], oof[held], CLASSES))
        noisy_scores.append(class_f1(y[held], oof[held], NOISY))
    flagged, noisy = oof == NOISY, y == NOISY
    return {"cv_f1_mean": float(np.mean(scores)), "cv_f1_sd": float(np.std(scores, ddof=1)), "cv_f1_folds": scores,
            "cv_noisy_f1_mean": float(np.mean(noisy_scores)), "cv_noisy_f1_sd": float(np.std(noisy_scores, ddof=1)),
            "cv_per_class_f1": {c: class_f1(y, oof, k) for k, c in enumerate(CLASSES)},
            "cv_noisy_precision": float((flagged & noisy).sum() / max(flagged.sum(), 1)),
            "cv_noisy_recall": float((flagged & noisy).sum() / max(noisy.sum(), 1)),
            "cv_seconds": time.perf_counter() - wall, "cv_cpu_seconds": time.process_time() - cpu}


def class_f1(y, pred, k: int) -> float:
    tp, denom = np.sum((pred == k) & (y == k)), np.sum(pred == k) + np.sum(y == k)
    return float(2 * tp / denom) if denom else 0.0


def time_to_targets(name: str, X, y, X_final, final_records, y_final, all_final, seed: int,
                    rounds=(25, 50, 100, 200, 300)) -> dict:
    """Wall and CPU seconds of one fit of model ``name`` with ``rounds`` boosting rounds, and its
    final F1: the first fit that reaches each target (fresh fits: the cascade's inner CV and
    two models cannot be warm-started together; a model that chooses its rounds by inner CV is
    fitted with each number of rounds instead). Reported, never used for a choice."""
    reached, curve = {}, []
    for n in rounds:
        model = ecg_feature_model(name, seed).set_params(max_iter=n)
        if "rounds_grid" in model.get_params():
            model.set_params(rounds_grid=None)       # these rounds, not a choice among others
        wall, cpu = timed_fit(model, X, y)
        pred = protocol.complete_predictions(all_final, final_records, model.predict(X_final), NOISY)
        f1 = protocol.official_f1(y_final, pred, CLASSES)
        curve.append({"rounds": n, "seconds": wall, "cpu_seconds": cpu, "official_f1": f1})
        for target in TARGETS:
            if f1 >= target and str(target) not in reached:
                reached[str(target)] = {"rounds": n, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2)}
    return {"model": name, "reached": reached, "curve": curve}


def net_report(predictions: Path, run: Path, all_final: list[str], y_final: np.ndarray, seed: int) -> dict:
    """The final report of a net from ``diagnosenet predict``'s table (a record it did not list
    counts as Noisy, as one it could not window)."""
    import csv

    with open(predictions, newline="") as handle:
        rows = list(csv.DictReader(handle))
    predicted = np.array([CLASSES.index(r["predicted"]) for r in rows])
    pred = protocol.complete_predictions(all_final, [r["record"] for r in rows], predicted, NOISY)
    metrics = json.loads((run / "metrics.json").read_text())
    return {"final": protocol.final_report(y_final, pred, CLASSES, seed=seed),
            "unwindowable": sum(1 for r in rows if r.get("reason")),
            **{k: metrics.get(k) for k in ("train_seconds", "time_to_best_s", "best_epoch", "epochs_run", "n_params")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--development", type=Path, required=True, help="ecg-features directory of the development records")
    parser.add_argument("--final", type=Path, required=True, help="ecg-features directory of the final records")
    parser.add_argument("--final-records", type=Path, default=None,
                        help="challenge directory of the final records (default: the final features' records_dir)")
    parser.add_argument("--models", nargs="+", default=list(ECG_FEATURE_MODELS), choices=ECG_FEATURE_MODELS)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--net", nargs=3, action="append", default=[], metavar=("NAME", "PREDICTIONS", "RUN"),
                        help="a net's predictions.csv over the final records and its run directory")
    parser.add_argument("--skip-features", action="store_true", help="only the nets (the feature models take ~1 min)")
    parser.add_argument("--choose", choices=ECG_FEATURE_MODELS, default=None,
                        help="the model to report as chosen (default: the highest CV official F1); a choice made "
                             "on the CV numbers, e.g. by Noisy F1 between models tied on official F1")
    parser.add_argument("--save-chosen", type=Path, default=None,
                        help="write the CV-chosen model, fitted on every development record, as a model directory "
                             "for `diagnosenet predict --model` (model.joblib + lineage.json)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file of every number")
    args = parser.parse_args()

    X_dev, y_dev, rec_dev, keep, all_final, y_final = development_set(args.development, args.final, args.final_records)
    X_fin, y_fin_rows, rec_fin = load_features(args.final)
    folds = protocol.record_folds(y_dev, rec_dev, args.folds, seed=args.seed)
    result = {"development_records": int(keep.sum()), "removed_final_records": int((~keep).sum()),
              "final_records": len(all_final), "final_records_without_features": len(set(all_final) - set(rec_fin)),
              "folds": args.folds, "models": {}}
    print(f"development {keep.sum()} records ({(~keep).sum()} final records removed), final {len(all_final)}")
    fitted = {}
    for name in [] if args.skip_features else args.models:
        row = cross_validate(name, X_dev, y_dev, folds, args.seed)
        model = fitted[name] = ecg_feature_model(name, args.seed)
        row["fit_seconds"], row["fit_cpu_seconds"] = timed_fit(model, X_dev, y_dev)
        pred = protocol.complete_predictions(all_final, rec_fin, model.predict(X_fin), NOISY)
        row["final"] = protocol.final_report(y_final, pred, CLASSES, seed=args.seed)
        result["models"][name] = row
        f = row["final"]
        per_class = " ".join(f"{c} {v:.3f}" for c, v in row["cv_per_class_f1"].items())
        print(f"{name:18s} CV {row['cv_f1_mean']:.3f} ± {row['cv_f1_sd']:.3f} ({per_class}; Noisy P "
              f"{row['cv_noisy_precision']:.2f} R {row['cv_noisy_recall']:.2f}; {row['cv_seconds']:.0f} s) | final {f['official_f1']:.3f} "
              f"[{f['official_f1_ci95'][0]:.3f}, {f['official_f1_ci95'][1]:.3f}] N {f['f1_N']:.3f} AF {f['f1_AF']:.3f} "
              f"O {f['f1_Other']:.3f} ~ {f['f1_Noisy']:.3f} | fit {row['fit_seconds']:.1f} s, {row['fit_cpu_seconds']:.1f} CPU-s",
              flush=True)
    if not args.skip_features:
        result["chosen"] = args.choose or max(result["models"], key=lambda n: result["models"][n]["cv_f1_mean"])
        result["time_to_target"] = time_to_targets(result["chosen"], X_dev, y_dev, X_fin, rec_fin, y_final, all_final,
                                                   args.seed)
        print("chosen by CV:", result["chosen"], "| time to F1 targets:", result["time_to_target"]["reached"])
        if args.save_chosen:
            from diagnosenet.baselines import ECG_MODEL_NAMES, save_feature_model

            args.save_chosen.mkdir(parents=True, exist_ok=True)
            save_feature_model(args.save_chosen, fitted[result["chosen"]], ECG_MODEL_NAMES[result["chosen"]], CLASSES,
                               args.development, args.development)
    result["nets"] = {name: net_report(Path(predictions), Path(run), all_final, y_final, args.seed)
                      for name, predictions, run in args.net}
    for name, row in result["nets"].items():
        f = row["final"]
        print(f"{name:14s} final {f['official_f1']:.3f} [{f['official_f1_ci95'][0]:.3f}, {f['official_f1_ci95'][1]:.3f}] "
              f"N {f['f1_N']:.3f} AF {f['f1_AF']:.3f} O {f['f1_Other']:.3f} ~ {f['f1_Noisy']:.3f} | "
              f"train {row['train_seconds']:.0f} s, best epoch {row['best_epoch']} at {row['time_to_best_s']:.0f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
