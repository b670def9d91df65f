"""Weak (or strong) scaling of the MPI modes on an emulated 1 Gbit/s cluster, one lever at a time (root).

    .venv/bin/python bench/bench_scaling.py --nodes 1 2 4 --cpu 0.25 --link 1gbit \\
        --patients 116831 --rows-per-worker 2048 --batch-sizes 64 --exchanges dense sparse \
        --modes mpi-sync mpi-async [--optimizers adam lazy-adam]

Builds the data once with the project's own stages (``synth-pmsi``, ``compose-pmsi``): the
paper-size feature space (all composed features), then for each worker count N a data set
of ``N × rows-per-worker`` training rows (constant work per worker: weak scaling; or, with
``--total-rows R``, the same R rows for every N: strong scaling, where the time to a target
accuracy compares like with like) plus fixed validation and test rows, materialised and
sharded for N workers. Then, for each lever
(exchange × micro-batch × mode), runs ``diagnosenet launch-mpi`` (rule ``train_mpi``'s
command; ``train-grpc`` for the gRPC modes) on an emulated cluster of N + 1 nodes (rank 0 on node0, one worker per other node,
``--cpu`` core and ``--link`` each; ``diagnosenet emulate-cluster``) with the paper's
4 × 512 MLP, and finally ``diagnosenet scalability-figure`` over every run: the table
(``scalability.csv``: per-step compute and exchange seconds, bytes, samples/s, weak-scaling
efficiency, the ring model), the figure, the timeline and the Pareto recommendation, all
under ``bench/out/scaling/``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

BIN = Path(sys.executable).parent
OUT = Path(__file__).resolve().parent / "out" / "scaling"
CPU_PERIOD_MS = 100.0  # set from --cpu-period-ms
PAPER_MLP = {"hidden_units": [512, 512, 512, 512], "dropout_keep": 0.8}
#: the ECG residual CNN of the default configuration (config/config.yaml, models.ecg)
ECG_CNN = {"filters": [16, 32], "blocks_per_stage": 1, "kernel_size": 16, "dropout_keep": 0.8}


def diagnosenet(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "diagnosenet"), *args], check=True, text=True, **kw)


def compose(patients: int) -> Path:
    raw, composed = OUT / f"raw-{patients}", OUT / f"composed-{patients}"
    if not (composed / "manifest.json").exists():
        diagnosenet("synth-pmsi", "--patients", str(patients), "--seed", "2020", "--out", str(raw))
        diagnosenet("compose-pmsi", "--rhs", str(raw / "rhs_*.txt"), "--labels", str(raw / "labels.csv"),
                    "--out", str(composed))
    return composed


def scaled_dataset(composed: Path, workers: int, rows_per_worker: int, held_out: int, batch_size: int,
                   speeds_from: Path | None = None, total_rows: int | None = None) -> tuple[Path, Path]:
    """A composed-stage subset of ``workers × rows_per_worker`` training rows (weak scaling), or
    of ``total_rows`` whatever the workers (strong scaling: every worker count trains on the
    same rows and is validated on the same held-out rows), + ``2 × held_out`` validation/test
    rows (every feature column kept), materialised and sharded for ``workers`` (``speeds_from``:
    balanced by that earlier run's measured speeds, ``shards.balance: measured``)."""
    from diagnosenet.artifacts import write_json, write_manifest

    task = "ecg" if (composed / "X.npy").exists() else "pmsi"
    train_rows = workers * rows_per_worker if total_rows is None else total_rows
    name = f"{task}-w{workers}-r{rows_per_worker}" if total_rows is None else f"{task}-t{total_rows}"
    subset, dataset = OUT / f"composed-{name}", OUT / f"dataset-{name}"
    split = f"{name}-b{batch_size}" if total_rows is None else f"{name}-w{workers}-b{batch_size}"
    shards = OUT / f"shards-{split}" if speeds_from is None else OUT / f"shards-{split}-measured-{speeds_from.parent.name}"
    if not (dataset / "manifest.json").exists():
        X = np.load(composed / "X.npy") if task == "ecg" else sp.load_npz(composed / "X.npz").tocsr()
        y, groups = np.load(composed / "y.npy"), np.load(composed / "groups.npy", allow_pickle=False)
        n = min(X.shape[0], train_rows + 2 * held_out)
        pick = np.random.default_rng(7).permutation(X.shape[0])[:n]
        subset.mkdir(parents=True, exist_ok=True)
        x_name = "X.npy" if task == "ecg" else "X.npz"
        np.save(subset / x_name, X[pick]) if task == "ecg" else sp.save_npz(subset / x_name, X[pick])
        np.save(subset / "y.npy", y[pick])
        np.save(subset / "groups.npy", groups[pick])
        write_json(subset / "classes.json", json.loads((composed / "classes.json").read_text()))
        write_manifest(subset, stage="compose", files=[x_name, "y.npy", "groups.npy", "classes.json"],
                       params={"subset_of": str(composed), "rows": int(n)})
        fraction = held_out / n
        diagnosenet("materialise", "--input", str(subset), "--out", str(dataset), "--seed", "1",
                    "--valid-fraction", f"{fraction:.6f}", "--test-fraction", f"{fraction:.6f}")
    if not (shards / "manifest.json").exists():
        balance = [] if speeds_from is None else ["--speeds-from", str(speeds_from)]
        diagnosenet("shard", "--dataset", str(dataset), "--out", str(shards), "--workers", str(workers),
                    "--batch-size", str(batch_size), "--seed", "1", *balance)
    return dataset, shards


def train(task: str, mode: str, workers: int, exchange: str, batch_size: int, dataset: Path, shards: Path,
          epochs: int, cpu: str, link: str, optimizer: str = "adam", balance: str = "equal",
          parameter_servers: int = 1, steps_per_execution: int = 1) -> Path:
    """One run on a fresh emulated cluster of ``workers + 1`` nodes; ``cpu`` and ``link``: one
    value for every node or one per node, node0 (rank 0, the ps and chief) first. grpc-async with
    ``parameter_servers`` > 1: ps:0 and the chief on node0, ps:i on node ``workers + i``;
    ``steps_per_execution``: grpc-async micro-batches per closure of the chief."""
    lever = f"{task}-{mode}-{exchange}-b{batch_size}" + ("" if optimizer == "adam" else f"-{optimizer}") \
        + ("" if balance == "equal" else f"-{balance}") + ("" if parameter_servers == 1 else f"-ps{parameter_servers}") \
        + ("" if steps_per_execution == 1 else f"-k{steps_per_execution}")
    out = OUT / "runs" / lever / f"{mode}-w{workers}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    extra_ps = parameter_servers - 1 if mode == "grpc-async" else 0
    nodes = workers + 1 + extra_ps
    diagnosenet("emulate-cluster", "down", stdout=subprocess.DEVNULL)
    diagnosenet("emulate-cluster", "up", "--nodes", str(nodes), "--cpu", str(cpu), "--link", link,
                "--cpu-period-ms", str(CPU_PERIOD_MS))
    try:
        OUT.mkdir(parents=True, exist_ok=True)
        hostfile = OUT / f"hostfile-{nodes}"
        hostfile.write_text("".join(f"node{i}:1\n" for i in range(nodes)))
        args = ["--task", task, "--mode", mode, "--workers", str(workers), "--dataset", str(dataset),
                "--shards", str(shards), "--out", str(out), "--model-json", json.dumps(ECG_CNN if task == "ecg" else PAPER_MLP),
                "--max-epochs", str(epochs), "--patience", str(epochs), "--batch-size", str(batch_size),
                "--exchange", exchange.removesuffix("-bf16"),
                "--exchange-precision", "bfloat16" if exchange.endswith("-bf16") else "float32", "--monitor-rate", "1", "--timeout", "300", "--startup-timeout", "1800",
                "--weighting", "1", "--optimizer", optimizer]
        if mode.startswith("grpc"):   # the parameter server / chief on node0, workers on node1..N
            cluster = OUT / f"cluster-{nodes}"
            diagnosenet("cluster-files", "--hosts", *[f"node{i}" for i in range(nodes - extra_ps)], "--out",
                        str(cluster), stdout=subprocess.DEVNULL)
            if extra_ps:
                hosts = json.loads((cluster / "hosts.json").read_text())
                hosts["ps"] += [f"node{workers + i}" for i in range(1, parameter_servers)]
                (cluster / "hosts.json").write_text(json.dumps(hosts))
            drop = {args.index("--exchange"), args.index("--exchange") + 1,   # TF collectives: dense, float32
                    args.index("--exchange-precision"), args.index("--exchange-precision") + 1}
            args = [a for i, a in enumerate(args) if i not in drop]
            if mode == "grpc-async":
                args += ["--steps-per-execution", str(steps_per_execution)]
            command = ["env", f"PATH={BIN}:/usr/bin:/bin", "diagnosenet", "train-grpc", "--mode", mode,
                       "--workers", str(workers), "--base-port", "23450", "--timeout", "1800",
                       "--parameter-servers", str(parameter_servers if mode == "grpc-async" else 1),
                       "--hosts-file", str(cluster / "hosts.json"),
                       "--remote-prefix", "/run/diagnosenet-emulated/ssh {host}", "--", *args]
        else:
            command = ["env", f"PATH={BIN}:/usr/bin:/bin", "diagnosenet", "launch-mpi", "--launcher",
                       f"mpirun -disable-auto-cleanup -f {hostfile}", "--tasks", str(nodes), "--", *args]
        log = OUT / "logs" / f"{lever}-w{workers}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as handle:
            subprocess.run([str(BIN / "diagnosenet"), "emulate-cluster", "run", "--", *command], check=True,
                           stdout=handle, stderr=subprocess.STDOUT)
    finally:
        diagnosenet("emulate-cluster", "down", stdout=subprocess.DEVNULL)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4], help="worker nodes (+1 for rank 0)")
    parser.add_argument("--cpu", default="0.25", help="cores per node: one value, or one per node from node0 "
                                                       "(e.g. 0.25,0.5,0.25,0.25,0.25: a heterogeneous cluster)")
    parser.add_argument("--cpu-period-ms", type=float, default=100.0, help="CFS period of each node's CPU quota")
    parser.add_argument("--out", type=Path, default=None, help="output root (default bench/out/scaling)")
    parser.add_argument("--link", default="1gbit")
    parser.add_argument("--modes", nargs="+", default=["mpi-sync"])
    parser.add_argument("--exchanges", nargs="+", default=["dense", "sparse"],
                        choices=("dense", "sparse", "dense-bf16", "sparse-bf16"),
                        help="mpi.exchange; -bf16: with mpi.exchange_precision bfloat16")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64])
    parser.add_argument("--patients", type=int, default=116831)
    parser.add_argument("--composed", type=Path, default=None,
                        help="an existing compose-pmsi output (e.g. bench/out/pmsi-116831-2020/composed), or a "
                             "window-ecg output (X.npy) for the ECG CNN")
    parser.add_argument("--rows-per-worker", type=int, default=2048)
    parser.add_argument("--total-rows", type=int, default=None,
                        help="strong scaling: every worker count trains on these many rows (time to a target "
                             "accuracy on one data set); default: weak scaling, --rows-per-worker each")
    parser.add_argument("--held-out", type=int, default=2000, help="validation rows (and as many test rows)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--optimizers", nargs="+", default=["adam"], choices=("adam", "lazy-adam"),
                        help="train.optimizer; lazy-adam + mpi-async + sparse: replies carry the changed rows only")
    parser.add_argument("--parameter-servers", type=int, default=1,
                        help="grpc-async: ps tasks, ps:0 on node0 and one more node each")
    parser.add_argument("--steps-per-execution", type=int, default=1,
                        help="grpc-async: micro-batches a worker trains per closure the chief schedules")
    parser.add_argument("--balance", nargs="+", default=["equal"], choices=("equal", "measured"),
                        help="shards.balance; measured: shards sized by the speeds the equal run measured "
                             "(so equal runs first)")
    args = parser.parse_args()
    global OUT, CPU_PERIOD_MS
    OUT, CPU_PERIOD_MS = (args.out or OUT).resolve(), args.cpu_period_ms
    composed = args.composed or compose(args.patients)
    runs = []
    for batch_size in args.batch_sizes:
        for workers in args.nodes:
            dataset, shards = scaled_dataset(composed, workers, args.rows_per_worker, args.held_out, batch_size,
                                             total_rows=args.total_rows)
            for mode in args.modes:
                for exchange in args.exchanges:
                    for optimizer in args.optimizers:
                        task = "ecg" if (composed / "X.npy").exists() else "pmsi"
                        equal = train(task, mode, workers, exchange, batch_size, dataset, shards, args.epochs,
                                      args.cpu, args.link, optimizer, parameter_servers=args.parameter_servers,
                                      steps_per_execution=args.steps_per_execution)
                        runs.append(equal)
                        print("done", equal, flush=True)
                        if "measured" in args.balance and workers > 1:
                            _, balanced = scaled_dataset(composed, workers, args.rows_per_worker, args.held_out,
                                                         batch_size, speeds_from=equal, total_rows=args.total_rows)
                            runs.append(train(task, mode, workers, exchange, batch_size, dataset, balanced,
                                              args.epochs, args.cpu, args.link, optimizer, balance="measured"))
                            print("done", runs[-1], flush=True)
    for lever in sorted({run.parent for run in runs}):
        mine = [run for run in runs if run.parent == lever]
        diagnosenet("scalability-figure", "--runs", *map(str, mine), "--out", str(lever / "scalability.png"))
        print(f"\n### {lever.name}\n")
        print((lever / "scalability.csv").read_text())
        print((lever / "scalability-recommendation.md").read_text())


if __name__ == "__main__":
    main()
