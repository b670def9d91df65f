"""What staleness costs ``mpi-async``'s accuracy, without the cluster: W workers in round-robin.

    .venv/bin/python bench/bench_async_staleness.py --dataset bench/out/async24/strong1/dataset-pmsi-t8192 \\
        --shards bench/out/async24/strong1/shards-pmsi-t8192-w4-b64 --workers 4 --epochs 3 [--k 2] \\
        [--fresh] [--stale-scale inverse] [--lr 0.001] [--beta1 0.9]

One process: W TensorFlow workers, each computing its row gradient on its own copy of the
weights, and the master's :class:`~diagnosenet.training.exchange.RowServer` (the code
``mpi-async`` runs), which applies the row-weighted mean of every ``k`` gradients and replies
with the changed rows. Workers take turns, so every gradient is exactly ``W/k − 1`` versions
stale (``--fresh``: each worker takes a reply before it computes, staleness 0, a reference
no real cluster can reach). ``--stale-scale inverse`` divides the step size by the staleness
(Zhang et al., IJCAI 2016); ``--compensate λ`` corrects each gradient for the updates it
missed (delay compensation). Prints the validation accuracy after each epoch.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--shards", required=True, help="shards for --workers at micro-batch --batch-size")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--k", type=int, default=1, help="gradients per update (mpi.weighting)")
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--beta1", type=float, default=0.9)
    parser.add_argument("--stale-scale", choices=("none", "inverse"), default="none")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--compensate", type=float, default=0.0,
                        help="delay compensation λ (DC-ASGD-a, Zheng et al. ICML 2017, with Adam's v as the mean "
                             "square): g + λ g² (w_now − w_held) / √v; 0: off")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from diagnosenet.datasets.materialise import load_classes, load_split
    from diagnosenet.datasets.shards import load_shard
    from diagnosenet.models.tensorflow_backend import tensorflow_replica
    from diagnosenet.training.exchange import RowGradient, RowServer, row_weighted_mean
    from diagnosenet.training.loop import batch_order

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    X_valid, y_valid, _ = load_split(args.dataset, "valid")
    model = {"hidden_units": [512] * 4, "dropout_keep": 0.8}

    def replica():
        return tensorflow_replica("pmsi", model, X_valid.shape[1], len(load_classes(args.dataset)), seed=args.seed,
                                  learning_rate=args.lr, optimizer="lazy-adam")

    master = replica()
    master.optimizer.beta_1 = args.beta1
    server = RowServer(master)
    units = master.input_block[1]
    workers = [replica() for _ in range(args.workers)]
    for worker in workers:
        worker.set_weights(server.weights)
    held, version = [0] * args.workers, 0
    copies = [server.weights.copy() for _ in range(args.workers)]   # each worker's weights, for --compensate
    head = master.input_block[0] * units

    def compensated(i: int, grad):
        if not args.compensate:
            return grad
        kernel_now = server.weights[:head].reshape(-1, units)[grad.rows]
        kernel_then = copies[i][:head].reshape(-1, units)[grad.rows]
        v_rows = server.adam.v[:head].reshape(-1, units)[grad.rows]
        values = grad.values + args.compensate * grad.values ** 2 * (kernel_now - kernel_then) / np.sqrt(v_rows + 1e-7)
        rest = grad.rest + args.compensate * grad.rest ** 2 * (server.weights[head:] - copies[i][head:]) / \
            np.sqrt(server.adam.v[head:] + 1e-7)
        return RowGradient(grad.rows, values.astype(np.float32), rest.astype(np.float32))
    shards = [load_shard(args.shards, "train", i, workers=args.workers, batch_size=args.batch_size)
              for i in range(args.workers)]

    def reply(i: int) -> None:
        body, rows = server.message(held[i])
        held[i] = version
        table = body[:rows * (units + 1)].reshape(rows, units + 1)
        workers[i].set_rows(table[:, 0].astype(np.int64), table[:, 1:], body[rows * (units + 1):])
        if args.compensate:
            copies[i][:] = server.weights

    start = time.time()
    for epoch in range(1, args.epochs + 1):
        batches = [iter(s.microbatches(batch_order(len(s.boundaries) - 1, args.seed, epoch))) for s in shards]
        live, pending = list(range(args.workers)), []
        while live:
            for i in list(live):
                try:
                    X, y = next(batches[i])
                except StopIteration:
                    live.remove(i)
                    continue
                if args.fresh:
                    reply(i)
                rows, values, rest, _, _ = workers[i].compute_row_gradients(X, y)
                pending.append((i, compensated(i, RowGradient(rows, values, rest)), len(y)))
                if len(pending) < args.k and i != live[-1]:
                    continue
                staleness = float(np.mean([version - held[j] for j, *_ in pending]))
                version += 1
                step_size = server.adam.step_size
                if args.stale_scale == "inverse" and staleness > 1:
                    server.adam.step_size = lambda: step_size() * np.float32(1 / staleness)
                server.apply(row_weighted_mean([g for _, g, _ in pending], [n for *_, n in pending]), version)
                server.adam.step_size = step_size
                for j, *_ in pending:
                    reply(j)
                pending = []
        server.into(master)
        accuracy = float(np.mean(np.argmax(master.predict_proba(X_valid), axis=1) == y_valid))
        print(f"workers {args.workers} k {args.k} lr {args.lr} beta1 {args.beta1} stale-scale {args.stale_scale} "
              f"compensate {args.compensate} fresh {args.fresh}: epoch {epoch}, {version} updates, valid accuracy {accuracy:.4f} "
              f"({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
