"""``diagnosenet train-desktop``, ``train-mpi`` (one rank under ``mpirun``), ``launch-mpi`` and ``baseline``.

One rule = one command = one module: rule ``train_desktop`` runs ``train-desktop``
(:mod:`~diagnosenet.training.desktop`), rule ``train_mpi`` runs ``launch-mpi``
(:mod:`~diagnosenet.training.mpi.launch`), whose ``mpirun`` ranks run ``train-mpi``
(:mod:`~diagnosenet.training.mpi`); ``train-grpc`` is registered by
:mod:`diagnosenet.training.grpc.cli`. Every training command takes the same arguments
(:func:`~diagnosenet.training.arguments.add_train_arguments`), which become one
:class:`~diagnosenet.training.settings.TrainSettings`. The mode's module is
imported only when it runs, so building the parser imports neither TensorFlow, MPI nor
scikit-learn.
"""
from __future__ import annotations

import argparse
import logging

from diagnosenet.training.arguments import add_train_arguments, settings_from_args

log = logging.getLogger(__name__)


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

    result = run_baseline(args.task, args.dataset, args.out, seed=args.seed, features_dir=args.features,
                          ecg_model=args.model)
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
    from diagnosenet.baselines import ECG_FEATURE_MODELS

    b.add_argument("--model", choices=ECG_FEATURE_MODELS, default="gbm",
                   help="ECG: the whole-record feature model (docs/ecg-quality.md)")
    b.set_defaults(func=_baseline)
