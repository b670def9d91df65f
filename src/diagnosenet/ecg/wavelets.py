"""Wavelet band energies of the whole record, and how unevenly the fastest band is spread.

The discrete wavelet transform (Daubechies 4, PyWavelets) splits the signal into octave bands
with time resolution kept: at 300 Hz, detail level 1 holds 75–150 Hz (muscle noise, electrode
pops), level 3 19–37 Hz (QRS), levels 5–6 2.3–9.4 Hz (P and T waves, fibrillatory waves), the
approximation 0–2.3 Hz (baseline wander). A clean ECG puts a steady share of energy in each;
motion artefacts come in bursts, which the ratio of the busiest to the median stretch of
level 1 catches where a whole-record spectrum averages them away. Names and units:
docs/ecg-quality.md.
"""
from __future__ import annotations

import numpy as np

#: decomposition depth: at 300 Hz the approximation keeps 0–2.3 Hz
LEVELS = 6
WAVELET = "db4"
WAVELET_NAMES = (*(f"wavelet_d{level}" for level in range(1, LEVELS + 1)), f"wavelet_a{LEVELS}",
                 "wavelet_entropy", "wavelet_d1_burst", "wavelet_d3_burst")
#: seconds of the stretches whose level-1 and level-3 energies are compared
BURST_S = 2.0


def wavelet_features(signal: np.ndarray, fs: float) -> dict[str, float]:
    """Each band's share of the energy, their normalised Shannon entropy, and for levels 1 and 3
    the energy of the busiest ``BURST_S`` stretch over the median stretch's (NaN if too short)."""
    import pywt

    out = dict.fromkeys(WAVELET_NAMES, np.nan)
    signal = np.asarray(signal, dtype=np.float64)
    if signal.size < 2 ** LEVELS * 8:
        return out
    coefficients = pywt.wavedec(signal, WAVELET, level=LEVELS)       # [a6, d6, d5, ..., d1]
    energy = np.array([np.sum(c ** 2) for c in coefficients])
    share = energy / (energy.sum() or 1.0)
    for level in range(1, LEVELS + 1):
        out[f"wavelet_d{level}"] = float(share[-level])
    out[f"wavelet_a{LEVELS}"] = float(share[0])
    p = share[share > 0]
    out["wavelet_entropy"] = float(-np.sum(p * np.log(p)) / np.log(share.size))
    for level in (1, 3):
        out[f"wavelet_d{level}_burst"] = burst_ratio(coefficients[-level], fs / 2 ** level)
    return out


def burst_ratio(coefficients: np.ndarray, rate: float) -> float:
    """Energy of the busiest ``BURST_S`` stretch of ``coefficients`` (``rate`` per second) over
    the median stretch's: ~1–3 for a steady signal, large for a burst of noise."""
    width = int(BURST_S * rate)
    stretches = coefficients[: coefficients.size // width * width].reshape(-1, width) if width else np.zeros((0, 1))
    if stretches.shape[0] < 3:
        return np.nan
    energy = np.sum(stretches ** 2, axis=1)
    typical = np.median(energy)
    return float(energy.max() / typical) if typical > 0 else np.nan
