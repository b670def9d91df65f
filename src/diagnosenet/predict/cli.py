"""``diagnosenet predict`` and ``diagnosenet export`` (rule ``predict``; docs/predict.md)."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
STAGE = "predict"


def predict(model: str | Path | list, out: str | Path, *, records: str | Path | None = None, rhs: list[str] | None = None,
            labels: str | Path | None = None, salt_file: str | Path | None = None,
            weights: list[float] | None = None, class_weights: list[float] | None = None,
            jobs: int | None = None) -> dict:
    """Write ``predictions.csv`` (+ scores when labels are known) for new ECG records or RHS files.

    ``model``: one model, or several of the same task and classes whose probabilities are
    averaged per record (per stay) with ``weights`` (default equal): a seed ensemble, a net
    blended with the ECG feature model (``results/ecg/baseline``), or both. Choose the weights
    on development records (``bench/bench_ecg_blend_cv.py``), never on the records you score.
    ``class_weights``: decision weights per class applied to those probabilities
    (:func:`~diagnosenet.predict.table.weigh_classes`), chosen the same way.
    ``jobs``: ECG records read in parallel (default: every CPU)."""
    from diagnosenet import metrics
    from diagnosenet.artifacts import write_json, write_manifest
    from diagnosenet.predict.model import lineage_of, load
    from diagnosenet.predict.table import rows_by_group, weigh_classes, write_predictions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    models = [model] if isinstance(model, (str, Path)) else list(model)
    weights = [1.0] * len(models) if weights is None else [float(w) for w in weights]
    if len(weights) != len(models) or min(weights) < 0 or sum(weights) <= 0:
        raise SystemExit(f"--weights {weights}: one non-negative weight per model ({len(models)}), not all zero")
    weights = [w / sum(weights) for w in weights]
    lineages = [lineage_of(m) for m in models]
    lineage, classes = lineages[0], lineages[0].classes
    for source, other in zip(models[1:], lineages[1:]):
        if other.task != lineage.task or other.classes != classes:
            raise SystemExit(f"--model {source}: not a {lineage.task} model over the classes {classes}, as {models[0]} is")
    if lineage.task == "ecg":
        if records is None:
            raise SystemExit(f"{models[0]} is an ECG model: give --records DIR (WFDB records, REFERENCE.csv optional)")
        from diagnosenet.predict.ecg import combine, decide, read_records

        # every record read once for all the models (windows and features share its beats), in
        # worker processes forked before any model is loaded (TensorFlow's threads and fork do not mix)
        keys = [json.dumps(other.preprocessing, sort_keys=True, default=str) for other in lineages]
        unique = list(dict.fromkeys(keys))
        read = dict(zip(unique, read_records(records, [json.loads(k) for k in unique], jobs)))
        loaded = [load(m) for m in models]
        outputs = [(read[key], decide(read[key], proba_of_, classes)) for key, (_, proba_of_) in zip(keys, loaded)]
        inputs = outputs[0][0]
        rows, proba = combine([decided for _, decided in outputs], weights, classes)
        y = np.array([-1 if i.label is None else i.label for i in inputs], np.int64)
        reasons: dict[str, int] = {}
        for item in inputs:
            if item.reason:
                reasons[item.reason.split(":")[0]] = reasons.get(item.reason.split(":")[0], 0) + 1
        counts = {"records_in": len(inputs), "records_windowed": sum(i.samples is not None for i in inputs),
                  "records_unclassifiable": sum(1 for r in rows if r["reason"]), "reasons": reasons,
                  "records_labelled": int((y >= 0).sum())}
        if len(models) > 1:   # e.g. records too short to window: the feature model scores them alone
            usable = [sum(not decided[0][index]["reason"] for _, decided in outputs) for index in range(len(rows))]
            counts["combination"] = {"models": [str(m) for m in models], "weights": weights,
                                     "records_scored_by_some_models_only": sum(0 < n < len(models) for n in usable)}
    else:
        if not rhs:
            raise SystemExit(f"{models[0]} is a PMSI model: give --rhs FILE... (RHS M05)")
        from diagnosenet.predict.pmsi import compose_for, read_labels_by_pseudonym
        from diagnosenet.privacy import DEFAULT_SALT_FILE, load_or_create_salt

        salt = load_or_create_salt(salt_file or DEFAULT_SALT_FILE)
        X, names, counts, quarantine = compose_for(rhs, lineage.vocabulary, lineage.preprocessing["groups"], salt)
        for error in quarantine[:10]:
            log.warning("quarantined %s", error)
        known = read_labels_by_pseudonym(labels, salt) if labels else {}
        y = np.array([known.get(n, -1) for n in names], np.int64)
        loaded = [load(m) for m in models]
        stays = sum(w * (proba_of(X) if k == 0 else   # every model composes the same stays, in order
                         proba_of(compose_for(rhs, other.vocabulary, other.preprocessing["groups"], salt)[0]))
                    for k, (w, (other, proba_of)) in enumerate(zip(weights, loaded)))
        rows, proba, _ = rows_by_group(names, None, stays, classes)
        for row, label in zip(rows, y):
            row["label"] = "" if label < 0 else classes[label]
        counts["records_labelled"] = int((y >= 0).sum())
        if counts["unseen_features"]:
            log.warning("%d feature occurrences unseen in training (ignored): %s", counts["unseen_features"],
                        counts["unseen_features_per_group"])
    if class_weights is not None:
        rows, proba = weigh_classes(rows, proba, class_weights, classes)
        counts["class_weights"] = dict(zip(classes, map(float, class_weights)))
    write_predictions(out / "predictions.csv", rows, classes)
    files = ["predictions.csv", "counts.json"]
    result = {"task": lineage.task, "model": [str(m) for m in models], "counts": counts}
    labelled = y >= 0
    if labelled.any():
        scores = metrics.summarise(y[labelled], proba[labelled], classes, challenge=lineage.task == "ecg")
        metrics.write_per_class_csv(out / "per_class.csv", scores.pop("per_class"))
        metrics.write_confusion_csv(out / "confusion.csv", scores["confusion"], classes)
        write_json(out / "scores.json", scores)
        files += ["scores.json", "per_class.csv", "confusion.csv"]
        result["scores"] = scores
        log.info("%d labelled %s: accuracy %.4f, macro F1 %.4f%s", int(labelled.sum()),
                 "records" if lineage.task == "ecg" else "stays", scores["accuracy"], scores["macro_f1"],
                 f", challenge F1 {scores['challenge_f1']:.4f}" if "challenge_f1" in scores else "")
    write_json(out / "counts.json", counts)
    params = {"model": [str(m) for m in models], "weights": weights, "class_weights": class_weights}
    write_manifest(out, stage=STAGE, files=files, params=params, counts=counts)
    log.info("%d predictions in %s", len(rows), out / "predictions.csv")
    return result


def _predict(args: argparse.Namespace) -> int:
    predict(args.model, args.out, records=args.records, rhs=args.rhs, labels=args.labels, salt_file=args.salt_file,
            weights=args.weights, class_weights=args.class_weights, jobs=args.jobs)
    return 0


def _export(args: argparse.Namespace) -> int:
    from diagnosenet.predict.export import export

    card = export(args.run, args.out)
    log.info("exported %s %s model to %s (test scores %s)", card["task"], card["training"]["mode"], args.out,
             card["test_scores"])
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="apply a trained run (or an export) to new ECG records or RHS files")
    p.add_argument("--model", required=True, nargs="+",
                   help="a run directory (results/{task}/runs/...), an export directory or results/ecg/baseline; "
                        "several: their weighted mean probabilities")
    p.add_argument("--records", help="ECG: directory of WFDB records (REFERENCE.csv optional: labels → scores)")
    p.add_argument("--rhs", nargs="+", help="PMSI: RHS M05 files")
    p.add_argument("--labels", help="PMSI: stay_number,label CSV (optional: → scores)")
    p.add_argument("--salt-file", help="PMSI: the hospital's pseudonym key (default: the pipeline's)")
    p.add_argument("--weights", type=float, nargs="+",
                   help="one weight per --model (default equal), e.g. a net and results/ecg/baseline blended; "
                        "choose them on development records")
    p.add_argument("--class-weights", type=float, nargs="+",
                   help="one decision weight per class, in the model's class order: the (combined) probabilities "
                        "times these, renormalised; choose them on development records (bench/bench_ecg_blend_cv.py)")
    p.add_argument("--jobs", type=int, default=None, help="ECG: records read in parallel (default: every CPU)")
    p.add_argument("--out", required=True, help="output directory (predictions.csv, counts.json, scores)")
    p.set_defaults(func=_predict)

    e = subparsers.add_parser("export", help="a self-contained SavedModel + model card of a trained run")
    e.add_argument("--run", required=True, help="run directory")
    e.add_argument("--out", required=True, help="export directory")
    e.set_defaults(func=_export)
