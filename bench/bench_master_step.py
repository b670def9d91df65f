"""The ``mpi-async`` master's work per gradient, dense path vs row path, on the paper-size MLP.

    .venv/bin/python bench/bench_master_step.py [--rows 350] [--repeats 20]

One process, no MPI: what the master does between receiving a worker's gradient and handing
its reply to MPI, with ``lazy-adam`` and the sparse exchange (a gradient of ``--rows``
first-layer rows, about what a 64-stay PMSI micro-batch touches, plus the dense layers):

- dense: unpack the rows into the 8.3 M vector, ``apply_gradients``, ``RowReplies.updated``
  on the dense update, ``get_weights`` and the reply's rows (the code before the row path);
- rows, NumPy server: ``RowGradient.from_packed``, ``row_weighted_mean`` (``k = 1``) and
  ``RowServer.apply`` (TensorFlow's lazy Adam step in NumPy), ``RowServer.message`` (the master
  now; until 2026-12-07 the row path stepped and read the TensorFlow replica: 17.6 ms in all).

Prints the median milliseconds of each part over ``--repeats``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=14707)
    parser.add_argument("--rows", type=int, default=350, help="first-layer rows the gradient has")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    from diagnosenet.models.tensorflow_backend import tensorflow_replica
    from diagnosenet.training.exchange import RowGradient, RowServer, pack_rows, row_weighted_mean, unpack_rows
    from diagnosenet.training.loop import weighted_mean

    replica = tensorflow_replica("pmsi", {"hidden_units": [512] * 4, "dropout_keep": 0.8}, args.features, 14,
                                 seed=1, learning_rate=0.001, optimizer="lazy-adam")
    block, n = replica.input_block, replica.n_params
    head = block[0] * block[1]
    rng = np.random.default_rng(0)
    grads = np.zeros(n, np.float32)
    grads[:head].reshape(block)[rng.choice(block[0], args.rows, replace=False)] = rng.normal(size=(args.rows, block[1]))
    grads[head:] = rng.normal(size=n - head)
    packed, rest = pack_rows(grads, block), grads[head:]
    server = RowServer(replica)

    def dense_path(version: int) -> dict[str, float]:
        t = [time.perf_counter()]
        dense = np.concatenate([unpack_rows([packed], block), rest])
        t.append(time.perf_counter())
        update = weighted_mean([dense], [64])
        replica.apply_gradients(update)
        t.append(time.perf_counter())
        server.changed_at[RowGradient.from_dense(update, block).with_gradient()] = version
        weights = replica.get_weights()
        rows = server.changed_since(version - 1)
        np.concatenate([weights[:head].reshape(block)[rows].ravel(), weights[head:]])
        t.append(time.perf_counter())
        return {"receive": t[1] - t[0], "apply": t[2] - t[1], "reply": t[3] - t[2]}

    def row_path(version: int) -> dict[str, float]:
        t = [time.perf_counter()]
        grad = RowGradient.from_packed(packed, rest, block[1])
        t.append(time.perf_counter())
        server.apply(row_weighted_mean([grad], [64]), version)
        t.append(time.perf_counter())
        server.message(version - 1)
        t.append(time.perf_counter())
        return {"receive": t[1] - t[0], "apply": t[2] - t[1], "reply": t[3] - t[2]}

    print(f"paper-size MLP: {n:,} parameters, a gradient of {args.rows} first-layer rows; median ms of "
          f"{args.repeats} repeats, one process\n")
    print("| path | receive | apply | reply | total |")
    print("|---|---|---|---|---|")
    for name, path in (("dense (before)", dense_path), ("rows, NumPy server (now)", row_path)):
        path(1)   # trace the functions
        samples = [path(v) for v in range(2, args.repeats + 2)]
        medians = {k: 1000 * statistics.median(s[k] for s in samples) for k in samples[0]}
        print(f"| {name} | {medians['receive']:.1f} | {medians['apply']:.1f} | {medians['reply']:.1f} | "
              f"{sum(medians.values()):.1f} |")


if __name__ == "__main__":
    main()
