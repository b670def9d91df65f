"""``window-ecg``: a challenge directory → the ``ecg/windows/`` artefact (docs/architecture.md).

Records are independent, so they are windowed in a process pool; each returns either its
samples or a quarantine reason, and the parent writes arrays, tables and the manifest.
"""
from __future__ import annotations

import csv
import functools
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from diagnosenet import artifacts
from diagnosenet.ecg import peaks as peak_detection
from diagnosenet.ecg.features import network_inputs, record_features
from diagnosenet.ecg.pool import map_records
from diagnosenet.ecg.records import CLASSES, FS, Entry, RecordError, label_of, load_signal
from diagnosenet.ecg.windows import Geometry, record_samples, small_sample

log = logging.getLogger(__name__)
STAGE = "window-ecg"
OUTPUT_FILES = [
    "X.npy", "y.npy", "groups.npy", "X_small.npy", "y_small.npy", "groups_small.npy",
    "classes.json", "quarantine.csv", "counts.json", "table2.csv",
]


@dataclass(frozen=True)
class Outcome:
    """What one record produced: samples, or the reason it was quarantined."""

    record: str
    label: int | None
    samples: np.ndarray | None = None
    reason: str = ""
    detail: str = ""


def window_record(directory: str, entry: Entry, geometry: Geometry, detector: str) -> Outcome:
    """Read, check, detect and window one record; never raises for a bad record."""
    label = None
    try:
        label = label_of(entry)
        samples = signal_samples(load_signal(directory, entry.record, FS), geometry, detector)
    except RecordError as exc:
        return Outcome(entry.record, label, reason=exc.reason, detail=exc.detail)
    return Outcome(entry.record, label, samples=samples)


def signal_samples(signal: np.ndarray, geometry: Geometry, detector: str, beats: np.ndarray | None = None,
                   whole: np.ndarray | None = None) -> np.ndarray:
    """R-peak detection and windowing of one loaded signal (training and ``predict`` alike);
    :class:`RecordError` when it yields no complete sample. ``beats`` and ``whole`` (the
    record's features): when the caller computed them already for another model."""
    beats = _detect(signal, detector) if beats is None else beats
    if beats.size < geometry.per_sample:
        raise RecordError("few_beats", f"{beats.size} beats detected, need {geometry.per_sample}")
    samples = record_samples(signal, beats, geometry, FS)
    if samples.shape[0] == 0:
        raise RecordError("no_complete_sample", f"{beats.size} beats but no {geometry.per_sample} "
                          f"consecutive windows inside the record (sample rule {geometry.sample_rule})")
    if geometry.record_features:
        if whole is None:
            whole = record_features(signal, beats, FS, second_beats=peak_detection.agreement_beats(signal, FS, detector))
        whole = network_inputs(whole)
        samples = np.concatenate([samples, np.broadcast_to(whole, (samples.shape[0], whole.size))], axis=1)
    return samples


def _detect(signal: np.ndarray, detector: str) -> np.ndarray:
    """Detector crashes on odd signals become a quarantine reason instead of ending the run."""
    try:
        return peak_detection.detect(signal, FS, detector)
    except Exception as exc:  # wfdb's detectors raise assorted errors on degenerate input
        raise RecordError("detector_error", f"{detector}: {type(exc).__name__}: {exc}") from None


def window_directory(directory: str | Path, geometry: Geometry, detector: str, jobs: int | None = None) -> list[Outcome]:
    """Outcomes for every record of ``directory``, in reference order (deterministic for any ``jobs``)."""
    if detector not in peak_detection.DETECTORS:  # fail before starting workers on a typo
        raise ValueError(f"unknown R-peak detector {detector!r}; choose from {sorted(peak_detection.DETECTORS)}")
    return map_records(directory, functools.partial(window_record, geometry=geometry, detector=detector), jobs,
                       verb="windowed")


def _stack(outcomes: list[Outcome], geometry: Geometry, small: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    used = [o for o in outcomes if o.samples is not None]
    parts = [small_sample(o.samples)[None, :] if small else o.samples for o in used]
    X = np.concatenate(parts) if parts else np.zeros((0, geometry.sample_length), np.float32)
    sizes = [part.shape[0] for part in parts]
    y = np.repeat(np.array([o.label for o in used], dtype=np.int64), sizes)
    groups = np.repeat(np.array([o.record for o in used], dtype=str), sizes)
    return X.astype(np.float32, copy=False), y, groups


def summarise(outcomes: list[Outcome]) -> tuple[dict, list[dict]]:
    """``counts.json`` and the Table 2 rows; records in = used + quarantined by construction."""
    used = [o for o in outcomes if o.samples is not None]
    quarantined = [o for o in outcomes if o.samples is None]
    rows = []
    for label, name in enumerate(CLASSES):
        mine = [o for o in outcomes if o.label == label]
        ok = [o for o in mine if o.samples is not None]
        rows.append({
            "label": label, "class": name, "source_records": len(mine), "used_records": len(ok),
            "quarantined_records": len(mine) - len(ok), "samples": sum(o.samples.shape[0] for o in ok),
            "small_samples": len(ok),
        })
    counts = {
        "records_in": len(outcomes),
        "records_used": len(used),
        "records_quarantined": len(quarantined),
        "samples": sum(row["samples"] for row in rows),
        "small_samples": len(used),
        "quarantine_reasons": dict(sorted(Counter(o.reason for o in quarantined).items())),
        "per_class": {row["class"]: row for row in rows},
    }
    return counts, rows


def _write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def write_windows(out: str | Path, outcomes: list[Outcome], geometry: Geometry, params: dict) -> dict:
    """Write every file of the ``ecg/windows/`` contract, manifest last."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for suffix, small in (("", False), ("_small", True)):
        X, y, groups = _stack(outcomes, geometry, small)
        np.save(out / f"X{suffix}.npy", X)
        np.save(out / f"y{suffix}.npy", y)
        np.save(out / f"groups{suffix}.npy", groups)
    counts, rows = summarise(outcomes)
    artifacts.write_json(out / "classes.json", CLASSES)
    artifacts.write_json(out / "counts.json", counts)
    _write_csv(out / "table2.csv", rows, list(rows[0]))
    quarantine = [{"record": o.record, "reason": o.reason, "detail": o.detail} for o in outcomes if o.samples is None]
    _write_csv(out / "quarantine.csv", quarantine, ["record", "reason", "detail"])
    if quarantine:
        log.warning("%d records quarantined %s; see %s", len(quarantine), counts["quarantine_reasons"], out / "quarantine.csv")
    return artifacts.write_manifest(
        out, stage=STAGE, files=OUTPUT_FILES, params={**params, **asdict(geometry)},
        counts={"rows": counts["samples"], "small_rows": counts["small_samples"],
                "records_in": counts["records_in"], "records_quarantined": counts["records_quarantined"],
                "classes": {row["class"]: row["samples"] for row in rows}},
    )
