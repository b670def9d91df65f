"""``diagnosenet synth-ecg`` and ``diagnosenet window-ecg``."""
from __future__ import annotations

import argparse
import logging
import time

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from diagnosenet.ecg.peaks import DETECTORS
    from diagnosenet.ecg.windows import NORMALISATIONS, SAMPLE_RULES

    synth = subparsers.add_parser("synth-ecg", help="write synthetic PhysioNet 2017-layout ECG records")
    synth.add_argument("--records", type=int, required=True, help="number of records")
    synth.add_argument("--seed", type=int, default=2017)
    synth.add_argument("--out", required=True, help="output directory (REFERENCE.csv + A*.hea/.mat)")
    synth.set_defaults(func=run_synth)

    window = subparsers.add_parser("window-ecg", help="R-peak-centred windows of a challenge-layout directory")
    window.add_argument("--records", required=True, help="directory with REFERENCE.csv and WFDB records")
    window.add_argument("--out", required=True, help="output directory (X.npy, y.npy, groups.npy, ...)")
    window.add_argument("--detector", default="xqrs", choices=sorted(DETECTORS))
    window.add_argument("--window", type=int, default=260, help="samples per R-centred window")
    window.add_argument("--windows-per-sample", type=int, default=5)
    window.add_argument("--stride", type=int, default=5, help="windows between sample starts (= windows-per-sample: no overlap)")
    window.add_argument("--normalisation", default="zscore", choices=NORMALISATIONS)
    window.add_argument("--sample-rule", default="all-peaks", choices=SAMPLE_RULES,
                        help="all-peaks: every peak whose window fits; paper: edge beats dropped and samples "
                             "never across an implausible RR interval (the paper's Table 2 ratios; docs/ecg.md); contiguous: "
                             "unbroken stretches of window x windows-per-sample samples from half a window before every "
                             "stride-th beat (the timing between beats kept)")
    window.add_argument("--record-features", action="store_true",
                        help="append the record's whole-record features to every sample (models.ecg.record_features)")
    window.add_argument("--jobs", type=int, default=None, help="worker processes (default: all CPUs)")
    window.set_defaults(func=run_window)

    features = subparsers.add_parser("ecg-features", help="whole-record rhythm/morphology/spectral features of a challenge-layout directory")
    features.add_argument("--records", required=True, help="directory with REFERENCE.csv and WFDB records")
    features.add_argument("--out", required=True, help="output directory (features.npy, y.npy, records.npy, ...)")
    features.add_argument("--detector", default="xqrs", choices=sorted(DETECTORS))
    features.add_argument("--jobs", type=int, default=None, help="worker processes (default: all CPUs)")
    features.set_defaults(func=run_features)


def run_synth(args: argparse.Namespace) -> int:
    from diagnosenet.ecg.synth import write_dataset

    counts = write_dataset(args.out, records=args.records, seed=args.seed)
    log.info("wrote %d synthetic records to %s: %s", args.records, args.out, counts)
    return 0


def run_window(args: argparse.Namespace) -> int:
    from diagnosenet.ecg.build import window_directory, write_windows
    from diagnosenet.ecg.windows import Geometry

    geometry = Geometry(args.window, args.windows_per_sample, args.stride, args.normalisation,
                        record_features=args.record_features, sample_rule=args.sample_rule)
    start = time.perf_counter()
    outcomes = window_directory(args.records, geometry, args.detector, args.jobs)
    manifest = write_windows(args.out, outcomes, geometry, {"detector": args.detector, "records_dir": str(args.records)})
    counts = manifest["counts"]
    log.info(
        "%d records → %d samples (%d small), %d quarantined, in %.1f s; see %s/table2.csv",
        counts["records_in"], counts["rows"], counts["small_rows"], counts["records_quarantined"],
        time.perf_counter() - start, args.out,
    )
    return 0


def run_features(args: argparse.Namespace) -> int:
    from diagnosenet.ecg.feature_table import feature_directory, write_features

    start = time.perf_counter()
    rows = feature_directory(args.records, args.detector, args.jobs)
    counts = write_features(args.out, rows, {"detector": args.detector, "records_dir": str(args.records)})["counts"]
    log.info("%d records → %d feature rows (%d features), %d quarantined, in %.1f s", counts["records_in"],
             counts["rows"], counts["features"], counts["records_quarantined"], time.perf_counter() - start)
    return 0
