"""compose-pmsi: output contract, first-week features, quarantine, no label leakage, privacy."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from pmsi_lines import BASE, base_line

from diagnosenet.artifacts import verify_manifest
from diagnosenet.pmsi import CLASSES
from diagnosenet.pmsi import compose as compose_module
from diagnosenet.pmsi.cli import expand
from diagnosenet.pmsi.compose import GROUPS, LabelLeakError, age_band, compose, residence
from diagnosenet.pmsi.rhs import RHSFieldError, iter_rhs
from diagnosenet.privacy import load_or_create_salt


def read_quarantine(directory: Path) -> list[dict]:
    return list(csv.DictReader(open(directory / "quarantine.csv")))


def run_compose(tmp_path, salt_file, lines: list[str], labels: list[tuple[str, int]], **kwargs):
    rhs = tmp_path / "rhs_test.txt"
    rhs.write_text("".join(line + "\n" for line in lines))
    label_file = tmp_path / "labels.csv"
    label_file.write_text("stay_number,label\n" + "".join(f"{s},{c}\n" for s, c in labels))
    out = tmp_path / "out"
    counts = compose([rhs], label_file, out, salt=load_or_create_salt(salt_file), **kwargs)
    return out, counts


def features(out: Path, row: int = 0) -> set[str]:
    X = sp.load_npz(out / "X.npz").tocsr()
    by_column = {e["column"]: name for name, e in json.loads((out / "vocabulary.json").read_text()).items()}
    return {by_column[j] for j in X[row].indices}


def test_output_contract(composed, raw_dir):
    out, counts = composed
    manifest = verify_manifest(out, stage="compose-pmsi")
    X = sp.load_npz(out / "X.npz")
    y, groups = np.load(out / "y.npy"), np.load(out / "groups.npy")
    vocabulary = json.loads((out / "vocabulary.json").read_text())
    assert sp.isspmatrix_csr(X) or X.format == "csr"
    assert X.dtype == np.float32 and y.dtype == np.int64 and groups.dtype == np.dtype("<U16")
    assert X.shape == (len(y), len(vocabulary)) and len(groups) == len(y) == counts["rows"]
    assert sorted(e["column"] for e in vocabulary.values()) == list(range(X.shape[1]))
    assert {e["group"] for e in vocabulary.values()} == set(GROUPS)
    assert list(groups) == sorted(groups) and len(set(groups)) == len(groups)
    assert json.loads((out / "classes.json").read_text()) == list(CLASSES)
    labels = {row["stay_number"]: int(row["label"]) for row in csv.DictReader(open(raw_dir / "labels.csv"))}
    assert np.array_equal(np.bincount(y, minlength=14), np.bincount(list(labels.values()), minlength=14))
    assert counts["lines_read"] == counts["lines_used"] + counts["lines_quarantined"]
    assert counts["lines_read"] == sum(1 for f in raw_dir.glob("rhs_*.txt") for _ in open(f))
    assert counts["stays"] == counts["rows"] + counts["stays_without_label"] == len(labels)
    assert manifest["counts"] == counts
    assert (X.getnnz(axis=1) > 10).all()


def test_first_week_lines_of_all_units_only(tmp_path, salt_file):
    week3 = base_line(week="032019", mmp="I500", unit="0102")
    unit_a = base_line(exit_date="09012019", exit_mode="6", destination="2", presence_weekdays="11100",
                       presence_weekend="00")
    unit_b = base_line(unit="0103", unit_authorisation="52A", entry_date="10012019", entry_mode="6",
                       provenance="2", presence_weekdays="00011", dep_feeding="3", cdarr=(("21", "KMA+", 2),))
    out, counts = run_compose(tmp_path, salt_file, [week3, unit_a, unit_b], [("1234567", 6)])
    assert counts["lines_first_week"] == 2 and counts["rows"] == 1
    got = features(out)
    assert "morbidity.mmp=M161" in got and "morbidity.mmp=I500" not in got
    assert {"hospitalisation.unit_authorisation=51A", "hospitalisation.unit_authorisation=52A"} <= got
    assert {"admission.entry_mode=7", "admission.entry_mode=6", "hospitalisation.exit_mode=6"} <= got
    assert "physical_dependence.feeding=3" in got and "physical_dependence.feeding=1" not in got
    X = sp.load_npz(out / "X.npz").tocsr()
    vocabulary = json.loads((out / "vocabulary.json").read_text())
    value = lambda name: X[0, vocabulary[name]["column"]]  # noqa: E731
    assert value("rehabilitation_time.category=21") == 5  # 3 + 2 occurrences over the two units
    assert value("hospitalisation.presence_days") == 7  # Mon-Wed in one unit, Thu-Sun in the other


def test_group_selection(tmp_path, salt_file):
    out, _ = run_compose(tmp_path, salt_file, [base_line()], [("1234567", 1)], groups=["aetiology", "morbidity"])
    vocabulary = json.loads((out / "vocabulary.json").read_text())
    assert {e["group"] for e in vocabulary.values()} == {"morbidity"}  # the base line has no AE
    assert verify_manifest(out)["params"]["groups"] == ["morbidity", "aetiology"]
    with pytest.raises(ValueError, match="unknown descriptor groups"):
        run_compose(tmp_path, salt_file, [base_line()], [("1234567", 1)], groups=["labels"])


def test_age_band_and_residence():
    week = lambda **c: [{**BASE, **c}]  # noqa: E731
    assert age_band(week(birth_date="08011940")) == "70-79"  # 78 the day before the 79th birthday
    assert age_band(week(birth_date="07011940")) == "70-79"  # 79 on the birthday
    assert age_band(week(birth_date="07011939")) == "80-89"
    assert age_band(week(birth_date="    1939")) == "80-89"  # anonymous: year only
    assert [residence(p) for p in ("06100", "06999", "97411", "99134", "99100", "99999")] == [
        "06", "06", "974", "abroad", "unknown", "anonymous"]


def test_quarantine_reconciles(tmp_path, salt_file):
    """Bad lines, stays without label, labels without stay and bad label rows are all listed."""
    lines = [base_line(), base_line(sex="7"), base_line(stay_number="2222222"), base_line(stay_number="3333333"),
             base_line(week="542019"), base_line()]
    label_file_rows = [("1234567", 3), ("3333333", 99), ("4444444", 2)]
    out, counts = run_compose(tmp_path, salt_file, lines, label_file_rows)
    assert (counts["lines_read"], counts["lines_used"], counts["lines_quarantined"]) == (6, 3, 3)
    assert (counts["stays"], counts["rows"], counts["stays_without_label"]) == (3, 1, 2)
    assert (counts["labels_read"], counts["labels_quarantined"], counts["labels_without_stay"]) == (3, 1, 1)
    rows = [(Path(r["file"]).name, int(r["line"]), r["field"]) for r in read_quarantine(out)]
    assert sorted(rows) == sorted([
        ("rhs_test.txt", 2, "sex"), ("rhs_test.txt", 5, "week"), ("rhs_test.txt", 6, "unit"),  # duplicate
        ("rhs_test.txt", 3, "label"), ("rhs_test.txt", 4, "label"),
        ("labels.csv", 3, "label"), ("labels.csv", 4, "stay_number"),
    ])
    assert counts["quarantine_rows"] == len(rows)


def test_strict_mode_raises_with_location(tmp_path, salt_file):
    with pytest.raises(RHSFieldError, match=r"rhs_test.txt:2: postcode: "):
        run_compose(tmp_path, salt_file, [base_line(), base_line(postcode="6100A")], [("1234567", 1)], strict=True)
    assert not (tmp_path / "out" / "X.npz").exists()


def test_features_do_not_depend_on_labels(raw_dir, salt_file, tmp_path, composed):
    """Permuting the labels changes y only: X and its vocabulary come from the RHS fields alone."""
    rows = list(csv.reader(open(raw_dir / "labels.csv")))
    shuffled = [r[1] for r in rows[1:]][::-1]
    permuted = tmp_path / "labels.csv"
    permuted.write_text("stay_number,label\n" + "".join(f"{r[0]},{c}\n" for r, c in zip(rows[1:], shuffled)))
    out = tmp_path / "permuted"
    compose(sorted(raw_dir.glob("rhs_*.txt")), permuted, out, salt=load_or_create_salt(salt_file))
    reference, _ = composed
    assert (out / "X.npz").read_bytes() == (reference / "X.npz").read_bytes()
    assert (out / "vocabulary.json").read_bytes() == (reference / "vocabulary.json").read_bytes()
    assert not np.array_equal(np.load(out / "y.npy"), np.load(reference / "y.npy"))


def test_a_column_equal_to_the_label_is_refused(raw_dir, salt_file, tmp_path, monkeypatch):
    """Plant a leak (a descriptor that looks the label up by stay number): compose must refuse."""
    labels = {r["stay_number"]: float(r["label"]) for r in csv.DictReader(open(raw_dir / "labels.csv"))}
    monkeypatch.setitem(compose_module.GROUPS, "aetiology",
                        lambda week: {"leak": labels[week[0]["stay_number"]]})
    out = tmp_path / "leak"
    compose([raw_dir / "rhs_01.txt"], raw_dir / "labels.csv", out, salt=load_or_create_salt(salt_file),
            groups=["demographics"])  # an earlier, sound run into the same directory
    with pytest.raises(LabelLeakError, match="aetiology.leak"):
        compose(sorted(raw_dir.glob("rhs_*.txt")), raw_dir / "labels.csv", out, salt=load_or_create_salt(salt_file))
    assert not (out / "manifest.json").exists()  # the stale directory no longer verifies


def test_same_input_same_bytes(raw_dir, salt_file, tmp_path, composed):
    out = tmp_path / "again"
    compose(sorted(raw_dir.glob("rhs_*.txt")), raw_dir / "labels.csv", out, salt=load_or_create_salt(salt_file))
    reference, _ = composed
    for name in ("X.npz", "y.npy", "groups.npy", "vocabulary.json", "counts.json"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def identifiers(raw_dir: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"stay": set(), "admin": set(), "birth": set(), "postcode": set()}
    for _, _, r in iter_rhs(sorted(raw_dir.glob("rhs_*.txt")), strict=True):
        found["stay"].add(r["stay_number"])
        found["admin"].add(r["admin_number"])
        born = r["birth_date"]
        if born.strip().isdigit() and len(born) == 8:
            found["birth"] |= {born, f"{born[4:]}-{born[2:4]}-{born[:2]}", f"{born[:2]}/{born[2:4]}/{born[4:]}"}
        found["postcode"].add(r["postcode"])
    return found


@pytest.mark.timeout(120)
def test_no_identifier_reaches_the_outputs(raw_dir, salt_file, tmp_path):
    """Run the command as the workflow does (log beside the outputs), drop some labels so the
    quarantine has rows, then scan every file for stay/admin numbers, birth dates, postcodes."""
    labels = (raw_dir / "labels.csv").read_text().splitlines()
    partial = tmp_path / "labels.csv"
    partial.write_text("\n".join(labels[:-20]) + "\n")
    out = tmp_path / "composed"
    out.mkdir()
    log = out / "compose_pmsi.log"
    with open(log, "w") as handle:
        subprocess.run([sys.executable, "-m", "diagnosenet", "-v", "compose-pmsi", "--rhs", str(raw_dir / "rhs_*.txt"),
                        "--labels", str(partial), "--out", str(out), "--salt-file", str(salt_file)],
                       stdout=handle, stderr=subprocess.STDOUT, check=True, timeout=110)
    assert len(read_quarantine(out)) == 20
    secret = identifiers(raw_dir)
    assert leaks(raw_dir / "labels.csv", secret)["stay"]  # the scan does see identifiers
    scanned = {path.name: leaks(path, secret) for path in sorted(out.iterdir())}
    assert {"X.npz", "y.npy", "groups.npy", "vocabulary.json", "counts.json", "quarantine.csv", "manifest.json",
            "compose_pmsi.log"} <= set(scanned)
    assert not any(scanned.values()), scanned


def tokens(text: str) -> set[str]:
    return set(re.findall(r"\d+|\d{4}-\d{2}-\d{2}|\d{2}/\d{2}/\d{4}", text))


def leaks(path: Path, secret: dict[str, set[str]]) -> dict[str, list[str]]:
    """Identifiers found in a file: digit tokens of text files and of string arrays; numeric
    arrays must hold no identifier-sized number (stay numbers have 7 digits)."""
    found: set[str] = set()
    numeric: list[str] = []
    if path.suffix in (".npz", ".npy"):
        loaded = np.load(path, allow_pickle=False)
        for array in [loaded[k] for k in loaded.files] if path.suffix == ".npz" else [loaded]:
            if array.dtype.kind in "US":  # pseudonyms; scipy's b"csr" format tag
                found |= tokens(" ".join(str(x) for x in np.atleast_1d(array).tolist()))
            elif np.abs(array).max(initial=0) >= 1_000_000:
                numeric.append("a number >= 1e6")
    else:
        found = tokens(path.read_text(errors="replace"))
    if numeric:
        return {"numeric": numeric}
    return {kind: sorted(values & found) for kind, values in secret.items() if values & found}


def test_expand_refuses_unmatched_globs(tmp_path):
    (tmp_path / "rhs_b.txt").write_text("")
    (tmp_path / "rhs_a.txt").write_text("")
    assert [Path(p).name for p in expand([str(tmp_path / "rhs_*.txt")])] == ["rhs_a.txt", "rhs_b.txt"]
    with pytest.raises(FileNotFoundError, match="no RHS file"):
        expand([str(tmp_path / "missing_*.txt")])


def test_features_carry_the_generators_clinical_variables(composed, salt_file):
    """The Bayes ceiling in bayes.json holds for the composed matrix only if its features
    reproduce the clinical variables the posterior was computed from."""
    from diagnosenet.pmsi.synth import iter_records
    from diagnosenet.privacy import pseudonymise
    from pmsi_lines import PATIENTS, SEED

    out, _ = composed
    truth, _ = iter_records(PATIENTS, seed=SEED)
    salt = load_or_create_salt(salt_file)
    row_of = {g: i for i, g in enumerate(np.load(out / "groups.npy"))}
    clinical = truth["clinical"]
    for i, stay in enumerate(truth["stay_numbers"]):
        got = features(out, row_of[pseudonymise(stay, salt)])
        expected = {
            f"demographics.age={clinical['age_band'][i]}", f"demographics.sex={clinical['sex'][i]}",
            f"admission.hospitalisation_type={clinical['hospitalisation_type'][i]}",
            f"admission.entry_mode={clinical['admission'][i][0]}", f"morbidity.fpp={clinical['fpp'][i]}",
            f"morbidity.mmp={clinical['mmp'][i]}",
            *(f"physical_dependence.{item[4:]}={clinical[item][i]}"
              for item in ("dep_dressing", "dep_locomotion", "dep_feeding", "dep_continence")),
        }
        if clinical["ae"][i]:
            expected.add(f"aetiology.ae={clinical['ae'][i]}")
        assert expected <= got, (i, expected - got)
        assert sum(name.startswith("demographics.age=") for name in got) == 1


def test_feature_count_grows_with_stays_as_the_vocabularies_predict(composed, salt_file, tmp_path):
    """Distinct DAS, MMP and AE columns at 300 and 1,200 stays match the generator's exact
    expectation (within 4 s.d.), and grow sublinearly: most new columns are rare codes, which is
    how the paper's 116,831 stays reach ~14,637 features."""
    from diagnosenet.pmsi.synth import expected_code_features, write_dataset
    from pmsi_lines import PATIENTS, SEED

    raw = tmp_path / "raw"
    write_dataset(raw, patients=4 * PATIENTS, seed=SEED)
    out = tmp_path / "out"
    compose(sorted(raw.glob("rhs_*.txt")), raw / "labels.csv", out, salt=load_or_create_salt(salt_file))
    small, _ = composed
    prefixes = {"das": "comorbidities.das=", "mmp": "morbidity.mmp=", "ae": "aetiology.ae="}
    widths = {}
    for directory, stays in ((small, PATIENTS), (out, 4 * PATIENTS)):
        vocabulary = json.loads((directory / "vocabulary.json").read_text())
        X = sp.load_npz(directory / "X.npz").tocsc()
        for field, expected in expected_code_features(stays).items():
            columns = [e["column"] for name, e in vocabulary.items() if name.startswith(prefixes[field])]
            assert abs(len(columns) - expected) < 4 * np.sqrt(expected), (stays, field, len(columns), expected)
            if field == "das":  # long tail: most codes are seen once, a few cover much of the matrix
                per_code = np.sort(np.diff(X.indptr)[columns])[::-1]
                assert (per_code == 1).mean() > 0.4 and per_code[:10].sum() > 0.25 * per_code.sum()
        widths[stays] = len(vocabulary)
    assert 1.5 * widths[PATIENTS] < widths[4 * PATIENTS] < 4 * widths[PATIENTS]
