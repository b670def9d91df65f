"""× real time per core of ``window-ecg`` (read + detect + window) for each R-peak detector.

Usage: .venv/bin/python bench/bench_ecg_windowing.py [--records DIR] [--limit N] [--detectors ...]
Runs in one process (jobs=1), so seconds of ECG per CPU second = × real time per core.
``--records`` is a PhysioNet/CinC 2017 challenge-layout directory (default: the
``physionet2017-train-a`` half of the training set in the data directory beside the checkout,
``../shared/data``); ``--limit`` takes the first N reference rows (the challenge's own order).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from diagnosenet.ecg.build import window_record
from diagnosenet.ecg.peaks import DETECTORS
from diagnosenet.ecg.records import FS, list_entries
from diagnosenet.ecg.windows import Geometry

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "../shared/data/physionet2017-train-a"


def ecg_seconds(directory: Path, records: list[str]) -> float:
    """Duration from the headers' sample counts (first line, 4th field)."""
    total = 0
    for record in records:
        total += int((directory / f"{record}.hea").read_text().split()[3])
    return total / FS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--detectors", nargs="+", default=sorted(DETECTORS))
    args = parser.parse_args()
    entries = list_entries(args.records)[: args.limit]
    seconds = ecg_seconds(args.records, [e.record for e in entries])
    geometry = Geometry()
    print(f"{len(entries)} records, {seconds / 3600:.2f} h of ECG from {args.records.resolve()}")
    print("detector,records,ecg_hours,cpu_seconds,x_real_time_per_core,samples,quarantined")
    for detector in args.detectors:
        start = time.process_time()
        outcomes = [window_record(str(args.records), entry, geometry, detector) for entry in entries]
        cpu = time.process_time() - start
        samples = sum(o.samples.shape[0] for o in outcomes if o.samples is not None)
        quarantined = sum(o.samples is None for o in outcomes)
        print(f"{detector},{len(entries)},{seconds / 3600:.2f},{cpu:.1f},{seconds / cpu:.0f},{samples},{quarantined}", flush=True)


if __name__ == "__main__":
    main()
