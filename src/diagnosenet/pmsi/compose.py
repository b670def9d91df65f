"""First-week patient features from RHS files: the paper's patient-feature composition.

Each stay is represented by its first ISO week (every line of that week, one per medical unit),
turned into a bag of named features grouped as in the paper (demographics, admission, ...).
The vocabulary is built from RHS fields only; labels are joined afterwards by stay number and a
guard refuses any column equal to the label. Stay numbers are pseudonymised here, the first
stage that sees them; birth dates and postcodes leave only as age band and département.
"""
from __future__ import annotations

import csv
import logging
import os
from array import array
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from diagnosenet.artifacts import MANIFEST_NAME, write_json, write_manifest
from diagnosenet.pmsi import AGE_BANDS, AGE_RANGES, CLASSES
from diagnosenet.pmsi.rhs import (
    COGNITIVE_DEPENDENCE, PHYSICAL_DEPENDENCE, RHSFieldError, birth_year_month_day, iter_rhs, parse_date,
    write_quarantine,
)
from diagnosenet.privacy import PSEUDONYM_HEX_CHARS, pseudonymise
from diagnosenet.progress_log import Progress

log = logging.getLogger(__name__)
STAGE = "compose-pmsi"
OUTPUT_FILES = ("X.npz", "y.npy", "groups.npy", "vocabulary.json", "classes.json", "counts.json", "quarantine.csv")

Week = Sequence[Mapping]  # the RHS records of a stay's first week


class LabelLeakError(RuntimeError):
    """A feature column reproduces the label: the matrix would let a model read the answer."""


def age_band(week: Week) -> str:
    entry = min(parse_date(r["entry_date"]) for r in week)
    year, month, day = birth_year_month_day(week[0]["birth_date"].rjust(8))
    age = entry.year - year - (month is not None and (entry.month, entry.day) < (month, day))
    return next((band for band, (_, high) in zip(AGE_BANDS, AGE_RANGES) if age <= high), AGE_BANDS[-1])


def residence(postcode: str) -> str:
    """Département of residence only (the full postcode identifies a person)."""
    if postcode == "99999":
        return "anonymous"
    if postcode == "99100":
        return "unknown"
    if postcode.startswith("99"):
        return "abroad"
    return postcode[:3] if postcode[:2] in ("97", "98") else postcode[:2]


def _onehot(week: Week, *fields: str) -> dict[str, float]:
    return {f"{field}={r[field] or 'none'}": 1.0 for r in week for field in fields}


def _worst(week: Week, fields: Iterable[str]) -> dict[str, float]:
    """One dependence level per item: the highest rated in the week's units."""
    return {f"{field[4:]}={max(r[field] for r in week)}": 1.0 for field in fields}


def demographics(week: Week) -> dict[str, float]:
    return {f"age={age_band(week)}": 1.0, f"sex={week[0]['sex']}": 1.0,
            f"residence={residence(week[0]['postcode'])}": 1.0}


def admission(week: Week) -> dict[str, float]:
    return _onehot(week, "hospitalisation_type", "entry_mode", "provenance")


def hospitalisation(week: Week) -> dict[str, float]:
    features = _onehot(week, "unit_authorisation")
    features["presence_days"] = float(sum((r["presence_weekdays"] + r["presence_weekend"]).count("1") for r in week))
    features["surgery"] = float(any(r["surgery_date"] for r in week))
    features.update(_onehot([r for r in week if r["exit_mode"]], "exit_mode", "destination"))
    return features


def physical_dependence(week: Week) -> dict[str, float]:
    return _worst(week, PHYSICAL_DEPENDENCE)


def cognitive_dependence(week: Week) -> dict[str, float]:
    return _worst(week, COGNITIVE_DEPENDENCE)


def rehabilitation_time(week: Week) -> dict[str, float]:
    """Occurrences of CdARR acts summed by professional category and by act."""
    features: dict[str, float] = defaultdict(float)
    for r in week:
        for category, act, occurrences in r["cdarr"]:
            features[f"category={category}"] += occurrences
            features[f"act={act}"] += occurrences
    return dict(features)


def comorbidities(week: Week) -> dict[str, float]:
    return {f"das={code}": 1.0 for r in week for code in r["das"]}


def morbidity(week: Week) -> dict[str, float]:
    return _onehot(week, "fpp", "mmp")


def aetiology(week: Week) -> dict[str, float]:
    return {f"ae={r['ae']}": 1.0 for r in week if r["ae"]}


#: descriptor group → function of the first-week RHS records (and of nothing else)
GROUPS: dict[str, Callable[[Week], dict[str, float]]] = {
    fn.__name__: fn for fn in (demographics, admission, hospitalisation, physical_dependence,
                               cognitive_dependence, rehabilitation_time, comorbidities, morbidity, aetiology)
}


def count_lines(paths: Sequence[str | os.PathLike]) -> int:
    """Lines in ``paths`` as :func:`iter_rhs` numbers them (a last line without newline counts):
    the total for progress lines; one block read per MiB, a fraction of parsing time."""
    total = 0
    for path in paths:
        last = b"\n"
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                total += block.count(b"\n")
                last = block[-1:]
        total += last != b"\n"
    return total


def first_weeks(paths: Sequence[str | os.PathLike], strict: bool) -> tuple[dict, list[RHSFieldError], dict]:
    """``stay → (week key, first location, records of the earliest week)``, the bad lines, counts.

    A second line for the same stay, week and unit is quarantined: it would count the week twice.
    """
    stays: dict[str, list] = {}
    errors: list[RHSFieldError] = []
    seen: set[str] = set()
    read = 0
    progress = Progress(count_lines(paths), "read", "RHS lines", logger=log)
    for file, line, item in iter_rhs(paths, strict=strict):
        read += 1
        progress.update()
        if not isinstance(item, RHSFieldError):
            week_unit = item["stay_number"] + item["week"] + item["unit"]
            if week_unit in seen:
                item = RHSFieldError("unit", "a second line for this stay, week and unit", file, line)
                if strict:
                    raise item
            seen.add(week_unit)
        if isinstance(item, RHSFieldError):
            errors.append(item)
            continue
        key = (item["week"][2:], item["week"][:2])
        held = stays.get(item["stay_number"])
        if held is None or key < held[0]:
            stays[item["stay_number"]] = [key, (file, line), [item]]
        elif key == held[0]:
            held[2].append(item)
    progress.close()
    counts = {"lines_read": read, "lines_used": read - len(errors), "lines_quarantined": len(errors),
              "lines_first_week": sum(len(held[2]) for held in stays.values()), "stays": len(stays)}
    return stays, errors, counts


def read_labels(path: str | os.PathLike, n_classes: int, strict: bool) -> tuple[dict[str, tuple[int, int]], list]:
    """``stay → (label, line)`` from a ``stay_number,label`` CSV, and its bad rows."""
    labels: dict[str, tuple[int, int]] = {}
    errors: list[RHSFieldError] = []
    name = os.fspath(path)
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != ["stay_number", "label"]:
            raise RHSFieldError("header", "expected 'stay_number,label'", name, 1)
        for line, row in enumerate(reader, start=2):
            problem = None
            if len(row) != 2:
                problem = RHSFieldError("columns", f"{len(row)} columns, expected 2", name, line)
            elif not row[1].strip().isdigit() or int(row[1]) >= n_classes:
                problem = RHSFieldError("label", f"expected an integer 0..{n_classes - 1}", name, line)
            elif row[0].strip() in labels:
                problem = RHSFieldError("stay_number", f"duplicate label (first on line {labels[row[0].strip()][1]})",
                                        name, line)
            if problem is not None:
                if strict:
                    raise problem
                errors.append(problem)
                continue
            labels[row[0].strip()] = (int(row[1]), line)
    return labels, errors


def feature_rows(weeks: Sequence[Week], groups: Sequence[str]) -> tuple[sp.csr_matrix, dict[str, dict]]:
    """Sparse stays × features matrix (COO → CSR, never dense) and its vocabulary.

    Triplets go to typed arrays with provisional column ids in order of first appearance, then
    columns are renumbered in sorted-name order, so the result does not depend on row order and
    memory stays at 12 bytes per non-zero.
    """
    provisional: dict[str, int] = {}
    rows, cols, vals = array("q"), array("q"), array("f")
    progress = Progress(len(weeks), "composed", "stays", logger=log)
    for i, week in enumerate(weeks):
        for group in groups:
            for name, value in GROUPS[group](week).items():
                cols.append(provisional.setdefault(f"{group}.{name}", len(provisional)))
                vals.append(value)
                rows.append(i)
        progress.update()
    progress.close()
    names = sorted(provisional)
    renumber = np.empty(len(names), dtype=np.int64)
    renumber[[provisional[name] for name in names]] = np.arange(len(names))
    coo = (np.frombuffer(vals, dtype=np.float32), (np.frombuffer(rows, dtype=np.int64),
                                                   renumber[np.frombuffer(cols, dtype=np.int64)]))
    X = sp.coo_matrix(coo, shape=(len(weeks), len(names)), dtype=np.float32).tocsr()
    X.eliminate_zeros()  # a zero-valued feature (e.g. no surgery) is an absent one
    X.sort_indices()
    vocabulary = {name: {"column": j, "group": name.split(".", 1)[0]} for j, name in enumerate(names)}
    return X, vocabulary


def assert_no_label_column(X: sp.csr_matrix, y: np.ndarray, vocabulary: Mapping[str, Mapping]) -> None:
    """Refuse a matrix with a column equal to the label, or a feature outside the RHS groups.

    Labels take 14 values while every feature is a flag, a count or a level, so on real data no
    column equals ``y`` unless the label was joined into the features by mistake.
    """
    outside = sorted({entry["group"] for entry in vocabulary.values()} - set(GROUPS))
    if outside:
        raise LabelLeakError(f"features from outside the RHS descriptor groups: {outside}")
    if len(np.unique(y)) < 3 or X.shape[1] == 0:
        return
    Xc = X.tocsc()
    target = y.astype(np.float32)
    support = np.flatnonzero(target)
    nnz = np.diff(Xc.indptr)
    by_column = {entry["column"]: name for name, entry in vocabulary.items()}
    for j in np.flatnonzero(nnz == len(support)):
        rows = Xc.indices[Xc.indptr[j]:Xc.indptr[j + 1]]
        if np.array_equal(rows, support) and np.array_equal(Xc.data[Xc.indptr[j]:Xc.indptr[j + 1]], target[rows]):
            raise LabelLeakError(f"feature {by_column[j]!r} (column {j}) equals the label on every row")


def compose(
    rhs_files: Sequence[str | os.PathLike],
    labels_file: str | os.PathLike,
    out: str | os.PathLike,
    *,
    salt: bytes,
    groups: Sequence[str] = tuple(GROUPS),
    strict: bool = False,
    classes: Sequence[str] = CLASSES,
) -> dict:
    """Write the composed data set (``X.npz``, ``y.npy``, ``groups.npy``, ...) and return its counts."""
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown descriptor groups {unknown}; choose from {list(GROUPS)}")
    groups = [g for g in GROUPS if g in groups]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # a failed run must not leave a valid-looking directory
    stays, quarantine, counts = first_weeks(rhs_files, strict)
    labels, label_errors = read_labels(labels_file, len(classes), strict)
    kept = []
    for stay, (_, (file, line), week) in stays.items():
        if stay in labels:
            kept.append((pseudonymise(stay, salt), labels[stay][0], week))
        else:
            quarantine.append(RHSFieldError("label", "stay has no label in the labels file", file, line))
    orphans = [(line, stay) for stay, (_, line) in labels.items() if stay not in stays]
    quarantine += label_errors + [
        RHSFieldError("stay_number", "label for a stay absent from the RHS files", os.fspath(labels_file), line)
        for line, _ in sorted(orphans)
    ]
    for error in quarantine[:10]:  # the message names file, line, field: no identifier
        log.warning("quarantined %s", error)
    kept.sort(key=lambda item: item[0])
    pseudonyms = np.array([p for p, _, _ in kept], dtype=f"<U{PSEUDONYM_HEX_CHARS}")
    if len(set(pseudonyms.tolist())) != len(pseudonyms):
        raise RuntimeError("two stay numbers share a pseudonym; use a different salt")
    y = np.array([label for _, label, _ in kept], dtype=np.int64)
    X, vocabulary = feature_rows([week for _, _, week in kept], groups)
    assert_no_label_column(X, y, vocabulary)

    sp.save_npz(out / "X.npz", X, compressed=True)
    np.save(out / "y.npy", y)
    np.save(out / "groups.npy", pseudonyms)
    write_json(out / "vocabulary.json", vocabulary)
    write_json(out / "classes.json", list(classes))
    write_quarantine(out / "quarantine.csv", quarantine)
    counts.update({
        "labels_read": len(labels) + len(label_errors),
        "labels_quarantined": len(label_errors),
        "stays_without_label": counts["stays"] - len(kept),
        "labels_without_stay": len(orphans),
        "rows": len(kept),
        "features": X.shape[1],
        "nonzeros": int(X.nnz),
        "quarantine_rows": len(quarantine),
        "class_counts": np.bincount(y, minlength=len(classes)).tolist(),
        "features_per_group": {g: sum(e["group"] == g for e in vocabulary.values()) for g in groups},
    })
    write_json(out / "counts.json", counts)
    write_manifest(out, stage=STAGE, files=list(OUTPUT_FILES),
                   params={"groups": groups, "strict": strict, "rhs_files": sorted(Path(f).name for f in rhs_files)},
                   counts=counts)
    return counts
