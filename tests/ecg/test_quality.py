"""Every kind of bad record is quarantined with its reason; counts reconcile."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import wfdb

from diagnosenet.artifacts import verify_manifest
from diagnosenet.ecg.build import window_directory, write_windows
from diagnosenet.ecg.records import Entry, write_record, write_reference
from diagnosenet.ecg.synth import synth_signal
from diagnosenet.ecg.windows import Geometry


def normal_ecg(seconds: float, seed: int = 0) -> np.ndarray:
    signal = synth_signal("N", np.random.default_rng(seed))
    while signal.size < seconds * 300:
        signal = np.concatenate([signal, signal])
    return signal[: int(seconds * 300)]


@pytest.fixture
def bad_dir(tmp_path):
    """Two good records and one record per bad-input kind, with the reason each must get."""
    d = tmp_path / "records"
    d.mkdir()
    expected = {}
    write_record(d, "A00001", normal_ecg(20, 1))
    write_record(d, "A00002", normal_ecg(30, 2))
    # unreadable: a header that is not a WFDB header
    (d / "A00003.hea").write_text("this is not a header\n")
    expected["A00003"] = "unreadable"
    # unreadable: header present, signal file missing
    write_record(d, "A00004", normal_ecg(20))
    (d / "A00004.mat").unlink()
    expected["A00004"] = "unreadable"
    # NaN samples (.dat record written by wfdb itself: the reader accepts both formats)
    nan = normal_ecg(20)[:, None].copy()
    nan[100:110] = np.nan
    wfdb.wrsamp("A00005", fs=300, units=["mV"], sig_name=["ECG"], p_signal=nan, fmt=["16"], write_dir=str(d))
    expected["A00005"] = "nan"
    write_record(d, "A00006", np.full(6000, 0.2))
    expected["A00006"] = "flat"
    wfdb.wrsamp("A00007", fs=250, units=["mV"], sig_name=["ECG"], p_signal=normal_ecg(20)[:, None], fmt=["16"], write_dir=str(d))
    expected["A00007"] = "sampling_rate"
    write_record(d, "A00008", normal_ecg(20))
    expected["A00008"] = "unknown_label"
    write_record(d, "A00009", normal_ecg(2.5))  # two or three beats
    expected["A00009"] = "few_beats"
    write_record(d, "A00010", normal_ecg(20))  # on disk but not in REFERENCE.csv
    expected["A00010"] = "unknown_label"
    write_record(d, "A00011", normal_ecg(0.2))  # too short for xqrs's filters: the detector raises
    expected["A00011"] = "detector_error"
    labels = {"A00008": "X"}
    entries = [Entry(f"A{i:05d}", labels.get(f"A{i:05d}", "N")) for i in (*range(1, 10), 11)]
    write_reference(d, entries)
    return d, expected


def test_each_bad_input_is_quarantined_with_its_reason(bad_dir, tmp_path):
    directory, expected = bad_dir
    outcomes = window_directory(directory, Geometry(), "xqrs", jobs=1)
    reasons = {o.record: o.reason for o in outcomes if o.samples is None}
    assert reasons == expected
    details = {o.record: o.detail for o in outcomes if o.samples is None}
    assert "A00007" in details["A00007"] and "250" in details["A00007"]
    assert "'X'" in details["A00008"]

    out = tmp_path / "windows"
    write_windows(out, outcomes, Geometry(), {"detector": "xqrs"})
    verify_manifest(out, stage="window-ecg", params={"detector": "xqrs", "window": 260})
    with open(out / "quarantine.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["record"]: row["reason"] for row in rows} == expected
    counts = json.loads((out / "counts.json").read_text())
    assert counts["records_in"] == 11 == counts["records_used"] + counts["records_quarantined"]
    assert counts["records_used"] == 2
    assert sum(counts["quarantine_reasons"].values()) == len(expected)
    X, y, groups = (np.load(out / f"{name}.npy", mmap_mode="r") for name in ("X", "y", "groups"))
    assert X.dtype == np.float32 and X.shape == (counts["samples"], 1300) and len(y) == len(groups) == X.shape[0]
    assert set(groups) == {"A00001", "A00002"}
    with open(out / "table2.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert sum(int(row["samples"]) for row in table) == X.shape[0]
    assert sum(int(row["source_records"]) for row in table) == 9  # records with a known label


@pytest.mark.timeout(120)
def test_pool_and_serial_runs_agree(bad_dir):
    directory, _ = bad_dir
    serial = window_directory(directory, Geometry(), "pantompkins", jobs=1)
    pooled = window_directory(directory, Geometry(), "pantompkins", jobs=2)
    assert [(o.record, o.reason) for o in serial] == [(o.record, o.reason) for o in pooled]
    for a, b in zip(serial, pooled):
        assert (a.samples is None and b.samples is None) or np.array_equal(a.samples, b.samples)


def test_unknown_detector_is_refused_before_work(bad_dir):
    with pytest.raises(ValueError, match="unknown R-peak detector 'xqr'"):
        window_directory(bad_dir[0], Geometry(), "xqr")
