"""RHS M05 files → the run's vocabulary → one row per stay, identified by its pseudonym.

Composition is the training run's own (first week, the same descriptor groups); features the
run never saw are counted per group and reported, never an error (a new hospital codes things
the training hospital did not). Stays are written under the keyed pseudonym of
``diagnosenet.privacy`` with the hospital's salt, so ``results/`` never holds a stay number;
the hospital maps them back by pseudonymising its own stay list with the same key.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp


def compose_for(rhs_files: Sequence[str | Path], vocabulary: dict[str, int], groups: Sequence[str], salt: bytes,
                *, strict: bool = False) -> tuple[sp.csr_matrix, list[str], dict, list]:
    """``(X in the run's columns, pseudonyms, counts, quarantined lines)`` of the stays of ``rhs_files``."""
    from diagnosenet.pmsi.compose import GROUPS, first_weeks
    from diagnosenet.privacy import pseudonymise

    stays, quarantine, counts = first_weeks(list(map(str, rhs_files)), strict)
    unseen: Counter = Counter()
    rows, cols, vals, names = [], [], [], []
    for i, (stay, (_, _, week)) in enumerate(sorted(stays.items(), key=lambda kv: pseudonymise(kv[0], salt))):
        names.append(pseudonymise(stay, salt))
        for group in groups:
            for name, value in GROUPS[group](week).items():
                column = vocabulary.get(f"{group}.{name}")
                if column is None:
                    unseen[group] += 1
                elif value:
                    rows.append(i), cols.append(column), vals.append(value)
    X = sp.csr_matrix((np.asarray(vals, np.float32), (np.asarray(rows, np.int64), np.asarray(cols, np.int64))),
                      shape=(len(names), len(vocabulary)), dtype=np.float32)
    X.sum_duplicates()
    X.sort_indices()
    counts.update({"stays_predicted": len(names), "unseen_features": sum(unseen.values()),
                   "unseen_features_per_group": dict(sorted(unseen.items()))})
    return X, names, counts, quarantine


def read_labels_by_pseudonym(labels_file: str | Path, salt: bytes) -> dict[str, int]:
    """``stay_number,label`` CSV → labels keyed by pseudonym (bad rows are skipped, as in compose)."""
    from diagnosenet.pmsi.compose import read_labels
    from diagnosenet.pmsi import CLASSES
    from diagnosenet.privacy import pseudonymise

    labels, _ = read_labels(labels_file, len(CLASSES), strict=False)
    return {pseudonymise(stay, salt): label for stay, (label, _) in labels.items()}
