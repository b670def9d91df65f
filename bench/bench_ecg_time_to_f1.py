"""Time to accuracy of an ECG net and of its blend with the feature model: the official F1 on
the final records after each epoch, against the training seconds and CPU-seconds spent so far.

    B=bench/out/ecg-quality
    .venv/bin/python bench/bench_ecg_time_to_f1.py --root $B/final --baseline $B/small/baseline \\
        --records ../shared/data/physionet2017-validation --out $B/time-to-f1 --lr 0.001 \\
        --model-json '{"filters": [8, 16], "blocks_per_stage": 1, "kernel_size": 16, "dropout_keep": 0.8,
                       "record_features": true, "feature_units": 128}'

The run grows one epoch at a time (``max_epochs`` is not part of the resume fingerprint, so
each call resumes the same run) until early stopping ends it; after each epoch ``predict``
scores every final record with the run's best weights so far (the model a user would get if
training stopped there), alone and blended with ``--baseline`` (with ``--class-weights``: the
blend's decision weights, as ``predict``). The final records are
**reported only**, never used for a choice (``docs/ecg-quality.md``). Train seconds are the
sum of the run's ``epoch_seconds``; CPU-seconds are this process's over the training calls
(each call re-reads the shards and re-traces the step: an upper bound).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path

import desktop_run

THRESHOLDS = (0.70, 0.75, 0.80, 0.83)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="dataset/ and shards/, the final records as test split")
    parser.add_argument("--baseline", type=Path, required=True, help="the ECG baseline directory (feature model)")
    parser.add_argument("--records", type=Path, required=True, help="the final WFDB records (with REFERENCE.csv)")
    parser.add_argument("--out", type=Path, required=True)
    desktop_run.add_options(parser)
    parser.add_argument("--blend-weight", type=float, default=0.5)
    parser.add_argument("--class-weights", type=float, nargs="+", default=None,
                        help="predict's decision weights for the blend (chosen on development records)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from diagnosenet.predict.cli import predict
    from diagnosenet.training.desktop import train

    run, rows, cpu = args.out / "run", [], 0.0
    for epochs in range(1, args.max_epochs + 1):
        start = time.process_time()
        result = train(desktop_run.settings(args, "ecg", args.root, run, max_epochs=epochs))
        cpu += time.process_time() - start
        if result["epochs_run"] < epochs:   # early stopping ended the run at the previous call
            break
        with open(run / "track.csv", newline="") as handle:
            train_seconds = sum(float(r["epoch_seconds"]) for r in csv.DictReader(handle))
        row = {"epoch": epochs, "best_epoch": result["best_epoch"], "train_seconds": round(train_seconds, 1),
               "train_cpu_seconds": round(cpu, 1)}
        for name, models, weights in (("net", [run], None),
                                      ("blend", [run, args.baseline], [args.blend_weight, 1 - args.blend_weight])):
            scored = predict(models, args.out / f"epoch{epochs}-{name}", records=args.records, weights=weights,
                             class_weights=args.class_weights if name == "blend" else None)
            row[f"{name}_f1"] = round(scored["scores"]["challenge_f1"], 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    reached = {name: {str(t): next((r for r in rows if r[f"{name}_f1"] >= t), None) for t in THRESHOLDS}
               for name in ("net", "blend")}
    (args.out / "time_to_f1.json").write_text(json.dumps({"epochs": rows, "first_reaching": reached}, indent=1))


if __name__ == "__main__":
    main()
