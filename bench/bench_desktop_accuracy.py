"""Test-split scores of a desktop run next to the baseline (and, for synthetic PMSI, the Bayes limit).

Inputs are the outputs of the ordinary stages (materialise, shard); this script only runs
``desktop.train`` and ``baselines.run_baseline`` and prints one comparison, e.g.::

    .venv/bin/python bench/bench_desktop_accuracy.py --task pmsi --root bench/out/desktop/pmsi \
        --model-json '{"hidden_units": [256, 256], "dropout_keep": 0.8}' --max-epochs 30 \
        --bayes bench/out/desktop/pmsi/raw/bayes.json
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import desktop_run
from diagnosenet.baselines import run_baseline

KEYS = ("accuracy", "macro_f1", "challenge_f1", "f1_N", "f1_AF", "f1_Other", "f1_Noisy")


def pick(scores: dict) -> dict:
    """The headline numbers, with the ECG record-level ones (confusion included) when present."""
    out = {k: scores[k] for k in KEYS if k in scores}
    if "record_level" in scores:
        out["record_level"] = {k: scores["record_level"][k] for k in (*KEYS, "n_test", "confusion")
                               if k in scores["record_level"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("pmsi", "ecg"), required=True)
    parser.add_argument("--root", type=Path, required=True, help="holds dataset/ and shards/; runs go to run/, baseline/")
    desktop_run.add_options(parser, model_json="{}", batch_size=128, max_epochs=30)
    parser.add_argument("--bayes", type=Path, help="bayes.json of synth-pmsi")
    parser.add_argument("--features", type=Path, help="ECG: ecg-features directory of the same records (the baseline's input)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from diagnosenet.training.desktop import train

    net = train(desktop_run.settings(args, args.task, args.root, args.root / "run"))
    base = run_baseline(args.task, args.root / "dataset", args.root / "baseline", features_dir=args.features)
    report = {"net": pick(net), "baseline": pick(base),
              "baseline_model": base["model"], "n_params": net["n_params"], "best_epoch": net["best_epoch"],
              "epochs_run": net["epochs_run"], "train_seconds": net["train_seconds"], "n_test": net["n_test"]}
    if args.bayes:
        report["bayes_accuracy"] = json.loads(args.bayes.read_text())["bayes_accuracy"]
    (args.root / "comparison.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
