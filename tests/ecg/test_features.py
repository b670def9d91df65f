"""Whole-record ECG features on records with known RR intervals (ecg/features.py, ecg-features)."""
from __future__ import annotations

import numpy as np
import pytest

from diagnosenet.ecg import peaks
from diagnosenet.ecg.features import FEATURE_NAMES, record_features, rr_features, sample_entropy
from diagnosenet.ecg.records import FS
from diagnosenet.ecg.synth import beats_at, fibrillatory_wave


def beats_from_rr(rr_s) -> np.ndarray:
    return np.round(np.concatenate([[0.5], 0.5 + np.cumsum(rr_s)]) * FS).astype(np.int64)


def test_regular_rhythm_has_no_variability():
    f = rr_features(beats_from_rr([0.8] * 30))
    assert f["n_beats"] == 31
    assert f["rr_mean"] == pytest.approx(0.8) and f["hr_mean"] == pytest.approx(75.0)
    assert f["rr_std"] == pytest.approx(0.0, abs=1e-12) and f["rmssd"] == pytest.approx(0.0, abs=1e-12)
    assert f["pnn50"] == 0.0 and f["irregular_frac"] == 0.0 and f["premature_frac"] == 0.0


def test_bigeminy_alternating_rr_gives_the_expected_statistics():
    rr = [0.6, 1.0] * 15  # premature beat then compensatory pause
    f = rr_features(beats_from_rr(rr))
    assert f["rr_mean"] == pytest.approx(0.8)
    assert f["rmssd"] == pytest.approx(0.4)  # every successive difference is ±0.4 s
    assert f["pnn50"] == 1.0 and f["pnn20"] == 1.0 and f["irregular_frac"] == 1.0
    assert f["turning_points"] == 1.0  # every interior interval is a local extremum
    assert f["rr_acf1"] == pytest.approx(-(len(rr) - 1) / len(rr))
    assert f["premature_frac"] == pytest.approx(0.5)  # 0.6 < 0.8 × median 0.8
    assert f["sd1_rel"] == pytest.approx(0.4 / np.sqrt(2) / 0.8, rel=1e-3)


def test_too_few_beats_give_nan_not_an_error():
    f = rr_features(np.array([100, 400]))
    assert f["n_beats"] == 2 and np.isnan(f["rr_mean"]) and np.isnan(f["rmssd"])


def test_sample_entropy_is_low_for_a_repeating_sequence_and_high_for_noise():
    rng = np.random.default_rng(0)
    repeating = np.tile([0.7, 0.9, 0.8], 20)
    assert sample_entropy(repeating, m=1, r=0.01) == pytest.approx(0.0, abs=0.01)  # the next value is always the same
    assert sample_entropy(rng.normal(size=60), m=1, r=0.2) > 1.0


def test_features_of_a_synthetic_record_recover_its_rr_intervals_through_the_detector():
    """A 30-s record rendered with known RR intervals → xqrs → the same RR statistics."""
    rng = np.random.default_rng(3)
    rr = 0.8 + 0.1 * np.sin(np.arange(34) / 3.0)  # slow sinus arrhythmia, 0.7-0.9 s
    r_times = 0.6 + np.concatenate([[0.0], np.cumsum(rr)])
    n = int(30 * FS)
    r_times = r_times[r_times < 29.5]
    signal = beats_at(r_times, n, rng) + rng.normal(0, 0.01, n)
    found = peaks.detect(signal, FS, "xqrs")
    f = dict(zip(FEATURE_NAMES, record_features(signal, found)))
    expected = np.diff(r_times)
    assert f["n_beats"] == pytest.approx(r_times.size, abs=1)
    assert f["rr_mean"] == pytest.approx(expected.mean(), abs=2 / FS)
    assert f["rr_std"] == pytest.approx(expected.std(), abs=2 / FS)
    assert f["rmssd"] == pytest.approx(np.sqrt(np.mean(np.diff(expected) ** 2)), abs=3 / FS)
    assert f["duration_s"] == pytest.approx(30.0)
    assert f["template_corr_mean"] > 0.95  # identical beats


def test_atrial_fibrillation_signs_show_in_the_p_wave_and_the_residual():
    """Same R times; one record with P waves, one without P waves but with f waves."""
    rng = np.random.default_rng(5)
    n = int(30 * FS)
    r_times = np.arange(0.6, 29.5, 0.8)
    beats = np.round(r_times * FS).astype(np.int64)
    sinus = dict(zip(FEATURE_NAMES, record_features(beats_at(r_times, n, rng), beats)))
    af_signal = beats_at(r_times, n, rng, p_waves=False) + fibrillatory_wave(n, rng)
    af = dict(zip(FEATURE_NAMES, record_features(af_signal, beats)))
    assert sinus["p_amp_rel"] > 2 * af["p_amp_rel"] or af["p_amp_rel"] < 0.05
    assert af["residual_af_band"] > sinus["residual_af_band"] + 0.2
    assert 4.0 <= af["residual_peak_hz"] <= 9.0


def test_every_feature_is_a_float_and_a_flat_beatless_record_is_still_scored():
    rng = np.random.default_rng(1)
    values = record_features(rng.normal(size=9000), np.zeros(0, dtype=np.int64))
    assert values.shape == (len(FEATURE_NAMES),) and values.dtype == np.float64
    assert np.isnan(values[FEATURE_NAMES.index("rr_mean")])
    assert np.isfinite(values[FEATURE_NAMES.index("band_40_150")])


def test_record_feature_samples_carry_the_same_whole_record_features_on_every_row():
    """window-ecg --record-features: 1,300 window values, then the record's network inputs."""
    from diagnosenet.ecg.build import signal_samples
    from diagnosenet.ecg.features import network_inputs
    from diagnosenet.ecg.windows import Geometry

    rng = np.random.default_rng(7)
    n = int(40 * FS)
    r_times = np.arange(0.7, 39.3, 0.75)
    signal = beats_at(r_times, n, rng) + rng.normal(0, 0.01, n)
    plain = signal_samples(signal, Geometry(), "xqrs")
    rich = signal_samples(signal, Geometry(record_features=True), "xqrs")
    assert rich.shape == (plain.shape[0], 1300 + len(FEATURE_NAMES)) == (plain.shape[0], Geometry(record_features=True).sample_length)
    np.testing.assert_array_equal(rich[:, :1300], plain)
    expected = network_inputs(record_features(signal, peaks.detect(signal, FS, "xqrs"), FS,
                                              second_beats=peaks.agreement_beats(signal, FS, "xqrs")))
    np.testing.assert_allclose(rich[:, 1300:], np.broadcast_to(expected, (plain.shape[0], expected.size)), rtol=1e-6)
    assert np.isfinite(rich).all()


@pytest.mark.parametrize("n, nperseg", [(9000, 1024), (18_000, 1024), (1500, 1023), (700, 700), (5, 5)])
def test_the_batched_welch_spectrum_equals_scipys(n, nperseg):
    """``features.welch`` replaces ``scipy.signal.welch`` (which transforms segment by segment)
    for speed: same frequencies, same density, odd and even segments, one segment or many."""
    from scipy.signal import welch as scipy_welch

    from diagnosenet.ecg.features import welch

    x = np.random.default_rng(n).normal(size=n) + np.sin(np.arange(n) / 7.0)
    freqs, power = welch(x, FS, nperseg)
    expected_freqs, expected = scipy_welch(x, fs=FS, nperseg=nperseg)
    np.testing.assert_array_equal(freqs, expected_freqs)
    np.testing.assert_allclose(power, expected, rtol=1e-10, atol=1e-15 * expected.max())
