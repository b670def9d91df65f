"""Issue 26 experiment (throw-away; the features now live in ecg-features, same values but one record
with 4 RR intervals, whose fuzzy entropy this script leaves NaN): candidate extra features of every record of a challenge directory
(clean/worst stretches, second detector's RR, beat-shape clusters, AFEv, fuzzy entropy),
saved as an npz (names, records, values) to append to an ecg-features table. Reported only."""
import argparse, functools, sys, time, warnings
from pathlib import Path
import numpy as np
from diagnosenet.ecg import peaks as peak_detection
from diagnosenet.ecg.features import rr_features, beat_matrix, _row_correlations, sample_entropy
from diagnosenet.ecg.hrv import hrv_features, lorenz_occupancy
from diagnosenet.ecg.signal_quality import beat_agreement
from diagnosenet.ecg.pool import map_records
from diagnosenet.ecg.records import FS, load_signal

RRK = ("rr_cv", "rmssd_rel", "irregular_frac", "sd1_rel", "drr_median_rel", "rr_iqr_rel", "rr_sampen")
HK = ("rr_hist_entropy", "lorenz_occupancy", "cosen", "af_window_frac")
NAMES = (tuple("clean_" + k for k in RRK + HK) + ("clean_frac", "clean_longest_s", "clean_n_beats")
         + ("worst_agreement", "noisy_window_frac", "worst_hf_share", "worst_lf_share", "worst_ptp_rel", "worst_kurtosis")
         + tuple("second_" + k for k in ("rr_cv", "rmssd_rel", "irregular_frac", "rr_median_rel")) + ("second_rr_cv_diff",)
         + ("cluster_count", "cluster_dominant_share", "cluster_second_share", "cluster_top2_corr", "cluster_second_rr_rel",
            "cluster_singleton_frac")
         + ("afev", "afev_origin_frac", "afev_irr_frac", "afev_pac_frac", "rr_fuzzyen", "rr_nfen"))
WIN_S, STEP_S = 5.0, 2.5


def windows(n, fs):
    size, step = int(WIN_S * fs), int(STEP_S * fs)
    if n < size:
        return [(0, n)]
    starts = list(range(0, n - size + 1, step))
    return [(s, s + size) for s in starts]


def stretch_features(sig, beats, second, fs):
    out = {}
    wins = windows(sig.size, fs)
    agree, hf, lf, ptp, kurt = [], [], [], [], []
    for a, b in wins:
        x = sig[a:b]
        ba = beats[(beats >= a) & (beats < b)]; bb = second[(second >= a) & (second < b)]
        agree.append(beat_agreement(ba, bb, fs) if (ba.size or bb.size) else 0.0)
        spec = np.abs(np.fft.rfft(x - x.mean())) ** 2; f = np.fft.rfftfreq(x.size, 1 / fs); tot = spec.sum() or 1.0
        hf.append(spec[f >= 40].sum() / tot); lf.append(spec[f < 1].sum() / tot)
        ptp.append(np.ptp(x)); c = x - x.mean(); sd = c.std()
        kurt.append(np.mean(c ** 4) / sd ** 4 - 3 if sd > 0 else 0.0)
    agree = np.array(agree); worst = int(np.argmin(agree))
    out.update(worst_agreement=float(agree.min()), noisy_window_frac=float(np.mean(agree < 0.8)),
               worst_hf_share=float(max(hf)), worst_lf_share=float(max(lf)),
               worst_ptp_rel=float(max(ptp) / (np.median(ptp) or 1.0)), worst_kurtosis=float(kurt[worst]))
    # clean samples: covered by a window with agreement >= 0.8; the longest clean run
    clean = np.zeros(sig.size, bool)
    for (a, b), g in zip(wins, agree):
        if g >= 0.8:
            clean[a:b] = True
    # a window that disagrees removes its samples from clean
    for (a, b), g in zip(wins, agree):
        if g < 0.8:
            clean[a + int(0.5 * fs):max(a + int(0.5 * fs), b - int(0.5 * fs))] = False
    out["clean_frac"] = float(clean.mean())
    if clean.any():
        edges = np.flatnonzero(np.diff(np.concatenate([[0], clean.astype(int), [0]])))
        starts, ends = edges[::2], edges[1::2]
        k = int(np.argmax(ends - starts)); s, e = starts[k], ends[k]
        out["clean_longest_s"] = float((e - s) / fs)
        cb = beats[(beats >= s) & (beats < e)]
    else:
        out["clean_longest_s"] = 0.0; cb = beats[:0]
    out["clean_n_beats"] = float(cb.size)
    rr = rr_features(cb, fs); h = hrv_features(np.diff(cb) / fs)
    out.update({"clean_" + k: rr[k] for k in RRK}); out.update({"clean_" + k: h[k] for k in HK})
    return out


def second_features(beats, second, fs):
    r1, r2 = rr_features(beats, fs), rr_features(second, fs)
    return {"second_rr_cv": r2["rr_cv"], "second_rmssd_rel": r2["rmssd_rel"], "second_irregular_frac": r2["irregular_frac"],
            "second_rr_median_rel": r2["rr_median"] / r1["rr_median"], "second_rr_cv_diff": abs(r2["rr_cv"] - r1["rr_cv"])}


def cluster_features(sig, beats, fs, threshold=0.9):
    keys = ("cluster_count", "cluster_dominant_share", "cluster_second_share", "cluster_top2_corr", "cluster_second_rr_rel",
            "cluster_singleton_frac")
    out = dict.fromkeys(keys, np.nan)
    seg, inside = beat_matrix(sig, beats, fs)
    if inside.size < 3:
        return out
    before = int(0.25 * fs)
    qrs = seg[:, before - int(0.1 * fs): before + int(0.15 * fs)]
    c = np.corrcoef(qrs)
    c = np.nan_to_num(c)
    close = c >= threshold
    free = np.ones(len(inside), bool); clusters = []
    while free.any():
        counts = (close & free[None, :] & free[:, None]).sum(1); counts[~free] = -1
        i = int(np.argmax(counts)); members = np.flatnonzero(close[i] & free); members = members if members.size else np.array([i])
        clusters.append(members); free[members] = False
    sizes = np.array([m.size for m in clusters]); n = len(inside)
    order = np.argsort(-sizes)
    out["cluster_count"] = float(np.sum(sizes >= max(2, 0.05 * n)))
    out["cluster_dominant_share"] = float(sizes[order[0]] / n)
    out["cluster_second_share"] = float(sizes[order[1]] / n) if len(sizes) > 1 else 0.0
    out["cluster_singleton_frac"] = float(np.sum(sizes == 1) / n)
    if len(sizes) > 1 and sizes[order[1]] >= 2:
        t1, t2 = qrs[clusters[order[0]]].mean(0), qrs[clusters[order[1]]].mean(0)
        out["cluster_top2_corr"] = float(np.corrcoef(t1, t2)[0, 1])
        pos = np.searchsorted(beats, inside[clusters[order[1]]])
        rrb = (inside[clusters[order[1]]] - beats[np.maximum(pos - 1, 0)])[pos > 0]
        med = np.median(np.diff(beats))
        out["cluster_second_rr_rel"] = float(np.mean(rrb) / med) if rrb.size else np.nan
    return out


def afev_features(rr):
    keys = ("afev", "afev_origin_frac", "afev_irr_frac", "afev_pac_frac")
    if rr.size < 4:
        return dict.fromkeys(keys, np.nan)
    drr = np.diff(rr); pts = np.column_stack([drr[1:], drr[:-1]])
    pts = pts[np.all(np.abs(pts) < 1.5, axis=1)]
    origin = np.all(np.abs(pts) <= 0.02, axis=1)
    rest = pts[~origin]
    cells = np.floor(rest / 0.04).astype(np.int64)
    bins = np.unique(cells, axis=0).shape[0] if rest.size else 0
    irr, pac, oc = bins, rest.shape[0] - bins, int(origin.sum())
    n = pts.shape[0] or 1
    return {"afev": float(irr - oc - 2 * pac), "afev_origin_frac": oc / n, "afev_irr_frac": irr / n, "afev_pac_frac": pac / n}


def fuzzy_entropy(x, m=2, r=0.03, p=2):
    x = np.asarray(x, float)
    def phi(mm):
        if x.size - mm < 2:
            return np.nan
        emb = np.lib.stride_tricks.sliding_window_view(x, mm)[: x.size - m]
        emb = emb - emb.mean(1, keepdims=True)
        d = np.max(np.abs(emb[:, None, :] - emb[None, :, :]), axis=2)
        s = np.exp(-(d / r) ** p)
        iu = np.triu_indices(emb.shape[0], 1)
        return s[iu].mean()
    a, b = phi(m), phi(m + 1)
    return float(np.log(a) - np.log(b)) if a and b and a > 0 and b > 0 else np.nan


def extra(signal, beats, second, fs=FS):
    sig = (signal - signal.mean()) / (signal.std() or 1.0)
    out = dict.fromkeys(NAMES, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out.update(stretch_features(sig, beats, second, fs))
        out.update(second_features(beats, second, fs))
        out.update(cluster_features(sig, beats, fs))
        rr = np.diff(beats) / fs
        out.update(afev_features(rr))
        if rr.size >= 4:
            fe = fuzzy_entropy(rr)
            out["rr_fuzzyen"] = fe
            out["rr_nfen"] = fe - np.log(2 * 0.03) - np.log(rr.mean()) if np.isfinite(fe) else np.nan
    return np.array([out[k] for k in NAMES], float)


def work(directory, entry):
    try:
        s = load_signal(directory, entry.record, FS)
    except Exception:
        return entry.record, None
    try:
        b = peak_detection.detect(s, FS, "xqrs")
    except Exception:
        b = np.zeros(0, np.int64)
    sb = peak_detection.agreement_beats(s, FS, "xqrs")
    return entry.record, extra(s, b, sb)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(); ap.add_argument("--records", required=True); ap.add_argument("--out", required=True)
    ap.add_argument("--jobs", type=int, default=2); ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args(); t = time.time()
    if a.limit:
        from diagnosenet.ecg.records import list_entries
        res = [work(a.records, e) for e in list_entries(a.records)[: a.limit]]
    else:
        res = map_records(a.records, work, a.jobs)
    res = [(r, v) for r, v in res if v is not None]
    np.savez(a.out, names=np.array(NAMES), records=np.array([r for r, _ in res]), values=np.array([v for _, v in res]))
    print(f"{len(res)} records, {time.time() - t:.1f}s")
