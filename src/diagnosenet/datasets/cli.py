"""``diagnosenet materialise`` and ``diagnosenet shard``."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def _materialise(args: argparse.Namespace) -> int:
    from diagnosenet.datasets.materialise import materialise

    manifest = materialise(args.input, args.out, valid_fraction=args.valid_fraction,
                           test_fraction=args.test_fraction, seed=args.seed, variant=args.variant,
                           test_groups_file=args.test_groups)
    log.info("materialised %s: %s", args.out, manifest["rows"])
    return 0


def _shard(args: argparse.Namespace) -> int:
    from diagnosenet.datasets.shards import Batching, write_shards

    speeds = [float(s) for s in args.speeds.split(",")] if args.speeds else None
    if args.speeds_from:
        from diagnosenet.training.timeline import measured_speeds

        speeds = measured_speeds(args.speeds_from, args.workers)
        log.info("measured speeds (rows/s) of %s: %s", args.speeds_from, ", ".join(f"{s:.1f}" for s in speeds))
    batching = Batching(devices_number=args.workers, batch_size=args.batch_size,
                        memory_budget_mb=args.memory_budget_mb, speeds=speeds)
    manifest = write_shards(args.dataset, args.out, batching, seed=args.seed)
    for split, shards in manifest["shards"].items():
        log.info("%s: rows per worker %s, micro-batches %s", split, [s["rows"] for s in shards],
                 [s["batch_size"] for s in shards])
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("materialise", help="split a composed data set by group into train/valid/test")
    p.add_argument("--input", required=True, help="stage directory with X.npz|X.npy, y.npy, groups.npy, classes.json")
    p.add_argument("--out", required=True)
    p.add_argument("--valid-fraction", type=float, default=0.05)
    p.add_argument("--test-fraction", type=float, default=0.10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--variant", default="", help="array suffix, e.g. 'small' reads X_small.npy")
    p.add_argument("--test-groups", default=None,
                   help="file of groups (records) that form the test split, one per line or a REFERENCE.csv; "
                        "--test-fraction is then ignored")
    p.set_defaults(func=_materialise)

    p = subparsers.add_parser("shard", help="write class-stratified per-worker shards with micro-batches")
    p.add_argument("--dataset", required=True, help="materialised data set directory")
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--memory-budget-mb", type=float, default=None)
    p.add_argument("--seed", type=int, default=42)
    balance = p.add_mutually_exclusive_group()
    balance.add_argument("--speeds", help="relative speed of each worker, e.g. 2,1,1: rows and micro-batch "
                                          "in proportion (heterogeneous nodes)")
    balance.add_argument("--speeds-from", help="an earlier run's directory: each worker's measured rows/s "
                                               "(its timeline) as --speeds")
    p.set_defaults(func=_shard)
