"""Shards as ``tf.data`` for the gRPC modes; sparse stays sparse (CSR → ``tf.SparseTensor``).

An element is one micro-batch of a shard (the shard's own boundaries) held as dense
*components* — ``(indices, values, y)`` for a CSR batch, ``(X, y)`` for dense — because
those save, load and cross process boundaries as plain tensors; :func:`to_model_input`
turns them into the model's input (a ``tf.SparseTensor`` for PMSI) inside the pipeline.

Parameter-server training traces one ``dataset_fn`` on the coordinator and runs it on every
worker, with no worker index available to it. Each worker must still read only its own
shard, so the worker's server process first stages its shard as a ``tf.data`` snapshot at
the *relative* path :data:`LOCAL_SHARD` inside its own working directory
(:func:`stage_shard`); the shared ``dataset_fn`` loads that relative path, which each worker
process resolves to its own directory — the data never passes through the coordinator.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from diagnosenet.datasets.shards import Shard, load_shard

log = logging.getLogger(__name__)

#: where a worker server stages its shard, relative to its working directory
LOCAL_SHARD = "local_shard_train"


def components(X, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """One batch as dense arrays: ``(indices, values, y)`` for CSR, ``(X, y)`` for dense."""
    y = np.asarray(y, dtype=np.int64)
    if sp.issparse(X):
        coo = sp.coo_matrix(X)
        indices = np.stack([coo.row, coo.col], axis=1).astype(np.int64).reshape(-1, 2)
        return indices, coo.data.astype(np.float32), y
    return np.asarray(X, dtype=np.float32), y


def component_spec(sparse: bool, input_shape: tuple[int, ...]) -> tuple[tf.TensorSpec, ...]:
    if sparse:
        return (tf.TensorSpec([None, 2], tf.int64), tf.TensorSpec([None], tf.float32),
                tf.TensorSpec([None], tf.int64))
    return tf.TensorSpec([None, *input_shape], tf.float32), tf.TensorSpec([None], tf.int64)


def to_model_input(parts, n_features: int):
    """``(x, y)`` from components; ``x`` is a row-ordered ``tf.SparseTensor`` for sparse data."""
    if len(parts) == 3:
        indices, values, y = parts
        shape = tf.stack([tf.shape(y, out_type=tf.int64)[0], tf.constant(n_features, tf.int64)])
        return tf.sparse.reorder(tf.SparseTensor(indices, values, shape)), y
    return parts


def shard_dataset(shard: Shard) -> tf.data.Dataset:
    """The shard's micro-batches as components, in shard order (what a worker stages)."""
    sparse = sp.issparse(shard.X)

    def batches():
        for X, y in shard.microbatches():
            yield components(X, y)

    return tf.data.Dataset.from_generator(batches, output_signature=component_spec(sparse, shard.X.shape[1:]))


def stage_shard(shards_dir: str | Path, worker: int, workdir: str | Path) -> Path:
    """Save worker ``worker``'s training shard under ``workdir/LOCAL_SHARD`` (atomic rename)."""
    target = Path(workdir) / LOCAL_SHARD
    staging = target.with_name(target.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    shard = load_shard(shards_dir, "train", worker)
    shard_dataset(shard).save(str(staging))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    log.info("worker %d staged train_%02d.npz (%d rows, %d micro-batches) at %s", worker, worker,
             shard.n_rows, len(shard.boundaries) - 1, target)
    return target


def local_shard_dataset(sparse: bool, input_shape: tuple[int, ...], n_batches: int, seed: int) -> tf.data.Dataset:
    """The worker-local staged shard: one pass per iterator, in a fresh seeded order each time
    (the chief creates one iterator per epoch, so an epoch is one pass over every shard)."""
    spec = component_spec(sparse, input_shape)
    dataset = tf.data.Dataset.load(LOCAL_SHARD, element_spec=spec)
    dataset = dataset.shuffle(max(n_batches, 1), seed=seed, reshuffle_each_iteration=True)
    n_features = input_shape[0]
    return dataset.map(lambda *parts: to_model_input(parts, n_features)).prefetch(2)
