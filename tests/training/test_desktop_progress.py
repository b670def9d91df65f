"""Early stopping, the per-epoch track and checkpoints (no TensorFlow)."""
import math

import numpy as np
import pytest

from diagnosenet.training.checkpoint import BEST, LAST, PREVIOUS, load_checkpoint, save_checkpoint
from diagnosenet.training.progress import TRACK_COLUMNS, EarlyStopping, TrackWriter, read_track


def row(epoch, valid_loss, wall=None):
    return {c: 0 for c in TRACK_COLUMNS} | {"epoch": epoch, "valid_loss": valid_loss,
                                            "wall_seconds": float(wall if wall is not None else epoch)}


def test_early_stopping_waits_patience_epochs_after_the_best():
    stopper = EarlyStopping(patience=2)
    flags = [stopper.update(row(e, loss, wall=10.0 * e)) for e, loss in enumerate([1.0, 0.8, 0.9, 0.7, 0.75], 1)]
    assert flags == [True, True, False, True, False] and not stopper.should_stop
    stopper.update(row(6, 0.71))
    assert stopper.should_stop
    assert stopper.summary() == {"best_epoch": 4, "epochs_run": 6, "best_valid_loss": 0.7,
                                 "time_to_best_s": 40.0, "stopped_early": True}


def test_early_stopping_state_round_trip_keeps_the_new_patience():
    a = EarlyStopping(patience=3)
    for e, loss in enumerate([1.0, 0.9, 0.95], 1):
        a.update(row(e, loss))
    b = EarlyStopping(patience=10)
    b.load_state_dict(a.state_dict())
    assert (b.best_epoch, b.bad_epochs, b.epochs, b.patience) == (2, 1, 3, 10)


def test_diverged_loss_is_an_error_naming_the_epoch():
    with pytest.raises(FloatingPointError, match="epoch 1"):
        EarlyStopping(patience=1).update(row(1, math.nan))


def test_track_rows_are_on_disk_after_each_write_and_resume_drops_later_epochs(tmp_path):
    path = tmp_path / "track.csv"
    writer = TrackWriter(path)
    for e in (1, 2, 3):
        writer.write(row(e, 1.0 / e))
        assert [int(r["epoch"]) for r in read_track(path)] == list(range(1, e + 1))  # flushed per epoch
    TrackWriter(path, resume=True, keep_epochs=2)
    assert [int(r["epoch"]) for r in read_track(path)] == [1, 2]
    TrackWriter(path)  # a fresh run starts a fresh track
    assert read_track(path) == []
    with pytest.raises(ValueError, match="lacks"):
        writer.write({"epoch": 1})


def test_a_resumed_run_rebuilds_a_track_that_snakemake_deleted(tmp_path):
    path = tmp_path / "track.csv"
    writer = TrackWriter(path)
    for e in (1, 2, 3):
        writer.write(row(e, 1.0 / e))
    path.unlink()  # Snakemake removes a job's outputs before running it again
    TrackWriter(path, resume=True, keep_epochs=3).write(row(4, 0.2))
    assert [int(r["epoch"]) for r in read_track(path)] == [1, 2, 3, 4]


def test_checkpoint_round_trip_and_best_only_at_a_new_best(tmp_path):
    state = {"weights": np.arange(5, dtype=np.float32), "step": np.array([7])}
    save_checkpoint(tmp_path, epoch=1, replica_state=state, progress={"best_epoch": 1})
    save_checkpoint(tmp_path, epoch=2, replica_state={**state, "weights": state["weights"] * 2},
                    progress={"best_epoch": 1})
    last, best = load_checkpoint(tmp_path, LAST), load_checkpoint(tmp_path, BEST)
    assert (last["epoch"], best["epoch"]) == (2, 1)
    np.testing.assert_array_equal(best["replica_state"]["weights"], state["weights"])
    np.testing.assert_array_equal(last["replica_state"]["weights"], state["weights"] * 2)
    assert load_checkpoint(tmp_path / "none") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [BEST, LAST, PREVIOUS]  # no temporary files left
    assert load_checkpoint(tmp_path, PREVIOUS)["epoch"] == 1   # the last one before, kept until epoch 2 was written
