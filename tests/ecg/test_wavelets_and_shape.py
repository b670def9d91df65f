"""Wavelet band energies (ecg/wavelets.py) and the median beat's shape (features.SHAPE_NAMES)
on signals of known values."""
from __future__ import annotations

import numpy as np
import pytest

from diagnosenet.ecg.features import SHAPE_NAMES, TEMPLATE_POINTS, morphology_features
from diagnosenet.ecg.records import FS
from diagnosenet.ecg.wavelets import WAVELET_NAMES, wavelet_features

SECONDS = 30
t = np.arange(SECONDS * FS) / FS


@pytest.mark.parametrize(("hz", "band"), [(100.0, "wavelet_d1"), (28.0, "wavelet_d3"), (6.5, "wavelet_d5"),
                                          (0.5, "wavelet_a6")])
def test_a_sine_puts_its_energy_in_the_band_of_its_frequency(hz, band):
    out = wavelet_features(np.sin(2 * np.pi * hz * t), FS)
    assert out[band] > 0.8, out
    assert out["wavelet_entropy"] < 0.4


def test_white_noise_halves_its_energy_band_by_band():
    """White noise: half of the energy in level 1, a quarter in level 2, ... so the normalised
    entropy of (1/2, 1/4, ..., 1/64, 1/64) is 0.701."""
    out = wavelet_features(np.random.default_rng(1).normal(size=t.size), FS)
    assert out["wavelet_d1"] == pytest.approx(0.5, abs=0.03)
    assert out["wavelet_d2"] == pytest.approx(0.25, abs=0.03)
    assert out["wavelet_entropy"] == pytest.approx(0.701, abs=0.03)
    assert sum(out[name] for name in WAVELET_NAMES[:7]) == pytest.approx(1.0)


def test_a_burst_of_noise_shows_in_the_burst_ratio_and_steady_noise_does_not():
    rng = np.random.default_rng(2)
    steady = rng.normal(size=t.size)
    burst = steady.copy()
    burst[10 * FS:12 * FS] *= 10          # 2 s at 10× the amplitude: 100× the energy
    assert wavelet_features(steady, FS)["wavelet_d1_burst"] < 2
    assert wavelet_features(burst, FS)["wavelet_d1_burst"] > 50
    assert wavelet_features(burst, FS)["wavelet_d3_burst"] > 20


def test_a_signal_too_short_has_no_wavelet_features():
    assert all(np.isnan(v) for v in wavelet_features(np.ones(100), FS).values())


def test_the_template_shape_is_the_median_beat_in_slices_relative_to_r():
    """Beats every second of a known shape: R = 1 over the sixth slice (from R on), a T wave of
    0.3 over the tenth, flat elsewhere; the slices of −0.25 … +0.45 s are 15 samples each."""
    width = int(0.7 * FS) // TEMPLATE_POINTS
    beat = np.zeros(int(0.7 * FS))
    beat[5 * width:6 * width] = 1.0               # starts at R (0.25 s = 75 samples = 5 slices)
    beat[9 * width:10 * width] = 0.3
    signal = np.zeros(SECONDS * FS)
    beats = np.arange(1, SECONDS - 1) * FS
    for r in beats:
        signal[r - int(0.25 * FS): r + int(0.45 * FS)] = beat
    out, _ = morphology_features(signal, beats, FS)
    expected = np.zeros(TEMPLATE_POINTS)
    expected[5], expected[9] = 1.0, 0.3
    np.testing.assert_allclose([out[name] for name in SHAPE_NAMES], expected, atol=1e-12)


def test_too_few_beats_leave_the_shape_undefined():
    out, _ = morphology_features(np.zeros(10 * FS), np.array([FS]), FS)
    assert all(np.isnan(out[name]) for name in SHAPE_NAMES)
