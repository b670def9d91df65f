"""``--sample-rule``: which R peaks become samples (all-peaks, the default, vs paper), and
``contiguous``: unbroken stretches of signal that keep the timing between beats."""
from __future__ import annotations

import numpy as np
import pytest

from diagnosenet.artifacts import verify_manifest
from diagnosenet.cli import main
from diagnosenet.ecg import build
from diagnosenet.ecg.records import FS, RecordError
from diagnosenet.ecg.windows import PLAUSIBLE_RR_S, SAMPLE_RULES, Geometry, peak_runs, record_samples


def spikes(n: int, peaks: np.ndarray) -> np.ndarray:
    signal = np.zeros(n)
    signal[peaks] = np.arange(1, peaks.size + 1)  # each peak tagged by its rank (1-based)
    return signal


def regular(count: int, first: int = 200, rr: int = FS) -> np.ndarray:
    """``count`` beats at 60 bpm, all with a full 260-sample window when the signal is long enough."""
    return first + rr * np.arange(count)


def count(peaks: np.ndarray, n: int, rule: str, stride: int = 5) -> int:
    geometry = Geometry(stride=stride, normalisation="none", sample_rule=rule)
    return record_samples(spikes(n, peaks), peaks, geometry, FS).shape[0]


def test_default_is_all_peaks_and_unchanged():
    peaks = regular(12)
    n = int(peaks[-1]) + 200
    assert Geometry().sample_rule == "all-peaks" and SAMPLE_RULES[0] == "all-peaks"
    default = record_samples(spikes(n, peaks), peaks, Geometry(normalisation="none"))
    assert default.shape == (2, 1300)  # floor(12 / 5): today's rule
    np.testing.assert_array_equal(default, record_samples(spikes(n, peaks), peaks, Geometry(normalisation="none", sample_rule="all-peaks")))
    assert np.array_equal(default[:, 130::260].ravel(), np.arange(1, 11))  # windows of peaks 1..10


@pytest.mark.parametrize(
    "beats, all_peaks, paper",
    [
        (5, 1, 0),    # the paper rule drops the two edge beats: 3 left
        (6, 1, 0),
        (7, 1, 1),    # 5 inner beats
        (11, 2, 1),   # 9 inner
        (12, 2, 2),   # 10 inner
        (36, 7, 6),   # a 30 s record at 72 bpm-ish: 34 inner
    ],
)
def test_samples_per_record_on_regular_beats(beats, all_peaks, paper):
    peaks = regular(beats)
    n = int(peaks[-1]) + 200  # every window fits
    assert count(peaks, n, "all-peaks") == all_peaks
    assert count(peaks, n, "paper") == paper


def test_paper_drops_edge_beats_before_the_fit_check():
    # the first peak is too close to the start for a window: all-peaks skips it (11 windows);
    # paper drops it as the first detected beat and the last beat too (10 windows), not 3 beats
    peaks = np.concatenate([[60], regular(11, first=360)])
    n = int(peaks[-1]) + 200
    assert [run.tolist() for run in peak_runs(peaks, n, 260, "all-peaks")] == [peaks[1:].tolist()]
    assert [run.tolist() for run in peak_runs(peaks, n, 260, "paper")] == [peaks[1:-1].tolist()]
    assert count(peaks, n, "all-peaks") == 2 and count(peaks, n, "paper") == 2
    samples = record_samples(spikes(n, peaks), peaks, Geometry(normalisation="none", sample_rule="paper"), FS)
    assert np.array_equal(samples[:, 130::260].ravel(), np.arange(2, 12))  # still centred on the same peaks


def test_paper_never_groups_across_an_implausible_rr():
    # 10 beats, a 3 s pause (a missed stretch), 10 beats, then a spurious peak 0.1 s after the last
    first = regular(10)
    second = regular(10, first=int(first[-1]) + 3 * FS)
    peaks = np.concatenate([first, second, [second[-1] + FS // 10, second[-1] + FS // 10 + FS]])
    n = int(peaks[-1]) + 200
    runs = peak_runs(peaks, n, 260, "paper", FS)
    assert [run.size for run in runs] == [9, 10, 1]  # edge beats dropped, broken at the pause and the 0.1 s RR
    assert count(peaks, n, "all-peaks") == 4    # 22 windows in one run
    assert count(peaks, n, "paper") == 3        # 9 → 1, 10 → 2, 1 → 0
    # with stride 1 the overlapping groups stop at the break as well: (9-4) + (10-4)
    assert count(peaks, n, "paper", stride=1) == 11
    assert count(peaks, n, "all-peaks", stride=1) == 22 - 4


def test_rr_bounds_are_inclusive():
    lo, hi = (int(round(bound * FS)) for bound in PLAUSIBLE_RR_S)

    def runs(intervals: list[int]) -> int:
        peaks = np.cumsum([200] + intervals)
        return len(peak_runs(peaks, int(peaks[-1]) + 200, 260, "paper", FS))

    assert runs([lo, hi] * 6) == 1  # alternating 0.25 s and 2 s intervals: one run
    assert runs([lo - 1, hi] * 6) == 6  # every short interval breaks it
    assert runs([lo, hi + 1] * 6) == 6  # every long interval too (the last one is an edge beat's)


def test_contiguous_samples_are_unbroken_stretches_that_keep_the_beats_timing():
    """A sample starts half a window before every ``stride``-th beat and runs window × per_sample
    samples of the signal as it is: the other beats sit at their true distance from the first
    (irregular RR intervals survive); a stretch that would cross the record's end is not made."""
    rng = np.random.default_rng(3)
    peaks = np.cumsum(rng.integers(150, 450, size=20)) + 100        # irregular RR: 0.5-1.5 s
    n = int(peaks[-1]) + 100
    signal = spikes(n, peaks)
    geometry = Geometry(window=260, per_sample=5, stride=2, normalisation="none", sample_rule="contiguous")
    samples = record_samples(signal, peaks, geometry, FS)
    firsts = [p for p in peaks[::2] if p - 130 >= 0 and p - 130 + 1300 <= n]
    assert samples.shape == (len(firsts), 1300) and len(firsts) < len(peaks[::2])   # the last ones do not fit
    for sample, first in zip(samples, firsts):
        np.testing.assert_array_equal(sample, signal[first - 130:first + 1170])
        inside = peaks[(peaks >= first - 130) & (peaks < first + 1170)]
        assert np.flatnonzero(sample).tolist() == (inside - first + 130).tolist()   # every beat at its true offset
    windows = record_samples(signal, peaks, Geometry(stride=2, normalisation="none"), FS)
    assert windows.shape[1] == 1300 and not np.array_equal(windows[0], samples[0])  # windows cut the RR out


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="sample_rule"):
        Geometry(sample_rule="paper-ish")
    with pytest.raises(ValueError, match="sample_rule"):
        peak_runs(regular(5), 2000, 260, "every")


def test_signal_samples_keeps_its_signature_and_applies_the_rule(monkeypatch):
    peaks = regular(7)
    signal = spikes(int(peaks[-1]) + 200, peaks)
    monkeypatch.setattr(build, "_detect", lambda signal, detector: peaks)
    assert build.signal_samples(signal, Geometry(), "xqrs").shape == (1, 1300)  # positional, as predict calls it
    assert build.signal_samples(signal, Geometry(sample_rule="paper"), detector="xqrs").shape == (1, 1300)
    monkeypatch.setattr(build, "_detect", lambda signal, detector: peaks[:6])
    assert build.signal_samples(signal, Geometry(), "xqrs").shape == (1, 1300)
    with pytest.raises(RecordError, match="sample rule paper") as caught:
        build.signal_samples(signal, Geometry(sample_rule="paper"), "xqrs")
    assert caught.value.reason == "no_complete_sample"


@pytest.mark.timeout(120)
def test_window_ecg_records_the_rule_in_its_manifest(tmp_path):
    from diagnosenet.ecg.synth import write_dataset

    raw = tmp_path / "raw"
    write_dataset(raw, records=8, seed=5)
    rows = {}
    for rule in ("all-peaks", "paper"):
        out = tmp_path / rule
        args = ["window-ecg", "--records", str(raw), "--out", str(out), "--detector", "pantompkins", "--jobs", "1"]
        assert main(args + (["--sample-rule", rule] if rule == "paper" else [])) == 0
        manifest = verify_manifest(out, stage="window-ecg", params={"sample_rule": rule, "detector": "pantompkins"})
        rows[rule] = manifest["counts"]["rows"]
    assert 0 < rows["paper"] < rows["all-peaks"]


def test_config_key_ecg_sample_rule():
    """``ecg.sample_rule`` is checked by the schema and optional (older configs keep all-peaks)."""
    from pathlib import Path

    import yaml
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    repo = Path(__file__).resolve().parents[2]
    schema = str(repo / "workflow" / "schemas" / "config.schema.yaml")
    config = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    assert config["ecg"]["sample_rule"] == "all-peaks"
    config["ecg"]["sample_rule"] = "paper"
    validate(config, schema)
    config["ecg"]["sample_rule"] = "paper-ish"
    with pytest.raises(WorkflowError, match="paper-ish"):
        validate(config, schema)
    del config["ecg"]["sample_rule"]
    validate(config, schema)
    assert config["ecg"]["sample_rule"] == "all-peaks"  # the schema's default
    assert "--sample-rule {params.sample_rule}" in (repo / "workflow" / "rules" / "ecg.smk").read_text()
