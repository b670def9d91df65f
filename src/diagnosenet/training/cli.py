"""``diagnosenet train-desktop``, ``train-mpi`` (one rank under ``mpirun``), ``launch-mpi`` and ``baseline``.

One rule = one command = one module: rule ``train_desktop`` runs ``train-desktop``
(:mod:`~diagnosenet.training.desktop`), rule ``train_mpi`` runs ``launch-mpi``
(:mod:`~diagnosenet.training.mpi.launch`), whose ``mpirun`` ranks run ``train-mpi``
(:mod:`~diagnosenet.training.mpi`); ``train-grpc`` is registered by
:mod:`diagnosenet.training.grpc.cli`. Every training command takes the same arguments
(:func:`add_train_arguments`), which become one :class:`TrainSettings`. The mode's module is
imported only when it runs, so building the parser imports neither TensorFlow, MPI nor
scikit-learn.
"""
from __future__ import annotations

import argparse
import json
import logging

from diagnosenet.training.settings import TrainSettings

log = logging.getLogger(__name__)


def add_train_arguments(p: argparse.ArgumentParser, modes: tuple[str, ...]) -> None:
    """The arguments of every training command (the Snakemake rules pass config values)."""
    defaults = TrainSettings(task="pmsi", mode="desktop", workers=1, dataset_dir=".", shards_dir=".", out_dir=".")
    p.add_argument("--task", choices=("pmsi", "ecg"), required=True)
    p.add_argument("--mode", choices=modes, default=modes[0])
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
    p.add_argument("--class-weight", choices=("none", "balanced"), default=defaults.class_weight,
                   help="balanced: weight each class's loss by n / (k n_c) over the training split")
    p.add_argument("--timeout", type=float, default=defaults.timeout_s, help="seconds of silence of a peer")
    p.add_argument("--startup-timeout", type=float, default=defaults.startup_timeout_s,
                   help="seconds for every process to start (TensorFlow's import included)")
    p.add_argument("--weighting", type=int, default=defaults.weighting)
    p.add_argument("--exchange", choices=("dense", "sparse"), default=defaults.exchange,
                   help="MPI: gradients all-reduced dense, or the first layer's non-zero input rows only")
    p.add_argument("--exchange-precision", choices=("float32", "bfloat16"), default=defaults.exchange_precision,
                   help="MPI sync: the all-reduced gradient travels as float32, or as bfloat16 (half the bytes)")
    p.add_argument("--monitor-rate", type=float, default=defaults.monitor_rate_hz, help="Hz; 0 disables")
    if {"mpi-async", "grpc-async"} & set(modes):
        p.add_argument("--lost-workers-json", default="{}",
                       help="a re-formed asynchronous run without these workers: {worker id: why} "
                            "(set by launch-mpi and train-grpc)")


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    try:
        model = json.loads(args.model_json)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--model-json is not valid JSON ({exc}): {args.model_json!r}")
    return TrainSettings(
        task=args.task, mode=args.mode, workers=args.workers, dataset_dir=args.dataset, shards_dir=args.shards,
        out_dir=args.out, model=model, seed=args.seed, max_epochs=args.max_epochs, patience=args.patience,
        learning_rate=args.lr, batch_size=args.batch_size, class_weight=args.class_weight, timeout_s=args.timeout,
        startup_timeout_s=args.startup_timeout, weighting=args.weighting, exchange=args.exchange,
        exchange_precision=args.exchange_precision, monitor_rate_hz=args.monitor_rate,
        lost_workers=json.loads(getattr(args, "lost_workers_json", None) or "{}"))


def _train_desktop(args: argparse.Namespace) -> int:
    from diagnosenet.training.desktop import train

    train(settings_from_args(args))
    return 0


def _train_mpi(args: argparse.Namespace) -> int:
    from diagnosenet.training.mpi import train

    train(settings_from_args(args))
    return 0


def _baseline(args: argparse.Namespace) -> int:
    from diagnosenet.baselines import run_baseline

    result = run_baseline(args.task, args.dataset, args.out, seed=args.seed, features_dir=args.features)
    log.info("%s baseline %s: accuracy %.4f, macro F1 %.4f", args.task, result["model"], result["accuracy"],
             result["macro_f1"])
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("train-desktop", help="train in one process; writes track.csv, metrics.json, ...")
    add_train_arguments(p, ("desktop",))
    p.set_defaults(func=_train_desktop)

    m = subparsers.add_parser("train-mpi", help="one rank of an MPI run (started by launch-mpi, or by "
                                                "mpirun -n workers+1)")
    add_train_arguments(m, ("mpi-sync", "mpi-async"))
    m.set_defaults(func=_train_mpi)

    from diagnosenet.training.mpi.launch import register as register_launch

    register_launch(subparsers)

    b = subparsers.add_parser("baseline", help="non-neural baseline on a materialised data set")
    b.add_argument("--task", choices=("pmsi", "ecg"), required=True)
    b.add_argument("--dataset", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--features", default=None, help="ECG: the ecg-features directory of the data set's records")
    b.set_defaults(func=_baseline)
