"""``diagnosenet synth-pmsi`` and ``diagnosenet compose-pmsi``."""
from __future__ import annotations

import argparse
import glob
import logging
import time

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from diagnosenet.privacy import DEFAULT_SALT_FILE

    synth = subparsers.add_parser("synth-pmsi", help="write synthetic RHS M05 files with a known label model")
    synth.add_argument("--patients", type=int, required=True, help="number of stays (paper: 116831)")
    synth.add_argument("--seed", type=int, default=2020)
    synth.add_argument("--out", required=True,
                       help="output directory (rhs_*.txt, labels.csv, posterior.csv, bayes.json)")
    synth.set_defaults(func=run_synth)

    compose = subparsers.add_parser("compose-pmsi", help="first-week sparse features of RHS files")
    compose.add_argument("--rhs", nargs="+", required=True, help="RHS M05 files (globs are expanded)")
    compose.add_argument("--labels", required=True, help="CSV stay_number,label")
    compose.add_argument("--out", required=True, help="output directory (X.npz, y.npy, groups.npy, ...)")
    compose.add_argument("--groups", nargs="+", default=None, help="descriptor groups (default: all)")
    compose.add_argument("--strict", action="store_true", help="stop at the first bad line instead of quarantining it")
    compose.add_argument("--salt-file", default=str(DEFAULT_SALT_FILE),
                         help="pseudonymisation secret (outside results/)")
    compose.set_defaults(func=run_compose)


def run_synth(args: argparse.Namespace) -> int:
    from diagnosenet.pmsi.synth import write_dataset

    start = time.perf_counter()
    bayes = write_dataset(args.out, patients=args.patients, seed=args.seed)
    log.info("wrote %d stays (%d RHS lines in %d files) to %s in %.1f s; Bayes-optimal accuracy %.4f",
             bayes["patients"], bayes["lines"], bayes["files"], args.out, time.perf_counter() - start,
             bayes["bayes_accuracy"])
    return 0


def expand(patterns: list[str]) -> list[str]:
    """Shell-style globs → sorted file list; a pattern matching nothing is an error, not a no-op."""
    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise FileNotFoundError(f"{pattern}: no RHS file matches")
        files += matches
    return files


def run_compose(args: argparse.Namespace) -> int:
    from diagnosenet.pmsi.compose import GROUPS, compose
    from diagnosenet.privacy import load_or_create_salt

    start = time.perf_counter()
    counts = compose(expand(args.rhs), args.labels, args.out, salt=load_or_create_salt(args.salt_file),
                     groups=args.groups or list(GROUPS), strict=args.strict)
    log.info("%d lines read = %d used + %d quarantined; %d stays → %d rows × %d features "
             "(%d stays without label, %d labels without stay) in %.1f s; see %s/quarantine.csv",
             counts["lines_read"], counts["lines_used"], counts["lines_quarantined"], counts["stays"],
             counts["rows"], counts["features"], counts["stays_without_label"], counts["labels_without_stay"],
             time.perf_counter() - start, args.out)
    return 0
