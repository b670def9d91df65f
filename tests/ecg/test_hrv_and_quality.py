"""The richer whole-record features (ecg/hrv.py, ecg/signal_quality.py, the new morphology
ones) on RR series and synthetic records of known values."""
from __future__ import annotations

import numpy as np
import pytest

from diagnosenet.ecg import peaks
from diagnosenet.ecg.feature_table import signal_features
from diagnosenet.ecg.features import FEATURE_NAMES, record_features
from diagnosenet.ecg.hrv import dfa_alpha1, histogram_entropy, hrv_features, lorenz_occupancy
from diagnosenet.ecg.records import FS
from diagnosenet.ecg.signal_quality import beat_agreement, flat_stretches, signal_quality
from diagnosenet.ecg.synth import beats_at, synth_signal


def test_a_regular_rhythm_fills_one_histogram_bin_and_one_lorenz_cell():
    f = hrv_features(np.full(40, 0.8))
    assert f["rr_hist_entropy"] == 0.0 and f["drr_hist_entropy"] == 0.0
    assert f["hrv_triangular_index"] == 1.0 and f["rr_mode_share"] == 1.0
    assert f["lorenz_occupancy"] == pytest.approx(1 / 38)         # 38 points, one cell
    assert f["local_cv_max"] == pytest.approx(0.0, abs=1e-12) and f["af_window_frac"] == 0.0
    assert f["alternation_frac"] == 0.0 and f["premature_local_frac"] == 0.0


def test_histogram_entropy_is_one_bit_for_two_equally_common_values():
    assert histogram_entropy(np.array([1.0, 2.0] * 10), 0.05) == pytest.approx(1.0)


def test_bigeminy_alternates_and_every_premature_beat_is_compensated():
    f = hrv_features(np.array([0.6, 1.0] * 20))
    assert f["alternation_frac"] == 1.0
    assert f["rr_hist_entropy"] == pytest.approx(1.0)
    # local median of [.6, 1, .6, 1, ...] windows of 7 is 0.6 or 1.0: premature where it is 1.0
    assert f["premature_local_frac"] > 0.3 and f["compensated_premature_frac"] > 0.3
    assert f["af_window_frac"] == 1.0                  # RMSSD/mean = 0.4/0.8: irregular, regularly


def test_irregular_intervals_fill_the_lorenz_plot_and_look_uncorrelated():
    rng = np.random.default_rng(0)
    af = rng.uniform(0.4, 1.2, 300)
    f = hrv_features(af)
    assert f["lorenz_occupancy"] > 0.5 and f["af_window_frac"] > 0.9
    assert dfa_alpha1(af) == pytest.approx(0.5, abs=0.15)                     # white noise
    assert dfa_alpha1(np.cumsum(rng.normal(size=300))) == pytest.approx(1.5, abs=0.2)  # a random walk
    assert lorenz_occupancy(np.zeros(1)) != lorenz_occupancy(np.zeros(1))    # NaN: too short


def test_respiratory_sinus_arrhythmia_puts_the_rr_power_in_the_high_band():
    beat = np.arange(80)
    rr = np.empty(80)
    t = 0.0
    for k in beat:                                      # RR modulated at 0.25 Hz (breathing)
        rr[k] = 0.8 + 0.05 * np.sin(2 * np.pi * 0.25 * t)
        t += rr[k]
    f = hrv_features(rr)
    assert f["hf_share"] > 0.9 and f["lf_hf"] < 0.1


def test_two_detectors_agree_exactly_or_not_at_all():
    a = np.arange(300, 9000, 240)
    assert beat_agreement(a, a + 10, FS) == 1.0                 # 33 ms apart: the same beats
    assert beat_agreement(a, a + 120, FS) == 0.0                # 400 ms apart: none
    assert beat_agreement(a, a[::2], FS) == pytest.approx(0.5, abs=0.02)
    assert beat_agreement(a, np.zeros(0, int), FS) == 0.0


def test_a_clipped_and_a_flat_stretch_are_measured():
    signal = np.sin(np.arange(3000) / 20.0)
    clipped = np.clip(signal, -0.5, 0.5)
    frac, _ = flat_stretches(clipped, FS)
    assert frac == pytest.approx(np.mean(np.abs(signal) >= 0.5), abs=0.01)
    flat = signal.copy()
    flat[1000:1600] = 0.0
    assert flat_stretches(flat, FS)[1] == pytest.approx(2.0, abs=0.01)      # 600 samples at 300 Hz


def test_quality_indices_separate_a_clean_record_from_noise():
    rng = np.random.default_rng(4)
    n = int(30 * FS)
    r_times = np.arange(0.6, 29.5, 0.8)
    clean = beats_at(r_times, n, rng) + rng.normal(0, 0.01, n)
    q_clean = dict(zip(FEATURE_NAMES, signal_features(clean, "xqrs")))
    assert q_clean["periodicity_lag_s"] == pytest.approx(0.8, abs=0.02)   # the RR interval
    # white noise, and the generator's noisy record (motion bursts, muscle noise, wander)
    for noise in (rng.normal(size=n), synth_signal("~", rng)):
        q_noise = dict(zip(FEATURE_NAMES, signal_features(noise, "xqrs")))
        assert q_clean["beat_agreement"] > 0.95 and q_noise["beat_agreement"] < 0.8
        assert q_clean["periodicity"] > 0.5 and q_noise["periodicity"] < 0.35
        assert q_clean["window_kurtosis_min"] > 3 and q_noise["window_kurtosis_median"] < 0.5


def test_the_median_beat_knows_its_p_wave_t_wave_and_ectopic_beats():
    rng = np.random.default_rng(6)
    n = int(30 * FS)
    r_times = np.arange(0.6, 29.5, 0.8)
    beats = np.round(r_times * FS).astype(np.int64)
    sinus = dict(zip(FEATURE_NAMES, record_features(beats_at(r_times, n, rng), beats)))
    assert sinus["p_presence_frac"] > 0.9 and sinus["template_corr_sd"] < 0.02
    assert 0.15 <= sinus["rt_peak_s"] <= 0.4 and sinus["premature_mismatch_frac"] == 0.0
    no_p = dict(zip(FEATURE_NAMES, record_features(beats_at(r_times, n, rng, p_waves=False), beats)))
    assert no_p["p_presence_frac"] < sinus["p_presence_frac"]
    # every 4th beat early and inverted: ventricular ectopy
    early = r_times.copy()
    early[3::4] -= 0.25
    signal = beats_at(early, n, rng)
    for t in early[3::4]:
        k = int(t * FS)
        signal[k - 60:k + 60] *= -1
    ectopic = dict(zip(FEATURE_NAMES, record_features(signal, np.round(early * FS).astype(np.int64))))
    assert ectopic["premature_mismatch_frac"] == pytest.approx(0.25, abs=0.05)


def test_every_new_feature_is_defined_on_a_synthetic_record_of_each_class():
    rng = np.random.default_rng(8)
    for letter in "NAO":
        signal = synth_signal(letter, rng)
        values = dict(zip(FEATURE_NAMES, signal_features(signal, "xqrs")))
        undefined = [name for name, v in values.items() if not np.isfinite(v)]
        # the second beat shape's features are undefined with one shape (ecg/beat_clusters.py)
        assert set(undefined) <= {"cluster_top2_corr", "cluster_second_rr_rel"}, (letter, undefined)
    quality = signal_quality(np.zeros(9000), np.zeros(0, int), None, FS)
    assert np.isnan(quality["beat_agreement"]) and quality["max_flat_run_s"] == pytest.approx(30.0)


def test_the_agreement_detector_runs_uncorrected():
    signal = beats_at(np.arange(0.6, 9.5, 0.8), int(10 * FS), np.random.default_rng(2))
    raw = peaks.detect(signal, FS, "pantompkins", correct=False)
    assert raw.size == 12 and np.all(np.diff(raw) > 0)
