"""Record-level 5-fold cross-validation of an ECG net on the development records, on the
feature model's folds, with out-of-fold probabilities and the net + feature-model blend chosen on them.

    B=bench/out/ecg-quality
    .venv/bin/python bench/bench_ecg_net_cv.py --windows $B/windows-rf --features $B/features-train-a \\
        --final $B/features-validation --out $B/cv-small \\
        --model-json '{"filters": [8, 16], "blocks_per_stage": 1, "kernel_size": 16, "dropout_keep": 0.8,
                       "record_features": true, "feature_units": 128}' --lr 0.001
    # then, once a net trained on every development record has scored the final records
    # (bench_desktop_accuracy.py + diagnosenet predict, docs/benchmarks.md):
    .venv/bin/python bench/bench_ecg_net_cv.py ... --final-predictions $B/small/predict-final/predictions.csv

The protocol of ``bench_ecg_quality.py`` (``docs/ecg-quality.md``): the final records are
removed first; the folds are ``protocol.record_folds`` over the **feature table's**
development records (the same seed, so the net's folds are the gradient boosting's and the
two are compared fold by fold); for each fold the project's own stages build the data set
(``materialise`` with the fold as its fixed test split, 10 % of the other records as the
valid split for early stopping; ``shard``) and ``desktop.train`` trains the net. Every
development record of the fold is scored (a record the windowing could not use counts as
Noisy), so the CV F1 is the feature model's, record for record.

``--train-seeds 1 2 3`` trains one net per seed (initialisation and batch order) on each fold
and scores their mean probabilities (a seed ensemble; each seed's own CV F1 is reported too,
and its out-of-fold probabilities written to ``oof-seed{s}.csv``);
the first seed's runs are the single-net CV's, so an ensemble reuses them.

``--feature-model`` (``gbm``, ``cascade``, …: ``baselines.ecg_feature_model``) is the model fitted
on the same folds and blended with the net; its out-of-fold probabilities are the
``features_*`` columns of ``oof.csv``.

The blend ``w × p_net + (1 − w) × p_features`` (the feature model alone where the net has no
windows) is chosen on the out-of-fold probabilities only (``w`` in 0, 0.1, …, 1, best mean
fold F1); ``--final-predictions`` then scores the chosen ``w`` once on the final records.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import desktop_run
import numpy as np
from diagnosenet import protocol
from diagnosenet.baselines import ECG_FEATURE_MODELS, ecg_feature_model
from diagnosenet.ecg.feature_table import load_features
from diagnosenet.ecg.records import CLASSES, LABELS, list_entries

NOISY = CLASSES.index("Noisy")
BIN = Path(sys.executable).parent
WEIGHTS = np.round(np.linspace(0.0, 1.0, 11), 2)


def development_source(windows: Path, development: set[str], out: Path) -> Path:
    """The window-ecg arrays of the development records only (a composed-stage directory)."""
    from diagnosenet.artifacts import write_json, write_manifest
    from diagnosenet.datasets.materialise import load_arrays

    if (out / "manifest.json").exists():
        return out
    X, y, groups = load_arrays(windows)
    keep = np.flatnonzero(np.isin(groups.astype(str), sorted(development)))
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "X.npy", np.asarray(X[keep], np.float32))
    np.save(out / "y.npy", y[keep])
    np.save(out / "groups.npy", groups[keep])
    write_json(out / "classes.json", json.loads((windows / "classes.json").read_text()))
    write_manifest(out, stage="window-ecg", files=["X.npy", "y.npy", "groups.npy", "classes.json"],
                   params={"subset_of": str(windows), "development_records": len(development)})
    return out


def read_probabilities(path: Path) -> dict[str, np.ndarray]:
    """Record → class probabilities of a ``test_predictions.csv`` / ``predictions.csv``
    (records without probabilities, e.g. unwindowable ones, are left out)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {r["record"]: np.array([float(r[f"p_{c}"]) for c in CLASSES]) for r in rows
            if all(r.get(f"p_{c}") not in (None, "") for c in CLASSES)}


def prepare_fold(args, source: Path, fold_dir: Path, test_records: list[str]) -> None:
    """Materialise and shard one fold (kept from an earlier run)."""
    from diagnosenet.datasets.materialise import materialise

    if (fold_dir / "shards" / "manifest.json").exists():
        return
    fold_dir.mkdir(parents=True, exist_ok=True)
    (fold_dir / "test_records.txt").write_text("\n".join(test_records) + "\n")
    materialise(source, fold_dir / "dataset", valid_fraction=args.valid_fraction, test_fraction=0.0, seed=1,
                test_groups_file=fold_dir / "test_records.txt")
    subprocess.run([str(BIN / "diagnosenet"), "shard", "--dataset", str(fold_dir / "dataset"), "--out",
                    str(fold_dir / "shards"), "--workers", "1", "--batch-size", str(args.batch_size), "--seed", "1"],
                   check=True, stdout=subprocess.DEVNULL)


def run_dir(fold_dir: Path, train_seed: int) -> Path:
    """``run`` for the first seed (the layout of single-net CVs), ``run-seed{s}`` for the others."""
    return fold_dir / ("run" if train_seed == 1 else f"run-seed{train_seed}")


def train_fold(args, fold_dir: Path, train_seed: int) -> dict:
    """Train one net of one fold (skipped when its run finished earlier)."""
    from diagnosenet.training.desktop import train

    run = run_dir(fold_dir, train_seed)
    timing = run.parent / f"timing{'' if train_seed == 1 else f'-seed{train_seed}'}.json"
    if (run / "metrics.json").exists() and timing.exists():
        return json.loads(timing.read_text())
    settings = desktop_run.settings(args, "ecg", fold_dir, run, seed=train_seed)
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(settings)
    spent = {"train_seconds": time.perf_counter() - wall, "train_cpu_seconds": time.process_time() - cpu,
             "best_epoch": result["best_epoch"], "epochs_run": result["epochs_run"]}
    timing.write_text(json.dumps(spent))
    return spent


def mean_probabilities(runs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The seed ensemble: each record's mean over the nets that scored it (all or none: same windows)."""
    return {r: np.mean([run[r] for run in runs], axis=0) for r in runs[0]}


def fold_f1(records: list[str], y: np.ndarray, proba: dict[str, np.ndarray]) -> float:
    """Official F1 over ``records`` (all of them; one without probabilities counts as Noisy)."""
    scored = [r for r in records if r in proba]
    predicted = np.array([int(np.argmax(proba[r])) for r in scored], np.int64)
    return protocol.official_f1(y, protocol.complete_predictions(records, scored, predicted, NOISY), CLASSES)


def blend(net: dict[str, np.ndarray], features: dict[str, np.ndarray], w: float) -> dict[str, np.ndarray]:
    """``w × net + (1 − w) × features`` per record; the feature model alone where the net scored nothing."""
    return {r: (w * net[r] + (1 - w) * p) if r in net else p for r, p in features.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=Path, required=True, help="window-ecg output of the development records")
    parser.add_argument("--features", type=Path, required=True, help="ecg-features output of the same records")
    parser.add_argument("--final", type=Path, required=True, help="ecg-features output of the final records")
    parser.add_argument("--out", type=Path, required=True)
    desktop_run.add_options(parser)
    parser.add_argument("--valid-fraction", type=float, default=0.1)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1, help="the folds' seed (bench_ecg_quality.py's default)")
    parser.add_argument("--feature-model", default="gbm", choices=ECG_FEATURE_MODELS,
                        help="the feature model fitted on the same folds and blended with the net")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[1],
                        help="one net per seed (initialisation and batch order); several: their mean probabilities")
    parser.add_argument("--final-predictions", type=Path, nargs="+", default=None,
                        help="predict's predictions.csv of the net(s) trained on the development records, over the final records")
    args = parser.parse_args()

    X_dev, y_dev, rec_dev = load_features(args.features)
    X_fin, _, rec_fin = load_features(args.final)
    final_dir = Path(json.loads((args.final / "manifest.json").read_text())["params"]["records_dir"])
    entries = [e for e in list_entries(final_dir) if e.label in LABELS]
    all_final, y_final = [e.record for e in entries], np.array([LABELS[e.label] for e in entries])
    keep = protocol.development_mask(rec_dev, all_final)
    X_dev, y_dev, rec_dev = X_dev[keep], y_dev[keep], np.asarray(rec_dev)[keep].astype(str)
    folds = protocol.record_folds(y_dev, rec_dev, args.folds, seed=args.seed)
    source = development_source(args.windows, set(rec_dev.tolist()), args.out / "development-windows")

    net_oof, features_oof, per_fold = {}, {}, []
    seed_oof: dict[int, dict[str, np.ndarray]] = {s: {} for s in args.train_seeds}
    for fold in range(args.folds):
        held = folds == fold
        records = rec_dev[held].tolist()
        fold_dir = args.out / f"fold{fold}"
        prepare_fold(args, source, fold_dir, records)
        spent = {s: train_fold(args, fold_dir, s) for s in args.train_seeds}
        nets = {s: read_probabilities(run_dir(fold_dir, s) / "test_predictions.csv") for s in args.train_seeds}
        net = mean_probabilities(list(nets.values()))
        net_oof.update(net)
        for s in args.train_seeds:
            seed_oof[s].update(nets[s])
        feature_model = ecg_feature_model(args.feature_model, args.seed).fit(X_dev[~held], y_dev[~held])
        features_oof.update(dict(zip(records, feature_model.predict_proba(X_dev[held]))))
        per_fold.append({"fold": fold, "records": len(records), "windowed": sum(r in net for r in records),
                         "net_f1": fold_f1(records, y_dev[held], net),
                         "features_f1": fold_f1(records, y_dev[held], {r: features_oof[r] for r in records}),
                         "net_f1_by_seed": {s: fold_f1(records, y_dev[held], nets[s]) for s in args.train_seeds},
                         "train_seconds": sum(t["train_seconds"] for t in spent.values()),
                         "train_cpu_seconds": sum(t["train_cpu_seconds"] for t in spent.values()),
                         "by_seed": spent})
        print(json.dumps(per_fold[-1]), flush=True)

    def cv(proba: dict[str, np.ndarray]) -> list[float]:
        return [fold_f1(rec_dev[folds == k].tolist(), y_dev[folds == k], proba) for k in range(args.folds)]

    curve = {float(w): cv(blend(net_oof, features_oof, w)) for w in WEIGHTS}
    chosen = max(curve, key=lambda w: (np.mean(curve[w]), -abs(w - 0.5)))
    summary = {
        "model": json.loads(args.model_json), "lr": args.lr, "class_weight": args.class_weight,
        "train_seeds": args.train_seeds,
        "development_records": int(len(rec_dev)), "folds": per_fold,
        "net_cv": [float(np.mean([f["net_f1"] for f in per_fold])), float(np.std([f["net_f1"] for f in per_fold], ddof=1))],
        "net_cv_by_seed": {s: [float(np.mean([f["net_f1_by_seed"][s] for f in per_fold])),
                               float(np.std([f["net_f1_by_seed"][s] for f in per_fold], ddof=1))] for s in args.train_seeds},
        "feature_model": args.feature_model, "feature_model_cv": [float(np.mean([f["features_f1"] for f in per_fold])), float(np.std([f["features_f1"] for f in per_fold], ddof=1))],
        "blend_cv_by_weight": {str(w): [float(np.mean(s)), float(np.std(s, ddof=1))] for w, s in curve.items()},
        "blend_f1_by_fold": {str(w): [float(v) for v in s] for w, s in curve.items()},
        "blend_weight_chosen": chosen,
        "train_seconds": float(sum(f["train_seconds"] for f in per_fold)),
        "train_cpu_seconds": float(sum(f["train_cpu_seconds"] for f in per_fold)),
    }
    def write_oof(path: Path, nets: dict[str, np.ndarray]) -> None:   # out-of-fold probabilities, for later blends
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["record", "fold", "label", *[f"net_{c}" for c in CLASSES], *[f"features_{c}" for c in CLASSES]])
            for record, fold, label in zip(rec_dev.tolist(), folds.tolist(), y_dev.tolist()):
                net = nets.get(record, np.full(len(CLASSES), np.nan))
                writer.writerow([record, fold, CLASSES[label], *net.round(6), *features_oof[record].round(6)])

    write_oof(args.out / "oof.csv", net_oof)
    if len(args.train_seeds) > 1:   # each seed's own, to blend one net at a time (bench_ecg_blend_cv.py)
        for s in args.train_seeds:
            write_oof(args.out / f"oof-seed{s}.csv", seed_oof[s])
    print(f"net CV {summary['net_cv'][0]:.3f} ± {summary['net_cv'][1]:.3f} | {args.feature_model} CV {summary['feature_model_cv'][0]:.3f} ± "
          f"{summary['feature_model_cv'][1]:.3f} | blend w={chosen}: CV {np.mean(curve[chosen]):.3f} ± {np.std(curve[chosen], ddof=1):.3f}")
    if args.final_predictions:
        feature_model = ecg_feature_model(args.feature_model, args.seed).fit(X_dev, y_dev)
        features_final = dict(zip(np.asarray(rec_fin).astype(str).tolist(), feature_model.predict_proba(X_fin)))
        net_final = mean_probabilities([read_probabilities(path) for path in args.final_predictions])
        predicted = {}
        for name, proba in ((args.feature_model, features_final), ("net", net_final), (f"blend w={chosen}", blend(net_final, features_final, chosen))):
            scored = [r for r in all_final if r in proba]
            labels = np.array([int(np.argmax(proba[r])) for r in scored], np.int64)
            predicted[name] = protocol.complete_predictions(all_final, scored, labels, NOISY)
        summary["final"] = protocol.final_reports(y_final, predicted, CLASSES, baseline=args.feature_model, seed=args.seed)
        for name, report in summary["final"].items():
            print(protocol.describe_final(name, report))
    (args.out / "cv.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
