"""Balanced shards on a heterogeneous emulated cluster: throughput against the sum of the nodes' own.

    .venv/bin/python bench/bench_heterogeneous.py --cpu 0.25,0.5,0.25,0.25,0.25 \\
        --composed bench/out/scaling-rep1/composed-116831 --out bench/out/heterogeneous-rep1

``--cpu`` gives node0 (rank 0) first, then one share per worker node. The benchmark runs, each
on a fresh emulated cluster (``bench_scaling.train``): one worker alone on a node of each
distinct share (its one-node throughput), then every worker with equal shards (the
calibration run), then with shards sized by the speeds that run measured
(``shard --speeds-from``, ``shards.balance: measured``). It prints, per run, each worker's
samples/s (its median micro-batch over its median step) and the total against the sum of the
workers' one-node throughputs: the share of the cluster's capacity the run uses.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scaling  # noqa: E402

from diagnosenet.figures.scaling import worker_throughputs  # noqa: E402
from diagnosenet.training.timeline import read_timeline  # noqa: E402


def per_worker_throughput(run_dir: Path) -> dict[int, float]:
    """``{rank: samples/s}`` of a run's workers (``figures.scaling.worker_throughputs``)."""
    return worker_throughputs([r for r in read_timeline(run_dir) if r["rows"] > 0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", default="0.25,0.5,0.25,0.25,0.25", help="node0 first, then one share per worker")
    parser.add_argument("--composed", type=Path, required=True, help="a compose-pmsi output")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--link", default="1gbit")
    parser.add_argument("--mode", default="mpi-sync")
    parser.add_argument("--exchange", default="sparse")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rows-per-worker", type=int, default=2048)
    parser.add_argument("--held-out", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    bench_scaling.OUT = args.out.resolve()
    shares = [float(c) for c in args.cpu.split(",")]
    head, workers = shares[0], shares[1:]
    common = dict(task="pmsi", mode=args.mode, exchange=args.exchange, batch_size=args.batch_size,
                  epochs=args.epochs, link=args.link)

    alone = {}
    for share in sorted(set(workers)):
        dataset, shards = bench_scaling.scaled_dataset(args.composed, 1, args.rows_per_worker, args.held_out,
                                                       args.batch_size)
        bench_scaling.OUT = args.out.resolve() / f"alone-{share:g}"
        run = bench_scaling.train(workers=1, dataset=dataset, shards=shards, cpu=f"{head:g},{share:g}", **common)
        bench_scaling.OUT = args.out.resolve()
        alone[share] = sum(per_worker_throughput(run).values())
    capacity = sum(alone[s] for s in workers)

    n = len(workers)
    dataset, shards = bench_scaling.scaled_dataset(args.composed, n, args.rows_per_worker, args.held_out, args.batch_size)
    equal = bench_scaling.train(workers=n, dataset=dataset, shards=shards, cpu=args.cpu, **common)
    _, balanced_shards = bench_scaling.scaled_dataset(args.composed, n, args.rows_per_worker, args.held_out,
                                                      args.batch_size, speeds_from=equal)
    measured = bench_scaling.train(workers=n, dataset=dataset, shards=balanced_shards, cpu=args.cpu,
                                   balance="measured", **common)

    print(f"\none node alone (samples/s): " + ", ".join(f"{s:g} core: {v:.1f}" for s, v in alone.items()))
    print(f"capacity (sum over the {n} workers' shares {workers}): {capacity:.1f} samples/s\n")
    print("| shards | samples/s per worker (rank order) | total samples/s | share of the capacity |")
    print("|---|---|---|---|")
    for name, run in (("equal", equal), ("measured", measured)):
        mine = per_worker_throughput(run)
        total = sum(mine.values())
        print(f"| {name} | {', '.join(f'{v:.1f}' for v in mine.values())} | {total:.1f} | {total / capacity:.0%} |")


if __name__ == "__main__":
    main()
