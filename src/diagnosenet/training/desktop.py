"""Desktop mode: one process, shard 0 of a one-worker shard set, the shared epoch loop.

Reading the same shard files as MPI/gRPC with one worker makes the modes comparable. After
every epoch the track row is written, then an atomic checkpoint; a restarted run resumes
from the last checkpoint (track rows after it are dropped and trained again), so a killed
run never duplicates or loses epochs. Test metrics use the best weights in inference mode.
"""
from __future__ import annotations

import logging
import time

from diagnosenet.training.settings import TrainSettings

log = logging.getLogger(__name__)

def train(settings: TrainSettings) -> dict:
    import tensorflow as tf

    from diagnosenet.datasets.materialise import load_classes, load_split
    from diagnosenet.datasets.shards import load_shard
    from diagnosenet.models.replica import make_replica
    from diagnosenet.training.checkpoint import BEST, load_checkpoint, save_checkpoint
    from diagnosenet.training.checkpoint import fingerprint as checkpoint_fingerprint
    from diagnosenet.training.evaluation import finalise_run, monitor_for
    from diagnosenet.training.loop import batch_order, evaluate, run_epoch
    from diagnosenet.training.progress import EarlyStopping, TrackWriter

    if settings.workers != 1:
        raise ValueError(f"desktop mode trains one worker, got workers={settings.workers}")
    tf.config.experimental.enable_op_determinism()
    out, checkpoints = settings.out_dir, settings.out_dir / "checkpoint"
    out.mkdir(parents=True, exist_ok=True)
    classes = load_classes(settings.dataset_dir)
    shard = load_shard(settings.shards_dir, "train", 0, workers=1, batch_size=settings.batch_size)
    X_valid, y_valid, _ = load_split(settings.dataset_dir, "valid")
    replica = make_replica(settings.task, settings.model, int(X_valid.shape[1]), len(classes),
                           seed=settings.seed, learning_rate=settings.learning_rate)
    stopper = EarlyStopping(settings.patience)

    fingerprint = checkpoint_fingerprint(settings)
    checkpoint = load_checkpoint(checkpoints)
    if checkpoint is not None and checkpoint["progress"].get("settings") != fingerprint:
        log.warning("%s: checkpoint written with other settings or data; starting afresh", checkpoints)
        for stale in checkpoints.glob("*.npz"):
            stale.unlink()
        checkpoint = None
    first_epoch, elapsed, samples_total = 1, 0.0, 0
    if checkpoint is not None:
        replica.set_state(checkpoint["replica_state"])
        stopper.load_state_dict(checkpoint["progress"]["early_stopping"])
        first_epoch = checkpoint["epoch"] + 1
        elapsed, samples_total = checkpoint["progress"]["wall_seconds"], checkpoint["progress"]["samples"]
        log.info("resuming %s after epoch %d", out, checkpoint["epoch"])
    writer = TrackWriter(out / "track.csv", resume=checkpoint is not None,
                         keep_epochs=checkpoint["epoch"] if checkpoint else None)

    monitor, monitor_status = monitor_for(settings, "desktop")
    n_batches = len(shard.boundaries) - 1
    with monitor:
        start = time.time() - elapsed
        for epoch in range(first_epoch, settings.max_epochs + 1):
            if stopper.should_stop:
                break
            tic = time.time()
            stats = run_epoch(replica, shard.microbatches(batch_order(n_batches, settings.seed, epoch)))
            _, train_metric, _ = evaluate(replica, shard.X, shard.y)
            valid_loss, valid_metric, _ = evaluate(replica, X_valid, y_valid)
            now = time.time()
            samples_total += stats.samples
            row = dict(epoch=epoch, train_loss=stats.loss, valid_loss=valid_loss, train_metric=train_metric,
                       valid_metric=valid_metric, epoch_seconds=now - tic, wall_seconds=now - start,
                       timestamp=now, samples=stats.samples, bytes_exchanged=0)
            stopper.update(row)
            writer.write(row)
            save_checkpoint(checkpoints, epoch=epoch, replica_state=replica.get_state(), progress={
                "best_epoch": stopper.best_epoch, "early_stopping": stopper.state_dict(),
                "wall_seconds": now - start, "samples": samples_total, "settings": fingerprint})
            log.info("epoch %d: train loss %.4f, valid loss %.4f, valid accuracy %.4f (%.1f s)",
                     epoch, stats.loss, valid_loss, valid_metric, now - tic)
        train_seconds = time.time() - start

    best = load_checkpoint(checkpoints, BEST)
    if best is None:
        raise RuntimeError(f"{checkpoints}: no best checkpoint; did training run any epoch?")
    replica.set_state(best["replica_state"])
    X_test, y_test, _ = load_split(settings.dataset_dir, "test")
    proba = replica.predict_proba(X_test)
    return finalise_run(settings, proba, y_test, classes, {
        **stopper.summary(), "train_seconds": train_seconds, "n_params": replica.n_params,
        "samples_per_second": samples_total / train_seconds if train_seconds > 0 else 0.0,
        "bytes_exchanged_per_epoch": 0, "monitor": monitor_status,
    })
