"""Shared fixtures for the PMSI tests: a small synthetic RHS directory, its composition, a salt."""
from __future__ import annotations

from pathlib import Path

import pytest
from pmsi_lines import PATIENTS, SEED

from diagnosenet.pmsi.compose import compose
from diagnosenet.pmsi.synth import write_dataset
from diagnosenet.privacy import load_or_create_salt


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pmsi") / "raw"
    write_dataset(out, patients=PATIENTS, seed=SEED)
    return out


@pytest.fixture(scope="session")
def salt_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "pseudonym.salt"
    path.write_text("a-fixed-test-salt-0123456789abcdef\n")
    return path


@pytest.fixture(scope="session")
def composed(raw_dir, salt_file, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("composed")
    counts = compose(sorted(raw_dir.glob("rhs_*.txt")), raw_dir / "labels.csv", out,
                     salt=load_or_create_salt(salt_file))
    return out, counts
