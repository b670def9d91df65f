"""Training throughput of the desktop loop vs plain Keras 3 ``model.fit`` on the same MLP and data.

Both train the same architecture (Relu layers, dropout keep 0.8, linear logits, Adam 0.001,
mean softmax cross-entropy) on the same dense float32 matrix with the same micro-batch size,
in one process. Only the training pass is timed (no validation on either side); the first
epoch (tracing, warm-up) is dropped and the median of the others reported.

    .venv/bin/python bench/bench_desktop_keras.py --rows 16384 --features 2000 --epochs 4

``--density d`` makes the data sparse (PMSI-like): the desktop loop then trains on CSR
micro-batches through its sparse first layer, Keras on the densified matrix (what ``fit``
needs for a plain ``Dense`` input layer).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def data(rows: int, features: int, classes: int, density: float | None = None, seed: int = 0):
    """``(X, y)`` with one informative feature per class; ``X`` is CSR when ``density`` is given."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, rows)
    if density:
        import scipy.sparse as sp

        X = sp.random(rows, features, density=density, format="lil", dtype=np.float32, random_state=seed)
        X[np.arange(rows), y] = 1.0
        return X.tocsr(), y.astype(np.int64)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    X[np.arange(rows), y] += 3.0
    return X, y.astype(np.int64)


def time_ours(X, y, units, batch_size, epochs, classes) -> list[float]:
    from diagnosenet.datasets.shards import Batching, Shard
    from diagnosenet.models.tensorflow_backend import tensorflow_replica
    from diagnosenet.training.loop import batch_order, run_epoch

    replica = tensorflow_replica("pmsi", {"hidden_units": units, "dropout_keep": 0.8}, X.shape[1], classes,
                           seed=1, learning_rate=0.001)
    shard = Shard(X=X, y=y, boundaries=Batching.boundaries(len(y), batch_size), worker=0, split="train")
    seconds = []
    for epoch in range(1, epochs + 1):
        tic = time.perf_counter()
        run_epoch(replica, shard.microbatches(batch_order(len(shard.boundaries) - 1, 1, epoch)))
        seconds.append(time.perf_counter() - tic)
    return seconds


def time_keras(X, y, units, batch_size, epochs, classes) -> list[float]:
    import keras

    layers = [keras.Input((X.shape[1],))]
    for u in units:
        layers += [keras.layers.Dense(u, activation="relu"), keras.layers.Dropout(0.2)]
    model = keras.Sequential(layers + [keras.layers.Dense(classes)])
    model.compile(optimizer=keras.optimizers.Adam(0.001),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seconds, tic = [], [0.0]

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            tic[0] = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - tic[0])

    if hasattr(X, "toarray"):
        X = X.toarray()
    model.fit(X, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[Clock()])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--features", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=14)
    parser.add_argument("--units", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--density", type=float, help="sparse input with this fraction of non-zeros")
    parser.add_argument("--out", default="bench/out/desktop/keras_vs_loop.json")
    args = parser.parse_args()
    import tensorflow as tf

    X, y = data(args.rows, args.features, args.classes, args.density)
    result = {"rows": args.rows, "features": args.features, "density": args.density, "units": args.units,
              "batch_size": args.batch_size,
              "epochs": args.epochs, "tensorflow": tf.__version__}
    for name, fn in (("keras_fit", time_keras), ("desktop_loop", time_ours)):
        seconds = fn(X, y, args.units, args.batch_size, args.epochs, args.classes)
        steady = statistics.median(seconds[1:])
        result[name] = {"epoch_seconds": seconds, "samples_per_second": args.rows / steady,
                        "step_ms": 1000 * steady / -(-args.rows // args.batch_size)}
    result["ratio_loop_over_keras"] = result["desktop_loop"]["samples_per_second"] / result["keras_fit"]["samples_per_second"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
