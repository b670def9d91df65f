"""One TensorFlow gRPC server process (a ``ps`` or ``worker`` task) that blocks until killed.

Servers get ``inter_op_parallelism_threads = workers + 1``: with fewer threads, on a
machine with few cores, a parameter-server cluster deadlocks (every inter-op thread waits
on a remote step). TensorFlow's server always listens on ``0.0.0.0:<port>`` whatever host
the cluster spec names (see docs/training.md, gRPC: use a trusted network only).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def serve(cluster: dict, job: str, index: int, *, threads: int, shards_dir: str | Path | None = None,
          workdir: str | Path | None = None) -> None:
    """Stage this worker's shard (async workers), then start the server and block."""
    import tensorflow as tf

    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        os.chdir(workdir)  # the shared dataset_fn reads the relative LOCAL_SHARD path from here
    if shards_dir is not None:
        from diagnosenet.training.grpc_data import stage_shard

        stage_shard(shards_dir, index, Path.cwd())
    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=threads)
    server = tf.distribute.Server(tf.train.ClusterSpec(cluster), job_name=job, task_index=index,
                                  protocol="grpc", config=config, start=True)
    log.info("%s:%d serving at %s", job, index, server.target)
    server.join()


def cluster_from_tf_config(text: str) -> dict:
    """The ``cluster`` part of a ``TF_CONFIG`` JSON (or a bare cluster dict)."""
    data = json.loads(text)
    return data.get("cluster", data)
