"""Seeded, class-stratified train/valid/test splits by group (patient stay or ECG record).

Several rows can come from one group (an ECG record gives several samples), so rows are
split by group: no group ever lands in two splits. Stratification works on groups, each
taking its most frequent row label. Small classes are allocated by rounding per class, so
a class with 16 stays still gets valid/test members and a singleton class stays in train.
"""
from __future__ import annotations

import numpy as np

SPLITS = ("train", "valid", "test")


def group_labels(y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique groups (sorted), each group's majority label, and each row's group index."""
    unique, row_group = np.unique(groups, return_inverse=True)
    n_classes = int(y.max()) + 1 if len(y) else 0
    counts = np.zeros((len(unique), max(n_classes, 1)), dtype=np.int64)
    np.add.at(counts, (row_group, y), 1)
    return unique, counts.argmax(axis=1), row_group


def split_groups(
    labels: np.ndarray, valid_fraction: float, test_fraction: float, seed: int
) -> np.ndarray:
    """Assign each group (by its label) to 0=train, 1=valid, 2=test, stratified per class."""
    if valid_fraction + test_fraction >= 1.0:
        raise ValueError("valid_fraction + test_fraction must be below 1")
    rng = np.random.default_rng(seed)
    assignment = np.zeros(len(labels), dtype=np.int8)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        members = members[rng.permutation(len(members))]
        n = len(members)
        n_test = int(np.floor(n * test_fraction + 0.5)) if n >= 3 else 0
        n_valid = int(np.floor(n * valid_fraction + 0.5)) if n >= 3 else 0
        n_valid = min(n_valid, n - n_test - 1)
        assignment[members[:n_test]] = 2
        assignment[members[n_test : n_test + n_valid]] = 1
    return assignment


def split_rows(
    y: np.ndarray, groups: np.ndarray, valid_fraction: float, test_fraction: float, seed: int,
    test_groups=None,
) -> dict[str, np.ndarray]:
    """Row indices (sorted) of each split; every row in exactly one split, groups never shared.

    ``test_groups``: a fixed final test set (e.g. the 300 challenge validation records): exactly
    these groups are the test split, ``test_fraction`` is ignored and the other groups are split
    into train/valid (``valid_fraction`` of them to valid)."""
    names, labels, row_group = group_labels(np.asarray(y), np.asarray(groups))
    if test_groups is None:
        per_group = split_groups(labels, valid_fraction, test_fraction, seed)
    else:
        fixed = np.isin(names, np.asarray(list(test_groups), dtype=str))
        per_group = np.full(len(names), 2, dtype=np.int8)
        per_group[~fixed] = split_groups(labels[~fixed], valid_fraction, 0.0, seed)
    per_row = per_group[row_group]
    return {name: np.flatnonzero(per_row == code) for code, name in enumerate(SPLITS)}
