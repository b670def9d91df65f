"""The cleanest and the worst stretch of a record, and the second detector's rhythm.

Many noisy records are noisy only in part, and many AF or Other records have one noisy
stretch that spoils the whole-record RR statistics (a detector fires on the artefact). These
features look at the record in 5-s windows (2.5-s step) and ask, window by window, whether the
two R-peak detectors agree (bSQI ≥ 0.8, ``signal_quality.beat_agreement``):

* **clean stretch** — the RR irregularity features recomputed on the beats of the longest
  clean run (``clean_*``), its length and its share of the record;
* **worst window** — the lowest agreement, the share of windows that disagree, the highest
  share of power above 40 Hz and below 1 Hz, the largest span over the median span, and the
  kurtosis of the window that agrees least;
* **second detector** — the RR irregularity of the second detector's beats and how far it is
  from the first's (a real rhythm reads the same with either detector; noise does not).

Names and units: docs/ecg-quality.md. NaN where undefined (no second detector, too few beats).
"""
from __future__ import annotations

import numpy as np

#: RR and HRV features recomputed on the clean stretch (``features.rr_features``, ``hrv.hrv_features``)
CLEAN_RR = ("rr_cv", "rmssd_rel", "irregular_frac", "sd1_rel", "drr_median_rel", "rr_iqr_rel", "rr_sampen")
CLEAN_HRV = ("rr_hist_entropy", "lorenz_occupancy", "cosen", "af_window_frac")
STRETCH_NAMES = (tuple("clean_" + k for k in CLEAN_RR + CLEAN_HRV) + ("clean_frac", "clean_longest_s", "clean_n_beats")
                 + ("worst_agreement", "noisy_window_frac", "worst_hf_share", "worst_lf_share", "worst_ptp_rel",
                    "worst_kurtosis")
                 + ("second_rr_cv", "second_rmssd_rel", "second_irregular_frac", "second_rr_median_rel",
                    "second_rr_cv_diff"))

#: window and step of the stretch analysis, seconds; bSQI of a window below which it is noisy;
#: seconds at each end of a disagreeing window left to the agreeing window that overlaps it
WINDOW_S, STEP_S, AGREEMENT_MIN, EDGE_S = 5.0, 2.5, 0.8, 0.5


def windows(n: int, fs: float) -> list[tuple[int, int]]:
    """``[start, end)`` sample ranges of the 5-s windows, 2.5 s apart (one window if shorter)."""
    size, step = int(WINDOW_S * fs), int(STEP_S * fs)
    if n < size:
        return [(0, n)]
    return [(s, s + size) for s in range(0, n - size + 1, step)]


def stretch_features(signal: np.ndarray, beats: np.ndarray, second_beats: np.ndarray | None, fs: float) -> dict[str, float]:
    """Every :data:`STRETCH_NAMES` feature of a z-scored ``signal`` with two detectors' beats."""
    out = dict.fromkeys(STRETCH_NAMES, np.nan)
    if second_beats is None:
        return out
    from diagnosenet.ecg.features import rr_features
    from diagnosenet.ecg.signal_quality import beat_agreement

    beats, second_beats = np.asarray(beats, dtype=np.int64), np.asarray(second_beats, dtype=np.int64)
    spans = windows(signal.size, fs)
    agreement = []
    for a, b in spans:
        first = beats[np.searchsorted(beats, a): np.searchsorted(beats, b)]
        second = second_beats[np.searchsorted(second_beats, a): np.searchsorted(second_beats, b)]
        agreement.append(beat_agreement(first, second, fs) if first.size or second.size else 0.0)
    agreement = np.array(agreement)
    # every window at once (rows of one strided view): spectrum shares, span, kurtosis
    size = spans[0][1] - spans[0][0]
    rows = np.lib.stride_tricks.sliding_window_view(signal, size)[[a for a, _ in spans]]
    centred = rows - rows.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(centred, axis=1)) ** 2
    freqs = np.fft.rfftfreq(size, 1 / fs)
    total = power.sum(axis=1)
    total[total == 0] = 1.0
    hf, lf = power[:, freqs >= 40].sum(axis=1) / total, power[:, freqs < 1].sum(axis=1) / total
    ptp = np.ptp(rows, axis=1)
    sd = centred.std(axis=1)
    worst = int(np.argmin(agreement))
    kurt = np.mean(centred[worst] ** 4) / sd[worst] ** 4 - 3 if sd[worst] > 0 else 0.0
    out.update(worst_agreement=float(agreement.min()), noisy_window_frac=float(np.mean(agreement < AGREEMENT_MIN)),
               worst_hf_share=float(hf.max()), worst_lf_share=float(lf.max()),
               worst_ptp_rel=float(ptp.max() / (np.median(ptp) or 1.0)), worst_kurtosis=float(kurt))
    clean = clean_mask(signal.size, spans, agreement, fs)
    out["clean_frac"] = float(clean.mean())
    start, end = longest_run(clean)
    out["clean_longest_s"] = float((end - start) / fs)
    inside = beats[(beats >= start) & (beats < end)]
    out["clean_n_beats"] = float(inside.size)
    rr = rr_features(inside, fs)
    out.update({"clean_" + k: rr[k] for k in CLEAN_RR})
    out.update({"clean_" + k: v for k, v in _clean_hrv(np.diff(inside) / fs).items()})
    first, second = _rhythm(np.diff(beats) / fs), _rhythm(np.diff(second_beats) / fs)
    out.update(second_rr_cv=second["rr_cv"], second_rmssd_rel=second["rmssd_rel"],
               second_irregular_frac=second["irregular_frac"],
               second_rr_median_rel=second["rr_median"] / first["rr_median"],
               second_rr_cv_diff=abs(second["rr_cv"] - first["rr_cv"]))
    return out


def _rhythm(rr: np.ndarray) -> dict[str, float]:
    """The few ``features.rr_features`` of the RR intervals ``rr`` (s) the second detector's
    comparison needs, by the same formulas (NaN below 2 intervals)."""
    if rr.size < 2:
        return dict.fromkeys(("rr_median", "rr_cv", "rmssd_rel", "irregular_frac"), np.nan)
    drr = np.diff(rr)
    return {"rr_median": float(np.median(rr)), "rr_cv": float(rr.std() / rr.mean()),
            "rmssd_rel": float(np.sqrt(np.mean(drr ** 2))) / float(rr.mean()),
            "irregular_frac": float(np.mean(np.abs(drr) > 0.15 * np.minimum(rr[:-1], rr[1:])))}


def _clean_hrv(rr: np.ndarray) -> dict[str, float]:
    """The :data:`CLEAN_HRV` features of ``hrv.hrv_features``, by the same functions (NaN below
    3 intervals)."""
    from diagnosenet.ecg.hrv import (HIST_BIN_REL, coefficient_of_sample_entropy, histogram_entropy,
                                     local_irregularity, lorenz_occupancy)

    if rr.size < 3:
        return dict.fromkeys(CLEAN_HRV, np.nan)
    return {"rr_hist_entropy": histogram_entropy(rr / float(np.median(rr)), HIST_BIN_REL),
            "lorenz_occupancy": lorenz_occupancy(np.diff(rr)), "cosen": coefficient_of_sample_entropy(rr),
            "af_window_frac": local_irregularity(rr)["af_window_frac"]}


def clean_mask(n: int, spans: list[tuple[int, int]], agreement: np.ndarray, fs: float) -> np.ndarray:
    """Samples covered by a window whose detectors agree, less the inside of every window whose
    detectors disagree (all of it but ``EDGE_S`` at each end)."""
    clean = np.zeros(n, dtype=bool)
    for (a, b), agree in zip(spans, agreement):
        if agree >= AGREEMENT_MIN:
            clean[a:b] = True
    edge = int(EDGE_S * fs)
    for (a, b), agree in zip(spans, agreement):
        if agree < AGREEMENT_MIN:
            clean[a + edge: max(a + edge, b - edge)] = False
    return clean


def longest_run(mask: np.ndarray) -> tuple[int, int]:
    """``[start, end)`` of the longest run of True in ``mask`` (``(0, 0)`` if none)."""
    if not mask.any():
        return 0, 0
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    starts, ends = edges[::2], edges[1::2]
    k = int(np.argmax(ends - starts))
    return int(starts[k]), int(ends[k])
