"""RHS M05 reader: generator → reader round trip, one named error per kind of malformed line."""
from __future__ import annotations

import csv
import datetime as dt

import pytest

from diagnosenet.pmsi.rhs import (
    FIELDS, FIXED_LENGTH, RECORD_FIELDS, RHSFieldError, format_line, iter_rhs, parse_line,
)
from diagnosenet.pmsi.synth import iter_records

from pmsi_lines import BASE, PATIENTS, SEED, base_line

POSITION = {name: (first - 1, last) for name, first, last in FIELDS}


def put(line: str, field: str, text: str) -> str:
    """Overwrite one fixed field of a line with ``text`` (padded to the field's width)."""
    start, end = POSITION[field]
    return line[:start] + text.ljust(end - start)[: end - start] + line[end:]


def test_base_line_is_valid_and_round_trips():
    line = base_line()
    assert len(line) == FIXED_LENGTH + 8 + 8 + 11
    assert parse_line(line) == BASE
    assert set(BASE) == {*RECORD_FIELDS, "das", "cdarr", "ccam"}


def test_generator_lines_round_trip():
    _, records = iter_records(200, seed=SEED)
    seen = 0
    for _, record in records:
        assert parse_line(format_line(record)) == record
        seen += 1
    assert seen > 200  # several weeks per stay


def test_files_round_trip(raw_dir):
    """Every line written by synth-pmsi reads back to the record the generator made."""
    _, records = iter_records(PATIENTS, seed=SEED)
    key = lambda r: (r["stay_number"], r["week"], r["unit"])  # noqa: E731
    expected = {key(r): r for _, r in records}
    read = {}
    for _, _, item in iter_rhs(sorted(raw_dir.glob("rhs_*.txt")), strict=True):
        read[key(item)] = item
    assert read == expected


def test_generator_realism():
    """Spec facts the generator must respect beyond the reader's checks."""
    _, records = iter_records(300, seed=3)
    stays: dict[str, list] = {}
    for _, r in records:
        stays.setdefault(r["stay_number"], []).append(r)
        assert r["fpp"].startswith("Z")
        assert all(len(cat) == 2 and len(act) == 4 for cat, act, _ in r["cdarr"])
    weeks = [len({r["week"] for r in lines}) for lines in stays.values()]
    assert max(weeks) > 1 and sum(weeks) / len(weeks) > 1.5
    assert any(len(lines) > len({r["week"] for r in lines}) for lines in stays.values())  # two units in a week
    exits = [r for lines in stays.values() for r in lines if r["exit_date"]]
    assert {r["exit_mode"] for r in exits} >= {"6", "8"}


MALFORMED = {
    "short line": ("line_length", lambda l: l[:120]),
    "length vs counts": ("line_length", lambda l: l + "X"),
    "non-ASCII": ("encoding", lambda l: put(l, "admin_number", "20190000é")),
    "FINESS": ("finess", lambda l: put(l, "finess", "ABC780000")),
    "format version": ("format_version", lambda l: put(l, "format_version", "M04")),
    "stay number": ("stay_number", lambda l: put(l, "stay_number", "12 4567")),
    "reserved zone": ("reserved", lambda l: put(l, "reserved", "X")),
    "impossible birth date": ("birth_date", lambda l: put(l, "birth_date", "31022000")),
    "birth after entry": ("birth_date", lambda l: put(l, "birth_date", "01022019")),
    "sex": ("sex", lambda l: put(l, "sex", "3")),
    "postcode": ("postcode", lambda l: put(l, "postcode", "06A00")),
    "hospitalisation type": ("hospitalisation_type", lambda l: put(l, "hospitalisation_type", "9")),
    "entry date": ("entry_date", lambda l: put(l, "entry_date", "00012019")),
    "entry after week": ("entry_date", lambda l: put(l, "entry_date", "14012019")),
    "entry mode": ("entry_mode", lambda l: put(l, "entry_mode", "5")),
    "provenance vs entry mode": ("provenance", lambda l: put(put(l, "entry_mode", "8"), "provenance", "1")),
    "exit before entry": ("exit_date", lambda l: put(put(put(l, "entry_date", "09012019"), "exit_date", "08012019"),
                                                       "exit_mode", "8")),
    "exit outside week": ("exit_date", lambda l: put(put(l, "exit_date", "20012019"), "exit_mode", "8")),
    "exit mode value": ("exit_mode", lambda l: put(l, "exit_mode", "5")),
    "exit mode without date": ("exit_mode", lambda l: put(l, "exit_mode", "8")),
    "destination vs exit mode": ("destination", lambda l: put(put(put(l, "exit_date", "10012019"), "exit_mode", "9"),
                                                               "destination", "1")),
    "week 54": ("week", lambda l: put(l, "week", "542019")),
    "presence flags": ("presence_weekdays", lambda l: put(l, "presence_weekdays", "11201")),
    "weekend flags": ("presence_weekend", lambda l: put(l, "presence_weekend", "1 ")),
    "unit authorisation": ("unit_authorisation", lambda l: put(l, "unit_authorisation", "61A")),
    "surgery date": ("surgery_date", lambda l: put(l, "surgery_date", "32012019")),
    "FPP not chapter XXI": ("fpp", lambda l: put(l, "fpp", "I500")),
    "MMP format": ("mmp", lambda l: put(l, "mmp", "1234")),
    "AE chapter XVIII": ("ae", lambda l: put(l, "ae", "R53")),
    "AE missing for Z MMP": ("ae", lambda l: put(l, "mmp", "Z966")),
    "dependence": ("dep_feeding", lambda l: put(l, "dep_feeding", "5")),
    "CdARR count": ("n_cdarr", lambda l: put(l, "n_cdarr", "0a1")),
    "DAS code": ("das[1]", lambda l: l[:FIXED_LENGTH] + "12AB    " + l[FIXED_LENGTH + 8:]),
    "CdARR act": ("cdarr[1]", lambda l: l[:FIXED_LENGTH + 8] + "2Xkma+03" + l[FIXED_LENGTH + 16:]),
    "CdARR zero occurrences": ("cdarr[1]", lambda l: l[:FIXED_LENGTH + 8] + "21KMA+00" + l[FIXED_LENGTH + 16:]),
    "CCAM code": ("ccam[1]", lambda l: l[:FIXED_LENGTH + 16] + "DEQ3003" + l[FIXED_LENGTH + 23:]),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_line_names_field_and_line(kind, tmp_path):
    field, mutate = MALFORMED[kind]
    bad = mutate(base_line())
    path = tmp_path / "rhs_bad.txt"
    path.write_text(base_line() + "\n" + bad + "\n" + base_line(stay_number="7654321") + "\n", encoding="latin-1")
    items = list(iter_rhs([path]))
    assert len(items) == 3  # nothing lost: the bad line is reported, parsing goes on
    (_, line, error), = [item for item in items if isinstance(item[2], RHSFieldError)]
    assert (line, error.field) == (2, field), str(error)
    assert str(error).startswith(f"{path}:2: {field}: ")
    assert "1234567" not in error.reason and "15031940" not in error.reason


def test_valid_variants_are_accepted():
    """Blank day/month of birth (anonymous), death exit, home entry without provenance."""
    for changes in (
        {"birth_date": "    1940", "postcode": "99999"},
        {"exit_date": "10012019", "exit_mode": "9", "destination": ""},
        {"entry_mode": "8", "provenance": ""},
        {"mmp": "Z896", "ae": "E115", "surgery_date": "01122018"},
        {"das": (), "cdarr": (), "ccam": ()},
    ):
        assert parse_line(base_line(**changes))["mmp"] == changes.get("mmp", "M161")


def test_strict_raises_with_location(tmp_path):
    path = tmp_path / "rhs_strict.txt"
    path.write_text(base_line() + "\n" + put(base_line(), "sex", "0") + "\n")
    with pytest.raises(RHSFieldError, match=rf"^{path}:2: sex: "):
        list(iter_rhs([path], strict=True))


def test_week_bounds_checked_against_iso_calendar():
    # 2020 has an ISO week 53, 2019 does not
    assert parse_line(base_line(week="532020", entry_date="28122020"))["week"] == "532020"
    with pytest.raises(RHSFieldError, match="week"):
        parse_line(base_line(week="532019", entry_date="28122020"))
    assert dt.date.fromisocalendar(2019, 2, 1) == dt.date(2019, 1, 7)


def test_every_malformed_kind_is_counted_once(tmp_path, salt_file):
    """All kinds in one file between good lines: lines read = used + quarantined, one row each."""
    from diagnosenet.pmsi.compose import compose
    from diagnosenet.privacy import load_or_create_salt

    kinds = sorted(MALFORMED)
    lines = [base_line()]
    for k, kind in enumerate(kinds):
        lines += [MALFORMED[kind][1](base_line()), base_line(stay_number=f"{2000000 + k:07d}")]
    rhs = tmp_path / "rhs_all.txt"
    rhs.write_text("".join(line + "\n" for line in lines), encoding="latin-1")
    labels = tmp_path / "labels.csv"
    labels.write_text("stay_number,label\n1234567,1\n"
                      + "".join(f"{2000000 + k:07d},{k % 14}\n" for k in range(len(kinds))))
    counts = compose([rhs], labels, tmp_path / "out", salt=load_or_create_salt(salt_file))
    assert counts["lines_read"] == len(lines) == counts["lines_used"] + counts["lines_quarantined"]
    assert counts["lines_quarantined"] == len(kinds) >= 15
    assert counts["rows"] == len(kinds) + 1 and counts["stays_without_label"] == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "quarantine.csv")))
    expected = [(2 + 2 * k, MALFORMED[kind][0]) for k, kind in enumerate(kinds)]
    assert [(int(r["line"]), r["field"]) for r in rows] == expected
    assert set(rows[0]) == {"file", "line", "field", "reason"}
