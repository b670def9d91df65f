"""What the benches that train one desktop net share: its command-line options and its
``TrainSettings`` (so that a CV fold, an epoch-by-epoch run and a plain run train the same way)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_options(parser: argparse.ArgumentParser, *, model_json: str | None = None, batch_size: int = 64,
                max_epochs: int = 15) -> None:
    """``--model-json`` (required unless a default is given), ``--lr``, ``--batch-size``,
    ``--max-epochs``, ``--patience``, ``--class-weight``."""
    parser.add_argument("--model-json", required=model_json is None, default=model_json)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--max-epochs", type=int, default=max_epochs)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--class-weight", choices=("none", "balanced"), default="none")


def settings(args: argparse.Namespace, task: str, root: Path, out_dir: Path, **overrides):
    """Desktop settings for ``root``/dataset and ``root``/shards from the options above."""
    from diagnosenet.training.settings import TrainSettings

    values = dict(task=task, mode="desktop", workers=1, dataset_dir=root / "dataset", shards_dir=root / "shards",
                  out_dir=out_dir, model=json.loads(args.model_json), max_epochs=args.max_epochs,
                  patience=args.patience, learning_rate=args.lr, batch_size=args.batch_size,
                  class_weight=args.class_weight, monitor_rate_hz=0)
    return TrainSettings(**{**values, **overrides})
