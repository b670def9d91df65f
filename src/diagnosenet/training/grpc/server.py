"""One task of a gRPC run: a TensorFlow server (``ps``, asynchronous ``worker``) that blocks until
killed, or a training program (the chief, every synchronous worker).

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
          workdir: str | Path | None = None, shard: int | None = None) -> None:
    """Stage this worker's shard (async workers: ``shard``, by default its task index), then
    start the server and block."""
    import tensorflow as tf

    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        os.chdir(workdir)  # the shared dataset_fn reads the relative LOCAL_SHARD path from here
    if shards_dir is not None:
        from diagnosenet.training.grpc.data import stage_shard

        stage_shard(shards_dir, index if shard is None else shard, Path.cwd())
    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=threads)
    server = tf.distribute.Server(tf.train.ClusterSpec(cluster), job_name=job, task_index=index,
                                  protocol="grpc", config=config, start=True)
    log.info("%s:%d serving at %s", job, index, server.target)
    server.join()


def run_task(settings, *, threads: int) -> dict | None:
    """This process's role in ``TF_CONFIG``: a parameter server or asynchronous worker serves
    (a worker first stages its own shard), the chief or a synchronous worker trains."""
    from diagnosenet.training.grpc import train
    from diagnosenet.training.grpc.cluster import worker_workdir
    from diagnosenet.training.grpc.common import task_from_tf_config

    role, index = task_from_tf_config()
    if settings.mode == "grpc-async" and role in ("ps", "worker"):
        worker = role == "worker"
        shard = settings.worker_ids[index] - 1 if worker else None  # worker:i of a re-formed cluster
        serve(json.loads(os.environ["TF_CONFIG"])["cluster"], role, index, threads=threads,
              shards_dir=Path(settings.shards_dir).resolve() if worker else None,
              workdir=worker_workdir(Path(settings.out_dir).resolve(), shard) if worker else None, shard=shard)
        return None
    return train(settings)
