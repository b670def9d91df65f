"""Desktop mode: one process, shard 0 of a one-worker shard set, the shared epoch and run code.

Reading the same shard files as MPI/gRPC with one worker makes the modes comparable; with a
TensorFlow replica each step is fused (gradient and update in one traced call).
"""
from __future__ import annotations

from diagnosenet.training.settings import TrainSettings


def train(settings: TrainSettings) -> dict:
    from diagnosenet.training.loop import batch_order, run_epoch
    from diagnosenet.training.run import Run, data_shape, load_worker_shard, make_replica, shard_manifest

    if settings.workers != 1:
        raise ValueError(f"desktop mode trains one worker, got workers={settings.workers}")
    shard_manifest(settings)
    shard = load_worker_shard(settings, 0)
    replica = make_replica(settings, *data_shape(settings))
    run = Run(settings, replica, name="desktop")
    run.resume_or_start()
    monitor, monitor_status = run.monitor()
    n_batches = len(shard.boundaries) - 1
    with monitor:
        while not run.should_stop:
            epoch = run.begin_epoch()
            batches = shard.microbatches(batch_order(n_batches, settings.seed, epoch))
            run.end_epoch(run_epoch(replica, batches, epoch=epoch))
    return run.finish({"n_params": replica.n_params, "bytes_exchanged_per_epoch": 0, "monitor": monitor_status})
