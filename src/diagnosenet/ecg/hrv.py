"""Heart-rate variability and ectopy of the RR series, beyond the summary statistics.

AF is *irregularly irregular*: its RR intervals spread over many histogram bins, its
successive differences fill the Lorenz plot, and the irregularity persists in every stretch
of the record, not only on average. The "Other" class is largely ectopy and other rhythms:
premature beats followed by a compensatory pause, bigeminy (short–long alternation), rate
changes. Each feature here is one of those signs, computed on the RR intervals (seconds) and
NaN where the series is too short for it. Names and units: docs/ecg-quality.md.
"""
from __future__ import annotations

import numpy as np

HRV_NAMES = (
    "rr_hist_entropy", "drr_hist_entropy", "hrv_triangular_index", "rr_mode_share", "lorenz_occupancy",
    "cosen", "local_cv_min", "local_cv_median", "local_cv_max", "af_window_frac", "drr_p90_rel",
    "rr_skew", "rr_kurtosis", "hf_share", "lf_hf", "dfa_alpha1", "alternation_frac",
    "premature_local_frac", "compensated_premature_frac",
)

#: relative bin width of the RR and ΔRR histograms (5 % of the median RR)
HIST_BIN_REL = 0.05
#: Lorenz-plot (ΔRRᵢ, ΔRRᵢ₊₁) bin, seconds (Sarkar et al. 2008 use 40 ms)
LORENZ_BIN_S = 0.04
#: RR intervals per sliding window, and the local RMSSD/mean above which a window looks like AF
LOCAL_WINDOW, AF_LOCAL_RMSSD_REL = 8, 0.10
#: tolerance of the coefficient of sample entropy, seconds (Lake & Moorman 2011)
COSEN_R_S = 0.03


def hrv_features(rr: np.ndarray) -> dict[str, float]:
    """Every :data:`HRV_NAMES` feature of the RR intervals ``rr`` (seconds)."""
    out = dict.fromkeys(HRV_NAMES, np.nan)
    rr = np.asarray(rr, dtype=np.float64)
    if rr.size < 3:
        return out
    median = float(np.median(rr))
    drr = np.diff(rr)
    out["rr_hist_entropy"] = histogram_entropy(rr / median, HIST_BIN_REL)
    out["drr_hist_entropy"] = histogram_entropy(drr / median, HIST_BIN_REL)
    counts = np.bincount(np.floor(rr * 128).astype(np.int64))   # the standard 1/128-s bins
    out["hrv_triangular_index"] = float(rr.size / counts.max())
    out["rr_mode_share"] = float(np.mean(np.abs(rr / median - 1) <= 0.05))
    out["lorenz_occupancy"] = lorenz_occupancy(drr)
    out["cosen"] = coefficient_of_sample_entropy(rr)
    out.update(local_irregularity(rr))
    out["drr_p90_rel"] = float(np.percentile(np.abs(drr), 90) / median)
    if rr.std() > 0:
        centred = (rr - rr.mean()) / rr.std()
        out["rr_skew"], out["rr_kurtosis"] = float(np.mean(centred ** 3)), float(np.mean(centred ** 4) - 3)
    out.update(frequency_domain(rr))
    out["dfa_alpha1"] = dfa_alpha1(rr)
    out.update(ectopy(rr))
    return out


def histogram_entropy(values: np.ndarray, width: float) -> float:
    """Shannon entropy (bits) of ``values`` in bins of ``width``: 0 when all share a bin."""
    bins = np.floor(np.asarray(values) / width).astype(np.int64)
    _, counts = np.unique(bins, return_counts=True)
    p = counts / counts.sum()
    return float(-np.sum(p * np.log2(p)))


def lorenz_occupancy(drr: np.ndarray) -> float:
    """Occupied (ΔRRᵢ, ΔRRᵢ₊₁) bins per point: 1/n for a regular rhythm, near 1 for AF."""
    if drr.size < 2:
        return np.nan
    cells = np.floor(np.column_stack([drr[:-1], drr[1:]]) / LORENZ_BIN_S).astype(np.int64)
    return float(np.unique(cells, axis=0).shape[0] / cells.shape[0])


def coefficient_of_sample_entropy(rr: np.ndarray) -> float:
    """Lake & Moorman's rate-corrected entropy COSEn = SampEn(m = 1, r) − ln(2r) − ln(mean RR),
    r in seconds; NaN when no template pair matches."""
    from diagnosenet.ecg.features import sample_entropy

    sampen = sample_entropy(rr, m=1, r=COSEN_R_S)
    return float(sampen - np.log(2 * COSEN_R_S) - np.log(rr.mean())) if np.isfinite(sampen) else np.nan


def local_irregularity(rr: np.ndarray) -> dict[str, float]:
    """Coefficient of variation of every window of 8 RR intervals (min, median, max) and the
    share of windows whose RMSSD exceeds 10 % of their mean RR (AF in that stretch)."""
    keys = ("local_cv_min", "local_cv_median", "local_cv_max", "af_window_frac")
    if rr.size < LOCAL_WINDOW:
        return dict.fromkeys(keys, np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(rr, LOCAL_WINDOW)
    cv = windows.std(axis=1) / windows.mean(axis=1)
    rmssd = np.sqrt(np.mean(np.diff(windows, axis=1) ** 2, axis=1)) / windows.mean(axis=1)
    return dict(zip(keys, (float(cv.min()), float(np.median(cv)), float(cv.max()),
                           float(np.mean(rmssd > AF_LOCAL_RMSSD_REL)))))


def frequency_domain(rr: np.ndarray, fs: float = 4.0) -> dict[str, float]:
    """HF share HF/(LF + HF) and LF/HF of the RR series resampled at 4 Hz (LF 0.04–0.15 Hz,
    HF 0.15–0.4 Hz); NaN below 20 s of beats or without LF + HF power."""
    out = {"hf_share": np.nan, "lf_hf": np.nan}
    times = np.cumsum(rr)
    if times[-1] - times[0] < 20:
        return out
    from scipy.signal import periodogram

    grid = np.arange(times[0], times[-1], 1 / fs)
    series = np.interp(grid, times, rr)
    freqs, power = periodogram(series - series.mean(), fs=fs, window="hann")
    lf = power[(freqs >= 0.04) & (freqs < 0.15)].sum()
    hf = power[(freqs >= 0.15) & (freqs < 0.40)].sum()
    if lf + hf > 0:
        out["hf_share"] = float(hf / (lf + hf))
        out["lf_hf"] = float(lf / hf) if hf > 0 else np.nan
    return out


def dfa_alpha1(rr: np.ndarray, scales=(4, 6, 8, 11, 16)) -> float:
    """Short-term detrended-fluctuation exponent: ≈ 0.5 for uncorrelated intervals (AF),
    ≈ 1 for healthy sinus rhythm, 1.5 for a random walk; NaN below 2 boxes of the largest scale."""
    scales = [s for s in scales if rr.size >= 2 * s]
    if len(scales) < 3:
        return np.nan
    profile = np.cumsum(rr - rr.mean())
    fluctuations = []
    for scale in scales:
        boxes = profile[: profile.size // scale * scale].reshape(-1, scale)
        x = np.arange(scale)
        slope, intercept = np.polyfit(x, boxes.T, 1)
        trend = slope[:, None] * x[None, :] + intercept[:, None]
        fluctuations.append(np.sqrt(np.mean((boxes - trend) ** 2)))
    fluctuations = np.asarray(fluctuations)
    if np.any(fluctuations <= 0):
        return np.nan
    return float(np.polyfit(np.log(scales), np.log(fluctuations), 1)[0])


def ectopy(rr: np.ndarray) -> dict[str, float]:
    """Short–long alternation (bigeminy), beats premature against the local rhythm (median of
    the 7 intervals around), and premature beats followed by a compensatory pause."""
    from scipy.ndimage import median_filter

    local = median_filter(rr, size=7, mode="nearest")
    premature = rr < 0.85 * local
    drr = np.diff(rr)
    big = np.abs(drr) > 0.10 * np.median(rr)
    alternation = (drr[:-1] * drr[1:] < 0) & big[:-1] & big[1:]
    compensated = premature[:-1] & (rr[1:] > 1.10 * local[1:])
    return {"alternation_frac": float(alternation.mean()) if alternation.size else np.nan,
            "premature_local_frac": float(premature.mean()),
            "compensated_premature_frac": float(compensated.mean())}


#: AF evidence of the Lorenz plot (Sarkar et al. 2008, simplified) and fuzzy entropy of RR
AF_EVIDENCE_NAMES = ("afev", "afev_origin_frac", "afev_irr_frac", "afev_pac_frac", "rr_fuzzyen", "rr_nfen")
#: ΔRR points within 20 ms of the origin on both axes are regular; |ΔRR| ≥ 1.5 s are outliers
AFEV_ORIGIN_S, AFEV_OUTLIER_S = 0.02, 1.5
#: fuzzy entropy: template length, tolerance (seconds) and exponent of the membership exp(−(d/r)ⁿ)
FUZZY_M, FUZZY_R_S, FUZZY_N = 2, 0.03, 2


def af_evidence(rr: np.ndarray) -> dict[str, float]:
    """Every :data:`AF_EVIDENCE_NAMES` feature of the RR intervals ``rr`` (seconds).

    In the (ΔRRᵢ, ΔRRᵢ₋₁) plane: OriginCount = points within 20 ms of the origin, IrrEv =
    occupied 40-ms cells outside it, PACEv = points outside it beyond one per cell (repeated
    patterns: premature beats); AFEv = IrrEv − OriginCount − 2·PACEv (Sarkar et al.'s combination,
    without their 13 segments), and each count per point. Fuzzy entropy (m = 2, r = 30 ms, each
    template minus its mean) and its normalised form NFEn = FuzzyEn − ln(2r) − ln(mean RR)."""
    out = dict.fromkeys(AF_EVIDENCE_NAMES, np.nan)
    rr = np.asarray(rr, dtype=np.float64)
    if rr.size < 4:
        return out
    drr = np.diff(rr)
    points = np.column_stack([drr[1:], drr[:-1]])
    points = points[np.all(np.abs(points) < AFEV_OUTLIER_S, axis=1)]
    origin = np.all(np.abs(points) <= AFEV_ORIGIN_S, axis=1)
    rest = points[~origin]
    cells = np.unique(np.floor(rest / LORENZ_BIN_S).astype(np.int64), axis=0).shape[0] if rest.size else 0
    irregular, repeated, at_origin = cells, rest.shape[0] - cells, int(origin.sum())
    n = points.shape[0] or 1
    out.update(afev=float(irregular - at_origin - 2 * repeated), afev_origin_frac=at_origin / n,
               afev_irr_frac=irregular / n, afev_pac_frac=repeated / n)
    fuzzy = fuzzy_entropy(rr)
    out["rr_fuzzyen"] = fuzzy
    out["rr_nfen"] = fuzzy - np.log(2 * FUZZY_R_S) - np.log(rr.mean()) if np.isfinite(fuzzy) else np.nan
    return out


def fuzzy_entropy(x: np.ndarray, m: int = FUZZY_M, r: float = FUZZY_R_S, n: float = FUZZY_N) -> float:
    """FuzzyEn = ln φₘ − ln φₘ₊₁, φ the mean membership exp(−(d/r)ⁿ) over pairs of templates
    (each minus its mean; d Chebyshev); NaN when undefined."""
    x = np.asarray(x, dtype=np.float64)
    if x.size - m < 2:
        return np.nan

    def phi(length: int) -> float:
        emb = np.lib.stride_tricks.sliding_window_view(x, length)[: x.size - m]
        emb = emb - emb.mean(axis=1, keepdims=True)
        d = np.max(np.abs(emb[:, None, :] - emb[None, :, :]), axis=2)
        return float(np.exp(-(d / r) ** n)[np.triu_indices(emb.shape[0], 1)].mean())

    a, b = phi(m), phi(m + 1)
    return float(np.log(a) - np.log(b)) if a > 0 and b > 0 else np.nan
