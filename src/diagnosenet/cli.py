"""``diagnosenet <stage>``: argument parsing only; each stage lives in its own package.

Every stage package exposes ``register(subparsers)`` in its ``cli`` module, which adds
sub-commands whose ``func(args) -> int`` does the work. Stage modules are imported only
when listed here, and none of them imports TensorFlow at import time, so ``diagnosenet
compose-pmsi`` starts in a second even though training stages need TensorFlow.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: modules whose ``register(subparsers)`` adds sub-commands, in the order of the paper's figure 1
STAGE_MODULES = (
    "diagnosenet.pmsi.cli",
    "diagnosenet.ecg.cli",
    "diagnosenet.datasets.cli",
    "diagnosenet.training.cli",
    "diagnosenet.training.grpc_cli",
    "diagnosenet.monitor.cli",
    "diagnosenet.figures.cli",
    "diagnosenet.cluster",
    "diagnosenet.experiments",
    "diagnosenet.figures.hyperparameters",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diagnosenet",
        description="DiagnoseNET workflow stages (normally called by Snakemake rules).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="STAGE", required=True)
    for name in STAGE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a stage package not written yet
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
