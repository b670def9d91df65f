"""Synthetic SSR stays written as real RHS M05 files, with a known noisy label model.

Why: the paper's PACA data set cannot leave the hospitals, yet every downstream stage needs
RHS files with the paper's class mix and a learnable but imperfect label. The generator is a
naive-Bayes world (docs/pmsi.md):

1. a latent Clinical Major Category ``c`` is drawn from the Table 1 class frequencies;
2. given ``c`` the *clinical* variables are drawn independently: age band, sex,
   hospitalisation type, entry mode + provenance, unit specialty, surgery flag, FPP, MMP, AE,
   associated diagnoses (one Bernoulli per "signal" code), the six dependence scores and the
   rehabilitation professional categories. Each class-conditional distribution is
   ``(1 - s) * shared background + s * class profile``: the shared part makes codes
   overlap between classes, so the label is noisy;
3. everything else (institution, postcode, dates, stay length, unit transfers, later weeks,
   noise diagnoses, CCAM acts, act codes and occurrences) is drawn independently of ``c``.

The exact posterior ``P(c | clinical variables)`` follows from Bayes' rule; the label written
to ``labels.csv`` is ``c`` itself, which is the same as drawing the label from that posterior.
The Bayes-optimal accuracy is therefore ``mean(max posterior)``; it is written to
``bayes.json``. The first-week features of ``compose-pmsi`` carry these clinical variables, so
no classifier on them can beat that number (except by chance on a finite test set).
"""
from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from diagnosenet.artifacts import write_json, write_manifest
from diagnosenet.pmsi import AGE_BANDS, CLASSES, TABLE1_TOTALS
from diagnosenet.pmsi.rhs import format_date, format_line

PRIOR = np.array(TABLE1_TOTALS) / sum(TABLE1_TOTALS)
#: weight of the class profile against the shared background (tuned for ~78 % Bayes accuracy)
SIGNAL = 0.37
K = len(CLASSES)

#: ages drawn within each band (narrower than the band at the extremes)
_AGE_DRAW = ((2, 17), (18, 39), (40, 59), (60, 69), (70, 79), (80, 89), (90, 99))

# --- class-conditional categorical variables: (values, background weights, profile per class) -
# A profile lists the values a class favours (uniformly); None: the class follows the background.
_CATEGORICAL = {
    "age_band": (AGE_BANDS, (1, 6, 15, 16, 22, 28, 12), (
        ["70-79", "80-89"], ["60-69", "70-79"], ["70-79", "80-89"], ["40-59", "60-69"], ["18-39", "40-59"],
        ["80-89", "90+"], ["60-69", "70-79"], ["80-89", "90+"], ["60-69", "70-79"], ["60-69", "70-79", "80-89"],
        ["80-89", "90+"], ["40-59", "60-69"], ["80-89", "90+"], None)),
    "sex": (("1", "2"), (45, 55), (
        ["2"], ["1"], ["1"], ["1"], ["1"], ["2"], ["2"], ["2"], ["1"], ["1"], ["2"], ["1"], ["2"], None)),
    "hospitalisation_type": (tuple("12345678"), (55, 8, 0.5, 1.5, 30, 4, 0.5, 0.5), (
        ["1"], ["1", "2"], ["1"], ["5", "6"], ["1", "2"], ["1"], ["5", "6"], ["5"], ["5"], ["1"], ["1"],
        ["5", "6", "8"], ["1", "4"], None)),
    # entry mode + provenance (fields 11-12); "8 " = from home, no provenance
    "admission": (("71", "61", "72", "73", "74", "76", "01", "8 ", "85", "87"), (45, 15, 4, 2, 1, 2, 1, 20, 6, 4), (
        ["8 ", "85"], ["71", "61"], ["71"], ["71", "72"], ["74", "8 "], ["8 ", "87"], ["71", "61"], ["71", "85"],
        ["71", "72"], ["76", "8 ", "71"], ["87", "73"], ["8 ", "72"], ["8 ", "85"], None)),
    # second character of the unit authorisation type (field 20)
    "specialty": (tuple("0123456789"), (35, 20, 10, 5, 5, 3, 0.5, 2, 15, 4.5), (
        ["0"], ["3", "4"], ["3"], ["2"], ["8", "0"], ["7", "0"], ["1"], ["1"], ["1"], ["6", "9"], ["9"], ["1", "2"],
        ["5"], None)),
    "fpp": (("Z500", "Z501", "Z502", "Z505", "Z507", "Z508", "Z515", "Z518", "Z478", "Z488", "Z441", "Z540",
             "Z751", "Z713", "ZAIGU"), (3, 30, 2, 3, 5, 15, 3, 20, 5, 3, 1, 6, 1, 2, 1), (
        ["Z518", "Z540"], ["Z500", "Z518"], ["Z500", "Z508"], ["Z501", "Z505", "Z507"], ["Z502", "Z518"],
        ["Z518", "Z488"], ["Z478", "Z501"], ["Z478", "Z501", "Z540"], ["Z441", "Z501"], ["Z515"], ["Z751"],
        ["Z501", "Z508"], ["Z713", "Z518"], None)),
    "mmp": (None, None, (
        ["R53", "R268", "R296", "Z740"], ["I500", "I501", "J441", "J960", "J189", "I251"],
        ["I702", "I802", "I269", "I739", "I830"], ["I693", "G35", "G20", "G610", "G122", "G825"],
        ["F322", "F102", "F200", "F03", "F411"], ["L893", "L97", "T312", "H540", "L031"],
        ["M161", "M171", "M480", "M545", "M800", "Z966"], ["S720", "S721", "S822", "S320", "S422", "T028"],
        ["Z896", "Z895", "T876", "Z894"], ["C349", "C509", "C189", "C61", "C259", "C160"],
        ["Z751", "R54", "F03", "Z740"], ["Z966", "G819", "I694", "R262"], ["E43", "E440", "E660", "E119", "R634"],
        None)),
    "ae": (None, None, (
        ["I10", "E119", "M199"], ["I110", "J449", "I48"], ["E115", "I10", "I702"], ["I634", "I619", "G35"],
        ["F102", "F03"], ["E119", "L892"], ["M161", "M170", "M800"], ["S720", "S822", "T029"],
        ["E115", "I702", "S880"], ["C349", "C509", "C787"], ["F03", "G309", "I693"], ["M170", "I693", "G20"],
        ["E43", "C169", "K509"], None)),
}
#: (physical, cognitive) dependence level each class is centred on; None = background
_DEPENDENCE_LEVEL = ((2, 1), (2, 1), (2, 1), (3, 2), (1, 3), (2, 1), (2, 1), (3, 1), (3, 1), (4, 3), (3, 3),
                     (2, 1), (2, 2), None)
_DEPENDENCE_BACKGROUND = {"physical": (35, 30, 20, 15), "cognitive": (60, 20, 12, 8)}
PHYSICAL_ITEMS = ("dep_dressing", "dep_locomotion", "dep_feeding", "dep_continence")
COGNITIVE_ITEMS = ("dep_behaviour", "dep_communication")

# --- class-conditional Bernoulli variables: code → background probability; classes favouring it
_DAS_SIGNAL = {
    "I10": (0.35, (2,)), "E119": (0.2, (2, 5, 8)), "N183": (0.08, (8,)), "F03": (0.1, (4, 10)),
    "E669": (0.08, (12,)), "J449": (0.08, (1,)), "I48": (0.12, (1, 2)), "E43": (0.06, (9, 12)),
    "G309": (0.05, (10,)), "L893": (0.04, (5,)), "M819": (0.1, (6, 7)), "R262": (0.15, (0, 3, 11)),
    "R522": (0.1, (6, 9, 11)), "D649": (0.1, (7, 9, 12)), "Z993": (0.05, (3, 8)), "Z602": (0.12, (0, 10)),
    "F329": (0.1, (3, 4)), "K590": (0.1, (4,)), "E876": (0.05, (12,)), "I251": (0.08, (1,)),
    "Z950": (0.04, (1,)), "C795": (0.02, (9,)),
}
#: rehabilitation professional categories (CdARR): background probability, favouring classes, act codes
_CDARR_CATEGORIES = {
    "21": (0.6, (6, 7, 8, 11), ("KMA+", "KMB+", "KMR+")),   # physiotherapist
    "22": (0.3, (3, 5, 7, 8), ("ERG+", "ERA+")),            # occupational therapist
    "23": (0.05, (3, 4), ("PSM+",)),                        # psychomotor therapist
    "24": (0.1, (3,), ("ORT+", "ORD+")),                    # speech therapist
    "26": (0.15, (1, 12), ("DIE+",)),                       # dietitian
    "27": (0.15, (4, 9), ("PSY+", "PSE+")),                 # psychologist
    "28": (0.2, (0, 9, 10), ("SOC+",)),                     # social worker
    "29": (0.2, (1, 2, 6, 11), ("APA+", "APR+")),           # adapted physical activity educator
}
_SURGERY = (0.15, (0.05, 0.25, 0.3, 0.1, 0.02, 0.15, 0.7, 0.6, 0.85, 0.05, 0.05, 0.3, 0.1, None))
#: AE is required when MMP is a Z code; otherwise present with this class-independent probability
AE_RATE = 0.4

# --- class-independent parts ---------------------------------------------------------------------
_NOISE_DAS = ("H269", "H919", "K219", "E039", "E785", "N40", "G473", "M199", "B182", "Z921")
_CCAM = ("DEQP003", "ZBQK002", "HEQE002", "NEQK010")
_OCCURRENCES = (1, 2, 2, 3, 3, 3, 4, 4, 5, 6, 8, 10)
#: département of each of the 12 institutions (PACA region, like the paper's data)
_INSTITUTIONS = ("06", "06", "06", "13", "13", "13", "13", "83", "83", "84", "04", "05")
_COMMUNES = ("000", "100", "110", "130", "140", "150", "200", "210", "220", "300", "310", "400", "500", "600",
             "700", "800", "810", "900")
_ABROAD = ("99134", "99127", "99109", "99139", "99350")
YEAR = 2019


def _table(values, background, profiles, signal):
    """(K, V) class-conditional probabilities: (1 - s) background + s uniform over the profile."""
    if values is None:  # vocabulary = every profile code, uniform background
        values = tuple(dict.fromkeys(code for p in profiles if p for code in p))
        background = np.ones(len(values))
    background = np.asarray(background, float) / np.sum(background)
    table = np.empty((K, len(values)))
    for c, profile in enumerate(profiles):
        favoured = np.isin(values, profile).astype(float) if profile else background
        table[c] = (1 - signal) * background + signal * favoured / favoured.sum()
    return values, table


def _dependence_table(kind: str, signal: float) -> np.ndarray:
    background = np.asarray(_DEPENDENCE_BACKGROUND[kind], float)
    background /= background.sum()
    table = np.empty((K, 4))
    for c, levels in enumerate(_DEPENDENCE_LEVEL):
        if levels is None:
            table[c] = background
            continue
        centre = levels[0 if kind == "physical" else 1] - 1
        peaked = np.array([0.6 if i == centre else 0.2 if abs(i - centre) == 1 else 0.0 for i in range(4)])
        table[c] = (1 - signal) * background + signal * peaked / peaked.sum()
    return table


def _bernoulli_table(spec: dict, signal: float, favoured_rate: float = 0.9) -> tuple[tuple, np.ndarray]:
    """(K, codes) probabilities of each code being present."""
    codes = tuple(spec)
    table = np.empty((K, len(codes)))
    for j, code in enumerate(codes):
        base, classes = spec[code][:2]
        table[:, j] = base
        table[list(classes), j] = base + signal * (favoured_rate - base)
    return codes, table


def model(signal: float = SIGNAL) -> dict:
    """Every class-conditional table of the generator (what the posterior is computed from)."""
    categorical = {name: _table(*spec, signal) for name, spec in _CATEGORICAL.items()}
    for item in PHYSICAL_ITEMS:
        categorical[item] = (("1", "2", "3", "4"), _dependence_table("physical", signal))
    for item in COGNITIVE_ITEMS:
        categorical[item] = (("1", "2", "3", "4"), _dependence_table("cognitive", signal))
    surgery = np.array([_SURGERY[0] if p is None else (1 - signal) * _SURGERY[0] + signal * p for p in _SURGERY[1]])
    return {
        "categorical": categorical,
        "bernoulli": {
            "das": _bernoulli_table(_DAS_SIGNAL, signal),
            "cdarr": _bernoulli_table(_CDARR_CATEGORIES, signal),
            "surgery": (("surgery",), surgery[:, None]),
        },
    }


def _draw_categorical(rng: np.random.Generator, table: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """One value index per patient from its class row (inverse CDF, vectorised)."""
    cumulative = np.cumsum(table, axis=1)[classes]
    return np.minimum((rng.random(len(classes))[:, None] > cumulative).sum(axis=1), table.shape[1] - 1)


def sample_clinical(n: int, rng: np.random.Generator, tables: dict) -> tuple[np.ndarray, dict, np.ndarray]:
    """Classes, the class-dependent clinical variables and the exact posterior ``P(c | variables)``."""
    classes = rng.choice(K, size=n, p=PRIOR)
    log_post = np.tile(np.log(PRIOR), (n, 1))
    drawn: dict[str, np.ndarray] = {}
    for name, (values, table) in tables["categorical"].items():
        index = _draw_categorical(rng, table, classes)
        if name == "ae":  # absent (class-independently) unless MMP is a Z code
            mmp_values = np.array(tables["categorical"]["mmp"][0])
            present = (np.char.startswith(mmp_values[drawn["mmp"]], "Z")) | (rng.random(n) < AE_RATE)
            index = np.where(present, index, -1)
            log_post += np.where(present[:, None], np.log(table[:, index].T), 0.0)
        else:
            log_post += np.log(table[:, index].T)
        drawn[name] = index
    for name, (_, table) in tables["bernoulli"].items():
        present = rng.random((n, table.shape[1])) < table[classes]
        log_post += present.astype(float) @ np.log(table).T + (~present).astype(float) @ np.log1p(-table).T
        drawn[name] = present
    log_post -= log_post.max(axis=1, keepdims=True)
    posterior = np.exp(log_post)
    posterior /= posterior.sum(axis=1, keepdims=True)
    return classes, drawn, posterior


def _birth_date(entry: dt.date, age: int, offset: int) -> dt.date:
    """A birth date giving exactly ``age`` completed years at ``entry`` (``offset`` days back)."""
    def years_before(years: int) -> dt.date:
        try:
            return entry.replace(year=entry.year - years)
        except ValueError:  # 29 February
            return entry.replace(year=entry.year - years, day=28)
    latest, earliest = years_before(age), years_before(age + 1)
    return latest - dt.timedelta(days=offset % (latest - earliest).days)


def _presence(hospitalisation_type: str, monday: dt.date, first: dt.date, last: dt.date, coin: np.ndarray) -> str:
    """Seven 0/1 flags: full/night stays every day in [first, last]; day care on some weekdays;
    sessions one or two weekdays."""
    flags = []
    for day in range(7):
        date = monday + dt.timedelta(days=day)
        inside = first <= date <= last
        if hospitalisation_type in "1537":
            flags.append(inside)
        elif hospitalisation_type in "26":
            flags.append(inside and day < 5 and coin[day] < 0.6)
        else:
            flags.append(inside and day < 5 and coin[day] < 0.3)
    return "".join("1" if f else "0" for f in flags)


def _week(date: dt.date) -> str:
    year, week, _ = date.isocalendar()
    return f"{week:02d}{year:04d}"


def iter_records(n: int, seed: int, signal: float = SIGNAL) -> tuple[dict, Iterator[tuple[int, dict]]]:
    """``(truth, records)``: the per-patient truth (stay numbers, classes, posterior, categorical
    clinical values) and a lazy
    iterator of ``(institution index, record)`` for every week line of every stay."""
    rng = np.random.default_rng(seed)
    tables = model(signal)
    classes, drawn, posterior = sample_clinical(n, rng, tables)
    stay_numbers = rng.choice(9_000_000, size=n, replace=False) + 1_000_000
    clinical = {name: [values[i] if i >= 0 else "" for i in drawn[name]]
                for name, (values, _) in tables["categorical"].items()}
    truth = {"stay_numbers": [f"{s:07d}" for s in stay_numbers], "classes": classes, "posterior": posterior,
             "clinical": clinical}
    structure = {
        "institution": rng.integers(0, len(_INSTITUTIONS), n),
        "admin": rng.choice(100_000_000, size=n, replace=False),
        "entry_day": rng.integers(0, 365, n),
        "length": np.minimum(rng.geometric(1 / 21, n), 120),
        "age": rng.random(n),
        "birth_offset": rng.integers(0, 366, n),
        "residence": rng.random(n),
        "commune": rng.integers(0, len(_COMMUNES), n),
        "abroad": rng.integers(0, len(_ABROAD), n),
        "transfer": rng.random(n),
        "transfer_day": rng.random(n),
        "surgery_lag": rng.integers(1, 30, n),
        "units": rng.integers(0, 20, (n, 2)),
        "coins": rng.random((n, 7)),
    }

    def records() -> Iterator[tuple[int, dict]]:
        coins = _Coins(np.random.default_rng([seed, 1]))  # later weeks, acts: class-independent
        for i in range(n):
            yield from _stay_records(i, truth, drawn, structure, tables, coins)

    return truth, records()


class _Coins:
    """Uniform draws handed out one at a time from blocks (scalar Generator calls are slow)."""

    def __init__(self, rng: np.random.Generator, block: int = 1 << 16):
        self.rng, self.block, self.values, self.next = rng, block, [], 0

    def __call__(self) -> float:
        if self.next == len(self.values):
            self.values, self.next = self.rng.random(self.block).tolist(), 0
        self.next += 1
        return self.values[self.next - 1]

    def pick(self, options):
        return options[int(self() * len(options))]


def _stay_records(i, truth, drawn, structure, tables, coin: _Coins) -> Iterator[tuple[int, dict]]:
    """Every weekly line of stay ``i``: later weeks re-rate dependence and rehabilitation acts
    without regard to the class, and a transfer splits one week over two units."""
    value = {name: values[i] for name, values in truth["clinical"].items()}
    institution = int(structure["institution"][i])
    departement = _INSTITUTIONS[institution]
    entry = dt.date(YEAR, 1, 1) + dt.timedelta(days=int(structure["entry_day"][i]))
    exit_ = entry + dt.timedelta(days=int(structure["length"][i]) - 1)
    low, high = _AGE_DRAW[AGE_BANDS.index(value["age_band"])]
    age = low + int(structure["age"][i] * (high - low + 1))
    birth = format_date(_birth_date(entry, age, int(structure["birth_offset"][i])))
    r = structure["residence"][i]
    if r < 0.002:  # anonymous admission: no day/month of birth
        postcode, birth = "99999", "    " + str(entry.year - age)
    elif r < 0.005:
        postcode = "99100"
    elif r < 0.015:
        postcode = _ABROAD[structure["abroad"][i]]
    elif r < 0.02:
        postcode = departement + "999"
    else:
        home = departement if r < 0.87 else _INSTITUTIONS[int(structure["commune"][i]) % len(_INSTITUTIONS)]
        postcode = home + _COMMUNES[structure["commune"][i]]
    letter = "A" if age >= 18 else "J" if age >= 6 else "E"
    authorisation = "5" + value["specialty"] + letter
    surgery = format_date(entry - dt.timedelta(days=int(structure["surgery_lag"][i]))) if drawn["surgery"][i, 0] else ""
    das_codes, _ = tables["bernoulli"]["das"]
    das = [code for code, on in zip(das_codes, drawn["das"][i]) if on]
    das += [code for code in _NOISE_DAS if coin() < 0.08]
    categories = [c for c, on in zip(_CDARR_CATEGORIES, drawn["cdarr"][i]) if on]
    units = [f"{institution + 1:02d}{int(u):02d}" for u in structure["units"][i]]
    transfer = None
    if structure["transfer"][i] < 0.1 and exit_ > entry:
        transfer = entry + dt.timedelta(days=1 + int(structure["transfer_day"][i] * (exit_ - entry).days))
        if units[1] == units[0]:
            units[1] = f"{institution + 1:02d}{(int(structure['units'][i, 0]) + 1) % 20:02d}"
    common = {
        "finess": f"{departement}{780000 + institution:07d}",
        "format_version": "M05",
        "stay_number": truth["stay_numbers"][i],
        "admin_number": f"{YEAR}{int(structure['admin'][i]):08d}",
        "reserved": "",
        "birth_date": birth,
        "sex": value["sex"],
        "postcode": postcode,
        "hospitalisation_type": value["hospitalisation_type"],
        "unit_authorisation": authorisation,
        "surgery_date": surgery,
        "fpp": value["fpp"],
        "mmp": value["mmp"],
        "ae": value["ae"],
    }
    dependence = {item: int(value[item]) for item in PHYSICAL_ITEMS + COGNITIVE_ITEMS}
    monday = entry - dt.timedelta(days=entry.weekday())
    first_week = True
    while monday <= exit_:
        sunday = monday + dt.timedelta(days=6)
        spans = [(units[0], entry, exit_, value["admission"], None)]
        if transfer is not None:
            spans = [(units[0], entry, transfer - dt.timedelta(days=1), value["admission"], "62"),
                     (units[1], transfer, exit_, "62", None)]
        for unit, start, end, admission, leaving in spans:
            if end < monday or start > sunday:
                continue
            leaves = end <= sunday
            exit_fields = (leaving or _final_exit(coin())) if leaves else "  "
            presence = _presence(common["hospitalisation_type"], monday, start, end, structure["coins"][i])
            if first_week:
                acts = categories
            else:
                acts = [c for c, (base, _, _) in _CDARR_CATEGORIES.items() if coin() < base]
            record = {
                **common,
                "entry_date": format_date(start),
                "entry_mode": admission[0],
                "provenance": admission[1].strip(),
                "exit_date": format_date(end) if leaves else "",
                "exit_mode": exit_fields[0].strip(),
                "destination": exit_fields[1].strip(),
                "week": _week(monday),
                "presence_weekdays": presence[:5],
                "presence_weekend": presence[5:],
                "unit": unit,
                **{item: str(level) for item, level in dependence.items()},
                "das": tuple(das),
                "cdarr": tuple(
                    (c, coin.pick(_CDARR_CATEGORIES[c][2]), coin.pick(_OCCURRENCES)) for c in acts
                ),
                "ccam": tuple((code, "0", "1", 1) for code in _CCAM if coin() < 0.03),
            }
            yield institution, record
        first_week = False
        monday = sunday + dt.timedelta(days=1)
        for item in dependence:  # re-rated weekly, independently of the class
            dependence[item] = min(4, max(1, dependence[item] + coin.pick((-1, 0, 1))))


def _final_exit(u: float) -> str:
    """Exit mode + destination of the stay's last line (class-independent)."""
    for fields, cumulative in (("8 ", 0.7), ("87", 0.78), ("71", 0.93), ("76", 0.95)):
        if u < cumulative:
            return fields
    return "9 "


def write_dataset(out: str | os.PathLike, patients: int, seed: int) -> dict:
    """Write ``rhs_01.txt`` … ``rhs_12.txt`` (one per institution, lines in week order as produced weekly),
    ``labels.csv``, ``posterior.csv``, ``bayes.json`` and a manifest; returns the counts."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truth, records = iter_records(patients, seed)
    by_institution: dict[int, list[tuple[tuple[str, str], str]]] = {}
    lines = 0
    for institution, record in records:
        week_key = (record["week"][2:], record["week"][:2])
        by_institution.setdefault(institution, []).append((week_key, format_line(record)))
        lines += 1
    files = []
    for institution in range(len(_INSTITUTIONS)):  # every file, even empty, so the list is fixed
        name = f"rhs_{institution + 1:02d}.txt"
        rows = sorted(by_institution.get(institution, []), key=lambda item: item[0])
        (out / name).write_text("".join(line + "\n" for _, line in rows), encoding="ascii")
        files.append(name)
    with open(out / "labels.csv", "w", newline="") as handle:
        handle.write("stay_number,label\n")
        handle.writelines(f"{s},{c}\n" for s, c in zip(truth["stay_numbers"], truth["classes"]))
    posterior = truth["posterior"]
    with open(out / "posterior.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["stay_number", *(f"p{c}" for c in range(K))])
        for stay, row in zip(truth["stay_numbers"], posterior):
            writer.writerow([stay, *(f"{p:.6f}" for p in row)])
    counts = {
        "patients": patients,
        "lines": lines,
        "files": len(files),
        "class_counts": np.bincount(truth["classes"], minlength=K).tolist(),
    }
    bayes = {
        "bayes_accuracy": float(posterior.max(axis=1).mean()),
        "argmax_posterior_accuracy": float((posterior.argmax(axis=1) == truth["classes"]).mean()),
        "definition": "mean over patients of max_c P(c | clinical variables); labels are drawn from that posterior",
        "signal": SIGNAL,
        **counts,
    }
    write_json(out / "bayes.json", bayes)
    write_manifest(out, stage="synth-pmsi", files=files + ["labels.csv", "posterior.csv", "bayes.json"],
                   params={"patients": patients, "seed": seed, "signal": SIGNAL}, counts=counts)
    return bayes
