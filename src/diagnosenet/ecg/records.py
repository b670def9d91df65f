"""PhysioNet/CinC 2017 challenge layout: ``REFERENCE.csv`` + single-lead WFDB records.

The reader never raises on one bad record: it returns a :class:`RecordError` reason so the
windowing stage can quarantine the record and keep ``records in = used + quarantined``.
Records may be stored as ``.mat`` (the challenge's MATLAB v4 files) or ``.dat``; wfdb picks
the file named in the header, so both work.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: challenge label letters → integer labels, in the order of ``CLASSES``
LABELS = {"N": 0, "A": 1, "O": 2, "~": 3}
CLASSES = ["Normal", "AF", "Other", "Noisy"]
FS = 300
REFERENCE_NAME = "REFERENCE.csv"
_RECORD_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class RecordError(ValueError):
    """A record that cannot be used; ``reason`` is a short code for quarantine.csv."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Entry:
    """One row of the reference file (``label`` is the raw letter, validated later)."""

    record: str
    label: str


def read_reference(path: str | Path) -> list[Entry]:
    """Read a v0–v3 ``REFERENCE.csv``: ``record,label[,more...]``, optional header row.

    Extra columns (some label versions carry votes) are ignored. A malformed line is an
    error naming the file and line, because it means the file is not a reference file at all.
    """
    path = Path(path)
    entries: list[Entry] = []
    seen: set[str] = set()
    with open(path, newline="") as handle:
        for lineno, row in enumerate(csv.reader(handle), start=1):
            row = [field.strip() for field in row]
            if not row or not any(row):
                continue
            if lineno == 1 and row[0].lower() in {"record", "recording", "name", "id"}:
                continue  # header
            if len(row) < 2 or not _RECORD_NAME.match(row[0]):
                raise ValueError(f"{path}:{lineno}: expected 'record,label', got {','.join(row)!r}")
            if row[0] in seen:
                raise ValueError(f"{path}:{lineno}: record {row[0]!r} listed twice")
            seen.add(row[0])
            entries.append(Entry(row[0], row[1]))
    return entries


def list_entries(directory: str | Path) -> list[Entry]:
    """Every record of a challenge directory: the reference rows plus headers without a row.

    A header with no reference row gets label ``""`` so that it is quarantined, not lost.
    """
    directory = Path(directory)
    reference = directory / REFERENCE_NAME
    if not reference.exists():
        raise FileNotFoundError(f"{reference}: missing; a challenge directory needs REFERENCE.csv")
    entries = read_reference(reference)
    listed = {entry.record for entry in entries}
    extra = sorted(p.stem for p in directory.glob("*.hea") if p.stem not in listed)
    return entries + [Entry(name, "") for name in extra]


def label_of(entry: Entry) -> int:
    if entry.label not in LABELS:
        shown = entry.label or "(none)"
        raise RecordError("unknown_label", f"label {shown!r} not in {sorted(LABELS)}")
    return LABELS[entry.label]


def load_signal(directory: str | Path, record: str, fs: int = FS) -> np.ndarray:
    """Lead I in mV as float64, after the checks that make a record unusable."""
    import wfdb   # here, not at the top: wfdb and pandas cost 0.7 s of every command's start

    path = Path(directory) / record
    if not path.with_suffix(".hea").exists():
        raise RecordError("unreadable", f"{path}.hea missing")
    try:
        rec = wfdb.rdrecord(str(path), channels=[0])
    except Exception as exc:  # wfdb raises many types for broken headers/data files
        raise RecordError("unreadable", f"{path}: {type(exc).__name__}: {exc}") from None
    if rec.fs != fs:
        raise RecordError("sampling_rate", f"{path}.hea: fs {rec.fs:g} Hz, expected {fs} Hz")
    signal = np.asarray(rec.p_signal[:, 0], dtype=np.float64)
    if signal.size == 0:
        raise RecordError("unreadable", f"{path}: no samples")
    if np.isnan(signal).any():
        raise RecordError("nan", f"{path}: {int(np.isnan(signal).sum())} NaN samples")
    if np.ptp(signal) < 1e-6:
        raise RecordError("flat", f"{path}: signal is constant ({signal[0]:g} {rec.units[0]})")
    return signal


def write_record(directory: str | Path, record: str, signal_mv: np.ndarray, fs: int = FS) -> None:
    """Write ``record.hea`` + ``record.mat`` exactly like the challenge files.

    wfdb writes only ``.dat`` signal files (``wfdb_to_mat`` renames records to ``<name>m``),
    so the MATLAB v4 ``val`` matrix comes from scipy and the header from wfdb; the 24-byte
    offset is the v4 matrix header plus the name ``val\\0``, as in the challenge headers.
    """
    import wfdb
    from scipy.io import savemat

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    digital = np.clip(np.round(np.asarray(signal_mv) * 1000.0), -32767, 32767).astype(np.int16)
    savemat(directory / f"{record}.mat", {"val": digital[np.newaxis, :]}, format="4")
    header = wfdb.Record(
        record_name=record, n_sig=1, fs=fs, sig_len=digital.size,
        file_name=[f"{record}.mat"], fmt=["16"], byte_offset=[24], adc_gain=[1000.0],
        baseline=[0], units=["mV"], adc_res=[16], adc_zero=[0], init_value=[int(digital[0])],
        checksum=[_checksum16(digital)], block_size=[0], sig_name=["ECG"],
    )
    header.wrheader(write_dir=str(directory))


def _checksum16(digital: np.ndarray) -> int:
    """WFDB header checksum: the sample sum as a signed 16-bit integer."""
    return int((digital.astype(np.int64).sum() + 32768) % 65536 - 32768)


def write_reference(directory: str | Path, entries: list[Entry]) -> None:
    """v3-style ``REFERENCE.csv`` (no header, ``record,label``)."""
    lines = "".join(f"{entry.record},{entry.label}\n" for entry in entries)
    (Path(directory) / REFERENCE_NAME).write_text(lines)
