"""Median-beat intervals and rhythm patterns (ecg/delineation.py) on synthetic beats of known timing."""
from __future__ import annotations

import numpy as np
import pytest

from diagnosenet.ecg import synth
from diagnosenet.ecg.delineation import DELINEATION_NAMES, delineation_features, rhythm_patterns
from diagnosenet.ecg.features import FEATURE_NAMES, record_features
from diagnosenet.ecg.records import FS

N = int(30 * FS)


def _zscored(signal: np.ndarray) -> np.ndarray:
    return (signal - signal.mean()) / signal.std()


def _record(rr_s: float = 1.0, waves=synth.SINUS_WAVES, pr_scale: float = 1.0, seed: int = 1):
    """Beats of one morphology every ``rr_s`` seconds (the model puts P at −0.17 · √RR · pr_scale
    s and T at +0.30 · √RR s from R), z-scored, with their R indices."""
    r_times = np.arange(0.6, 29.5, rr_s)
    signal = synth._render(N, r_times, np.full(r_times.size, rr_s), waves, 1.0, np.random.default_rng(seed), pr_scale)
    return _zscored(signal), np.round(r_times * FS).astype(np.int64)


def test_the_p_to_r_time_is_the_p_waves_offset_and_a_long_pr_is_seen_beyond_the_templates_p_region():
    normal = delineation_features(*_record(), FS)
    block = delineation_features(*_record(pr_scale=1.9), FS)     # P at −0.323 s: first-degree AV block
    assert normal["pr_peak_s"] == pytest.approx(0.17, abs=2 / FS)
    assert block["pr_peak_s"] == pytest.approx(0.17 * 1.9, abs=2 / FS)
    assert normal["p_peak_rel"] == pytest.approx(synth.SINUS_WAVES["P"][2], rel=0.1)
    # a Gaussian of SD 25 ms is 2.355 × 25 ms wide at half height
    assert normal["p_width_s"] == pytest.approx(2.355 * synth.SINUS_WAVES["P"][1], abs=3 / FS)
    assert normal["pr_peak_sd_s"] == pytest.approx(0.0, abs=1 / FS)


def test_a_pr_that_alternates_between_two_values_has_their_half_difference_as_spread():
    r_times = np.arange(0.6, 29.5, 1.0)
    rr, rng = np.ones(r_times.size), np.random.default_rng(2)
    signal = (synth._render(N, r_times[0::2], rr[0::2], synth.SINUS_WAVES, 1.0, rng, 1.0)
              + synth._render(N, r_times[1::2], rr[1::2], synth.SINUS_WAVES, 1.0, rng, 1.3))
    f = delineation_features(_zscored(signal), np.round(r_times * FS).astype(np.int64), FS)
    assert f["pr_peak_sd_s"] == pytest.approx(0.17 * 0.3 / 2, abs=2 / FS)


def test_a_wide_ventricular_beat_has_a_wide_qrs_and_an_inverted_t():
    sinus = delineation_features(*_record(), FS)
    ectopic = delineation_features(*_record(waves=synth.ECTOPIC_WAVES), FS)
    assert sinus["qrs_slope_width_s"] < 0.10
    assert ectopic["qrs_slope_width_s"] > 0.12
    assert sinus["t_signed_rel"] == pytest.approx(synth.SINUS_WAVES["T"][2], abs=0.03)
    assert ectopic["t_signed_rel"] < -0.2


def test_the_rate_corrected_r_to_t_time_is_the_same_at_every_rate():
    """The model's T offset grows with √RR, so R → T / √RR is its offset at RR = 1 s at any rate."""
    for rr_s in (0.64, 1.0, 1.44):
        f = delineation_features(*_record(rr_s=rr_s), FS)
        assert f["rt_peak_bazett"] == pytest.approx(synth.SINUS_WAVES["T"][0], abs=2 / FS / np.sqrt(rr_s)), rr_s


def test_trigeminy_correlates_at_lag_three_and_rate_episodes_show_in_the_percentiles():
    trigeminy = np.tile([0.6, 1.2, 0.9], 20)                     # short, long, normal: period 3
    f = rhythm_patterns(trigeminy)
    assert f["rr_acf3"] > 0.9 and f["rr_acf2"] < -0.4
    episode = np.concatenate([np.full(40, 1.0), np.full(40, 0.5)])  # 60 bpm, then 120 bpm
    g = rhythm_patterns(episode)
    assert g["hr_p05_bpm"] == pytest.approx(60.0) and g["hr_p95_bpm"] == pytest.approx(120.0)


def test_too_few_beats_give_nan_and_the_features_reach_the_record_table():
    signal, beats = _record()
    f = delineation_features(signal, beats[:2], FS)
    assert all(np.isnan(f[name]) for name in DELINEATION_NAMES)
    values = dict(zip(FEATURE_NAMES, record_features(signal, beats)))
    assert values["pr_peak_s"] == pytest.approx(0.17, abs=2 / FS)
