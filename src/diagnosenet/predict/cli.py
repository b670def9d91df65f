"""``diagnosenet predict`` and ``diagnosenet export`` (rule ``predict``; docs/predict.md)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
STAGE = "predict"


def predict(model: str | Path, out: str | Path, *, records: str | Path | None = None, rhs: list[str] | None = None,
            labels: str | Path | None = None, salt_file: str | Path | None = None,
            blend_with: str | Path | None = None, blend_weight: float = 0.5) -> dict:
    """Write ``predictions.csv`` (+ scores when labels are known) for new ECG records or RHS files.

    ``blend_with`` (ECG): a second model (e.g. the baseline's feature model); each record's
    probabilities are ``blend_weight × model + (1 − blend_weight) × blend_with``."""
    from diagnosenet import metrics
    from diagnosenet.artifacts import write_json, write_manifest
    from diagnosenet.predict.model import load
    from diagnosenet.predict.table import rows_by_group, write_predictions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lineage, proba_of = load(model)
    classes = lineage.classes
    if lineage.task == "ecg":
        if records is None:
            raise SystemExit(f"{model} is an ECG model: give --records DIR (WFDB records, REFERENCE.csv optional)")
        from diagnosenet.predict.ecg import blend, decide, feature_records, window_records

        def scored(lineage_, proba_of_):
            by_record = lineage_.preprocessing.get("input") == "record-features"  # the baseline's feature model
            inputs_ = (feature_records if by_record else window_records)(records, lineage_.preprocessing)
            return inputs_, decide(inputs_, proba_of_, classes)

        inputs, (rows, proba) = scored(lineage, proba_of)
        if blend_with is not None:
            other, other_proba_of = load(blend_with)
            if other.task != "ecg" or other.classes != classes:
                raise SystemExit(f"--blend-with {blend_with}: not an ECG model over the classes {classes}")
            rows, proba = blend((rows, proba), scored(other, other_proba_of)[1], blend_weight, classes)
        y = np.array([-1 if i.label is None else i.label for i in inputs], np.int64)
        reasons: dict[str, int] = {}
        for item in inputs:
            if item.reason:
                reasons[item.reason.split(":")[0]] = reasons.get(item.reason.split(":")[0], 0) + 1
        counts = {"records_in": len(inputs), "records_windowed": sum(i.samples is not None for i in inputs),
                  "records_unclassifiable": sum(1 for r in rows if r["reason"]), "reasons": reasons,
                  "records_labelled": int((y >= 0).sum())}
        if blend_with is not None:   # records the first model could not use, scored by the second alone
            counts["blend"] = {"with": str(blend_with), "weight": blend_weight,
                               "records_by_blend_with_only": sum(1 for i, r in zip(inputs, rows)
                                                                 if i.samples is None and not r["reason"])}
    else:
        if blend_with is not None:
            raise SystemExit("--blend-with combines ECG models only")
        if not rhs:
            raise SystemExit(f"{model} is a PMSI model: give --rhs FILE... (RHS M05)")
        from diagnosenet.predict.pmsi import compose_for, read_labels_by_pseudonym
        from diagnosenet.privacy import DEFAULT_SALT_FILE, load_or_create_salt

        salt = load_or_create_salt(salt_file or DEFAULT_SALT_FILE)
        X, names, counts, quarantine = compose_for(rhs, lineage.vocabulary, lineage.preprocessing["groups"], salt)
        for error in quarantine[:10]:
            log.warning("quarantined %s", error)
        known = read_labels_by_pseudonym(labels, salt) if labels else {}
        y = np.array([known.get(n, -1) for n in names], np.int64)
        rows, proba, _ = rows_by_group(names, None, proba_of(X), classes)
        for row, label in zip(rows, y):
            row["label"] = "" if label < 0 else classes[label]
        counts["records_labelled"] = int((y >= 0).sum())
        if counts["unseen_features"]:
            log.warning("%d feature occurrences unseen in training (ignored): %s", counts["unseen_features"],
                        counts["unseen_features_per_group"])
    write_predictions(out / "predictions.csv", rows, classes)
    files = ["predictions.csv", "counts.json"]
    result = {"task": lineage.task, "model": str(model), "counts": counts}
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
    params = {"model": str(model), **({"blend_with": str(blend_with), "blend_weight": blend_weight} if blend_with else {})}
    write_manifest(out, stage=STAGE, files=files, params=params, counts=counts)
    log.info("%d predictions in %s", len(rows), out / "predictions.csv")
    return result


def _predict(args: argparse.Namespace) -> int:
    predict(args.model, args.out, records=args.records, rhs=args.rhs, labels=args.labels, salt_file=args.salt_file,
            blend_with=args.blend_with, blend_weight=args.blend_weight)
    return 0


def _export(args: argparse.Namespace) -> int:
    from diagnosenet.predict.export import export

    card = export(args.run, args.out)
    log.info("exported %s %s model to %s (test scores %s)", card["task"], card["training"]["mode"], args.out,
             card["test_scores"])
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="apply a trained run (or an export) to new ECG records or RHS files")
    p.add_argument("--model", required=True, help="a run directory (results/{task}/runs/...) or an export directory")
    p.add_argument("--records", help="ECG: directory of WFDB records (REFERENCE.csv optional: labels → scores)")
    p.add_argument("--rhs", nargs="+", help="PMSI: RHS M05 files")
    p.add_argument("--labels", help="PMSI: stay_number,label CSV (optional: → scores)")
    p.add_argument("--salt-file", help="PMSI: the hospital's pseudonym key (default: the pipeline's)")
    p.add_argument("--blend-with", help="ECG: a second model (e.g. results/ecg/baseline) whose probabilities are blended in")
    p.add_argument("--blend-weight", type=float, default=0.5,
                   help="ECG: weight of --model in the blend (1 − it for --blend-with); chosen on development records")
    p.add_argument("--out", required=True, help="output directory (predictions.csv, counts.json, scores)")
    p.set_defaults(func=_predict)

    e = subparsers.add_parser("export", help="a self-contained SavedModel + model card of a trained run")
    e.add_argument("--run", required=True, help="run directory")
    e.add_argument("--out", required=True, help="export directory")
    e.set_defaults(func=_export)
