"""The cleanest and worst stretch, the second detector's rhythm (ecg/stretches.py), beat-shape
clusters (ecg/beat_clusters.py) and AF evidence (ecg/hrv.py) on records of known values."""
from __future__ import annotations

import numpy as np
import pytest

from diagnosenet.ecg.beat_clusters import cluster_features, greedy_clusters
from diagnosenet.ecg.features import FEATURE_NAMES, record_features
from diagnosenet.ecg.hrv import af_evidence, fuzzy_entropy
from diagnosenet.ecg.records import FS
from diagnosenet.ecg.stretches import longest_run, stretch_features
from diagnosenet.ecg.synth import beats_at

R_TIMES = np.arange(0.4, 30.0, 0.8)            # 30 s, RR 0.8 s exactly (240 samples)
BEATS = np.round(R_TIMES * FS).astype(np.int64)


def _zscored(signal):
    return (signal - signal.mean()) / signal.std()


def test_a_stretch_where_the_detectors_disagree_is_left_out_of_the_clean_stretch():
    signal = _zscored(beats_at(R_TIMES, int(30 * FS), np.random.default_rng(1)))
    second = BEATS.copy()
    second[R_TIMES >= 20] += int(0.4 * FS)     # the second detector 400 ms off after 20 s
    f = stretch_features(signal, BEATS, second, FS)
    # 11 windows of 5 s, 2.5 s apart; those overlapping 20-30 s (from 17.5 s on) disagree; the
    # clean run ends 0.5 s into the first of them
    assert f["noisy_window_frac"] == pytest.approx(4 / 11) and f["worst_agreement"] == 0.0
    assert f["clean_longest_s"] == pytest.approx(18.0) and f["clean_frac"] == pytest.approx(0.6)
    assert f["clean_n_beats"] == 22 and f["clean_rr_cv"] == pytest.approx(0.0, abs=1e-12) and f["clean_irregular_frac"] == 0.0
    assert f["second_rr_median_rel"] == pytest.approx(1.0) and f["second_rr_cv_diff"] > 0.05
    same = stretch_features(signal, BEATS, BEATS, FS)
    assert same["clean_frac"] == 1.0 and same["clean_longest_s"] == pytest.approx(30.0)
    assert same["noisy_window_frac"] == 0.0 and same["worst_agreement"] == 1.0 and same["second_rr_cv_diff"] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(stretch_features(signal, BEATS, None, FS)["clean_frac"])   # no second detector


def test_the_worst_window_finds_a_burst_of_noise():
    rng = np.random.default_rng(2)
    signal = beats_at(R_TIMES, int(30 * FS), rng)
    noisy = signal.copy()
    noisy[int(12 * FS):int(16 * FS)] += rng.normal(0, 2.0, int(4 * FS))
    clean_f = stretch_features(_zscored(signal), BEATS, BEATS, FS)
    noisy_f = stretch_features(_zscored(noisy), BEATS, BEATS, FS)
    assert clean_f["worst_hf_share"] < 0.05 < 0.3 < noisy_f["worst_hf_share"]
    assert clean_f["worst_ptp_rel"] < 1.5 and noisy_f["worst_ptp_rel"] > 3


def test_longest_run():
    assert longest_run(np.array([1, 1, 0, 1, 1, 1, 0], bool)) == (3, 6)
    assert longest_run(np.zeros(4, bool)) == (0, 0)


def test_greedy_clusters_recovers_blocks():
    close = np.zeros((6, 6), bool)
    close[:4, :4] = close[4:, 4:] = True
    assert [c.tolist() for c in greedy_clusters(close)] == [[0, 1, 2, 3], [4, 5]]


def test_one_beat_shape_and_early_inverted_beats_of_a_second_shape():
    rng = np.random.default_rng(6)
    signal = _zscored(beats_at(R_TIMES, int(30 * FS), rng))
    sinus = cluster_features(signal, BEATS, FS)
    assert sinus["cluster_count"] == 1 and sinus["cluster_dominant_share"] == 1.0
    assert sinus["cluster_second_share"] == 0.0 and sinus["cluster_singleton_frac"] == 0.0
    assert np.isnan(sinus["cluster_top2_corr"])                 # no second shape
    early = R_TIMES.copy()
    early[3::4] -= 0.25                                          # every 4th beat early and inverted
    raw = beats_at(early, int(30 * FS), rng)
    for t in early[3::4]:
        k = int(t * FS)
        raw[k - 60:k + 60] *= -1
    f = cluster_features(_zscored(raw), np.round(early * FS).astype(np.int64), FS)
    assert f["cluster_count"] == 2
    assert f["cluster_second_share"] == pytest.approx(0.25, abs=0.03)
    assert f["cluster_top2_corr"] < 0 and f["cluster_second_rr_rel"] == pytest.approx(0.55 / 0.8, abs=0.05)


def test_af_evidence_of_regular_bigeminal_and_random_intervals():
    regular = af_evidence(np.full(40, 0.8))
    assert regular["afev_origin_frac"] == 1.0 and regular["afev"] == -38     # 38 points, all at the origin
    assert regular["rr_fuzzyen"] == 0.0
    assert regular["rr_nfen"] == pytest.approx(-np.log(0.06) - np.log(0.8))
    bigeminy = af_evidence(np.array([0.6, 1.0] * 20))   # ΔRR ±0.4 s: two cells, every other point repeats
    assert bigeminy["afev_origin_frac"] == 0.0 and bigeminy["afev"] == 2 - 2 * 36
    irregular = af_evidence(np.random.default_rng(0).uniform(0.4, 1.2, 100))
    assert irregular["afev"] > 0 and irregular["afev_irr_frac"] > 0.8 and irregular["rr_fuzzyen"] > 1
    assert np.isnan(af_evidence(np.full(3, 0.8))["afev"]) and np.isnan(fuzzy_entropy(np.ones(3)))


def test_the_new_features_are_columns_of_the_record_features():
    signal = beats_at(R_TIMES, int(30 * FS), np.random.default_rng(3))
    values = dict(zip(FEATURE_NAMES, record_features(signal, BEATS, second_beats=BEATS)))
    assert values["clean_frac"] == 1.0 and values["cluster_count"] == 1 and values["afev_origin_frac"] == 1.0
