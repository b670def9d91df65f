"""Samples per record under candidate counting rules vs the paper's Table 2.

Usage: .venv/bin/python bench/bench_table2_rules.py [--records DIR] [--detectors xqrs gqrs pantompkins] [--jobs 2]

Step 1 detects R peaks once per detector (the same ``peaks.detect`` as ``window-ecg``) and caches
them, with each record's label, length and the z-scored signal at each peak, in
``bench/out/table2-rules/peaks-<detector>.npz`` (git-ignored); later runs only read the cache.
Step 2 applies every rule to the cached peaks and prints samples / records per class and the
deviation from the paper's ratios (N 6.79, AF 8.86, Other 7.73, Noisy 4.87). Rules that
``window-ecg`` implements (``--sample-rule``) are counted with the stage's own code.
``--records`` defaults to the ``physionet2017-train-a`` half of the training set beside the checkout.
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from diagnosenet.ecg import peaks as peak_detection
from diagnosenet.ecg.records import CLASSES, FS, RecordError, label_of, list_entries, load_signal

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT / "../shared/data/physionet2017-train-a"
CACHE = ROOT / "bench/out/table2-rules"
#: the paper's Table 2: samples / source records per class
PAPER = {"Normal": (34303, 5050), "AF": (6542, 738), "Other": (18986, 2456), "Noisy": (1382, 284)}
WINDOW, PER_SAMPLE = 260, 5
HALF = WINDOW // 2


# ---------------------------------------------------------------- step 1: peaks, cached
def _detect_one(args: tuple) -> tuple[str, int, int, np.ndarray, np.ndarray]:
    directory, entry, detector = args
    try:
        label = label_of(entry)
    except RecordError:
        return entry.record, -1, 0, np.zeros(0, np.int64), np.zeros(0, np.float32)
    try:
        signal = load_signal(directory, entry.record, FS)
    except RecordError:
        return entry.record, label, 0, np.zeros(0, np.int64), np.zeros(0, np.float32)
    try:
        beats = peak_detection.detect(signal, FS, detector)
    except Exception:  # the stage quarantines these as detector_error
        beats = np.zeros(0, np.int64)
    std = signal.std() or 1.0
    height = ((signal[beats] - signal.mean()) / std).astype(np.float32)
    return entry.record, label, signal.size, beats, height


def cached_peaks(directory: Path, detector: str, jobs: int) -> dict:
    path = CACHE / f"peaks-{detector}.npz"
    if path.exists():
        data = np.load(path)
        return {key: data[key] for key in data.files}
    entries = list_entries(directory)
    start = time.perf_counter()
    tasks = [(str(directory), entry, detector) for entry in entries]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(_detect_one, tasks, chunksize=32))
    print(f"# detected {detector} peaks of {len(rows)} records in {time.perf_counter() - start:.0f} s")
    sizes = np.array([row[3].size for row in rows])
    data = {
        "records": np.array([row[0] for row in rows]), "labels": np.array([row[1] for row in rows]),
        "lengths": np.array([row[2] for row in rows]), "offsets": np.concatenate([[0], np.cumsum(sizes)]),
        "peaks": np.concatenate([row[3] for row in rows]), "heights": np.concatenate([row[4] for row in rows]),
    }
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **data)
    return data


# ---------------------------------------------------------------- step 2: rules
def _fit(p: np.ndarray, n: int, before: int = HALF, after: int = WINDOW - HALF) -> np.ndarray:
    """Peaks whose window [p - before, p + after) lies inside the n-sample record."""
    return p[(p - before >= 0) & (p + after <= n)]


def _runs(q: np.ndarray, lo: float, hi: float) -> int:
    """Samples when a run of peaks is broken at every RR interval outside [lo, hi] s."""
    if q.size == 0:
        return 0
    breaks = np.flatnonzero((np.diff(q) < lo * FS) | (np.diff(q) > hi * FS)) + 1
    return int(sum(np.diff(np.concatenate([[0], breaks, [q.size]])) // PER_SAMPLE))


def _rr_samples(q: np.ndarray, lo: float, hi: float) -> int:
    """Non-overlapping samples of q, keeping those whose 4 inner RR intervals are in [lo, hi] s."""
    starts = range(0, q.size - PER_SAMPLE + 1, PER_SAMPLE)
    return sum(bool(np.all((np.diff(q[s:s + PER_SAMPLE]) >= lo * FS) & (np.diff(q[s:s + PER_SAMPLE]) <= hi * FS)))
               for s in starts)


def _stage(rule: str):
    """Samples as ``window-ecg --sample-rule rule`` makes them (its own code, on a blank signal)."""
    from diagnosenet.ecg.windows import Geometry, record_samples

    geometry = Geometry(WINDOW, PER_SAMPLE, PER_SAMPLE, "none", sample_rule=rule)
    return lambda p, n: record_samples(np.zeros(n), p, geometry, FS).shape[0] if n else 0


#: (name, samples of one record from its peaks p and length n); `k` = peaks whose window fits
RULES = [
    ("stage all-peaks (today): fit, floor(k/5)", _stage("all-peaks")),
    ("partial windows padded: floor(peaks/5)", lambda p, n: p.size // 5),
    ("padded, first+last detected peak dropped", lambda p, n: max(0, p.size - 2) // 5),
    ("RR beats between peaks, padded: floor((peaks-1)/5)", lambda p, n: max(0, p.size - 1) // 5),
    ("fit, first fitting window dropped: floor((k-1)/5)", lambda p, n: max(0, _fit(p, n).size - 1) // 5),
    ("fit, first+last fitting window dropped", lambda p, n: max(0, _fit(p, n).size - 2) // 5),
    ("fit, first+last 2 fitting windows dropped", lambda p, n: max(0, _fit(p, n).size - 4) // 5),
    ("first+last detected peak dropped, then fit", lambda p, n: _fit(p[1:-1], n).size // 5),
    ("first+last 2 detected peaks dropped, then fit", lambda p, n: _fit(p[2:-2], n).size // 5),
    ("fit, peaks in first 1 s dropped", lambda p, n: _fit(p[p >= FS], n).size // 5),
    ("fit, peaks in first 2 s dropped", lambda p, n: _fit(p[p >= 2 * FS], n).size // 5),
    ("fit, peaks in first and last 1 s dropped", lambda p, n: _fit(p[(p >= FS) & (p < n - FS)], n).size // 5),
    ("fit, peaks in first and last 2 s dropped", lambda p, n: _fit(p[(p >= 2 * FS) & (p < n - 2 * FS)], n).size // 5),
    ("fit with a full window of margin (260 each side)", lambda p, n: _fit(p, n, WINDOW, WINDOW).size // 5),
    ("fit, window 87 before / 173 after the peak", lambda p, n: _fit(p, n, 87, 173).size // 5),
    ("fit, samples with an RR outside 0.25-1.5 s dropped", lambda p, n: _rr_samples(_fit(p, n), 0.25, 1.5)),
    ("fit, runs split at RR outside 0.2-2 s", lambda p, n: _runs(_fit(p, n), 0.2, 2.0)),
    ("fit, runs split at RR outside 0.25-2 s", lambda p, n: _runs(_fit(p, n), 0.25, 2.0)),
    ("first+last peak dropped, runs split at RR outside 0.2-2 s", lambda p, n: _runs(_fit(p[1:-1], n), 0.2, 2.0)),
    ("first+last peak dropped, runs split at RR outside 0.3-2 s", lambda p, n: _runs(_fit(p[1:-1], n), 0.3, 2.0)),
    ("first+last peak dropped, runs split at RR outside 0.25-1.5 s", lambda p, n: _runs(_fit(p[1:-1], n), 0.25, 1.5)),
    ("stage paper: first+last peak dropped, runs split at RR outside 0.25-2 s", _stage("paper")),
]


def per_record(data: dict, rule) -> dict[str, np.ndarray]:
    """Samples of every record per class; records with an unknown label are left out."""
    out: dict[str, list[int]] = {name: [] for name in CLASSES}
    offsets = data["offsets"]
    for i, (label, n) in enumerate(zip(data["labels"], data["lengths"])):
        if label < 0:
            continue
        p = data["peaks"][offsets[i]:offsets[i + 1]]
        # as the stage: fewer peaks than a sample's windows quarantines the record (few_beats)
        out[CLASSES[label]].append(rule(p, int(n)) if p.size >= PER_SAMPLE else 0)
    return {name: np.array(values) for name, values in out.items()}


def ratios(data: dict, rule) -> dict[str, tuple[int, int]]:
    """(samples, records) per class."""
    return {name: (int(values.sum()), values.size) for name, values in per_record(data, rule).items()}


def table(detector: str, data: dict) -> None:
    paper = {name: s / r for name, (s, r) in PAPER.items()}
    print(f"\n#### {detector}\n")
    print("| rule | " + " | ".join(f"{name} (paper {paper[name]:.2f})" for name in CLASSES) + " | max dev. N/AF/Other |")
    print("|---|" + "---|" * (len(CLASSES) + 1))
    for name, rule in RULES:
        counts = ratios(data, rule)
        ratio = {c: s / r for c, (s, r) in counts.items()}
        dev = {c: 100 * (ratio[c] / paper[c] - 1) for c in CLASSES}
        worst = max(abs(dev[c]) for c in CLASSES[:3])
        cells = " | ".join(f"{ratio[c]:.2f} ({dev[c]:+.1f} %)" for c in CLASSES)
        print(f"| {name} | {cells} | {worst:.1f} % |", flush=True)
    for rule in ("all-peaks", "paper"):
        values = per_record(data, _stage(rule))
        # standard error of a class mean over half of the training set (finite-population factor √½)
        print(f"\n{detector} {rule}: " + ", ".join(
            f"{c} {v.sum():,} / {v.size:,} (s.e. {100 * v.std(ddof=1) / np.sqrt(2 * v.size) / v.mean():.1f} %)"
            for c, v in values.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--detectors", nargs="+", default=["xqrs", "gqrs", "pantompkins"])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    for detector in args.detectors:
        table(detector, cached_peaks(args.records, detector, args.jobs))


if __name__ == "__main__":
    main()
