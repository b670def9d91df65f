"""Synthetic records: real WFDB files, deterministic, rhythms that differ like the classes."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import wfdb

from diagnosenet.ecg.peaks import detect
from diagnosenet.ecg.records import FS, read_reference
from diagnosenet.ecg.synth import class_letters, synth_signal, write_dataset


def test_class_mix_follows_the_challenge():
    letters = class_letters(1000, np.random.default_rng(0))
    assert Counter(letters) == {"N": 590, "A": 90, "O": 290, "~": 30}
    assert set(class_letters(8, np.random.default_rng(0))) == {"N", "A", "O", "~"}


def test_records_load_with_wfdb_and_are_deterministic(tmp_path):
    counts = write_dataset(tmp_path / "a", records=8, seed=5)
    write_dataset(tmp_path / "b", records=8, seed=5)
    write_dataset(tmp_path / "c", records=8, seed=6)
    reference = read_reference(tmp_path / "a" / "REFERENCE.csv")
    assert Counter(e.label for e in reference) == counts
    for entry in reference:
        record = wfdb.rdrecord(str(tmp_path / "a" / entry.record))
        assert record.fs == FS and record.file_name == [f"{entry.record}.mat"] and record.units == ["mV"]
        assert 9 * FS <= record.sig_len <= 61 * FS
        for suffix in (".hea", ".mat"):
            assert (tmp_path / "a" / f"{entry.record}{suffix}").read_bytes() == (tmp_path / "b" / f"{entry.record}{suffix}").read_bytes()
    assert (tmp_path / "a" / "A00001.mat").read_bytes() != (tmp_path / "c" / "A00001.mat").read_bytes()


def rr_irregularity(letter: str, seed: int) -> float:
    """Mean absolute successive RR difference relative to the mean RR."""
    signal = synth_signal(letter, np.random.default_rng([99, seed]))
    rr = np.diff(detect(signal, FS, "xqrs"))
    return float(np.mean(np.abs(np.diff(rr))) / np.mean(rr))


def test_af_is_more_irregular_than_normal_sinus_rhythm():
    normal = [rr_irregularity("N", seed) for seed in range(6)]
    af = [rr_irregularity("A", seed) for seed in range(6)]
    assert min(af) > max(normal), (af, normal)


@pytest.mark.parametrize("letter", ["N", "A", "O"])
def test_detector_finds_a_plausible_heart_rate(letter):
    signal = synth_signal(letter, np.random.default_rng([7, 1]))
    beats = detect(signal, FS, "xqrs")
    rate = 60.0 * beats.size / (signal.size / FS)
    assert 30 < rate < 200
