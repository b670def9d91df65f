"""R-peak-centred windows grouped into training samples (the paper's Table 2 geometry).

A window is ``window`` samples with its R peak at index ``window // 2``; a sample is
``per_sample`` consecutive windows concatenated (5 × 260 = 1300 by default). Groups start
every ``stride`` windows, so ``stride == per_sample`` gives non-overlapping samples.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diagnosenet.ecg.features import FEATURE_NAMES

NORMALISATIONS = ("zscore", "none")


@dataclass(frozen=True)
class Geometry:
    window: int = 260
    per_sample: int = 5
    stride: int = 5
    normalisation: str = "zscore"
    #: append the record's whole-record features (ecg/features.py) to every sample, so that a
    #: network sees the rhythm of the whole record beside its five windows
    record_features: bool = False

    def __post_init__(self) -> None:
        if self.window < 2 or self.per_sample < 1 or self.stride < 1:
            raise ValueError(f"window/per_sample/stride must be positive: {self}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation {self.normalisation!r} not in {NORMALISATIONS}")

    @property
    def sample_length(self) -> int:
        return self.window * self.per_sample + (len(FEATURE_NAMES) if self.record_features else 0)


def normalise(signal: np.ndarray, how: str) -> np.ndarray:
    """Per-record scaling, so amplitude differences between devices do not leak into labels."""
    if how == "none":
        return signal
    std = signal.std()
    return (signal - signal.mean()) / (std if std > 0 else 1.0)


def centred_windows(signal: np.ndarray, peaks: np.ndarray, window: int) -> np.ndarray:
    """``(k, window)`` windows for the peaks whose window fits inside the signal."""
    half = window // 2
    starts = np.asarray(peaks, dtype=np.int64) - half
    starts = starts[(starts >= 0) & (starts + window <= signal.size)]
    return signal[starts[:, None] + np.arange(window)]


def group_windows(windows: np.ndarray, per_sample: int, stride: int) -> np.ndarray:
    """``(n, per_sample * window)`` samples of consecutive windows, starting every ``stride``."""
    count = windows.shape[0]
    starts = np.arange(0, count - per_sample + 1, stride)
    index = starts[:, None] + np.arange(per_sample)
    return windows[index].reshape(starts.size, per_sample * windows.shape[1])


def record_samples(signal: np.ndarray, peaks: np.ndarray, geometry: Geometry) -> np.ndarray:
    """float32 samples of one record (possibly zero rows)."""
    scaled = normalise(np.asarray(signal, dtype=np.float64), geometry.normalisation)
    windows = centred_windows(scaled, peaks, geometry.window)
    samples = group_windows(windows, geometry.per_sample, geometry.stride)
    return samples.astype(np.float32).reshape(-1, geometry.window * geometry.per_sample)


def small_sample(samples: np.ndarray) -> np.ndarray:
    """The record's one sample for the "small" set: the middle one, away from start-up transients."""
    return samples[samples.shape[0] // 2]
