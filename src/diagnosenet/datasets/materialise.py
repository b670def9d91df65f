"""Materialise a composed data set (PMSI matrix or ECG windows) into train/valid/test files.

Input is a stage directory holding ``X.npz`` (CSR, PMSI) or ``X.npy`` (dense, ECG), ``y.npy``,
``groups.npy`` and ``classes.json``. Output is one sub-directory per split with the same three
arrays, a per-class table (the paper's Table 1 analogue) and a manifest. Sparse stays sparse.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from diagnosenet.artifacts import read_json, verify_manifest, write_json, write_manifest
from diagnosenet.datasets.splits import SPLITS, split_rows

STAGE = "materialise"


def load_arrays(directory: str | Path, prefix: str = "") -> tuple[object, np.ndarray, np.ndarray]:
    """``X`` (CSR or memory-mapped dense), ``y`` and ``groups`` from a stage directory."""
    directory = Path(directory)
    sparse_path = directory / f"X{prefix}.npz"
    if sparse_path.exists():
        X = sp.load_npz(sparse_path).tocsr().astype(np.float32, copy=False)
    else:
        X = np.load(directory / f"X{prefix}.npy", mmap_mode="r")
    y = np.load(directory / f"y{prefix}.npy")
    groups = np.load(directory / f"groups{prefix}.npy", allow_pickle=False)
    if not (X.shape[0] == len(y) == len(groups)):
        raise ValueError(
            f"{directory}: X has {X.shape[0]} rows, y {len(y)}, groups {len(groups)}; they must align"
        )
    return X, y, groups


def _save_split(directory: Path, X, y: np.ndarray, groups: np.ndarray) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    if sp.issparse(X):
        sp.save_npz(directory / "X.npz", X.tocsr(), compressed=False)
        x_name = "X.npz"
    else:
        np.save(directory / "X.npy", np.ascontiguousarray(X, dtype=np.float32))
        x_name = "X.npy"
    np.save(directory / "y.npy", y.astype(np.int64))
    np.save(directory / "groups.npy", groups)
    return [f"{directory.name}/{name}" for name in (x_name, "y.npy", "groups.npy")]


def class_table(y_by_split: dict[str, np.ndarray], groups_by_split: dict[str, np.ndarray],
                classes: list[str]) -> list[dict]:
    """Rows and distinct groups per class and split, like the paper's Table 1."""
    table = []
    for index, name in enumerate(classes):
        row = {"class": index, "label": name}
        for split in SPLITS:
            mask = y_by_split[split] == index
            row[f"{split}_rows"] = int(mask.sum())
            row[f"{split}_groups"] = int(len(np.unique(groups_by_split[split][mask])))
        table.append(row)
    return table


def read_group_list(path: str | Path) -> list[str]:
    """Group names, one per line (first comma-separated field; blank lines and a header-like
    first line ``record``/``group`` skipped)."""
    names = [line.split(",")[0].strip() for line in Path(path).read_text().splitlines()]
    names = [n for n in names if n]
    if names and names[0].lower() in {"record", "group", "name"}:
        names = names[1:]
    if not names:
        raise ValueError(f"{path}: no group names")
    return names


def materialise(source_dir: str | Path, out_dir: str | Path, *, valid_fraction: float,
                test_fraction: float, seed: int, variant: str = "", test_groups_file: str | Path | None = None) -> dict:
    """Split ``source_dir`` by group into ``out_dir/{train,valid,test}``; return the manifest.

    ``test_groups_file``: the fixed test set, one group per line (a challenge ``REFERENCE.csv``
    works: the first comma-separated field is taken)."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    source_manifest = verify_manifest(source_dir)
    X, y, groups = load_arrays(source_dir, prefix=f"_{variant}" if variant else "")
    classes = read_json(source_dir / "classes.json")
    test_groups = read_group_list(test_groups_file) if test_groups_file else None
    rows = split_rows(y, groups, valid_fraction, test_fraction, seed, test_groups)
    files, y_by, g_by = [], {}, {}
    for split in SPLITS:
        index = rows[split]
        y_by[split], g_by[split] = y[index], groups[index]
        files += _save_split(out_dir / split, X[index], y_by[split], g_by[split])
    leaked = set(g_by["train"]) & (set(g_by["valid"]) | set(g_by["test"])) or set(g_by["valid"]) & set(g_by["test"])
    if leaked:  # split_rows guarantees this; checked because a leak would invalidate every score
        raise AssertionError(f"{len(leaked)} groups appear in two splits")
    table = class_table(y_by, g_by, classes)
    with open(out_dir / "class_table.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    write_json(out_dir / "classes.json", classes)
    return write_manifest(
        out_dir,
        stage=STAGE,
        files=files + ["class_table.csv", "classes.json"],
        params={"valid_fraction": valid_fraction, "test_fraction": test_fraction, "seed": seed,
                "variant": variant, "test_groups_file": str(test_groups_file) if test_groups_file else None,
                "test_groups": len(test_groups) if test_groups is not None else None},
        source={"dir": str(source_dir), "files": source_manifest.get("files", {})},
        rows={split: int(len(rows[split])) for split in SPLITS},
        n_features=int(X.shape[1]) if X.ndim == 2 else list(X.shape[1:]),
        sparse=bool(sp.issparse(X)),
        n_classes=len(classes),
    )


def load_split(dataset_dir: str | Path, split: str, *, verify: bool = False):
    """``(X, y, groups)`` of one split of a materialised data set."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if verify:
        verify_manifest(dataset_dir, stage=STAGE)
    return load_arrays(Path(dataset_dir) / split)


def load_classes(dataset_dir: str | Path) -> list[str]:
    return read_json(Path(dataset_dir) / "classes.json")
