"""Synthetic generator: Table 1 class mix, the noisy label model, long-tailed vocabularies, determinism."""
from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from diagnosenet.artifacts import verify_manifest
from diagnosenet.pmsi import CLASSES, TABLE1_TOTALS
from diagnosenet.pmsi.rhs import _AE, _ICD10
from diagnosenet.pmsi.synth import (
    PRIOR, expected_code_features, iter_records, model, sample_clinical, vocabularies, write_dataset,
)


def test_class_mix_matches_table1_at_full_scale():
    """116,831 stays (the paper's size): every class within 0.5 percentage points of Table 1."""
    truth, _ = iter_records(116_831, seed=2020)  # the labels synth-pmsi writes; records stay lazy
    share = np.bincount(truth["classes"], minlength=len(CLASSES)) / 116_831
    table1 = np.array(TABLE1_TOTALS) / sum(TABLE1_TOTALS)
    assert np.abs(share - table1).max() * 100 < 0.5
    assert len(set(truth["stay_numbers"])) == 116_831


def test_bayes_accuracy_is_known_and_well_below_one():
    rng = np.random.default_rng(0)
    classes, _, posterior = sample_clinical(20_000, rng, model())
    np.testing.assert_allclose(posterior.sum(axis=1), 1.0, rtol=1e-9)
    bayes = posterior.max(axis=1).mean()
    assert 0.70 < bayes < 0.85
    # labels behave as draws from the posterior: argmax accuracy matches the expected maximum
    assert abs((posterior.argmax(axis=1) == classes).mean() - bayes) < 0.015
    # and the posterior is calibrated: mean P(true class) equals mean sum of squared posteriors
    assert abs(posterior[np.arange(len(classes)), classes].mean() - (posterior ** 2).sum(axis=1).mean()) < 0.015


def test_vocabularies_are_long_tailed_valid_and_uninformative():
    """Thousands of ICD-10 codes with Zipf-like skew, every code valid in its RHS field, and no tail
    code shared with a class-dependent value (else the posterior would be wrong)."""
    vocab = vocabularies()
    tables = model()
    patterns = {"das": _ICD10, "mmp": _ICD10, "ae": _AE, "ccam": r"[A-Z]{4}\d{3}",  # as rhs.py validates them
                **{name: r"[A-Z]{3}[A-Z0-9+]" for name in vocab if name.startswith("cdarr")}}
    for name, (codes, p) in vocab.items():
        assert len(set(codes)) == len(codes) == len(p), name
        np.testing.assert_allclose(p.sum(), 1.0)
        assert (np.diff(p) <= 0).all(), name  # codes are in rank order
        width = 7 if name == "ccam" else 4 if name.startswith("cdarr") else 8
        assert all(re.fullmatch(patterns[name], code.ljust(width)) for code in codes), name
    for name, (size, top_mass) in {"das": (20_000, 0.8), "mmp": (10_000, 0.7), "ae": (10_000, 0.7)}.items():
        codes, p = vocab[name]
        assert len(codes) >= size and p[:len(p) // 100].sum() > top_mass and p[len(p) // 2:].sum() < 0.02
    assert not set(vocab["das"][0]) & set(tables["bernoulli"]["das"][0])
    for name in ("mmp", "ae"):
        assert not set(vocab[name][0]) & set(tables["categorical"][name][0])
    # the paper's width: expected distinct DAS + MMP + AE codes at 116,831 stays plus the ~370 other
    # features (acts, FPP, demographics, ...) within 15 % of its 14,637 features
    expected = sum(expected_code_features(116_831).values())
    assert 0.85 * 14_637 < expected + 370 < 1.15 * 14_637


def test_posterior_stays_exact_with_tail_codes():
    """Stays whose MMP comes from the tail and the others are each calibrated: the posterior
    treats a tail code as carrying no class information, and it indeed carries none."""
    tables = model()
    classes, drawn, posterior = sample_clinical(30_000, np.random.default_rng(3), tables)
    tail = drawn["mmp"] >= len(tables["categorical"]["mmp"][0])
    assert abs(tail.mean() - tables["tails"]["mmp"][2]) < 0.02
    for subset in (tail, ~tail):
        p, c = posterior[subset], classes[subset]
        assert abs((p.argmax(axis=1) == c).mean() - p.max(axis=1).mean()) < 0.02
        assert abs(p[np.arange(len(c)), c].mean() - (p ** 2).sum(axis=1).mean()) < 0.02
    assert posterior[tail].max(axis=1).mean() < posterior[~tail].max(axis=1).mean()  # a tail code informs less


def test_weaker_signal_lowers_the_ceiling():
    rng = np.random.default_rng(0)
    weak = sample_clinical(5_000, rng, model(signal=0.1))[2].max(axis=1).mean()
    rng = np.random.default_rng(0)
    strong = sample_clinical(5_000, rng, model(signal=0.6))[2].max(axis=1).mean()
    assert PRIOR.max() < weak < strong


def test_written_files(raw_dir):
    manifest = verify_manifest(raw_dir, stage="synth-pmsi")
    bayes = json.loads((raw_dir / "bayes.json").read_text())
    labels = list(csv.DictReader(open(raw_dir / "labels.csv")))
    posterior = list(csv.DictReader(open(raw_dir / "posterior.csv")))
    assert len(labels) == len(posterior) == bayes["patients"] == manifest["counts"]["patients"]
    assert [row["stay_number"] for row in labels] == [row["stay_number"] for row in posterior]
    assert {int(row["label"]) for row in labels} <= set(range(len(CLASSES)))
    best = np.array([[float(row[f"p{c}"]) for c in range(len(CLASSES))] for row in posterior]).max(axis=1)
    assert bayes["bayes_accuracy"] == pytest.approx(best.mean(), abs=1e-5)
    assert len(list(raw_dir.glob("rhs_*.txt"))) > 1


def test_same_seed_same_bytes(tmp_path):
    first, second, other = (tmp_path / name for name in ("a", "b", "c"))
    for out, seed in ((first, 5), (second, 5), (other, 6)):
        write_dataset(out, patients=60, seed=seed)
    for path in first.glob("*.txt"):
        assert path.read_bytes() == (second / path.name).read_bytes()
    assert (first / "labels.csv").read_bytes() == (second / "labels.csv").read_bytes()
    assert (first / "rhs_01.txt").read_bytes() != (other / "rhs_01.txt").read_bytes()


def test_synth_command_writes_every_institution_file(tmp_path):
    from diagnosenet.cli import main

    assert main(["synth-pmsi", "--patients", "20", "--seed", "1", "--out", str(tmp_path)]) == 0
    files = sorted(p.name for p in tmp_path.glob("rhs_*.txt"))
    assert files == [f"rhs_{i:02d}.txt" for i in range(1, 13)]  # fixed list, some may be empty
    assert verify_manifest(tmp_path)["counts"]["patients"] == 20
