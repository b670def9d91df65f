"""Per-epoch progress: early stopping on validation loss and the ``track.csv`` writer.

Both survive a restart: :class:`EarlyStopping` round-trips through ``state_dict`` (stored in
the checkpoint) and :class:`TrackWriter` reopens a track, drops rows after the checkpointed
epoch and appends, so a resumed run never repeats an epoch in its track.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from diagnosenet.artifacts import atomic_write


@dataclass(frozen=True)
class TrackRow:
    """One epoch of ``track.csv``, the same in every mode (docs/training.md, "Semantics")."""

    epoch: int
    train_loss: float       # mean training-mode loss over the epoch's rows
    valid_loss: float       # whole validation split, inference mode, the master's model
    train_metric: float     # running training-mode accuracy over the epoch's rows
    valid_metric: float     # validation accuracy, as valid_loss
    epoch_seconds: float
    wall_seconds: float     # since the start of training (resumed runs continue the count)
    timestamp: float        # Unix time at the end of the epoch (aligns with monitor samples)
    samples: int            # training rows seen this epoch: every training row once
    bytes_exchanged: int    # bytes the mode moved between processes this epoch

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


TRACK_COLUMNS = tuple(f.name for f in dataclasses.fields(TrackRow))


class EarlyStopping:
    """Stop after ``patience`` epochs without the validation loss falling by more than ``min_delta``."""

    def __init__(self, patience: int, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.best_loss = math.inf
        self.best_epoch = 0
        self.epochs = 0
        self.bad_epochs = 0
        self.time_to_best_s = 0.0

    def update(self, valid_loss: "float | Mapping | TrackRow") -> bool:
        """Record one epoch; ``True`` when it is the new best.

        Accepts the validation loss or a whole track row (then ``epoch`` and
        ``wall_seconds`` are taken from it).
        """
        if isinstance(valid_loss, TrackRow):
            valid_loss = valid_loss.as_dict()
        row = valid_loss if isinstance(valid_loss, Mapping) else {"valid_loss": valid_loss}
        loss = float(row["valid_loss"])
        self.epochs = int(row.get("epoch", self.epochs + 1))
        if not math.isfinite(loss):
            raise FloatingPointError(f"validation loss is {loss} at epoch {self.epochs}; training diverged")
        improved = loss < self.best_loss - self.min_delta
        if improved:
            self.best_loss, self.best_epoch, self.bad_epochs = loss, self.epochs, 0
            self.time_to_best_s = float(row.get("wall_seconds", 0.0))
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in
                ("patience", "min_delta", "best_loss", "best_epoch", "epochs", "bad_epochs", "time_to_best_s")}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore the counters; ``patience``/``min_delta`` stay as constructed (a rerun may change them)."""
        for key, value in state.items():
            if key not in ("patience", "min_delta"):
                setattr(self, key, value)

    def summary(self) -> dict:
        """The progress fields of ``metrics.json``."""
        return {"best_epoch": self.best_epoch, "epochs_run": self.epochs, "best_valid_loss": self.best_loss,
                "time_to_best_s": self.time_to_best_s, "stopped_early": self.should_stop}


class TrackWriter:
    """Append rows of :data:`TRACK_COLUMNS` to a CSV, flushed and fsynced after each epoch.

    ``resume=True`` keeps an existing file; ``keep_epochs`` then drops rows of epochs after
    the last checkpoint (they are trained again). Every row also goes to a hidden journal
    beside the track (``.track.csv.journal``): Snakemake deletes a job's declared outputs
    before re-running it, so a resumed run rebuilds its track from the journal.
    """

    def __init__(self, path: str | Path, resume: bool = False, keep_epochs: int | None = None):
        self.path = Path(path)
        self.journal = self.path.with_name(f".{self.path.name}.journal")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        source = self.path if self.path.exists() else self.journal
        rows = read_track(source) if resume and source.exists() else []
        if keep_epochs is not None:
            rows = [row for row in rows if int(row["epoch"]) <= keep_epochs]
        for target in (self.path, self.journal):   # atomic: a full disk leaves the old track as it was
            atomic_write(target, lambda handle: _write_rows(handle, rows))
        self.rows = len(rows)

    def write(self, row: TrackRow | Mapping) -> None:
        row = row.as_dict() if isinstance(row, TrackRow) else row
        missing = [c for c in TRACK_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"track row lacks columns {missing}")
        values = {k: repr(float(row[k])) if isinstance(row[k], float) else row[k] for k in TRACK_COLUMNS}
        line = io.StringIO()
        csv.DictWriter(line, fieldnames=TRACK_COLUMNS, extrasaction="ignore").writerow(values)
        for target in (self.path, self.journal):
            append_durably(target, line.getvalue().encode())
        self.rows += 1


def _write_rows(handle, rows) -> None:
    writer = csv.DictWriter(handle, fieldnames=TRACK_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)


def append_durably(path: Path, data: bytes) -> None:
    """Append ``data`` and fsync; if that fails (a full disk), cut the file back to its previous
    length, so no half row is left, and raise ``OSError`` naming it."""
    from diagnosenet.artifacts import naming

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise naming(exc, path) from exc
    finally:
        os.close(fd)


def read_track(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
