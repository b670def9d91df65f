"""Shared fixtures for the ECG tests: the read-only real data and tiny challenge directories."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from diagnosenet.ecg.records import Entry, list_entries, write_reference

SHARED_DATA = Path(__file__).resolve().parents[2] / "../shared/data"


def shared(name: str) -> Path:
    """Path to a shared data set; missing data fails under CI=true and skips elsewhere."""
    path = SHARED_DATA / name
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} missing (CI=true requires the shared data)")
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture
def validation_dir() -> Path:
    return shared("physionet2017-validation")


@pytest.fixture
def mitdb_dir() -> Path:
    return shared("mitdb")


@pytest.fixture
def real_subset(validation_dir: Path, tmp_path: Path) -> Path:
    """A challenge directory of 3 real validation records per class (symlinks, nothing copied)."""
    chosen: list[Entry] = []
    for letter in "NAO~":
        chosen += [e for e in list_entries(validation_dir) if e.label == letter][:3]
    out = tmp_path / "real"
    out.mkdir()
    for entry in chosen:
        for suffix in (".hea", ".mat"):
            (out / f"{entry.record}{suffix}").symlink_to((validation_dir / f"{entry.record}{suffix}").resolve())
    write_reference(out, chosen)
    return out
