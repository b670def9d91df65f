"""R-peak detectors behind one signature ``detect(signal, fs) -> sample indices``.

``xqrs`` (wfdb's learning detector) is the reference; ``gqrs`` is wfdb's port of the
PhysioToolkit detector; ``pantompkins`` is a vectorised Pan-Tompkins-style energy detector
(band-pass, squared slope, moving integration, adaptive threshold) written with scipy
so that the full challenge windows in minutes. Every detector's peaks go through the same
``wfdb.processing.correct_peaks`` step, so windows are centred on the signal's extremum.
Accuracy and speed of each: bench/bench_rpeak_accuracy.py, docs/ecg.md.

wfdb.processing and scipy.signal are imported inside the functions: together they take
seconds to import, and ``diagnosenet --help`` (every stage's parser) reads ``DETECTORS``.
"""
from __future__ import annotations

import numpy as np

#: seconds: radius around a detection where correct_peaks looks for the R extremum
CORRECTION_RADIUS_S = 0.06


def find_local_peaks(sig: np.ndarray, radius: int) -> np.ndarray:
    """wfdb's ``find_local_peaks``, vectorised, with the same result (tests/ecg/test_detectors.py
    compares them on real records): XQRS spends ~90 % of its time in wfdb's Python loop.

    A sample is a peak when it equals the maximum of ``sig[i − radius : i + radius]``, and after
    a peak the next ``radius − 1`` samples are skipped, as the loop does."""
    from scipy.ndimage import maximum_filter1d

    sig = np.asarray(sig)
    if np.min(sig) == np.max(sig):
        return np.empty(0)
    # an even window of 2r covers [i − r, i + r − 1]: the loop's slice
    window_max = maximum_filter1d(sig, size=2 * radius, mode="constant", cval=-np.inf)
    peaks, next_allowed = [], 0
    for i in np.flatnonzero(sig == window_max).tolist():
        if i >= next_allowed:
            peaks.append(i)
            next_allowed = i + radius
    return np.array(peaks)


def _xqrs(signal: np.ndarray, fs: float) -> np.ndarray:
    import wfdb.processing
    import wfdb.processing.qrs

    wfdb.processing.qrs.find_local_peaks = find_local_peaks   # the same peaks, without the loop
    xqrs = wfdb.processing.XQRS(sig=signal, fs=fs)
    xqrs.detect(verbose=False)
    return np.asarray(xqrs.qrs_inds, dtype=np.int64)


def _gqrs(signal: np.ndarray, fs: float) -> np.ndarray:
    import wfdb.processing

    return np.asarray(wfdb.processing.gqrs_detect(sig=signal, fs=fs), dtype=np.int64)


def _pantompkins(signal: np.ndarray, fs: float) -> np.ndarray:
    """QRS energy peaks above a quarter of the local (2.5 s) energy maximum.

    The 5-15 Hz band keeps QRS slopes and drops baseline wander and most of the T wave;
    the 250 ms minimum distance is the refractory period (heart rates up to 240 bpm).
    """
    from scipy.ndimage import maximum_filter1d, uniform_filter1d
    from scipy.signal import butter, find_peaks, sosfiltfilt

    sos = butter(2, [5.0, 15.0], btype="bandpass", fs=fs, output="sos")
    filtered = sosfiltfilt(sos, signal)
    energy = uniform_filter1d(np.gradient(filtered) ** 2, size=max(1, int(0.12 * fs)))
    envelope = maximum_filter1d(energy, size=int(2.5 * fs))
    floor = 0.05 * np.median(envelope)  # ignore flat stretches where the envelope collapses
    peaks, _ = find_peaks(energy, height=np.maximum(0.25 * envelope, floor), distance=int(0.25 * fs))
    return peaks.astype(np.int64)


DETECTORS = {"xqrs": _xqrs, "gqrs": _gqrs, "pantompkins": _pantompkins}


def detect(signal: np.ndarray, fs: float, detector: str = "xqrs", correct: bool = True) -> np.ndarray:
    """Sorted, unique R-peak sample indices of ``signal`` (mV), corrected to the extremum
    (``correct=False``: as the detector found them, e.g. to compare two detectors)."""
    import wfdb.processing

    if detector not in DETECTORS:
        raise ValueError(f"unknown R-peak detector {detector!r}; choose from {sorted(DETECTORS)}")
    raw = DETECTORS[detector](signal, fs)
    if raw.size == 0 or not correct:
        return np.unique(raw)
    radius = max(1, int(CORRECTION_RADIUS_S * fs))
    corrected = wfdb.processing.correct_peaks(
        signal, raw, search_radius=radius, smooth_window_size=max(1, radius // 2), peak_dir="compare"
    )
    return np.unique(np.asarray(corrected, dtype=np.int64))


def second_detector(detector: str) -> str:
    """The detector whose agreement with ``detector`` is the beat-agreement quality index: the
    fast energy detector, or wfdb's gqrs when the first is that one."""
    return "gqrs" if detector == "pantompkins" else "pantompkins"


def agreement_beats(signal: np.ndarray, fs: float, detector: str) -> np.ndarray:
    """The second detector's beats, uncorrected (:func:`second_detector`); none when it fails
    on a degenerate signal, so the quality index says *no agreement* instead of losing the record."""
    try:
        return detect(signal, fs, second_detector(detector), correct=False)
    except Exception:  # wfdb's detectors raise assorted errors on degenerate input
        return np.zeros(0, dtype=np.int64)
