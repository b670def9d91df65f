"""Synthetic SSR stays written as real RHS M05 files, with a known noisy label model.

Why: the paper's PACA data set cannot leave the hospitals, yet every downstream stage needs
RHS files with the paper's class mix, its width (14,637 first-week features at 116,831 stays)
and a learnable but imperfect label. The generator is a naive-Bayes world (docs/pmsi.md):

1. a latent Clinical Major Category ``c`` is drawn from the Table 1 class frequencies;
2. given ``c`` the *clinical* variables are drawn independently: age band, sex,
   hospitalisation type, entry mode + provenance, unit specialty, surgery flag, FPP, MMP, AE,
   associated diagnoses (one Bernoulli per "signal" code), the six dependence scores and the
   rehabilitation professional categories. Each class-conditional distribution is
   ``(1 - s) * shared background + s * class profile``: the shared part makes codes
   overlap between classes, so the label is noisy;
3. the long tail of codes is drawn independently of ``c`` from fixed Zipf-like vocabularies
   (thousands of ICD-10 codes, CCAM and CdARR acts): extra associated diagnoses, and for a
   class-independent share of stays an MMP or AE code taken from the tail instead of the
   class-dependent draw. Tail vocabularies exclude the informative codes, so a tail code
   says nothing about ``c`` and the posterior stays exact;
4. everything else (institution, postcode, dates, stay length, unit transfers, later weeks,
   act codes and occurrences) is drawn independently of ``c``.

The exact posterior ``P(c | clinical variables)`` follows from Bayes' rule; the label written
to ``labels.csv`` is ``c`` itself, which is the same as drawing the label from that posterior.
The Bayes-optimal accuracy is therefore ``mean(max posterior)``; it is written to
``bayes.json``. The first-week features of ``compose-pmsi`` carry these clinical variables, so
no classifier on them can beat that number (except by chance on a finite test set).
"""
from __future__ import annotations

import bisect
import csv
import datetime as dt
import functools
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from diagnosenet.artifacts import write_json, write_manifest
from diagnosenet.pmsi import AGE_BANDS, CLASSES, TABLE1_TOTALS
from diagnosenet.pmsi.rhs import format_date, format_line

PRIOR = np.array(TABLE1_TOTALS) / sum(TABLE1_TOTALS)
#: weight of the class profile against the shared background (tuned for ~78 % Bayes accuracy)
SIGNAL = 0.39
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
#: rehabilitation professional categories (CdARR): background probability, favouring classes, most common acts
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

# --- class-independent long tails: fixed Zipf-Mandelbrot vocabularies ----------------------------
# Real RHS carry thousands of distinct codes, most of them rare; sizes and exponents are set so
# that the expected first-week feature count at the paper's 116,831 stays is about its 14,637
# (``expected_code_features``). The vocabularies are part of the model, not of the seed.
VOCABULARY_SEED = 13
#: ICD-10 first letters and their relative share of a vocabulary's codes (SSR-like chapters; no U)
_ICD10_LETTERS = dict(zip("ABCDEFGHIJKLMNOPQRSTVWXYZ", (2, 2, 5, 4, 6, 5, 6, 3, 9, 4, 5, 4, 10, 4, 0.3, 0.2, 1,
                                                      6, 9, 4, 0.5, 1, 0.5, 1, 8)))
#: field → (vocabulary size, Zipf exponent, rank offset, allowed first letters, head codes)
_TAIL_SHAPES = {
    # noise diagnoses: real common SSR comorbidities lead (cataract, deafness, reflux, thyroid, ...)
    "das": (30_000, 1.6, 10.0, "ABCDEFGHIJKLMNOPQRSTVWXYZ",
            ("H269", "H919", "K219", "E039", "E785", "N40", "G473", "M199", "B182", "Z921")),
    "mmp": (20_000, 1.5, 10.0, "ABCDEFGHIJKLMNOPQRSTZ", ()),   # no external causes (V-Y)
    "ae": (20_000, 1.5, 10.0, "ABCDEFGHIJKLMNOPQST", ()),      # ATIH: chapters I-XVII and XIX only
}
#: mean number of noise associated diagnoses per stay (Poisson)
NOISE_DAS_MEAN = 2.3
#: share of stays whose MMP / (present) AE comes from the tail rather than the class-dependent draw
TAIL_RATE = {"mmp": 0.35, "ae": 0.5}
#: CCAM medical acts: (vocabulary size, exponent, head codes); each of a line's two act slots is used with CCAM_RATE
_CCAM_SHAPE = (3_000, 1.0, ("DEQP003", "ZBQK002", "HEQE002", "NEQK010"))
CCAM_RATE = 0.06
#: CdARR act codes per professional category (the category's listed acts first)
_CDARR_ACTS_PER_CATEGORY, _CDARR_EXPONENT = 30, 1.0
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


def zipf(size: int, exponent: float, offset: float = 0.0) -> np.ndarray:
    """Zipf-Mandelbrot probabilities of ranks 1..size: ``(rank + offset) ** -exponent``, normalised."""
    weights = (np.arange(1, size + 1) + offset) ** -exponent
    return weights / weights.sum()


def _unique_codes(stream: int, size: int, head: tuple, exclude: set, draw) -> tuple[str, ...]:
    """``head`` then codes from ``draw(rng, batch)`` until ``size``, skipping repeats and ``exclude``."""
    rng = np.random.default_rng([VOCABULARY_SEED, stream])
    codes = dict.fromkeys(code for code in head if code not in exclude)
    while len(codes) < size:
        codes.update((code, None) for code in draw(rng, 2 * size) if code not in exclude)
    return tuple(codes)[:size]


def _icd10(letters: str):
    """Draws of ICD-10-shaped codes: letter + 2 digits, then (70 %) one or (15 %) two more digits."""
    weights = np.array([_ICD10_LETTERS[letter] for letter in letters])

    def draw(rng, batch):
        first = rng.choice(list(letters), size=batch, p=weights / weights.sum())
        category, digits = rng.integers(0, 100, batch), rng.integers(0, 100, batch)
        extra = rng.choice(3, size=batch, p=(0.15, 0.7, 0.15))
        return [f"{a}{c:02d}" + ("", f"{d // 10}", f"{d:02d}")[e] for a, c, e, d in zip(first, category, extra, digits)]
    return draw


_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def _ccam(rng, batch):
    """CCAM-shaped codes: 4 letters + 3 digits."""
    return ["".join(row) + f"{n:03d}" for row, n in zip(_ALPHABET[rng.integers(0, 26, (batch, 4))],
                                                        rng.integers(0, 1000, batch))]


def _cdarr(rng, batch):
    """CdARR-shaped act codes: 3 letters + ``+``."""
    return ["".join(row) + "+" for row in _ALPHABET[rng.integers(0, 26, (batch, 3))]]


@functools.lru_cache(maxsize=None)
def vocabularies() -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """Every class-independent vocabulary as ``(codes in rank order, probabilities)``.

    Tail vocabularies exclude the codes whose class-conditional draw they stand in for, so a
    written code tells whether it came from the tail; that keeps the posterior exact.
    """
    informative = {
        "das": set(_DAS_SIGNAL),
        "mmp": {code for profile in _CATEGORICAL["mmp"][2] if profile for code in profile},
        "ae": {code for profile in _CATEGORICAL["ae"][2] if profile for code in profile},
    }
    out = {}
    for stream, (field, (size, exponent, offset, letters, head)) in enumerate(_TAIL_SHAPES.items()):
        out[field] = (_unique_codes(stream, size, head, informative[field], _icd10(letters)),
                      zipf(size, exponent, offset))
    size, exponent, head = _CCAM_SHAPE
    out["ccam"] = (_unique_codes(len(_TAIL_SHAPES), size, head, set(), _ccam), zipf(size, exponent))
    listed = tuple(act for *_, acts in _CDARR_CATEGORIES.values() for act in acts)
    extra = iter(_unique_codes(len(_TAIL_SHAPES) + 1, _CDARR_ACTS_PER_CATEGORY * len(_CDARR_CATEGORIES), (),
                               set(listed), _cdarr))
    for category, (*_, acts) in _CDARR_CATEGORIES.items():
        codes = acts + tuple(next(extra) for _ in range(_CDARR_ACTS_PER_CATEGORY - len(acts)))
        out[f"cdarr{category}"] = (codes, zipf(len(codes), _CDARR_EXPONENT))
    return out


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
        "tails": {name: (*vocabularies()[name], rate) for name, rate in TAIL_RATE.items()},
    }


def written_values(tables: dict, name: str) -> tuple[str, ...]:
    """Codes a categorical variable's indices point to: its class-dependent values, then its tail."""
    values = tables["categorical"][name][0]
    return tuple(values) + (tables["tails"][name][0] if name in tables["tails"] else ())


def expected_code_features(n: int, signal: float = SIGNAL) -> dict[str, float]:
    """Expected number of distinct DAS, MMP and AE codes among ``n`` stays (exact for this model).

    Why: it is what sizes the vocabularies (the composed width at the paper's 116,831 stays) and
    what tests compare composition against. Stays are independent, so a code with per-stay
    probability ``q`` is seen with probability ``1 - (1 - q) ** n``.
    """
    tables = model(signal)
    seen = lambda q: float((-np.expm1(n * np.log1p(-np.minimum(q, 1 - 1e-15)))).sum())  # noqa: E731
    _, das_table = tables["bernoulli"]["das"]
    _, noise = vocabularies()["das"]
    expected = {"das": seen(PRIOR @ das_table) + float((-np.expm1(-n * NOISE_DAS_MEAN * noise)).sum())}
    per_class = {}  # (K, written values) probability of each written code given the class
    for name in ("mmp", "ae"):
        table = tables["categorical"][name][1]
        _, tail, rate = tables["tails"][name]
        per_class[name] = np.hstack([(1 - rate) * table, rate * np.tile(tail, (K, 1))])
    z_codes = np.char.startswith(np.array(written_values(tables, "mmp")), "Z")
    ae_present = per_class["mmp"][:, z_codes].sum(axis=1)
    ae_present += (1 - ae_present) * AE_RATE
    expected["mmp"] = seen(PRIOR @ per_class["mmp"])
    expected["ae"] = seen((PRIOR * ae_present) @ per_class["ae"])
    return expected


def _draw_categorical(rng: np.random.Generator, table: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """One value index per patient from its class row (inverse CDF, vectorised)."""
    cumulative = np.cumsum(table, axis=1)[classes]
    return np.minimum((rng.random(len(classes))[:, None] > cumulative).sum(axis=1), table.shape[1] - 1)


def sample_clinical(n: int, rng: np.random.Generator, tables: dict) -> tuple[np.ndarray, dict, np.ndarray]:
    """Classes, the class-dependent clinical variables and the exact posterior ``P(c | variables)``.

    A categorical index points into :func:`written_values`: ``-1`` is an absent AE and an index
    past the class-dependent values is a tail code, whose likelihood is the same for every class.
    """
    classes = rng.choice(K, size=n, p=PRIOR)
    log_post = np.tile(np.log(PRIOR), (n, 1))
    drawn: dict[str, np.ndarray] = {}
    for name, (values, table) in tables["categorical"].items():
        index = _draw_categorical(rng, table, classes)
        if name in tables["tails"]:
            codes, probabilities, rate = tables["tails"][name]
            tail = np.minimum(np.searchsorted(np.cumsum(probabilities), rng.random(n), side="right"), len(codes) - 1)
            index = np.where(rng.random(n) < rate, len(values) + tail, index)
        if name == "ae":  # absent (class-independently) unless MMP is a Z code
            mmp_codes = np.array(written_values(tables, "mmp"))
            present = (np.char.startswith(mmp_codes[drawn["mmp"]], "Z")) | (rng.random(n) < AE_RATE)
            index = np.where(present, index, -1)
        informative = (index >= 0) & (index < len(values))
        log_post += np.where(informative[:, None], np.log(table[:, np.where(informative, index, 0)].T), 0.0)
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
    clinical = {}
    for name in tables["categorical"]:
        values = written_values(tables, name)
        clinical[name] = [values[i] if i >= 0 else "" for i in drawn[name]]
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
    # noise diagnoses of stay i: codes[noise_start[i]:noise_start[i + 1]] (repeats dropped when written)
    das_codes, das_probabilities = vocabularies()["das"]
    counts = rng.poisson(NOISE_DAS_MEAN, n)
    picks = np.searchsorted(np.cumsum(das_probabilities), rng.random(int(counts.sum())), side="right")
    structure["noise_das"] = [das_codes[j] for j in np.minimum(picks, len(das_codes) - 1)]
    structure["noise_start"] = np.concatenate([[0], np.cumsum(counts)]).tolist()

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

    def rank(self, vocabulary: tuple[tuple[str, ...], list[float]]) -> str:
        """A code drawn from ``(codes, cumulative probabilities)``."""
        codes, cumulative = vocabulary
        return codes[min(bisect.bisect_right(cumulative, self()), len(codes) - 1)]


@functools.lru_cache(maxsize=None)
def _act_vocabularies() -> dict[str, tuple[tuple[str, ...], list[float]]]:
    """CCAM and per-category CdARR vocabularies with cumulative probabilities, for :meth:`_Coins.rank`."""
    return {name: (codes, np.cumsum(p).tolist()) for name, (codes, p) in vocabularies().items()
            if name == "ccam" or name.startswith("cdarr")}


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
    start, end = structure["noise_start"][i], structure["noise_start"][i + 1]
    das += dict.fromkeys(structure["noise_das"][start:end])  # noise codes never repeat a signal code
    acts_vocabulary = _act_vocabularies()
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
                    (c, coin.rank(acts_vocabulary["cdarr" + c]), coin.pick(_OCCURRENCES)) for c in acts
                ),
                "ccam": tuple((code, "0", "1", 1) for code in dict.fromkeys(
                    coin.rank(acts_vocabulary["ccam"]) for _ in range(2) if coin() < CCAM_RATE)),
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


def generator_params() -> dict:
    """What, besides patients and seed, decides the files: a manifest check on these refuses files
    written by an earlier version of the model (e.g. the benchmark's cached data)."""
    return {"signal": SIGNAL, "tail_rate": TAIL_RATE, "noise_das_mean": NOISE_DAS_MEAN,
            "vocabularies": {name: len(codes) for name, (codes, _) in vocabularies().items()}}


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
                   params={"patients": patients, "seed": seed, **generator_params()}, counts=counts)
    return bayes
