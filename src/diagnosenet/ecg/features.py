"""Whole-record rhythm, morphology, spectral and noise features of one ECG (the strong baseline).

The paper's sample (five R-centred windows) throws away the timing between beats, the main
sign of atrial fibrillation; these features keep it, over the whole record:

* **RR intervals** — spread, successive differences (RMSSD, pNN20/50), Poincaré SD1/SD2,
  sample entropy, premature and long beats: AF is irregularly irregular, ectopy is regular
  with outliers;
* **morphology** — a median beat template and how well each beat matches it; the P wave's
  size in the template (absent in AF), QRS width, T wave; and the template itself in 14
  slices (its shape);
* **atrial activity** — the residual after subtracting the template at every beat (QRST
  cancellation): fibrillatory waves put its power at 4–9 Hz;
* **spectrum and noise** — band powers, spectral entropy, amplitude outliers: the noisy class;
* **heart-rate variability and ectopy** beyond these summaries (ecg/hrv.py) and
  **signal-quality indices** (ecg/signal_quality.py: two detectors' agreement, spectral purity,
  clipped and flat stretches, kurtosis of every stretch, periodicity of the QRS energy), and
  **wavelet band energies** with their bursts (ecg/wavelets.py), the **cleanest and worst
  stretch** of the record and the second detector's rhythm (ecg/stretches.py), **beat-shape
  clusters** (ecg/beat_clusters.py), **AF evidence** of the Lorenz plot with the fuzzy
  entropy of RR (ecg/hrv.py), and the median beat's **intervals** (P → R over a window that
  sees a long PR, QRS from its slope, signed T, rate-corrected R → T) with **rhythm patterns**
  (RR autocorrelation at lags 2–3, heart-rate percentiles; ecg/delineation.py).

Every feature is a float; a feature that is undefined for a record (too few beats) is NaN,
which the gradient-boosting models handle natively. Names are in :data:`FEATURE_NAMES`.
"""
from __future__ import annotations

import warnings

import numpy as np

from diagnosenet.ecg.beat_clusters import CLUSTER_NAMES, cluster_features
from diagnosenet.ecg.delineation import DELINEATION_NAMES, delineation_features, rr_autocorrelation
from diagnosenet.ecg.hrv import AF_EVIDENCE_NAMES, HRV_NAMES, af_evidence, hrv_features
from diagnosenet.ecg.records import FS
from diagnosenet.ecg.signal_quality import SQI_NAMES, signal_quality
from diagnosenet.ecg.stretches import STRETCH_NAMES, stretch_features
from diagnosenet.ecg.wavelets import WAVELET_NAMES, wavelet_features

RR_NAMES = (
    "n_beats", "rr_mean", "rr_median", "rr_std", "rr_cv", "rr_min_rel", "rr_max_rel", "rr_iqr_rel",
    "rmssd", "rmssd_rel", "pnn20", "pnn50", "drr_median_rel", "irregular_frac", "sd1_rel", "sd2_rel",
    "sd1_sd2", "rr_sampen", "turning_points", "premature_frac", "long_frac", "rr_acf1", "hr_mean",
)
MORPHOLOGY_NAMES = (
    "template_corr_mean", "template_corr_p10", "template_mismatch_frac", "r_amp_cv", "qrs_width_s",
    "p_amp_rel", "p_corr_mean", "t_amp_rel", "polarity",
    "template_corr_sd", "p_presence_frac", "p_corr_sd", "rt_peak_s", "st_level_rel", "qrs_energy_share",
    "beat_ptp_cv", "premature_mismatch_frac",
)
ATRIAL_NAMES = ("residual_rel", "residual_af_band", "residual_peak_hz")
SPECTRAL_NAMES = (
    "band_0_1", "band_1_4", "band_4_9", "band_9_15", "band_15_40", "band_40_150", "spectral_entropy",
    "kurtosis", "skewness", "outlier_seconds", "flat_seconds", "duration_s",
)
#: the median beat itself, as the means of equal slices of its −0.25 … +0.45 s, relative to
#: the R amplitude: a shape the trees can split on (wide or notched QRS, ST-T changes, an
#: inverted T) where the summaries above keep one number each
TEMPLATE_POINTS = 14
SHAPE_NAMES = tuple(f"template_{i:02d}" for i in range(TEMPLATE_POINTS))
FEATURE_NAMES = (RR_NAMES + MORPHOLOGY_NAMES + ATRIAL_NAMES + SPECTRAL_NAMES + HRV_NAMES + SQI_NAMES + SHAPE_NAMES
                 + WAVELET_NAMES + STRETCH_NAMES + CLUSTER_NAMES + AF_EVIDENCE_NAMES + DELINEATION_NAMES)

#: seconds of the beat template before and after the R peak
TEMPLATE_BEFORE_S, TEMPLATE_AFTER_S = 0.25, 0.45


def rr_features(beats: np.ndarray, fs: float = FS) -> dict[str, float]:
    """RR-interval statistics of the R-peak sample indices ``beats`` (NaN where undefined)."""
    out = dict.fromkeys(RR_NAMES, np.nan)
    out["n_beats"] = float(len(beats))
    rr = np.diff(np.asarray(beats, dtype=np.float64)) / fs
    if rr.size < 2:
        return out
    median = float(np.median(rr))
    drr = np.diff(rr)
    q25, q75 = np.percentile(rr, [25, 75])
    out.update(
        rr_mean=float(rr.mean()), rr_median=median, rr_std=float(rr.std()), rr_cv=float(rr.std() / rr.mean()),
        rr_min_rel=float(rr.min() / median), rr_max_rel=float(rr.max() / median),
        rr_iqr_rel=float((q75 - q25) / median), rmssd=float(np.sqrt(np.mean(drr ** 2))),
        pnn20=float(np.mean(np.abs(drr) > 0.02)), pnn50=float(np.mean(np.abs(drr) > 0.05)),
        drr_median_rel=float(np.median(np.abs(drr)) / median),
        premature_frac=float(np.mean(rr < 0.8 * median)), long_frac=float(np.mean(rr > 1.2 * median)),
        hr_mean=float(60.0 / rr.mean()),
    )
    out["rmssd_rel"] = out["rmssd"] / out["rr_mean"]
    # a beat is irregular when it differs from the previous one by >15 % of the local rhythm
    out["irregular_frac"] = float(np.mean(np.abs(drr) > 0.15 * np.minimum(rr[:-1], rr[1:])))
    # Poincaré plot (RR_i, RR_i+1): SD1 = short-term, SD2 = long-term variability
    sd1 = np.std(drr) / np.sqrt(2)
    sd2 = np.sqrt(max(2 * rr.var() - sd1 ** 2, 0.0))
    out.update(sd1_rel=float(sd1 / median), sd2_rel=float(sd2 / median),
               sd1_sd2=float(sd1 / sd2) if sd2 > 0 else np.nan)
    out["rr_sampen"] = sample_entropy(rr, m=1, r=0.2 * rr.std()) if rr.std() > 0 else 0.0
    if rr.size >= 3:
        turns = (rr[1:-1] - rr[:-2]) * (rr[1:-1] - rr[2:]) > 0
        out["turning_points"] = float(turns.mean())  # 2/3 for a random sequence
        out["rr_acf1"] = rr_autocorrelation(rr, 1)
    return out


def sample_entropy(x: np.ndarray, m: int = 1, r: float = 0.0) -> float:
    """Sample entropy −ln(A/B) of ``x``: B pairs of length-``m`` templates within ``r``
    (Chebyshev distance), A of them still within ``r`` at length m + 1; NaN when A or B is 0."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size - m
    if n < 2:
        return np.nan
    emb = np.lib.stride_tricks.sliding_window_view(x, m + 1)[:n]
    close_m = np.max(np.abs(emb[:, None, :m] - emb[None, :, :m]), axis=2) <= r
    close_m1 = close_m & (np.abs(emb[:, None, m] - emb[None, :, m]) <= r)
    upper = np.triu_indices(n, k=1)
    b, a = close_m[upper].sum(), close_m1[upper].sum()
    return float(-np.log(a / b)) if a > 0 and b > 0 else np.nan


def beat_matrix(signal: np.ndarray, beats: np.ndarray, fs: float = FS) -> tuple[np.ndarray, np.ndarray]:
    """Segments ``[R − 0.25 s, R + 0.45 s]`` of every beat fully inside the signal, and those beats."""
    before, after = int(TEMPLATE_BEFORE_S * fs), int(TEMPLATE_AFTER_S * fs)
    inside = beats[(beats >= before) & (beats + after <= signal.size)]
    if inside.size == 0:
        return np.zeros((0, before + after)), inside
    index = inside[:, None] + np.arange(-before, after)[None, :]
    return signal[index], inside


def morphology_features(signal: np.ndarray, beats: np.ndarray, fs: float = FS) -> tuple[dict[str, float], np.ndarray]:
    """Template features and the QRST-cancelled residual (the signal with each beat's template removed)."""
    out = dict.fromkeys(MORPHOLOGY_NAMES + SHAPE_NAMES, np.nan)
    segments, inside = beat_matrix(signal, beats, fs)
    if inside.size < 3:
        return out, signal - np.median(signal)
    before = int(TEMPLATE_BEFORE_S * fs)
    segments = segments - np.median(segments, axis=1, keepdims=True)
    template = np.median(segments, axis=0)
    r_amp = template[before]
    out["polarity"] = float(np.sign(r_amp) or 1.0)
    scale = abs(r_amp) or float(np.ptp(template)) or 1.0
    out.update(zip(SHAPE_NAMES, (float(np.mean(part)) / scale for part in np.array_split(template, TEMPLATE_POINTS))))
    corr = _row_correlations(segments, template)
    out.update(template_corr_mean=float(np.mean(corr)), template_corr_p10=float(np.percentile(corr, 10)),
               template_mismatch_frac=float(np.mean(corr < 0.8)))
    peaks = np.abs(signal[inside] - np.median(signal))
    out["r_amp_cv"] = float(peaks.std() / peaks.mean()) if peaks.mean() > 0 else np.nan
    qrs = np.abs(template[before - int(0.1 * fs): before + int(0.1 * fs)]) > 0.3 * scale
    out["qrs_width_s"] = float(_run_length_around(qrs, int(0.1 * fs)) / fs)
    p_region = slice(before - int(0.25 * fs) + 1, before - int(0.08 * fs))
    p_wave = template[p_region] - np.linspace(template[p_region][0], template[p_region][-1], template[p_region].size)
    out["p_amp_rel"] = float(np.max(np.abs(p_wave)) / scale)
    out["p_corr_mean"] = float(np.mean(_row_correlations(segments[:, p_region], template[p_region])))
    t_region = template[before + int(0.15 * fs): before + int(0.4 * fs)]
    out["t_amp_rel"] = float(np.max(np.abs(t_region)) / scale)
    # beat-to-beat variability of the shape, the P wave's presence in every beat, the median
    # beat's intervals and levels (QT-like R→T peak, ST level, how much of the beat is QRS)
    p_corr = _row_correlations(segments[:, p_region], template[p_region])
    out.update(template_corr_sd=float(np.std(corr)), p_corr_sd=float(np.std(p_corr)),
               p_presence_frac=float(np.mean(p_corr > 0.5)),
               rt_peak_s=float((int(0.15 * fs) + int(np.argmax(np.abs(t_region)))) / fs),
               st_level_rel=float(np.mean(template[before + int(0.08 * fs): before + int(0.12 * fs)]) / scale),
               qrs_energy_share=float(np.sum(template[before - int(0.05 * fs): before + int(0.05 * fs)] ** 2)
                                      / (np.sum(template ** 2) or 1.0)))
    spans = np.ptp(segments, axis=1)
    out["beat_ptp_cv"] = float(spans.std() / spans.mean()) if spans.mean() > 0 else np.nan
    # a premature beat of another shape: ventricular ectopy
    position = np.searchsorted(beats, inside)
    rr_before = np.where(position > 0, inside - beats[np.maximum(position - 1, 0)], 0)
    rr_median = np.median(np.diff(beats)) if beats.size > 1 else np.nan
    premature = (position > 0) & (rr_before < 0.85 * rr_median)
    out["premature_mismatch_frac"] = float(np.mean(premature & (corr < 0.9)))
    residual = signal - np.median(signal)
    index = inside[:, None] + np.arange(-before, segments.shape[1] - before)[None, :]
    residual[index] = segments - template[None, :]  # overlapping beats: the later one wins
    return out, residual


def _row_correlations(rows: np.ndarray, reference: np.ndarray) -> np.ndarray:
    rows = rows - rows.mean(axis=1, keepdims=True)
    reference = reference - reference.mean()
    denom = np.linalg.norm(rows, axis=1) * np.linalg.norm(reference)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, rows @ reference / np.where(denom > 0, denom, 1.0), 0.0)


def _run_length_around(mask: np.ndarray, centre: int) -> int:
    """Length of the run of True values of ``mask`` that contains ``centre`` (0 if it is False)."""
    if not mask[centre]:
        return 0
    left = centre
    while left > 0 and mask[left - 1]:
        left -= 1
    right = centre
    while right < mask.size - 1 and mask[right + 1]:
        right += 1
    return right - left + 1


def welch(x: np.ndarray, fs: float, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal.welch(x, fs, nperseg=nperseg)`` (Hann window, half overlap, each segment
    minus its mean, one-sided density, mean over segments), every segment in one batched FFT:
    scipy ≥ 1.15 detrends and transforms segment by segment in Python, which made Welch the
    costliest step of a record's features (11 of 31 ms). Equal to scipy's within float
    rounding (tests/ecg/test_features.py)."""
    from scipy.signal import get_window

    x = np.asarray(x, dtype=np.float64)
    step = nperseg - nperseg // 2
    segments = np.lib.stride_tricks.sliding_window_view(x, nperseg)[::step]
    window = get_window("hann", nperseg)
    spectrum = np.fft.rfft((segments - segments.mean(axis=1, keepdims=True)) * window, axis=1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).mean(axis=0) / (fs * np.sum(window ** 2))
    power[1: None if nperseg % 2 else -1] *= 2   # one-sided: every bin but DC (and Nyquist) twice
    return np.fft.rfftfreq(nperseg, 1 / fs), power


def band_powers(x: np.ndarray, fs: float, bands) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welch spectrum of ``x`` and each band's share of the total power."""
    freqs, power = welch(x, fs, nperseg=min(1024, x.size))
    total = power.sum() or 1.0
    shares = np.array([power[(freqs >= lo) & (freqs < hi)].sum() / total for lo, hi in bands])
    return freqs, power, shares


def spectral_features(signal: np.ndarray, residual: np.ndarray, fs: float = FS) -> dict[str, float]:
    """Band powers of the signal and of the atrial residual; amplitude outliers and flat seconds."""
    from scipy.stats import kurtosis, skew

    bands = ((0, 1), (1, 4), (4, 9), (9, 15), (15, 40), (40, fs / 2 + 1))
    freqs, power, shares = band_powers(signal, fs, bands)
    p = power / (power.sum() or 1.0)
    out = dict(zip(SPECTRAL_NAMES[:6], shares.tolist()))
    out["spectral_entropy"] = float(-np.sum(p[p > 0] * np.log(p[p > 0])) / np.log(p.size))
    out["kurtosis"], out["skewness"] = float(kurtosis(signal)), float(skew(signal))
    seconds = signal[: signal.size // int(fs) * int(fs)].reshape(-1, int(fs))
    spans = np.ptp(seconds, axis=1) if seconds.size else np.zeros(1)
    typical = np.median(spans) or 1.0
    out["outlier_seconds"] = float(np.mean(spans > 3 * typical))
    out["flat_seconds"] = float(np.mean(spans < 0.05 * typical))
    out["duration_s"] = signal.size / fs
    r_freqs, r_power, _ = band_powers(residual, fs, ())
    keep = (r_freqs >= 1) & (r_freqs < 40)
    out["residual_af_band"] = float(r_power[(r_freqs >= 4) & (r_freqs < 9)].sum() / (r_power[keep].sum() or 1.0))
    window = (r_freqs >= 3) & (r_freqs < 12)
    out["residual_peak_hz"] = float(r_freqs[window][np.argmax(r_power[window])]) if window.any() else np.nan
    out["residual_rel"] = float(residual.std() / (signal.std() or 1.0))
    return out


def network_inputs(values: np.ndarray) -> np.ndarray:
    """Features as a network reads them: signed ``log1p`` (counts, kurtosis and ratios span
    orders of magnitude; a fixed transform needs no statistics from the training split) and
    undefined values as 0, float32."""
    values = np.asarray(values, dtype=np.float64)
    return np.nan_to_num(np.sign(values) * np.log1p(np.abs(values)), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def record_features(signal: np.ndarray, beats: np.ndarray, fs: float = FS,
                    second_beats: np.ndarray | None = None) -> np.ndarray:
    """Every feature of one record, in :data:`FEATURE_NAMES` order (float64, NaN where undefined).

    ``signal`` is in any unit (it is z-scored here); ``beats`` are its R-peak indices and
    ``second_beats`` another detector's (their agreement is a quality index; NaN without)."""
    signal = np.asarray(signal, dtype=np.float64)
    std = signal.std()
    signal = (signal - signal.mean()) / (std if std > 0 else 1.0)
    beats = np.asarray(beats, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        values = rr_features(beats, fs)
        morphology, residual = morphology_features(signal, beats, fs)
        values.update(morphology)
        values.update(spectral_features(signal, residual, fs))
        values.update(hrv_features(np.diff(beats) / fs))
        values.update(signal_quality(signal, beats, second_beats, fs))
        values.update(wavelet_features(signal, fs))
        values.update(stretch_features(signal, beats, second_beats, fs))
        values.update(cluster_features(signal, beats, fs))
        values.update(af_evidence(np.diff(beats) / fs))
        values.update(delineation_features(signal, beats, fs))
    return np.array([values[name] for name in FEATURE_NAMES], dtype=np.float64)
