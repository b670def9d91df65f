"""Intervals of the median beat and rhythm patterns that set the Other class apart from Normal.

Most of the Other records a whole-record model misses are called Normal: sinus-like rhythms with
one abnormal interval or an intermittent pattern. The features here measure what the template
summaries of ``ecg/features.py`` do not:

* **P wave before R** over a search window that reaches as far back as the rhythm allows
  (``0.6 × median RR``, at most 0.45 s; the template's P region stops at −0.25 s and misses a
  long PR): P-peak → R time (a PR proxy: first-degree AV block), its amplitude and width, and
  the beat-to-beat spread of its position (a varying PR: Wenckebach, wandering pacemaker);
* **QRS duration** from the slope of the median beat (the span near R where the slope is at
  least 10 % of its largest: bundle-branch block is ≥ 0.12 s), and the **signed T** relative
  to R (an inverted or discordant T is negative);
* **R → T peak corrected for rate** (divided by √RR, Bazett's rule: a QTc proxy);
* **rhythm patterns**: RR autocorrelation at lags 2 and 3 (trigeminy, grouped beats), and the
  5th and 95th percentiles of the heart rate over 5-beat medians (bradycardia or tachycardia
  episodes that a record mean hides).

Names and units: docs/ecg-quality.md.
"""
from __future__ import annotations

import numpy as np

DELINEATION_NAMES = ("pr_peak_s", "p_peak_rel", "p_width_s", "pr_peak_sd_s", "qrs_slope_width_s", "t_signed_rel",
                     "rt_peak_bazett", "rr_acf2", "rr_acf3", "hr_p05_bpm", "hr_p95_bpm")

#: the earliest the P search reaches before R (s), the share of the median RR it may reach,
#: and the QRS neighbourhood it leaves out (s)
P_REACH_S, P_REACH_RR, P_STOP_S = 0.45, 0.6, 0.06
#: slope threshold of the QRS (share of the median beat's largest slope near R) and how far
#: from R the QRS may reach (s)
QRS_SLOPE_SHARE, QRS_REACH_S = 0.1, 0.12
#: how far a beat's P wave may move from the template's (s) and the beats of a heart-rate median
P_SHIFT_S, HR_BEATS = 0.06, 5
#: the T search after R (s), as the template's in ecg/features.py
T_FROM_S, T_TO_S = 0.15, 0.45


def delineation_features(signal: np.ndarray, beats: np.ndarray, fs: float) -> dict[str, float]:
    """Every :data:`DELINEATION_NAMES` feature of a z-scored ``signal`` and its R peaks ``beats``
    (NaN where undefined: fewer than 3 beats with a full segment)."""
    out = dict.fromkeys(DELINEATION_NAMES, np.nan)
    beats = np.asarray(beats, dtype=np.int64)
    rr = np.diff(beats) / fs
    out.update(rhythm_patterns(rr))
    if rr.size < 2:
        return out
    rr_median = float(np.median(rr))
    before = int(min(P_REACH_S, P_REACH_RR * rr_median) * fs)
    after = int(T_TO_S * fs)
    inside = beats[(beats >= before) & (beats + after <= signal.size)]
    if inside.size < 3:
        return out
    segments = signal[inside[:, None] + np.arange(-before, after)[None, :]]
    segments = segments - np.median(segments, axis=1, keepdims=True)
    template = np.median(segments, axis=0)
    r_amp = template[before]
    scale = abs(r_amp) or float(np.ptp(template)) or 1.0
    out.update(_p_wave(segments, template, before, scale, fs))
    out["qrs_slope_width_s"] = qrs_slope_width(template, before, fs)
    t_region = template[before + int(T_FROM_S * fs): before + after]
    t_index = int(np.argmax(np.abs(t_region)))
    out["t_signed_rel"] = float(t_region[t_index] / (r_amp if r_amp != 0 else scale))
    out["rt_peak_bazett"] = float((int(T_FROM_S * fs) + t_index) / fs / np.sqrt(rr_median))
    return out


def _p_wave(segments: np.ndarray, template: np.ndarray, r: int, scale: float, fs: float) -> dict[str, float]:
    """P peak of the template before R (detrended over the search window), its width at half
    height, and the spread of each beat's P position (the lag of best correlation with it)."""
    from diagnosenet.ecg.features import _run_length_around   # features imports this module

    stop = r - int(P_STOP_S * fs)
    region = template[:stop]
    if region.size < int(0.1 * fs):
        return {}
    wave = region - np.linspace(region[0], region[-1], region.size)
    peak = int(np.argmax(np.abs(wave)))
    height = abs(wave[peak])
    width = _run_length_around(np.abs(wave) >= height / 2, peak)
    out = {"pr_peak_s": (r - peak) / fs, "p_peak_rel": float(height / scale), "p_width_s": width / fs}
    half = int(0.04 * fs)
    lo, hi = max(peak - half, 0), min(peak + half + 1, stop)
    early, late = min(int(P_SHIFT_S * fs), lo), min(int(P_SHIFT_S * fs), stop - hi)   # lags that fit
    if hi - lo >= half and early + late > 0:
        kernel = wave[lo:hi] - wave[lo:hi].mean()
        rows = segments[:, lo - early: hi + late]
        windows = np.lib.stride_tricks.sliding_window_view(rows, hi - lo, axis=1)   # beats × lags × samples
        lags = np.argmax((windows - windows.mean(axis=2, keepdims=True)) @ kernel, axis=1) - early
        out["pr_peak_sd_s"] = float(np.std(lags) / fs)
    return out


def qrs_slope_width(template: np.ndarray, r: int, fs: float) -> float:
    """Seconds from the first to the last sample within ``QRS_REACH_S`` of R (index ``r`` of a
    beat ``template``) whose slope is at least ``QRS_SLOPE_SHARE`` of the largest slope there:
    the QRS complex's onset to offset (P and T waves are far flatter than the QRS)."""
    reach = int(QRS_REACH_S * fs)
    lo = max(r - reach, 0)
    slope = np.abs(np.gradient(template))[lo: r + reach + 1]
    if slope.max() == 0:
        return np.nan                                       # a flat template has no QRS
    steep = np.flatnonzero(slope >= QRS_SLOPE_SHARE * slope.max())
    return float((steep[-1] - steep[0] + 1) / fs)


def rhythm_patterns(rr: np.ndarray) -> dict[str, float]:
    """RR autocorrelation at lags 2 and 3, and the 5th / 95th percentiles (bpm) of the heart
    rate over medians of ``HR_BEATS`` successive RR intervals."""
    out = {}
    rr = np.asarray(rr, dtype=np.float64)
    for lag in (2, 3):
        if rr.size > lag + 1:
            out[f"rr_acf{lag}"] = rr_autocorrelation(rr, lag)
    if rr.size >= HR_BEATS:
        local = np.median(np.lib.stride_tricks.sliding_window_view(rr, HR_BEATS), axis=1)
        out["hr_p05_bpm"], out["hr_p95_bpm"] = (float(v) for v in np.percentile(60.0 / local, [5, 95]))
    return out


def rr_autocorrelation(rr: np.ndarray, lag: int) -> float:
    """Autocorrelation of the RR series at ``lag`` beats (0 for a constant series)."""
    centred = rr - rr.mean()
    denom = float(np.sum(centred ** 2))
    return float(np.sum(centred[lag:] * centred[:-lag]) / denom) if denom > 0 else 0.0
