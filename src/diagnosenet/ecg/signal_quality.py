"""Signal-quality indices: is there an ECG in this recording at all?

A noisy record (electrode motion, a loose lead, a clipped amplifier) fools a beat detector
into beats that are not there, and then every rhythm feature describes noise. These indices
measure the recording itself, on the z-scored signal, from the classic SQI literature (Li,
Clifford et al. 2008; Behar et al. 2013): two R-peak detectors that agree only on a real ECG
(bSQI), QRS spectral purity (pSQI) and baseline power (basSQI), peaky amplitude distributions
in every stretch (kurtosis), clipped or flat stretches, and the periodicity of the QRS energy.
Names and units: docs/ecg-quality.md.
"""
from __future__ import annotations

import numpy as np

SQI_NAMES = (
    "beat_agreement", "beat_count_ratio", "psqi", "bassqi", "clipped_frac", "max_flat_run_s",
    "window_kurtosis_min", "window_kurtosis_median", "window_amplitude_cv", "periodicity", "periodicity_lag_s",
)

#: seconds within which two detectors' beats are the same beat (bSQI; Li et al. use 150 ms)
MATCH_S = 0.15
#: seconds of the stretches whose kurtosis and amplitude are compared
STRETCH_S = 5.0


def signal_quality(signal: np.ndarray, beats: np.ndarray, second_beats: np.ndarray | None, fs: float) -> dict[str, float]:
    """Every :data:`SQI_NAMES` index of a z-scored ``signal``; ``beats`` and ``second_beats``
    are two detectors' R peaks (``None``: no second detector, agreement NaN)."""
    out = dict.fromkeys(SQI_NAMES, np.nan)
    if second_beats is not None:
        out["beat_agreement"] = beat_agreement(beats, second_beats, fs)
        out["beat_count_ratio"] = float(len(second_beats) / len(beats)) if len(beats) else np.nan
    out.update(spectral_purity(signal, fs))
    out["clipped_frac"], out["max_flat_run_s"] = flat_stretches(signal, fs)
    out.update(stretch_statistics(signal, fs))
    out["periodicity"], out["periodicity_lag_s"] = qrs_periodicity(signal, fs)
    return out


def beat_agreement(a: np.ndarray, b: np.ndarray, fs: float) -> float:
    """bSQI: beats of ``a`` and ``b`` within 150 ms of each other, over the beats of either
    (matched / (|a| + |b| − matched)); 1 when the detectors agree, NaN when neither found one."""
    a, b = np.sort(np.asarray(a)), np.sort(np.asarray(b))
    if a.size == 0 and b.size == 0:
        return np.nan
    if a.size == 0 or b.size == 0:
        return 0.0
    nearest = np.searchsorted(b, a)
    left, right = b[np.clip(nearest - 1, 0, b.size - 1)], b[np.clip(nearest, 0, b.size - 1)]
    distance = np.minimum(np.abs(a - left), np.abs(a - right))
    matched = int(np.sum(distance <= MATCH_S * fs))
    matched = min(matched, b.size)
    return float(matched / (a.size + b.size - matched))


def spectral_purity(signal: np.ndarray, fs: float) -> dict[str, float]:
    """pSQI: power 5–15 Hz over 5–40 Hz (the QRS band's share); basSQI: 1 minus the share of
    0–1 Hz in 0–40 Hz (baseline wander)."""
    from diagnosenet.ecg.features import band_powers

    freqs, power, _ = band_powers(signal, fs, ())
    def band(lo, hi):
        return float(power[(freqs >= lo) & (freqs < hi)].sum())
    qrs_and_noise, whole = band(5, 40), band(0, 40)
    return {"psqi": band(5, 15) / qrs_and_noise if qrs_and_noise > 0 else np.nan,
            "bassqi": 1 - band(0, 1) / whole if whole > 0 else np.nan}


def flat_stretches(signal: np.ndarray, fs: float) -> tuple[float, float]:
    """Share of samples in runs of ≥ 5 equal values at the signal's maximum or minimum (a
    clipped amplifier), and the longest run of equal values in seconds (a lost lead)."""
    change = np.flatnonzero(np.diff(signal) != 0)
    starts = np.concatenate([[0], change + 1])
    lengths = np.diff(np.concatenate([starts, [signal.size]]))
    values = signal[starts]
    at_extreme = (values >= signal.max()) | (values <= signal.min())
    clipped = lengths[(lengths >= 5) & at_extreme].sum()
    return float(clipped / signal.size), float(lengths.max() / fs)


def stretch_statistics(signal: np.ndarray, fs: float) -> dict[str, float]:
    """Kurtosis of every 5-s stretch (min and median: a clean ECG is peaky, > 5, noise is
    not, ≈ 0) and the coefficient of variation of the stretches' amplitudes (peak to peak)."""
    size = int(STRETCH_S * fs)
    keys = ("window_kurtosis_min", "window_kurtosis_median", "window_amplitude_cv")
    if signal.size < size:
        return dict.fromkeys(keys, np.nan)
    stretches = signal[: signal.size // size * size].reshape(-1, size)
    centred = stretches - stretches.mean(axis=1, keepdims=True)
    sd = centred.std(axis=1)
    kurt = np.where(sd > 0, np.mean(centred ** 4, axis=1) / np.where(sd > 0, sd, 1) ** 4 - 3, np.nan)
    span = np.ptp(stretches, axis=1)
    return dict(zip(keys, (float(np.nanmin(kurt)) if np.isfinite(kurt).any() else np.nan,
                           float(np.nanmedian(kurt)) if np.isfinite(kurt).any() else np.nan,
                           float(span.std() / span.mean()) if span.mean() > 0 else np.nan)))


def qrs_periodicity(signal: np.ndarray, fs: float) -> tuple[float, float]:
    """Highest autocorrelation of the QRS energy (5–15 Hz band, squared) at lags of 0.3–2 s
    (heart rates 30–200 bpm), and that lag: near 1 for a beating heart, low for noise."""
    from scipy.signal import butter, sosfiltfilt

    lo, hi = int(0.3 * fs), int(2.0 * fs)
    if signal.size < 2 * hi:
        return np.nan, np.nan
    energy = sosfiltfilt(butter(2, [5.0, 15.0], btype="bandpass", fs=fs, output="sos"), signal) ** 2
    energy = energy - energy.mean()
    n = int(2 ** np.ceil(np.log2(2 * energy.size)))
    spectrum = np.fft.rfft(energy, n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), n)[: hi + 1]
    if acf[0] <= 0:
        return np.nan, np.nan
    acf = acf / acf[0] * energy.size / (energy.size - np.arange(hi + 1))   # unbiased
    lag = lo + int(np.argmax(acf[lo:hi + 1]))
    return float(acf[lag]), float(lag / fs)
