import numpy as np
import scipy.sparse as sp

from diagnosenet.datasets.materialise import load_split, materialise
from diagnosenet.datasets.splits import SPLITS, split_rows


def test_every_row_in_exactly_one_split_and_groups_never_shared():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(300), rng.integers(1, 9, size=300)).astype(str)
    y = np.repeat(rng.integers(0, 4, size=300), np.unique(groups, return_counts=True)[1][np.argsort(np.unique(groups))])
    rows = split_rows(y, groups, 0.1, 0.2, seed=1)
    allrows = np.concatenate([rows[s] for s in SPLITS])
    assert np.array_equal(np.sort(allrows), np.arange(len(y)))
    sets = {s: set(groups[rows[s]]) for s in SPLITS}
    assert not sets["train"] & sets["valid"]
    assert not sets["train"] & sets["test"]
    assert not sets["valid"] & sets["test"]


def test_split_is_stratified_and_keeps_rare_classes_in_every_split():
    y = np.array([0] * 1000 + [1] * 200 + [2] * 16)
    groups = np.arange(len(y)).astype(str)
    rows = split_rows(y, groups, 0.05, 0.10, seed=7)
    for cls, n in ((0, 1000), (1, 200), (2, 16)):
        assert abs((y[rows["test"]] == cls).sum() - 0.10 * n) <= 1
        assert abs((y[rows["valid"]] == cls).sum() - 0.05 * n) <= 1
    assert (y[rows["valid"]] == 2).sum() >= 1 and (y[rows["test"]] == 2).sum() >= 1


def test_split_is_seeded():
    y = np.random.default_rng(0).integers(0, 3, size=500)
    groups = np.arange(500).astype(str)
    a, b, c = (split_rows(y, groups, 0.1, 0.1, seed=s) for s in (5, 5, 6))
    assert all(np.array_equal(a[s], b[s]) for s in SPLITS)
    assert not all(np.array_equal(a[s], c[s]) for s in SPLITS)


def test_materialise_sparse_stays_sparse_and_table_counts(sparse_stage, tmp_path):
    manifest = materialise(sparse_stage, tmp_path / "ds", valid_fraction=0.05, test_fraction=0.1, seed=1)
    assert manifest["sparse"] is True
    total = 0
    for split in SPLITS:
        X, y, groups = load_split(tmp_path / "ds", split, verify=True)
        assert sp.isspmatrix_csr(X) or sp.issparse(X)
        assert X.shape[0] == len(y) == manifest["rows"][split]
        total += len(y)
    assert total == 600
    table = np.genfromtxt(tmp_path / "ds" / "class_table.csv", delimiter=",", names=True, dtype=None, encoding=None)
    assert table["train_rows"].sum() + table["valid_rows"].sum() + table["test_rows"].sum() == 600


def test_materialise_dense_by_record_no_overlap(dense_stage, tmp_path):
    materialise(dense_stage, tmp_path / "ds", valid_fraction=0.1, test_fraction=0.2, seed=1)
    seen = {}
    for split in SPLITS:
        X, y, groups = load_split(tmp_path / "ds", split)
        assert X.dtype == np.float32 and X.shape[1] == 40
        seen[split] = set(groups)
    assert not (seen["train"] & seen["test"]) and not (seen["train"] & seen["valid"])


def test_a_fixed_test_set_is_exactly_the_listed_groups_and_the_rest_is_train_valid():
    rng = np.random.default_rng(5)
    groups = np.repeat([f"A{i:05d}" for i in range(200)], 3)
    y = np.repeat(rng.integers(0, 4, size=200), 3)
    final = [f"A{i:05d}" for i in range(0, 200, 7)] + ["A99999"]  # a listed record with no rows is ignored
    rows = split_rows(y, groups, 0.1, 0.5, seed=1, test_groups=final)
    assert set(groups[rows["test"]]) == set(final) - {"A99999"}
    assert len(rows["test"]) == 3 * len(range(0, 200, 7))
    others = 200 - len(range(0, 200, 7))
    assert abs(len(set(groups[rows["valid"]])) - 0.1 * others) <= 4  # rounding per class
    assert not set(groups[rows["train"]]) & set(groups[rows["valid"]])


def test_record_folds_never_put_one_record_in_two_folds_and_stratify_by_record():
    from diagnosenet.protocol import development_mask, record_folds

    rng = np.random.default_rng(2)
    labels_of_record = rng.choice(4, size=400, p=[0.6, 0.1, 0.25, 0.05])
    windows = rng.integers(1, 12, size=400)
    records = np.repeat([f"R{i}" for i in range(400)], windows)
    y = np.repeat(labels_of_record, windows)
    folds = record_folds(y, records, n_folds=5, seed=0)
    for name in np.unique(records):
        assert len(set(folds[records == name])) == 1, name
    first = np.unique(records, return_index=True)[1]
    for cls in range(4):
        per_fold = np.bincount(folds[first][y[first] == cls], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1  # each class's records spread evenly
    keep = development_mask(records, ["R0", "R1"])
    assert not set(records[~keep]) - {"R0", "R1"} and {"R0", "R1"} <= set(records[~keep])
