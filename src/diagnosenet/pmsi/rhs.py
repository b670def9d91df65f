"""RHS M05 lines (French SSR weekly summaries): field layout, validation, reading, writing.

One fixed-width line per patient, ISO week and medical unit: a 159-character fixed part of 33
fields, then three variable zones whose sizes the fixed part announces (n1 associated diagnoses
of 8 characters, n2 CdARR rehabilitation acts of 8, n3 CCAM medical acts of 11). Layout and
allowed values, field by field: ``docs/rhs-m05.md`` (after the ATIH 2009 SSR production guide).

A record is a ``dict`` of the fixed fields as text (trailing blanks removed, ``""`` = missing)
plus ``das`` (codes), ``cdarr`` (``(category, act, occurrences)``) and ``ccam``
(``(code, phase, activity, occurrences)``). The same shape is what :func:`format_line` writes,
so generator → reader round trips compare dictionaries.

A bad line raises :class:`RHSFieldError` naming the field and the reason; :func:`iter_rhs`
turns that into a located error (``file:line: field: reason``) and goes on, unless ``strict``.
The raw line is never part of an error: it holds identifiers.
"""
from __future__ import annotations

import csv
import datetime as dt
import os
import re
from typing import Iterable, Iterator, Mapping

#: (name, first, last) 1-based inclusive positions of the 33 fixed fields
FIELDS: tuple[tuple[str, int, int], ...] = (
    ("finess", 1, 9), ("format_version", 10, 12), ("stay_number", 13, 19),
    ("admin_number", 20, 39), ("reserved", 40, 59), ("birth_date", 60, 67), ("sex", 68, 68),
    ("postcode", 69, 73), ("hospitalisation_type", 74, 74), ("entry_date", 75, 82),
    ("entry_mode", 83, 83), ("provenance", 84, 84), ("exit_date", 85, 92), ("exit_mode", 93, 93),
    ("destination", 94, 94), ("week", 95, 100), ("presence_weekdays", 101, 105),
    ("presence_weekend", 106, 107), ("unit", 108, 111), ("unit_authorisation", 112, 114),
    ("surgery_date", 115, 122), ("fpp", 123, 130), ("mmp", 131, 138), ("ae", 139, 146),
    ("dep_dressing", 147, 147), ("dep_locomotion", 148, 148), ("dep_feeding", 149, 149),
    ("dep_continence", 150, 150), ("dep_behaviour", 151, 151), ("dep_communication", 152, 152),
    ("n_das", 153, 154), ("n_cdarr", 155, 157), ("n_ccam", 158, 159),
)
FIXED_LENGTH = 159
DAS_WIDTH, CDARR_WIDTH, CCAM_WIDTH = 8, 8, 11
COUNT_FIELDS = ("n_das", "n_cdarr", "n_ccam")
#: fixed fields a record carries (the counts are implied by its three lists)
RECORD_FIELDS = tuple(name for name, _, _ in FIELDS if name not in COUNT_FIELDS)
PHYSICAL_DEPENDENCE = ("dep_dressing", "dep_locomotion", "dep_feeding", "dep_continence")
COGNITIVE_DEPENDENCE = ("dep_behaviour", "dep_communication")
QUARANTINE_COLUMNS = ("file", "line", "field", "reason")



def _padded(head: str, tail: str, width: int = 8) -> str:
    """A code of ``head`` (3 characters) + 0-3 ``tail`` characters, blank-padded to ``width``;
    spelt as fixed-width alternatives so that every field pattern has its field's exact width."""
    return "(?:" + "|".join(rf"{head}{tail}{{{k}}} {{{width - 3 - k}}}" for k in range(4)) + ")"


_ICD10 = _padded(r"[A-Z]\d{2}", "[0-9A-Z+]")
_FPP = _padded(r"Z\d{2}", "[0-9+]") + "|ZAIGU   "
_AE = " {8}|" + _padded(r"[A-QST]\d{2}", "[0-9A-Z+]")  # chapters I-XVII (A-Q) and XIX (S-T)
#: field → (pattern the padded text must match in full, reason when it does not)
_FORMATS: dict[str, tuple[re.Pattern, str]] = {
    name: (re.compile(pattern), reason)
    for name, pattern, reason in (
        ("finess", r"(\d{2}|2[AB])\d{7}", "expected a 9-character FINESS number (département + 7 digits)"),
        ("format_version", r"M05", "expected format version M05"),
        ("stay_number", r"\d{7}", "expected a 7-digit SSR stay number"),
        ("admin_number", r"[!-~][ -~]{19}", "expected a left-aligned administrative stay number"),
        ("reserved", r" {20}", "reserved zone must be blank"),
        ("sex", r"[12]", "expected 1 (male) or 2 (female)"),
        ("postcode", r"\d{5}", "expected a 5-digit postcode"),
        ("hospitalisation_type", r"[1-8]", "expected 1-8"),
        ("entry_mode", r"[0678]", "expected 0, 6, 7 or 8"),
        ("exit_mode", r"[06789 ]", "expected 0, 6, 7, 8, 9 or blank"),
        ("week", r"\d{6}", "expected WWYYYY (ISO week + year)"),
        ("presence_weekdays", r"[01]{5}", "expected five 0/1 flags"),
        ("presence_weekend", r"[01]{2}", "expected two 0/1 flags"),
        ("unit", r"[0-9A-Z]{4}", "expected a 4-character medical unit number"),
        ("unit_authorisation", r"5\d[AJE ]", "expected 5 + specialty digit + A/J/E/blank"),
        ("fpp", _FPP, "expected an ICD-10 chapter XXI code (Z..) or ZAIGU"),
        ("mmp", _ICD10, "expected an ICD-10 code"),
        ("ae", _AE, "expected blank or an ICD-10 code of chapters I-XVII, XIX"),
        ("n_das", r"\d{2}", "expected 2 digits"),
        ("n_cdarr", r"\d{3}", "expected 3 digits"),
        ("n_ccam", r"\d{2}", "expected 2 digits"),
        *((dep, r"[1-4]", "expected a dependence score 1-4") for dep in PHYSICAL_DEPENDENCE + COGNITIVE_DEPENDENCE),
    )
}
#: the whole fixed part in one pattern (fast path); the per-field patterns name the culprit
_FIXED = re.compile("".join(
    f"(?P<{name}>{_FORMATS[name][0].pattern})" if name in _FORMATS else f"(?P<{name}>.{{{last - first + 1}}})"
    for name, first, last in FIELDS
))
#: fields whose value may end in blanks
_PADDED = ("admin_number", "reserved", "provenance", "exit_date", "exit_mode", "destination", "unit_authorisation",
           "surgery_date", "fpp", "mmp", "ae")
#: one entry of each variable zone (occurrences 01-99), and a whole zone of them
_ENTRY = {
    "das": (re.compile(_ICD10), DAS_WIDTH, "expected an ICD-10 code"),
    "cdarr": (re.compile(r"\d{2}[A-Z]{3}[A-Z0-9+](?!00)\d{2}"), CDARR_WIDTH,
              "expected category (2 digits) + act (4 characters) + occurrences 01-99"),
    "ccam": (re.compile(r"[A-Z]{4}\d{3}\d[1-5](?!00)\d{2}"), CCAM_WIDTH,
             "expected code (4 letters + 3 digits) + phase + activity 1-5 + occurrences 01-99"),
}
_ZONE = {name: re.compile(f"(?:{entry.pattern})*") for name, (entry, _, _) in _ENTRY.items()}
#: provenance allowed after each entry mode; destination allowed after each exit mode
_PROVENANCE = {"6": "12346", "7": "12346", "0": "12346", "8": "57 "}
_DESTINATION = {"6": "12346", "7": "12346", "0": "12346", "8": "7 ", "9": " ", " ": " "}


class RHSFieldError(ValueError):
    """A field of an RHS line is invalid; ``str()`` reads ``file:line: field: reason``."""

    def __init__(self, field: str, reason: str, file: str | None = None, line: int | None = None):
        super().__init__(field, reason, file, line)
        self.field, self.reason, self.file, self.line = field, reason, file, line

    def at(self, file: str, line: int) -> "RHSFieldError":
        return RHSFieldError(self.field, self.reason, file, line)

    def row(self) -> dict:
        """Quarantine CSV row: where and why, never the line itself."""
        return {"file": self.file, "line": self.line, "field": self.field, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.file or '<line>'}:{self.line or 0}: {self.field}: {self.reason}"


def parse_date(text: str) -> dt.date:
    """``DDMMYYYY`` → date; ``ValueError`` for malformed or impossible dates (31 February)."""
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"expected DDMMYYYY, got {len(text.strip())} non-blank characters")
    return dt.date(int(text[4:]), int(text[2:4]), int(text[:2]))


def format_date(day: dt.date) -> str:
    return day.strftime("%d%m%Y")


def week_bounds(week: str) -> tuple[dt.date, dt.date]:
    """Monday and Sunday of an ``WWYYYY`` ISO week; ``ValueError`` if the year has no such week."""
    monday = dt.date.fromisocalendar(int(week[2:]), int(week[:2]), 1)
    return monday, monday + dt.timedelta(days=6)


def birth_year_month_day(text: str) -> tuple[int, int | None, int | None]:
    """Field 6; day and month may be blank (anonymous admission)."""
    if text[:4] == "    " and text[4:].isdigit():
        return int(text[4:]), None, None
    born = parse_date(text)
    return born.year, born.month, born.day


def _date(raw: Mapping[str, str], name: str, optional: bool = False) -> dt.date | None:
    text = raw[name]
    if optional and not text.strip():
        return None
    try:
        return parse_date(text)
    except ValueError as exc:
        raise RHSFieldError(name, f"invalid date: {exc}") from None


def _zone(text: str, start: int, count: int, field: str) -> list[str]:
    """The ``count`` entries of a variable zone, checked in one match; a bad one is named."""
    entry, width, reason = _ENTRY[field]
    zone = text[start:start + count * width]
    pieces = [zone[i:i + width] for i in range(0, len(zone), width)]
    if _ZONE[field].fullmatch(zone) is None:
        bad = next(i for i, piece in enumerate(pieces) if entry.fullmatch(piece) is None)
        raise RHSFieldError(f"{field}[{bad + 1}]", reason)
    return pieces


def parse_line(text: str) -> dict:
    """Validate one RHS line (without its newline) and return its record."""
    if not text.isascii():
        raise RHSFieldError("encoding", "non-ASCII characters")
    if len(text) < FIXED_LENGTH:
        raise RHSFieldError("line_length", f"{len(text)} characters; the fixed part needs {FIXED_LENGTH}")
    match = _FIXED.match(text)
    if match is None:
        for name, first, last in FIELDS:
            pattern, reason = _FORMATS.get(name, (None, ""))
            if pattern is not None and pattern.fullmatch(text[first - 1:last]) is None:
                raise RHSFieldError(name, reason)
        raise RHSFieldError("line", "does not follow the M05 layout")  # e.g. a control character
    raw = match.groupdict()
    n_das, n_cdarr, n_ccam = (int(raw[name]) for name in COUNT_FIELDS)
    expected = FIXED_LENGTH + DAS_WIDTH * n_das + CDARR_WIDTH * n_cdarr + CCAM_WIDTH * n_ccam
    if len(text) != expected:
        raise RHSFieldError(
            "line_length", f"{len(text)} characters but n1={n_das}, n2={n_cdarr}, n3={n_ccam} need {expected}"
        )
    _check_dates(raw)
    _check_modes(raw)
    if raw["mmp"].startswith("Z") and not raw["ae"].strip():
        raise RHSFieldError("ae", "required when the main morbid manifestation is a Z code")
    record = raw.copy()
    for name in COUNT_FIELDS:
        del record[name]
    for name in _PADDED:
        record[name] = record[name].rstrip()
    das_start = FIXED_LENGTH
    cdarr_start = das_start + DAS_WIDTH * n_das
    ccam_start = cdarr_start + CDARR_WIDTH * n_cdarr
    record["das"] = tuple(p.rstrip() for p in _zone(text, das_start, n_das, "das"))
    record["cdarr"] = tuple((p[:2], p[2:6], int(p[6:])) for p in _zone(text, cdarr_start, n_cdarr, "cdarr"))
    record["ccam"] = tuple((p[:7], p[7], p[8], int(p[9:])) for p in _zone(text, ccam_start, n_ccam, "ccam"))
    return record


def _check_dates(raw: Mapping[str, str]) -> None:
    try:
        monday, sunday = week_bounds(raw["week"])
    except ValueError:
        raise RHSFieldError("week", f"no ISO week {raw['week'][:2]} in year {raw['week'][2:]}") from None
    entry = _date(raw, "entry_date")
    exit_ = _date(raw, "exit_date", optional=True)
    surgery = _date(raw, "surgery_date", optional=True)
    try:
        year, month, day = birth_year_month_day(raw["birth_date"])
    except ValueError as exc:
        raise RHSFieldError("birth_date", f"invalid date: {exc}") from None
    if (year, month or 1, day or 1) > (entry.year, entry.month, entry.day):
        raise RHSFieldError("birth_date", "after the entry date")
    if entry > sunday:
        raise RHSFieldError("entry_date", f"after the end of week {raw['week']}")
    if exit_ is not None:
        if exit_ < entry:
            raise RHSFieldError("exit_date", "before the entry date")
        if not monday <= exit_ <= sunday:
            raise RHSFieldError("exit_date", f"outside week {raw['week']}")
    if surgery is not None and surgery > sunday:
        raise RHSFieldError("surgery_date", f"after the end of week {raw['week']}")
    if (exit_ is None) != (raw["exit_mode"] == " "):
        raise RHSFieldError("exit_mode", "exit mode and exit date must be both present or both blank")


def _check_modes(raw: Mapping[str, str]) -> None:
    if raw["provenance"] not in _PROVENANCE[raw["entry_mode"]]:
        raise RHSFieldError("provenance", f"{raw['provenance']!r} not allowed with entry mode {raw['entry_mode']}")
    if raw["destination"] not in _DESTINATION[raw["exit_mode"]]:
        raise RHSFieldError("destination", f"{raw['destination']!r} not allowed with exit mode {raw['exit_mode']!r}")


def format_line(record: Mapping) -> str:
    """The M05 line of a record (inverse of :func:`parse_line`)."""
    counts = {
        "n_das": f"{len(record['das']):02d}",
        "n_cdarr": f"{len(record['cdarr']):03d}",
        "n_ccam": f"{len(record['ccam']):02d}",
    }
    fixed = "".join(
        (counts[name] if name in counts else record[name]).ljust(last - first + 1) for name, first, last in FIELDS
    )
    das = "".join(code.ljust(DAS_WIDTH) for code in record["das"])
    cdarr = "".join(f"{cat}{act}{n:02d}" for cat, act, n in record["cdarr"])
    ccam = "".join(f"{code}{phase}{activity}{n:02d}" for code, phase, activity, n in record["ccam"])
    return fixed + das + cdarr + ccam


def iter_rhs(
    paths: Iterable[str | os.PathLike], strict: bool = False
) -> Iterator[tuple[str, int, dict | RHSFieldError]]:
    """``(file, line number, record or located error)`` for every line of every file, in order.

    With ``strict`` the first bad line raises its located :class:`RHSFieldError` instead.
    """
    for path in paths:
        name = os.fspath(path)
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                text = raw.decode("latin-1").rstrip("\r\n")
                try:
                    yield name, number, parse_line(text)
                except RHSFieldError as error:
                    located = error.at(name, number)
                    if strict:
                        raise located from None
                    yield name, number, located


def write_quarantine(path: str | os.PathLike, errors: Iterable[RHSFieldError]) -> int:
    """Quarantine CSV (file, line, field, reason); returns the number of rows."""
    rows = 0
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=QUARANTINE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for error in errors:
            writer.writerow(error.row())
            rows += 1
    return rows
