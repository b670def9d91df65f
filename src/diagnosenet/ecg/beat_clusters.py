"""Beat shapes as clusters: how many distinct QRS shapes a record has, and how they differ.

A sinus record has one beat shape; ventricular ectopy (the Other class) adds a second, wide
and early; noise scatters beats into many small groups. Every beat's QRS region (R − 0.1 s …
R + 0.15 s of the z-scored signal) is correlated with every other; a greedy clustering takes
the beat with the most neighbours at correlation ≥ 0.9 and its neighbours as a cluster, and
repeats on the rest. Names and units: docs/ecg-quality.md.
"""
from __future__ import annotations

import numpy as np

CLUSTER_NAMES = ("cluster_count", "cluster_dominant_share", "cluster_second_share", "cluster_top2_corr",
                 "cluster_second_rr_rel", "cluster_singleton_frac")

#: correlation of two beats of one shape; seconds of the QRS region before and after R
SAME_SHAPE, QRS_BEFORE_S, QRS_AFTER_S = 0.9, 0.1, 0.15


def greedy_clusters(close: np.ndarray) -> list[np.ndarray]:
    """Indices of each cluster, largest first in the order found: repeatedly the free item with
    the most free neighbours (``close[i, j]``) and those neighbours."""
    free = np.ones(close.shape[0], dtype=bool)
    clusters = []
    while free.any():
        counts = (close & free[None, :] & free[:, None]).sum(axis=1)
        counts[~free] = -1
        i = int(np.argmax(counts))
        members = np.flatnonzero(close[i] & free)
        members = members if members.size else np.array([i])
        clusters.append(members)
        free[members] = False
    return clusters


def cluster_features(signal: np.ndarray, beats: np.ndarray, fs: float) -> dict[str, float]:
    """Every :data:`CLUSTER_NAMES` feature of a z-scored ``signal`` and its R peaks ``beats``:
    clusters holding ≥ 5 % of the beats (and ≥ 2), the largest and second clusters' shares,
    the correlation of their mean QRS shapes and the second's mean RR before its beats over the
    median RR (early: < 1), and the share of beats alone in their cluster."""
    from diagnosenet.ecg.features import TEMPLATE_BEFORE_S, beat_matrix

    out = dict.fromkeys(CLUSTER_NAMES, np.nan)
    beats = np.asarray(beats, dtype=np.int64)
    segments, inside = beat_matrix(signal, beats, fs)
    if inside.size < 3:
        return out
    r = int(TEMPLATE_BEFORE_S * fs)
    qrs = segments[:, r - int(QRS_BEFORE_S * fs): r + int(QRS_AFTER_S * fs)]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(np.corrcoef(qrs))
    clusters = greedy_clusters(corr >= SAME_SHAPE)
    sizes = np.array([m.size for m in clusters])
    order = np.argsort(-sizes, kind="stable")
    n = inside.size
    out["cluster_count"] = float(np.sum(sizes >= max(2, 0.05 * n)))
    out["cluster_dominant_share"] = float(sizes[order[0]] / n)
    out["cluster_second_share"] = float(sizes[order[1]] / n) if sizes.size > 1 else 0.0
    out["cluster_singleton_frac"] = float(np.sum(sizes == 1) / n)
    if sizes.size > 1 and sizes[order[1]] >= 2:
        first, second = clusters[order[0]], clusters[order[1]]
        out["cluster_top2_corr"] = float(np.corrcoef(qrs[first].mean(axis=0), qrs[second].mean(axis=0))[0, 1])
        position = np.searchsorted(beats, inside[second])
        rr_before = (inside[second] - beats[np.maximum(position - 1, 0)])[position > 0]
        out["cluster_second_rr_rel"] = float(np.mean(rr_before) / np.median(np.diff(beats))) if rr_before.size else np.nan
    return out
