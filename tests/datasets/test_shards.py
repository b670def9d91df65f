import numpy as np
import pytest
import scipy.sparse as sp

from diagnosenet.artifacts import ArtifactError, read_json, write_json
from diagnosenet.datasets.materialise import load_split, materialise
from diagnosenet.datasets.shards import Batching, load_shard, stratified_assignment, write_shards


@pytest.mark.parametrize("n_workers", [1, 2, 3, 7, 12])
def test_stratified_assignment_covers_rows_once_and_spreads_classes(n_workers):
    table1 = np.array([5271, 21684, 15342, 6310, 3448, 9679, 21247, 16594, 875, 2426, 359, 2643, 10799, 20])
    y = np.random.default_rng(n_workers).choice(14, size=2000, p=table1 / table1.sum())
    assignment = stratified_assignment(y, n_workers, seed=3)
    assert assignment.shape == y.shape and set(assignment) <= set(range(n_workers))
    totals = np.bincount(assignment, minlength=n_workers)
    assert totals.max() - totals.min() <= 1
    for cls in np.unique(y):
        counts = np.bincount(assignment[y == cls], minlength=n_workers)
        expected = (y == cls).sum() / n_workers
        assert np.all(np.abs(counts - expected) <= 1), (cls, counts, expected)


@pytest.mark.parametrize("n_workers", [1, 2, 3, 7, 12])
def test_shards_cover_every_row_exactly_once(sparse_stage, tmp_path, n_workers):
    ds = tmp_path / "ds"
    materialise(sparse_stage, ds, valid_fraction=0.1, test_fraction=0.1, seed=1)
    manifest = write_shards(ds, tmp_path / "shards", Batching(devices_number=n_workers, batch_size=16), seed=2)
    X_train, y_train, _ = load_split(ds, "train")
    seen = []
    for w in range(n_workers):
        shard = load_shard(tmp_path / "shards", "train", w, workers=n_workers, batch_size=16)
        assert sp.issparse(shard.X)  # sparse stays sparse
        with np.load(tmp_path / "shards" / f"train_{w:02d}.npz") as data:
            rows = data["rows"]
        assert (shard.X != X_train[rows]).nnz == 0 and np.array_equal(shard.y, y_train[rows])
        seen.append(rows)
        sizes = np.diff(shard.boundaries)
        assert sizes.sum() == shard.n_rows and (sizes[:-1] == 16).all() if len(sizes) else True
        assert sum(len(b[1]) for b in shard.microbatches()) == shard.n_rows
    seen = np.concatenate(seen)
    assert np.array_equal(np.sort(seen), np.arange(len(y_train)))
    assert sum(s["rows"] for s in manifest["shards"]["train"]) == len(y_train)


def test_reader_refuses_other_parameters_and_tampered_files(dense_stage, tmp_path):
    ds, out = tmp_path / "ds", tmp_path / "shards"
    materialise(dense_stage, ds, valid_fraction=0.1, test_fraction=0.1, seed=1)
    write_shards(ds, out, Batching(devices_number=3, batch_size=8), seed=2)
    load_shard(out, "train", 2, workers=3, batch_size=8)
    with pytest.raises(ArtifactError, match="workers"):
        load_shard(out, "train", 0, workers=4)
    with pytest.raises(ArtifactError, match="batch_size"):
        load_shard(out, "train", 0, workers=3, batch_size=32)
    with pytest.raises(ArtifactError, match="worker 3"):
        load_shard(out, "train", 3, workers=3)
    data = dict(np.load(out / "train_01.npz"))
    data["y"] = data["y"][::-1].copy()
    np.savez(out / "train_01.npz", **data)
    with pytest.raises(ArtifactError, match="sha256"):
        load_shard(out, "train", 1, workers=3)


def test_rerun_with_fewer_workers_leaves_no_stale_shards(dense_stage, tmp_path):
    ds, out = tmp_path / "ds", tmp_path / "shards"
    materialise(dense_stage, ds, valid_fraction=0.1, test_fraction=0.1, seed=1)
    write_shards(ds, out, Batching(devices_number=4, batch_size=8), seed=2)
    write_shards(ds, out, Batching(devices_number=2, batch_size=8), seed=2)
    assert sorted(p.name for p in out.glob("*.npz")) == ["train_00.npz", "train_01.npz", "valid_00.npz", "valid_01.npz"]
    assert read_json(out / "manifest.json")["params"]["workers"] == 2


def test_memory_budget_sets_micro_batch_size(dense_stage, tmp_path):
    ds = tmp_path / "ds"
    materialise(dense_stage, ds, valid_fraction=0.1, test_fraction=0.1, seed=1)
    # dense rows of 40 float32 = 160 bytes; 0.01 MiB budget -> 65 rows per micro-batch
    manifest = write_shards(ds, tmp_path / "s", Batching(devices_number=2, batch_size=None, memory_budget_mb=0.01), seed=0)
    assert manifest["params"]["batch_size"] == int(0.01 * 2**20 // 160)


def test_shards_are_deterministic(sparse_stage, tmp_path):
    ds = tmp_path / "ds"
    materialise(sparse_stage, ds, valid_fraction=0.1, test_fraction=0.1, seed=1)
    a = write_shards(ds, tmp_path / "a", Batching(devices_number=3, batch_size=8), seed=5)
    b = write_shards(ds, tmp_path / "b", Batching(devices_number=3, batch_size=8), seed=5)
    assert a["files"] == b["files"]


def test_source_change_is_detected(sparse_stage, tmp_path):
    ds = tmp_path / "ds"
    materialise(sparse_stage, ds, valid_fraction=0.1, test_fraction=0.1, seed=1)
    write_json(ds / "classes.json", ["tampered"])
    with pytest.raises(ArtifactError, match="classes.json"):
        write_shards(ds, tmp_path / "s", Batching(devices_number=2, batch_size=8), seed=0)


# -- balanced shards for heterogeneous workers (shards.balance: measured) -------------------
def test_weighted_assignment_deals_each_class_in_proportion_to_the_speeds():
    from diagnosenet.datasets.shards import weighted_assignment

    table1 = np.array([5271, 21684, 15342, 6310, 3448, 9679, 21247, 16594, 875, 2426, 359, 2643, 10799, 20])
    y = np.random.default_rng(0).choice(14, size=3000, p=table1 / table1.sum())
    assert np.array_equal(weighted_assignment(y, [1.0, 1.0, 1.0], seed=3), stratified_assignment(y, 3, seed=3))
    shares = np.array([2.0, 1.0, 1.0]) / 4
    assignment = weighted_assignment(y, [2.0, 1.0, 1.0], seed=3)
    totals = np.bincount(assignment, minlength=3)
    assert np.all(np.abs(totals - shares * len(y)) <= 14), totals      # ±1 row per class
    for cls in np.unique(y):
        counts = np.bincount(assignment[y == cls], minlength=3)
        assert np.all(np.abs(counts - shares * (y == cls).sum()) <= 1), (cls, counts)
    with pytest.raises(ValueError, match="positive"):
        weighted_assignment(y, [1.0, 0.0], seed=3)


def test_balanced_shards_give_each_worker_its_share_and_the_same_number_of_micro_batches(sparse_stage, tmp_path):
    ds = tmp_path / "ds"
    materialise(sparse_stage, ds, valid_fraction=0.1, test_fraction=0.1, seed=1)
    manifest = write_shards(ds, tmp_path / "shards", Batching(devices_number=3, batch_size=8, speeds=(2.0, 1.0, 1.0)),
                            seed=2)
    train = manifest["shards"]["train"]
    assert [s["batch_size"] for s in train] == [12, 6, 6]      # the mean micro-batch is 8
    assert max(s["micro_batches"] for s in train) - min(s["micro_batches"] for s in train) <= 1
    rows = [s["rows"] for s in train]
    assert abs(rows[0] - 2 * rows[1]) <= 2 * len(manifest["classes"]) and sum(rows) == load_split(ds, "train")[1].size
    assert manifest["params"]["balance"] == "measured" and manifest["params"]["speeds"] == [2.0, 1.0, 1.0]
    shard = load_shard(tmp_path / "shards", "train", 0, workers=3, batch_size=8)
    assert int(np.diff(shard.boundaries).max()) == 12
    with pytest.raises(ValueError, match="one per worker"):
        Batching(devices_number=3, batch_size=8, speeds=(1.0, 2.0))


def test_speeds_are_measured_from_an_earlier_runs_timeline(tmp_path):
    from diagnosenet.training.timeline import COLUMNS, measured_speeds

    (tmp_path / "timeline").mkdir()
    for rank, seconds in ((1, 0.5), (2, 1.0)):     # worker 1 twice as fast as worker 2
        lines = [",".join(COLUMNS)] + [f"{rank},{epoch},{step},0,{seconds if epoch > 1 else 9.0},0.1,0,32,0"
                                       for epoch in (1, 2, 3) for step in (1, 2)]
        (tmp_path / "timeline" / f"rank{rank}.csv").write_text("\n".join(lines) + "\n")
    assert measured_speeds(tmp_path, 2) == pytest.approx([64.0, 32.0])   # the slow first epoch left out
    with pytest.raises(ArtifactError, match=r"worker\(s\) \[3\]"):
        measured_speeds(tmp_path, 3)
