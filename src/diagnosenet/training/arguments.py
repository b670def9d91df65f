"""The arguments every training command takes (``train-desktop``, ``train-mpi``, ``grpc-task``,
and the training arguments that ``launch-mpi`` and ``train-grpc`` pass on), and the one
:class:`TrainSettings` they become. A module of its own, below the commands that use it, so
that ``launch-mpi`` can read its job's settings without importing the command line.
"""
from __future__ import annotations

import argparse
import json

from diagnosenet.training.settings import OPTIMIZERS, TrainSettings


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
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer,
                   help="lazy-adam: a first-layer row (weights and Adam moments) moves only when it has a gradient")
    p.add_argument("--timeout", type=float, default=defaults.timeout_s, help="seconds of silence of a peer")
    p.add_argument("--startup-timeout", type=float, default=defaults.startup_timeout_s,
                   help="seconds for every process to start (TensorFlow's import included)")
    p.add_argument("--weighting", type=int, default=defaults.weighting)
    p.add_argument("--exchange", choices=("dense", "sparse"), default=defaults.exchange,
                   help="MPI: gradients all-reduced dense, or the first layer's non-zero input rows only")
    p.add_argument("--exchange-precision", choices=("float32", "bfloat16"), default=defaults.exchange_precision,
                   help="MPI sync: the all-reduced gradient travels as float32, or as bfloat16 (half the bytes)")
    p.add_argument("--monitor-rate", type=float, default=defaults.monitor_rate_hz, help="Hz; 0 disables")
    if "grpc-async" in modes:
        p.add_argument("--steps-per-execution", type=int, default=defaults.steps_per_execution,
                       help="grpc-async: micro-batches a worker trains (each applied at once) per closure the "
                            "chief schedules; more cuts the chief's work per step")
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
        learning_rate=args.lr, batch_size=args.batch_size, class_weight=args.class_weight, optimizer=args.optimizer, timeout_s=args.timeout,
        startup_timeout_s=args.startup_timeout, weighting=args.weighting, exchange=args.exchange,
        exchange_precision=args.exchange_precision, monitor_rate_hz=args.monitor_rate,
        steps_per_execution=getattr(args, "steps_per_execution", 1),
        lost_workers=json.loads(getattr(args, "lost_workers_json", None) or "{}"))
