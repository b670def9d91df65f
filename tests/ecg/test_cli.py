"""The real command line and the real Snakemake rules, end to end on a few synthetic records."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diagnosenet.artifacts import sha256_file, verify_manifest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def diagnosenet(*args: str) -> None:
    subprocess.run([str(BIN / "diagnosenet"), *args], check=True, capture_output=True, timeout=120)


@pytest.mark.timeout(180)
def test_synth_then_window_writes_the_contract(tmp_path):
    raw, out1, out2 = tmp_path / "raw", tmp_path / "w1", tmp_path / "w2"
    diagnosenet("synth-ecg", "--records", "10", "--seed", "3", "--out", str(raw))
    diagnosenet("window-ecg", "--records", str(raw), "--out", str(out1), "--detector", "pantompkins", "--jobs", "1")
    diagnosenet("window-ecg", "--records", str(raw), "--out", str(out2), "--detector", "pantompkins", "--jobs", "2")
    manifest = verify_manifest(out1, stage="window-ecg", params={"detector": "pantompkins", "per_sample": 5})
    for name in manifest["files"]:
        if name.endswith(".npy") or name in ("table2.csv", "quarantine.csv", "counts.json"):
            assert sha256_file(out1 / name) == sha256_file(out2 / name), name  # deterministic for any --jobs
    X = np.load(out1 / "X.npy", mmap_mode="r")
    X_small, groups_small = np.load(out1 / "X_small.npy"), np.load(out1 / "groups_small.npy")
    assert isinstance(X, np.memmap) and X.dtype == np.float32 and X.shape[1] == 1300
    counts = json.loads((out1 / "counts.json").read_text())
    assert counts["records_in"] == 10 == counts["records_used"] + counts["records_quarantined"]
    assert X_small.shape == (counts["records_used"], 1300) and len(set(groups_small)) == counts["records_used"]
    assert json.loads((out1 / "classes.json").read_text()) == ["Normal", "AF", "Other", "Noisy"]


@pytest.mark.snakemake
@pytest.mark.timeout(300)
def test_snakemake_rules_build_windows_from_synthetic_records(tmp_path):
    """The project's own workflow, asked for the ECG windows only, runs just the ECG rules."""
    (tmp_path / "workflow").symlink_to(REPO / "workflow")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").symlink_to(REPO / "config" / "config.yaml")
    config = {"ecg": {"source": "synthetic", "records_dir": None, "synthetic": {"records": 8, "seed": 1},
                      "detector": "pantompkins", "window": 260, "windows_per_sample": 5, "stride": 5,
                      "normalisation": "zscore", "jobs": None}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(
        [str(BIN / "snakemake"), "results/ecg/windows/table2.csv", "--cores", "2", "--configfile", "config.json"],
        cwd=tmp_path, env=env, check=True, capture_output=True, timeout=280,
    )
    verify_manifest(tmp_path / "results/ecg/windows", stage="window-ecg", params={"detector": "pantompkins"})
    assert (tmp_path / "results/logs/ecg/window_ecg.log").exists()
    assert (tmp_path / "results/benchmarks/ecg/synth_ecg.tsv").exists()
    assert len(list((tmp_path / "results/ecg/raw").glob("A*.mat"))) == 8
