"""WFDB records → the run's R-peak windows → one decision per record.

Every input record gets a row. A record that cannot be windowed (unreadable, flat, too few
beats, ...) gets the challenge's convention for unclassifiable records, the noisy class with
probability 1, and the quarantine reason; so the challenge score covers every record.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diagnosenet.ecg.records import FS, LABELS, REFERENCE_NAME, RecordError, load_signal, read_reference

NOISY = "Noisy"


@dataclass
class RecordInput:
    record: str
    label: int | None           # None: unlabelled (no REFERENCE row, or an unknown letter)
    samples: np.ndarray | None  # (n, sample_length) windows the model scores
    reason: str = ""


def list_records(directory: str | Path) -> tuple[list[str], dict[str, int | None]]:
    """Record names (REFERENCE.csv rows first, then headers it does not list) and their labels."""
    directory = Path(directory)
    labels: dict[str, int | None] = {}
    if (directory / REFERENCE_NAME).exists():
        for entry in read_reference(directory / REFERENCE_NAME):
            labels[entry.record] = LABELS.get(entry.label)
    for header in sorted(directory.glob("*.hea")):
        labels.setdefault(header.stem, None)
    if not labels:
        raise FileNotFoundError(f"{directory}: no WFDB header (*.hea) and no {REFERENCE_NAME}")
    return list(labels), labels


def read_records(directory: str | Path, preprocessings: list[dict], jobs: int | None = None) -> list[list[RecordInput]]:
    """Every record of ``directory`` as each model reads it: one list of :class:`RecordInput`
    per preprocessing (a run's ``lineage.preprocessing``: R-peak windows; the feature model's:
    one row of whole-record features). A record is loaded once, its beats detected once per
    detector and its whole-record features computed once per detector, whatever the number of
    models of a blend; records in parallel over ``jobs`` processes, results in record order."""
    from diagnosenet.ecg.features import FEATURE_NAMES
    from diagnosenet.ecg.pool import map_items

    for prep in preprocessings:
        if prep.get("input") == "record-features" and list(prep.get("features", FEATURE_NAMES)) != list(FEATURE_NAMES):
            raise ValueError("the model was trained on another feature set than this version computes; retrain it")
    records, labels = list_records(directory)
    work = functools.partial(_read_record, directory=str(directory), preprocessings=preprocessings)
    per_record = map_items(work, [(record, labels[record]) for record in records], jobs, verb="read")
    return [[inputs[k] for inputs in per_record] for k in range(len(preprocessings))]


def _read_record(item: tuple[str, int | None], directory: str, preprocessings: list[dict]) -> list[RecordInput]:
    from diagnosenet.ecg import peaks
    from diagnosenet.ecg.build import signal_samples
    from diagnosenet.ecg.feature_table import signal_features
    from diagnosenet.ecg.windows import Geometry, small_sample

    record, label = item
    try:
        signal = load_signal(directory, record, FS)
    except RecordError as exc:
        return [RecordInput(record, label, None, f"{exc.reason}: {exc.detail}")] * len(preprocessings)
    beats: dict[str, np.ndarray | Exception] = {}
    whole: dict[str, np.ndarray] = {}

    def beats_of(detector: str):
        if detector not in beats:
            try:
                beats[detector] = peaks.detect(signal, FS, detector)
            except Exception as exc:  # wfdb's detectors raise assorted errors on degenerate input
                beats[detector] = exc
        return beats[detector]

    def features_of(detector: str) -> np.ndarray:
        if detector not in whole:
            found = beats_of(detector)
            whole[detector] = signal_features(signal, detector, found if isinstance(found, np.ndarray)
                                              else np.zeros(0, dtype=np.int64))
        return whole[detector]

    out = []
    for prep in preprocessings:
        detector = prep["detector"]
        if prep.get("input") == "record-features":
            out.append(RecordInput(record, label, features_of(detector)[None, :]))
            continue
        geometry = Geometry(int(prep["window"]), int(prep["per_sample"]), int(prep["stride"]), prep["normalisation"],
                            record_features=bool(prep.get("record_features")),
                            sample_rule=prep.get("sample_rule", "all-peaks"))
        try:
            found = beats_of(detector)
            if isinstance(found, Exception):
                raise RecordError("detector_error", f"{detector}: {type(found).__name__}: {found}")
            samples = signal_samples(signal, geometry, detector, beats=found,
                                     whole=features_of(detector) if geometry.record_features else None)
            if prep.get("variant") == "small":   # the run was trained and scored on one sample per record
                samples = small_sample(samples)[None, :]
            out.append(RecordInput(record, label, samples))
        except RecordError as exc:
            out.append(RecordInput(record, label, None, f"{exc.reason}: {exc.detail}"))
    return out


def decide(inputs: list[RecordInput], proba_of, classes: list[str]) -> tuple[list[dict], np.ndarray]:
    """One row per record (record, label, predicted, probabilities, windows, reason) and the
    ``(records, classes)`` probabilities: the mean over the record's windows, as the run was scored."""
    scored = [i for i in inputs if i.samples is not None]
    proba = proba_of(np.concatenate([i.samples for i in scored])) if scored else np.zeros((0, len(classes)))
    noisy = np.eye(len(classes))[classes.index(NOISY)]
    rows, table, offset = [], [], 0
    for item in inputs:
        if item.samples is None:
            p = noisy
        else:
            n = item.samples.shape[0]
            p = proba[offset:offset + n].mean(axis=0)
            offset += n
        table.append(p)
        rows.append({"record": item.record, "label": "" if item.label is None else classes[item.label],
                     "predicted": classes[int(np.argmax(p))],
                     **{f"p_{c}": float(v) for c, v in zip(classes, p)},
                     "windows": 0 if item.samples is None else int(item.samples.shape[0]), "reason": item.reason})
    return rows, np.asarray(table, dtype=np.float64).reshape(len(inputs), len(classes))


def weighted_mean(tables: np.ndarray, weights) -> np.ndarray:
    """``Σ wᵢ pᵢ / Σ wᵢ`` per record over the models that scored it: ``tables`` is
    ``(models, records, classes)`` with NaN rows where a model could not score a record. A
    record every model scored with weight 0 takes their plain mean; one no model scored stays NaN."""
    tables = np.asarray(tables, dtype=np.float64)
    usable = ~np.isnan(tables).any(axis=2)                                  # (models, records)
    w = np.asarray(weights, np.float64)[:, None] * usable
    w = np.where(w.sum(axis=0) > 0, w, usable.astype(np.float64))
    total = w.sum(axis=0)
    mean = np.einsum("mr,mrc->rc", w, np.nan_to_num(tables)) / np.where(total > 0, total, 1.0)[:, None]
    return np.where((total > 0)[:, None], mean, np.nan)


def combine(scored: list[tuple[list[dict], np.ndarray]], weights: list[float],
            classes: list[str]) -> tuple[list[dict], np.ndarray]:
    """:func:`weighted_mean` of several :func:`decide` outputs over the same records: a seed
    ensemble (equal weights), a net blended with the feature model (``w``, ``1 − w``), or both.
    A record only some models could score takes their combination alone (a record too short to
    window: the feature model's); one none could keeps the first model's row (Noisy, its
    reason). The weights are chosen on out-of-fold probabilities of the development records
    (``bench/bench_ecg_blend_cv.py``)."""
    names = [r["record"] for r in scored[0][0]]
    if any([r["record"] for r in rows] != names for rows, _ in scored[1:]):
        raise ValueError("the models scored different records")
    if len(weights) != len(scored) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"weights {weights}: one non-negative weight per model, not all zero")
    tables = np.stack([np.where(np.array([[bool(row["reason"])] for row in rows]), np.nan, proba)
                       for rows, proba in scored]).reshape(len(scored), len(names), len(classes))
    mean = weighted_mean(tables, weights)
    rows, table = [], []
    for first, first_p, p in zip(scored[0][0], scored[0][1], mean):
        none = bool(np.isnan(p).any())
        p = first_p if none else p
        table.append(p)
        rows.append({**first, "predicted": classes[int(np.argmax(p))], **{f"p_{c}": float(v) for c, v in zip(classes, p)},
                     "reason": first["reason"] if none else ""})
    return rows, np.asarray(table, dtype=np.float64).reshape(len(rows), len(classes))
