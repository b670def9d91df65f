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


def _xqrs(signal: np.ndarray, fs: float) -> np.ndarray:
    import wfdb.processing

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


def detect(signal: np.ndarray, fs: float, detector: str = "xqrs") -> np.ndarray:
    """Sorted, unique R-peak sample indices of ``signal`` (mV), corrected to the extremum."""
    import wfdb.processing

    if detector not in DETECTORS:
        raise ValueError(f"unknown R-peak detector {detector!r}; choose from {sorted(DETECTORS)}")
    raw = DETECTORS[detector](signal, fs)
    if raw.size == 0:
        return raw
    radius = max(1, int(CORRECTION_RADIUS_S * fs))
    corrected = wfdb.processing.correct_peaks(
        signal, raw, search_radius=radius, smooth_window_size=max(1, radius // 2), peak_dir="compare"
    )
    return np.unique(np.asarray(corrected, dtype=np.int64))
