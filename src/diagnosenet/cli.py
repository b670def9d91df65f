"""``diagnosenet <stage>``: argument parsing only; each stage lives in its own package.

Every stage package exposes ``register(subparsers)`` in its one ``cli`` module (a stage that
is a single module, ``cluster`` or ``experiments``, in that module), which adds sub-commands
whose ``func(args)`` does the work and returns the exit status (``None`` means 0). A command
has the name of the Snakemake rule that runs it (``scalability_figure`` runs
``scalability-figure``; tested in ``tests/workflow/test_commands.py``). Stage modules are
imported only when listed here, and none of them imports TensorFlow at import time, so
``diagnosenet compose-pmsi`` starts in a second even though training stages need TensorFlow.
"""
from __future__ import annotations

import argparse
import faulthandler
import importlib
import logging
import os
import signal
import sys

#: modules whose ``register(subparsers)`` adds sub-commands, in the order of the paper's figure 1
STAGE_MODULES = (
    "diagnosenet.pmsi.cli",
    "diagnosenet.ecg.cli",
    "diagnosenet.datasets.cli",
    "diagnosenet.training.cli",
    "diagnosenet.training.grpc.cli",
    "diagnosenet.monitor.cli",
    "diagnosenet.figures.cli",
    "diagnosenet.cluster",
    "diagnosenet.emulation",
    "diagnosenet.experiments",
    "diagnosenet.predict.cli",
)


def package_version() -> str:
    """The installed distribution's version (pyproject.toml), so bug reports name the code."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("diagnosenet")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diagnosenet",
        description="DiagnoseNET workflow stages (normally called by Snakemake rules).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="STAGE", required=True)
    for name in STAGE_MODULES:  # a module that fails to import is an error, never skipped
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # `kill -USR2 <pid>` prints every thread's stack to stderr: where a hung rank or task waits
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    # `import tensorflow` imports Keras 3 eagerly only to register its optimizers: 6 of its 13 s
    # here, paid by every rank and task. No stage uses Keras (the models are plain variables),
    # so the commands ask TensorFlow for the absent legacy Keras instead, which it skips.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except Exception as exc:  # noqa: BLE001 - only errors that say what and where; others keep their traceback
        if not is_clear_error(exc):
            raise
        logging.getLogger("diagnosenet").error("%s: %s", args.command, exc)
        return 1


def is_clear_error(exc: BaseException) -> bool:
    """Errors whose message names the file and what is wrong with it (a damaged checkpoint or
    artefact, a write that failed for lack of space): one line for the user, not a traceback."""
    from diagnosenet.artifacts import ArtifactError
    from diagnosenet.training.checkpoint import CheckpointError

    return isinstance(exc, (ArtifactError, CheckpointError)) or (isinstance(exc, OSError) and exc.filename is not None)


if __name__ == "__main__":
    sys.exit(main())
