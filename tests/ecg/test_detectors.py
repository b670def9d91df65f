"""R-peak detectors against MIT-BIH record 100's reference beat annotations."""
from __future__ import annotations

import numpy as np
import pytest
import wfdb
import wfdb.processing

from diagnosenet.ecg.peaks import DETECTORS, detect
from diagnosenet.ecg.synth import synth_signal


@pytest.mark.realdata
@pytest.mark.parametrize("detector", sorted(DETECTORS))
def test_detector_finds_mitdb_100_beats(mitdb_dir, detector):
    path = str(mitdb_dir / "100")
    record = wfdb.rdrecord(path, channels=[0], sampto=60 * 360)
    annotation = wfdb.rdann(path, "atr", sampto=60 * 360)
    reference = np.array([s for s, sym in zip(annotation.sample, annotation.symbol) if sym in "NAV"])
    found = detect(record.p_signal[:, 0], record.fs, detector)
    comparison = wfdb.processing.compare_annotations(reference, found, int(0.15 * record.fs))
    assert comparison.sensitivity >= 0.98 and comparison.positive_predictivity >= 0.98


def test_peaks_are_moved_to_the_extremum_of_inverted_leads():
    signal = -synth_signal("N", np.random.default_rng(3))
    beats = detect(signal, 300, "pantompkins")
    assert beats.size > 10
    assert np.all(signal[beats] < np.median(signal))  # at the (negative) R extremum, not on the baseline


@pytest.mark.realdata
def test_the_vectorised_local_peak_finder_is_wfdbs_on_real_records(validation_dir):
    """XQRS runs with ``peaks.find_local_peaks`` in place of wfdb's loop: the same peaks on 20
    real records (raw, and rounded so that plateaus occur), at XQRS's radii and at small ones."""
    from wfdb.processing.peaks import find_local_peaks as wfdb_find_local_peaks

    from diagnosenet.ecg.peaks import find_local_peaks
    from diagnosenet.ecg.records import list_entries, load_signal

    for entry in list_entries(validation_dir)[:20]:
        signal = load_signal(validation_dir, entry.record, 300)
        for x in (signal, np.round(signal, 1)):
            for radius in (1, 2, 30, 37):
                np.testing.assert_array_equal(find_local_peaks(x, radius), wfdb_find_local_peaks(x, radius))
    assert find_local_peaks(np.ones(50), 5).size == 0
