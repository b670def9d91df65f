"""R-peak detector accuracy: MIT-BIH record 100 reference beats, and agreement with XQRS.

Usage: .venv/bin/python bench/bench_rpeak_accuracy.py [--data DIR] [--agreement N]
Part 1 scores each detector on MIT-BIH Arrhythmia Database record 100 (``DIR/mitdb/100``, lead
MLII, 360 Hz) against its reference beat annotations with ``wfdb.processing.compare_annotations``
(150 ms tolerance). Part 2 scores each detector against XQRS on the first N records of the
PhysioNet/CinC 2017 challenge validation set (``DIR/physionet2017-validation``; 300 Hz, single
lead, noisier than mitdb 100) — agreement, not ground truth. ``DIR`` defaults to the data
directory beside the checkout (``../shared/data``); citations in the README.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import wfdb
import wfdb.processing

from diagnosenet.ecg.peaks import DETECTORS, detect
from diagnosenet.ecg.records import FS, list_entries, load_signal

DATA = Path(__file__).resolve().parents[1] / "../shared/data"
#: annotation symbols that mark beats (non-beat annotations such as rhythm changes excluded)
BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")


def score(reference: np.ndarray, found: np.ndarray, fs: float) -> tuple[float, float]:
    comparison = wfdb.processing.compare_annotations(reference, found, int(0.15 * fs))
    return comparison.sensitivity, comparison.positive_predictivity


def mitdb(data: Path, detectors: list[str]) -> None:
    path = str(data / "mitdb" / "100")
    record = wfdb.rdrecord(path, channels=[0])
    annotation = wfdb.rdann(path, "atr")
    reference = np.array([s for s, sym in zip(annotation.sample, annotation.symbol) if sym in BEAT_SYMBOLS])
    signal = record.p_signal[:, 0]
    print(f"mitdb/100 lead {record.sig_name[0]}: {reference.size} reference beats, {signal.size / record.fs:.0f} s")
    print("detector,detected,sensitivity,ppv,x_real_time_per_core")
    for detector in detectors:
        start = time.process_time()
        found = detect(signal, record.fs, detector)
        cpu = time.process_time() - start
        sensitivity, ppv = score(reference, found, record.fs)
        print(f"{detector},{found.size},{sensitivity:.4f},{ppv:.4f},{signal.size / record.fs / cpu:.0f}")


def agreement(data: Path, detectors: list[str], records: int) -> None:
    directory = data / "physionet2017-validation"
    signals = [load_signal(directory, e.record) for e in list_entries(directory)[:records]]
    references = [detect(s, FS, "xqrs") for s in signals]
    print(f"agreement with xqrs on the first {records} validation records ({sum(r.size for r in references)} xqrs beats)")
    print("detector,sensitivity_vs_xqrs,ppv_vs_xqrs")
    for detector in detectors:
        if detector == "xqrs":
            continue
        found = [detect(s, FS, detector) for s in signals]
        tp = fp = fn = 0
        for reference, mine in zip(references, found):
            comparison = wfdb.processing.compare_annotations(reference, mine, int(0.15 * FS))
            tp, fp, fn = tp + comparison.tp, fp + comparison.fp, fn + comparison.fn
        print(f"{detector},{tp / (tp + fn):.4f},{tp / (tp + fp):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="directory holding mitdb/ and physionet2017-validation/")
    parser.add_argument("--detectors", nargs="+", default=sorted(DETECTORS))
    parser.add_argument("--agreement", type=int, default=100, help="validation records for part 2 (0: skip)")
    args = parser.parse_args()
    mitdb(args.data, args.detectors)
    if args.agreement:
        agreement(args.data, args.detectors, args.agreement)


if __name__ == "__main__":
    main()
