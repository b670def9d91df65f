"""The run skeleton every mode shares: replica, resume-or-start, end of epoch, end of run.

A mode supplies only how gradients and weights travel. The process that owns the master
model (desktop; the MPI master; the gRPC chief) drives a :class:`Run`:

1. :meth:`Run.resume_or_start` — resume the last checkpoint when it was written with the same
   settings, shard files and training code (:func:`~diagnosenet.training.checkpoint.fingerprint`),
   else delete it and start afresh (one policy, every mode);
2. :meth:`Run.end_epoch` — once per epoch: validate the master model on the whole validation
   split in inference mode, update early stopping, write one :class:`TrackRow`, checkpoint;
3. :meth:`Run.finish` — restore the best checkpoint, score the test split, write the run files.

The master model is anything with ``predict_proba``, ``get_state`` and ``set_state`` (a
:class:`~diagnosenet.training.replica.Replica`, or the gRPC parameter-server model).
"""
from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from diagnosenet.training.settings import TrainSettings

log = logging.getLogger(__name__)


class MasterModel(Protocol):
    def predict_proba(self, X: Any, batch_size: int = 1024) -> np.ndarray: ...
    def get_state(self) -> dict[str, np.ndarray]: ...
    def set_state(self, state: dict[str, np.ndarray]) -> None: ...


def make_replica(settings: TrainSettings, input_size: int, n_classes: int, *, worker: int = 0):
    """The replica of any mode: ``model.backend: numpy`` selects the NumPy test model, otherwise
    (the default) the TensorFlow graph of ``models.<task>``; both with ``train.optimizer`` at the
    run's learning rate. ``worker`` (0-based; 0 for the desktop run and every master) chooses the
    graph's dropout masks, so that workers at the same local step drop different units."""
    model = dict(settings.model)
    backend = model.pop("backend", "tensorflow")
    if backend == "numpy":
        from diagnosenet.models.numpy_backend import NumpyReplica

        return NumpyReplica(input_size, n_classes, model.get("hidden_units", ()), seed=settings.seed,
                            learning_rate=settings.learning_rate, delay_s=model.get("delay_s", 0.0),
                            class_weights=class_weights(settings), optimizer=settings.optimizer)
    if backend != "tensorflow":
        raise ValueError(f"model backend {backend!r} is neither 'tensorflow' nor 'numpy'")
    import tensorflow as tf

    from diagnosenet.models.tensorflow_backend import tensorflow_replica

    tf.config.experimental.enable_op_determinism()
    return tensorflow_replica(settings.task, model, input_size, n_classes, seed=settings.seed,
                              learning_rate=settings.learning_rate, class_weights=class_weights(settings),
                              optimizer=settings.optimizer, dropout_stream=worker)


def class_weights(settings: TrainSettings) -> np.ndarray | None:
    """Per-class loss weights of ``train.class_weight``: ``None`` for ``none``; for ``balanced``
    ``n / (k × n_c)`` over the **training split's** rows (scikit-learn's ``balanced``; the
    materialise stage's ``class_table.csv``, so no other split informs them), 1 for a class
    absent from training."""
    if settings.class_weight == "none":
        return None
    with open(Path(settings.dataset_dir) / "class_table.csv", newline="") as handle:
        counts = np.array([int(row["train_rows"]) for row in csv.DictReader(handle)], np.float64)
    present = counts > 0
    weights = np.ones(len(counts), np.float32)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def data_shape(settings: TrainSettings) -> tuple[int, int]:
    """``(input size, number of classes)`` of the materialised data set."""
    from diagnosenet.datasets.materialise import load_classes, load_split

    X_valid, _, _ = load_split(settings.dataset_dir, "valid")
    return int(X_valid.shape[1]), len(load_classes(settings.dataset_dir))


def shard_manifest(settings: TrainSettings) -> dict:
    """The shards' manifest, refused when written for other workers or micro-batch size."""
    from diagnosenet.artifacts import verify_manifest

    return verify_manifest(settings.shards_dir, stage="shard",
                           params={"workers": settings.workers, "batch_size": settings.batch_size},
                           check_hashes=False)


def sync_steps(manifest: dict) -> int:
    """Synchronous steps per epoch: the largest shard's micro-batch count (see ``loop.run_epoch``)."""
    return max(s["micro_batches"] for s in manifest["shards"]["train"])


def load_worker_shard(settings: TrainSettings, worker: int):
    """Worker ``worker``'s (0-based) training shard."""
    from diagnosenet.datasets.shards import load_shard

    return load_shard(settings.shards_dir, "train", worker, workers=settings.workers, batch_size=settings.batch_size)


@dataclass
class Resumed:
    """Where a run starts: epoch 0 for a fresh run, else the checkpointed epoch and its progress."""

    epoch: int
    progress: dict


class Run:
    """The master's side of one training run (see the module docstring)."""

    def __init__(self, settings: TrainSettings, model: MasterModel, *, name: str = "master"):
        from diagnosenet.training.progress import EarlyStopping

        self.settings, self.model, self.name = settings, model, name
        self.out = settings.out_dir
        self.checkpoints = self.out / "checkpoint"
        self.stopper = EarlyStopping(settings.patience)
        self.epoch = 0
        self.samples_total = 0
        self.start = time.time()
        self._tic = self.start
        self._writer = None
        self._valid = None
        self._fingerprint = None

    # -- start ----------------------------------------------------------------------------
    def resume_or_start(self) -> Resumed:
        """Load the newest intact checkpoint into the model when it matches this run, else start
        afresh; :class:`~diagnosenet.training.checkpoint.CheckpointError` when there are
        checkpoints of this run and none is intact (a clear stop: deleting them is the user's call)."""
        from diagnosenet.training.progress import TrackWriter

        self.out.mkdir(parents=True, exist_ok=True)
        checkpoint = self._newest_checkpoint()
        progress: dict = {}
        if checkpoint is not None:
            self.model.set_state(checkpoint["replica_state"])
            progress = checkpoint["progress"]
            self.stopper.load_state_dict(progress["early_stopping"])
            self.epoch = int(checkpoint["epoch"])
            self.samples_total = int(progress["samples"])
            self.start = time.time() - float(progress["wall_seconds"])
            log.info("resuming %s after epoch %d", self.out, self.epoch)
        self._writer = TrackWriter(self.out / "track.csv", resume=checkpoint is not None,
                                   keep_epochs=self.epoch if checkpoint is not None else None)
        self._tic = time.time()
        return Resumed(self.epoch, progress)

    def _newest_checkpoint(self) -> dict | None:
        from diagnosenet.artifacts import atomic_write
        from diagnosenet.training.checkpoint import BEST, CheckpointError, fingerprint, intact_checkpoints

        self._fingerprint = fingerprint(self.settings)
        intact, damaged = intact_checkpoints(self.checkpoints)
        if intact and all(c["progress"].get("settings") != self._fingerprint for c in intact):
            log.warning("%s: checkpoint written with other settings, shards or code; deleting it and "
                        "starting afresh", self.checkpoints)
            for stale in self.checkpoints.glob("*.npz"):
                stale.unlink()
            return None
        if damaged and not intact:
            raise CheckpointError(f"no intact checkpoint to resume from: {'; '.join(damaged.values())}. Delete "
                                  f"{self.checkpoints} to train this run afresh (its finished epochs are lost)")
        matching = [c for c in intact if c["progress"].get("settings") == self._fingerprint]
        for path, why in damaged.items():  # out of the rotation, kept for inspection
            path.replace(path.with_name(path.name + ".damaged"))
            log.warning("%s; set aside as %s.damaged, resuming from %s (epoch %d)", why, path.name,
                        matching[0]["path"], matching[0]["epoch"])
        chosen = matching[0] if matching else None
        best = self.checkpoints / BEST
        if chosen is not None and not best.exists() and chosen["progress"].get("best_epoch") == chosen["epoch"]:
            atomic_write(best, lambda handle: handle.write(chosen["path"].read_bytes()), binary=True)
        return chosen

    @property
    def should_stop(self) -> bool:
        return self.stopper.should_stop or self.epoch >= self.settings.max_epochs

    def begin_epoch(self) -> int:
        """Mark the start of the next epoch; returns its number."""
        self._tic = time.time()
        return self.epoch + 1

    def monitor(self, name: str | None = None, pids=None):
        """``(context manager, status)`` of this process's monitor (see ``evaluation.monitor_for``)."""
        from diagnosenet.training.evaluation import monitor_for

        return monitor_for(self.settings, name or self.name, pids)

    # -- each epoch -----------------------------------------------------------------------
    def _validation(self):
        if self._valid is None:
            from diagnosenet.datasets.materialise import load_split

            self._valid = load_split(self.settings.dataset_dir, "valid")[:2]
        return self._valid

    def end_epoch(self, stats, *, bytes_exchanged: float = 0, extra: dict | None = None,
                  validation: tuple[float, float] | None = None) -> bool:
        """Validate, early-stop, track and checkpoint one finished epoch; ``True`` to stop.

        ``stats`` is the epoch's :class:`~diagnosenet.training.loop.EpochStats` summed over every
        worker; ``extra`` goes into the checkpoint's progress (e.g. the asynchronous version);
        ``validation`` = ``(loss, accuracy)`` of the master model on the whole validation split
        when the mode computed it already (identical replicas scoring their shards in parallel).
        """
        from diagnosenet.training.checkpoint import save_checkpoint
        from diagnosenet.training.loop import evaluate
        from diagnosenet.training.progress import TrackRow

        if validation is None:
            valid_loss, valid_metric, _ = evaluate(self.model, *self._validation(),
                                                   class_weights=class_weights(self.settings))
        else:
            valid_loss, valid_metric = (float(v) for v in validation)
        self.epoch += 1
        self.samples_total += stats.samples
        now = time.time()
        row = TrackRow(epoch=self.epoch, train_loss=stats.loss, valid_loss=valid_loss, train_metric=stats.metric,
                       valid_metric=valid_metric, epoch_seconds=now - self._tic, wall_seconds=now - self.start,
                       timestamp=now, samples=stats.samples, bytes_exchanged=int(bytes_exchanged))
        self.stopper.update(row)
        self._writer.write(row)
        save_checkpoint(self.checkpoints, epoch=self.epoch, replica_state=self.model.get_state(), progress={
            "best_epoch": self.stopper.best_epoch, "early_stopping": self.stopper.state_dict(),
            "wall_seconds": row.wall_seconds, "samples": self.samples_total, "settings": self._fingerprint,
            **(extra or {})})
        remaining = self.settings.max_epochs - self.epoch
        log.info("epoch %d/%d: %d rows, train loss %.4f, valid loss %.4f, valid accuracy %.4f (%.1f s%s)",
                 self.epoch, self.settings.max_epochs, stats.samples, row.train_loss, valid_loss, valid_metric,
                 row.epoch_seconds, f", at most {remaining} more, ETA {remaining * row.epoch_seconds:.0f} s"
                 if remaining and not self.stopper.should_stop else "")
        self._tic = time.time()
        return self.should_stop

    # -- end ------------------------------------------------------------------------------
    def finish(self, summary: dict) -> dict:
        """Best checkpoint into the model, test-split probabilities, the run's files; the metrics."""
        from diagnosenet.datasets.materialise import load_classes, load_split
        from diagnosenet.training.checkpoint import BEST, CheckpointError, load_checkpoint
        from diagnosenet.training.evaluation import finalise_run

        train_seconds = time.time() - self.start
        best = load_checkpoint(self.checkpoints, BEST)
        if best is None:
            raise CheckpointError(f"{self.checkpoints / BEST}: no best checkpoint (damaged and set aside, or no "
                                  "epoch trained); delete the run directory to train it afresh")
        self.model.set_state(best["replica_state"])
        X_test, y_test, _ = load_split(self.settings.dataset_dir, "test")
        proba = self.model.predict_proba(X_test)
        return finalise_run(self.settings, proba, y_test, load_classes(self.settings.dataset_dir), {
            **self.stopper.summary(), "train_seconds": train_seconds,
            "samples_per_second": self.samples_total / train_seconds if train_seconds > 0 else 0.0,
            **summary})
