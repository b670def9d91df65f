"""Window geometry: every window centred on its R peak, 5 × 260 = 1300 per sample."""
from __future__ import annotations

import numpy as np
import pytest

from diagnosenet.ecg.peaks import detect
from diagnosenet.ecg.records import FS, list_entries, load_signal
from diagnosenet.ecg.windows import Geometry, centred_windows, group_windows, record_samples


def spikes(n: int, peaks: np.ndarray) -> np.ndarray:
    signal = np.zeros(n)
    signal[peaks] = np.arange(1, peaks.size + 1)  # each peak tagged by its rank
    return signal


def test_each_window_is_centred_on_its_peak():
    peaks = np.array([50, 200, 500, 800, 1100, 1400, 1700, 2000, 2990])
    windows = centred_windows(spikes(3000, peaks), peaks, 260)
    # the first (50 < 130) and last (2990 + 130 > 3000) peaks do not fit
    assert windows.shape == (7, 260)
    assert np.array_equal(windows[:, 130], np.arange(2, 9))
    off_centre = np.delete(windows, 130, axis=1)
    assert not off_centre.any()  # peaks are 300 apart, so no neighbour falls inside a window


@pytest.mark.parametrize("count, stride, expected", [(12, 5, 2), (10, 5, 2), (9, 5, 1), (4, 5, 0), (12, 1, 8), (12, 3, 3)])
def test_group_counts_follow_stride(count, stride, expected):
    windows = np.arange(count, dtype=float)[:, None] * np.ones((1, 4))
    samples = group_windows(windows, 5, stride)
    assert samples.shape == (expected, 20)
    if expected:
        assert np.array_equal(samples[:, ::4], np.arange(5)[None, :] + stride * np.arange(expected)[:, None])


def test_zscore_is_per_record():
    signal = 3.0 + 2.0 * np.sin(np.arange(6000) / 7.0)
    peaks = np.arange(200, 5800, 250)
    raw = record_samples(signal, peaks, Geometry(normalisation="none"))
    scaled = record_samples(signal, peaks, Geometry(normalisation="zscore"))
    assert raw.dtype == np.float32 and raw.shape[1] == 1300
    np.testing.assert_allclose(scaled, (raw - signal.mean()) / signal.std(), atol=1e-5)


@pytest.mark.realdata
def test_real_record_samples_hold_five_r_peaks_at_window_centres(validation_dir):
    entry = list_entries(validation_dir)[0]
    signal = load_signal(validation_dir, entry.record)
    peaks = detect(signal, FS, "xqrs")
    samples = record_samples(signal, peaks, Geometry(normalisation="none"))
    inside = peaks[(peaks >= 130) & (peaks + 130 <= signal.size)]
    assert samples.shape == ((inside.size - 5) // 5 + 1, 1300)
    centres = samples[:, 130::260]  # 5 centres per sample
    np.testing.assert_allclose(centres.ravel(), signal[inside[: centres.size]].astype(np.float32))
