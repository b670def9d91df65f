import numpy as np
import pytest
import scipy.sparse as sp

from diagnosenet.artifacts import write_json, write_manifest


def make_stage_dir(path, *, sparse: bool, n_rows=600, n_classes=5, rows_per_group=1, seed=0):
    """A composed-stage directory like compose-pmsi (sparse) or window-ecg (dense) writes."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    n_groups = n_rows // rows_per_group
    # unbalanced classes, one of them rare, like the paper's Table 1
    p = np.array([0.4, 0.3, 0.2, 0.08, 0.02])[:n_classes]
    group_y = rng.choice(n_classes, size=n_groups, p=p / p.sum())
    y = np.repeat(group_y, rows_per_group)
    groups = np.repeat(np.array([f"g{i:05d}" for i in range(n_groups)]), rows_per_group)
    if sparse:
        X = sp.random(len(y), 50, density=0.05, format="csr", dtype=np.float32, random_state=seed)
        sp.save_npz(path / "X.npz", X)
        x_name = "X.npz"
    else:
        X = rng.normal(size=(len(y), 40)).astype(np.float32)
        np.save(path / "X.npy", X)
        x_name = "X.npy"
    np.save(path / "y.npy", y.astype(np.int64))
    np.save(path / "groups.npy", groups)
    write_json(path / "classes.json", [f"class{c}" for c in range(n_classes)])
    write_manifest(path, stage="test", files=[x_name, "y.npy", "groups.npy", "classes.json"])
    return X, y, groups


@pytest.fixture
def sparse_stage(tmp_path):
    d = tmp_path / "composed"
    make_stage_dir(d, sparse=True)
    return d


@pytest.fixture
def dense_stage(tmp_path):
    d = tmp_path / "windows"
    make_stage_dir(d, sparse=False, n_rows=900, rows_per_group=6)
    return d
