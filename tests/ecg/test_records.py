"""Reading the challenge layout: reference files of every label version, real records."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from diagnosenet.ecg.records import FS, LABELS, label_of, list_entries, load_signal, read_reference


@pytest.mark.realdata
def test_validation_reference_counts_match_the_data_readme(validation_dir):
    entries = list_entries(validation_dir)
    assert len(entries) == 300
    assert Counter(e.label for e in entries) == {"N": 148, "A": 47, "O": 65, "~": 40}
    assert Counter(label_of(e) for e in entries) == {0: 148, 1: 47, 2: 65, 3: 40}


@pytest.mark.realdata
@pytest.mark.parametrize("version", ["v0", "v1", "v2", "v3"])
def test_every_released_label_version_parses(validation_dir, version):
    entries = read_reference(validation_dir / f"REFERENCE-{version}.csv")
    assert len(entries) == 300
    assert {e.label for e in entries} <= set(LABELS)


@pytest.mark.realdata
def test_real_records_load_as_300_hz_millivolts(validation_dir):
    for entry in list_entries(validation_dir)[:5]:
        signal = load_signal(validation_dir, entry.record)
        header_samples = int((validation_dir / f"{entry.record}.hea").read_text().split()[3])
        assert signal.shape == (header_samples,)
        assert 9 * FS <= signal.size <= 61 * FS
        assert 0.05 < np.ptp(signal) < 20  # mV, not ADC units


def test_reference_with_header_and_extra_columns(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("A00001,N\nA00002,A\n")
    fancy = tmp_path / "fancy.csv"
    fancy.write_text("record,label,votes\nA00001, N ,3\nA00002,A,2\n\n")
    assert read_reference(plain) == read_reference(fancy)
    assert [(e.record, e.label) for e in read_reference(fancy)] == [("A00001", "N"), ("A00002", "A")]


@pytest.mark.parametrize("text, line", [("A00001,N\nA00002\n", 2), ("A00001,N\nA00001,A\n", 2), ("A 01,N\n", 1)])
def test_malformed_reference_names_file_and_line(tmp_path, text, line):
    path = tmp_path / "REFERENCE.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"REFERENCE.csv:{line}:"):
        read_reference(path)


@pytest.mark.realdata
def test_real_records_window_with_class_counts_of_their_reference(real_subset):
    from diagnosenet.ecg.build import summarise, window_directory
    from diagnosenet.ecg.windows import Geometry

    outcomes = window_directory(real_subset, Geometry(), "xqrs", jobs=1)
    counts, rows = summarise(outcomes)
    assert [row["source_records"] for row in rows] == [3, 3, 3, 3]
    assert counts["records_in"] == 12 == counts["records_used"] + counts["records_quarantined"]
    used = [o for o in outcomes if o.samples is not None]
    assert all(o.samples.shape[1] == 1300 and o.samples.shape[0] >= 1 for o in used)
    assert {o.record: o.label for o in outcomes} == {e.record: LABELS[e.label] for e in list_entries(real_subset)}
