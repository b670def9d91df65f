"""R-peak-centred windows grouped into training samples (the paper's Table 2 geometry).

A window is ``window`` samples with its R peak at index ``window // 2``; a sample is
``per_sample`` consecutive windows concatenated (5 × 260 = 1300 by default). Groups start
every ``stride`` windows, so ``stride == per_sample`` gives non-overlapping samples.
``sample_rule`` says which R peaks get a window and where a group may not cross (docs/ecg.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diagnosenet.ecg.features import FEATURE_NAMES

NORMALISATIONS = ("zscore", "none")
#: ``all-peaks``: every peak whose window fits in the record; ``paper``: the first and last
#: detected peaks dropped and groups never crossing an implausible RR interval, which
#: reproduces the paper's Table 2 samples per record (docs/benchmarks.md); ``contiguous``: a
#: sample is the unbroken stretch of signal from half a window before a beat, ``window ×
#: per_sample`` samples long, so the real timing between beats (RR intervals, the TQ segment
#: where P and fibrillatory waves lie) is kept instead of cut out
SAMPLE_RULES = ("all-peaks", "paper", "contiguous")
#: seconds: RR intervals outside this range (above 240 or below 30 bpm) break a run of beats
PLAUSIBLE_RR_S = (0.25, 2.0)


@dataclass(frozen=True)
class Geometry:
    window: int = 260
    per_sample: int = 5
    stride: int = 5
    normalisation: str = "zscore"
    #: append the record's whole-record features (ecg/features.py) to every sample, so that a
    #: network sees the rhythm of the whole record beside its five windows
    record_features: bool = False
    #: which peaks get windows and which windows may share a sample (SAMPLE_RULES)
    sample_rule: str = "all-peaks"

    def __post_init__(self) -> None:
        if self.window < 2 or self.per_sample < 1 or self.stride < 1:
            raise ValueError(f"window/per_sample/stride must be positive: {self}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation {self.normalisation!r} not in {NORMALISATIONS}")
        if self.sample_rule not in SAMPLE_RULES:
            raise ValueError(f"sample_rule {self.sample_rule!r} not in {SAMPLE_RULES}")

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


def peak_runs(peaks: np.ndarray, size: int, window: int, rule: str = "all-peaks", fs: float = 300.0) -> list[np.ndarray]:
    """Runs of consecutive peaks that get a window; a sample's windows come from one run.

    ``all-peaks``: one run, every peak whose window fits inside the ``size``-sample signal.
    ``paper``: the record's first and last detected peaks are dropped (edge beats, without a
    complete RR interval on both sides), then the peaks whose window fits are split into runs
    wherever an RR interval lies outside :data:`PLAUSIBLE_RR_S` (a missed or spurious beat).
    """
    if rule not in SAMPLE_RULES:
        raise ValueError(f"sample_rule {rule!r} not in {SAMPLE_RULES}")
    peaks = np.asarray(peaks, dtype=np.int64)
    if rule == "paper":
        peaks = peaks[1:-1]
    half = window // 2
    peaks = peaks[(peaks - half >= 0) & (peaks - half + window <= size)]
    if rule == "all-peaks" or peaks.size < 2:
        return [peaks]
    rr = np.diff(peaks) / fs
    breaks = np.flatnonzero((rr < PLAUSIBLE_RR_S[0]) | (rr > PLAUSIBLE_RR_S[1])) + 1
    return np.split(peaks, breaks)


def contiguous_stretches(signal: np.ndarray, peaks: np.ndarray, length: int, half: int, stride: int) -> np.ndarray:
    """``(n, length)`` unbroken stretches of the signal, each starting ``half`` samples before a
    peak, one every ``stride`` peaks, those that fit inside the signal."""
    starts = np.asarray(peaks, dtype=np.int64)[::stride] - half
    starts = starts[(starts >= 0) & (starts + length <= signal.size)]
    return signal[starts[:, None] + np.arange(length)]


def record_samples(signal: np.ndarray, peaks: np.ndarray, geometry: Geometry, fs: float = 300.0) -> np.ndarray:
    """float32 samples of one record (possibly zero rows); ``fs`` only matters for RR rules."""
    scaled = normalise(np.asarray(signal, dtype=np.float64), geometry.normalisation)
    length = geometry.window * geometry.per_sample
    if geometry.sample_rule == "contiguous":
        return contiguous_stretches(scaled, peaks, length, geometry.window // 2, geometry.stride).astype(np.float32)
    runs = peak_runs(peaks, scaled.size, geometry.window, geometry.sample_rule, fs)
    parts = [group_windows(centred_windows(scaled, run, geometry.window), geometry.per_sample, geometry.stride)
             for run in runs]
    samples = np.concatenate(parts)
    return samples.astype(np.float32).reshape(-1, length)


def small_sample(samples: np.ndarray) -> np.ndarray:
    """The record's one sample for the "small" set: the middle one, away from start-up transients."""
    return samples[samples.shape[0] // 2]
