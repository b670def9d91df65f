"""``diagnosenet train`` (every mode) and ``diagnosenet baseline``.

Arguments become one :class:`TrainSettings`; the mode's module is imported only when it runs,
so building the parser imports neither TensorFlow, MPI nor scikit-learn.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging

from diagnosenet.training.settings import MODES, TrainSettings

log = logging.getLogger(__name__)

#: module whose ``train(settings)`` runs each mode
MODE_MODULES = {"desktop": "diagnosenet.training.desktop", "mpi-sync": "diagnosenet.training.mpi",
                "mpi-async": "diagnosenet.training.mpi", "grpc-sync": "diagnosenet.training.grpc",
                "grpc-async": "diagnosenet.training.grpc"}


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    try:
        model = json.loads(args.model_json)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--model-json is not valid JSON ({exc}): {args.model_json!r}")
    return TrainSettings(
        task=args.task, mode=args.mode, workers=args.workers, dataset_dir=args.dataset, shards_dir=args.shards,
        out_dir=args.out, model=model, seed=args.seed, max_epochs=args.max_epochs, patience=args.patience,
        learning_rate=args.lr, batch_size=args.batch_size, timeout_s=args.timeout, weighting=args.weighting,
        monitor_rate_hz=args.monitor_rate)


def _train(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    importlib.import_module(MODE_MODULES[settings.mode]).train(settings)
    return 0


def _baseline(args: argparse.Namespace) -> int:
    from diagnosenet.baselines import run_baseline

    result = run_baseline(args.task, args.dataset, args.out, seed=args.seed)
    log.info("%s baseline %s: accuracy %.4f, macro F1 %.4f", args.task, result["model"], result["accuracy"],
             result["macro_f1"])
    return 0


def _survived(args: argparse.Namespace) -> int:
    """Exit 0 when a run whose launcher failed still finished because only workers were lost.

    MPICH's ``mpirun`` exits non-zero as soon as any rank dies, even when the asynchronous
    master carried on and wrote the whole run; the workflow calls this after such a failure so
    that Snakemake keeps a complete run (and still fails every run that did not finish).
    """
    from diagnosenet.artifacts import ArtifactError, read_json, verify_manifest

    try:
        verify_manifest(args.out, stage="train")
    except ArtifactError as exc:
        log.error("the run did not finish: %s", exc)
        return 1
    lost = read_json(f"{args.out}/metrics.json").get("mpi", {}).get("lost_workers") or {}
    if not lost:
        log.error("%s: the launcher failed although no worker was recorded as lost", args.out)
        return 1
    log.warning("%s finished without worker rank(s) %s: %s", args.out, ", ".join(lost), lost)
    return 0


def register(subparsers) -> None:
    defaults = TrainSettings(task="pmsi", mode="desktop", workers=1, dataset_dir=".", shards_dir=".", out_dir=".")
    p = subparsers.add_parser("train", help="train a model in one mode; writes track.csv, metrics.json, ...")
    p.add_argument("--task", choices=("pmsi", "ecg"), required=True)
    p.add_argument("--mode", choices=MODES, default="desktop")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--dataset", required=True, help="materialised data set directory (valid/test splits)")
    p.add_argument("--shards", required=True, help="shard directory written for --workers and --batch-size")
    p.add_argument("--out", required=True, help="run directory (resumed from its checkpoint if present)")
    p.add_argument("--model-json", default="{}", help="the models.<task> config section as JSON")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--max-epochs", type=int, default=defaults.max_epochs)
    p.add_argument("--patience", type=int, default=defaults.patience)
    p.add_argument("--lr", type=float, default=defaults.learning_rate)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--timeout", type=float, default=defaults.timeout_s)
    p.add_argument("--weighting", type=int, default=defaults.weighting)
    p.add_argument("--monitor-rate", type=float, default=defaults.monitor_rate_hz, help="Hz; 0 disables")
    p.set_defaults(func=_train)

    s = subparsers.add_parser("run-survived", help="exit 0 if a failed launch still finished the run "
                                                   "(asynchronous mode lost only workers)")
    s.add_argument("--out", required=True, help="run directory")
    s.set_defaults(func=_survived)

    b = subparsers.add_parser("baseline", help="non-neural baseline on a materialised data set")
    b.add_argument("--task", choices=("pmsi", "ecg"), required=True)
    b.add_argument("--dataset", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--seed", type=int, default=1)
    b.set_defaults(func=_baseline)
