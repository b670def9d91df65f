"""``ecg-features``: a challenge directory → one row of whole-record features per record.

Every readable record with a known label gets a row, even when the detector finds no beat
(its RR features are then NaN and the model still scores it): the evaluation protocol scores
every input record. Unreadable records and unknown labels are quarantined by name, and
``counts.json`` keeps ``records_in = records_used + records_quarantined``.
"""
from __future__ import annotations

import csv
import functools
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from diagnosenet import artifacts
from diagnosenet.ecg import peaks as peak_detection
from diagnosenet.ecg.build import Outcome
from diagnosenet.ecg.features import FEATURE_NAMES, record_features
from diagnosenet.ecg.pool import map_records
from diagnosenet.ecg.records import CLASSES, FS, Entry, RecordError, label_of, load_signal

log = logging.getLogger(__name__)
STAGE = "ecg-features"
OUTPUT_FILES = ["features.npy", "y.npy", "records.npy", "feature_names.json", "classes.json",
                "quarantine.csv", "counts.json"]


#: one record's features (a 1 × len(FEATURE_NAMES) row in ``samples``), or the reason it was quarantined
FeatureRow = Outcome


def signal_features(signal: np.ndarray, detector: str, beats: np.ndarray | None = None) -> np.ndarray:
    """Detection + features of one loaded signal (training and ``predict`` alike; ``beats``:
    the detector's, when the caller has them already); a detector crash leaves the record with
    no beats instead of losing it."""
    if beats is None:
        try:
            beats = peak_detection.detect(signal, FS, detector)
        except Exception as exc:  # wfdb's detectors raise assorted errors on degenerate input
            log.warning("%s detector failed (%s: %s); rhythm features are NaN", detector, type(exc).__name__, exc)
            beats = np.zeros(0, dtype=np.int64)
    return record_features(signal, beats, FS, second_beats=peak_detection.agreement_beats(signal, FS, detector))


def feature_record(directory: str, entry: Entry, detector: str) -> FeatureRow:
    label = None
    try:
        label = label_of(entry)
        return FeatureRow(entry.record, label, signal_features(load_signal(directory, entry.record, FS), detector)[None, :])
    except RecordError as exc:
        return FeatureRow(entry.record, label, reason=exc.reason, detail=exc.detail)


def feature_directory(directory: str | Path, detector: str = "xqrs", jobs: int | None = None) -> list[FeatureRow]:
    if detector not in peak_detection.DETECTORS:  # fail before starting workers on a typo
        raise ValueError(f"unknown R-peak detector {detector!r}; choose from {sorted(peak_detection.DETECTORS)}")
    return map_records(directory, functools.partial(feature_record, detector=detector), jobs, verb="featurised")


def write_features(out: str | Path, rows: list[FeatureRow], params: dict) -> dict:
    """Write the ``ecg/features/`` contract, manifest last."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    used = [r for r in rows if r.samples is not None]
    quarantined = [r for r in rows if r.samples is None]
    X = np.concatenate([r.samples for r in used]) if used else np.zeros((0, len(FEATURE_NAMES)))
    np.save(out / "features.npy", X.astype(np.float64))
    np.save(out / "y.npy", np.array([r.label for r in used], dtype=np.int64))
    np.save(out / "records.npy", np.array([r.record for r in used], dtype=str))
    artifacts.write_json(out / "feature_names.json", list(FEATURE_NAMES))
    artifacts.write_json(out / "classes.json", CLASSES)
    with open(out / "quarantine.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["record", "reason", "detail"])
        writer.writerows([r.record, r.reason, r.detail] for r in quarantined)
    counts = {"records_in": len(rows), "records_used": len(used), "records_quarantined": len(quarantined),
              "quarantine_reasons": dict(sorted(Counter(r.reason for r in quarantined).items())),
              "undefined_values": {name: int(np.isnan(X[:, k]).sum()) for k, name in enumerate(FEATURE_NAMES)
                                   if np.isnan(X[:, k]).any()}}
    artifacts.write_json(out / "counts.json", counts)
    if quarantined:
        log.warning("%d records quarantined %s; see %s", len(quarantined), counts["quarantine_reasons"], out / "quarantine.csv")
    return artifacts.write_manifest(out, stage=STAGE, files=OUTPUT_FILES, params=params,
                                    counts={"rows": len(used), "records_in": len(rows),
                                            "records_quarantined": len(quarantined), "features": len(FEATURE_NAMES)})


def load_features(directory: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(features, labels, record names)`` of an ``ecg-features`` directory."""
    directory = Path(directory)
    if artifacts.read_json(directory / "feature_names.json") != list(FEATURE_NAMES):
        raise ValueError(f"{directory}: features written by another version (feature_names.json differs); rerun ecg-features")
    return np.load(directory / "features.npy"), np.load(directory / "y.npy"), np.load(directory / "records.npy")
