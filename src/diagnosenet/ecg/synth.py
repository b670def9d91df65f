"""Synthetic single-lead ECG records in the PhysioNet/CinC 2017 challenge layout.

Beats are sums of Gaussians (P, Q, R, S, T), the morphology model of McSharry et al.'s
ECGSYN, placed on an RR-interval series that carries the rhythm: sinus with respiratory and
Mayer-wave heart-rate variability (Normal); irregular RR, no P waves and a 4-9 Hz
fibrillatory baseline (AF); ectopic beats, brady/tachycardia or a long PR interval (Other);
sinus beats under baseline wander, muscle noise, electrode motion and lead-off flat segments
(Noisy). The class mix and 9-61 s lengths follow the challenge's training set. Every record
draws from its own ``default_rng([seed, index])``, so outputs are reproducible and any
record can be regenerated alone.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfiltfilt

from diagnosenet.ecg.records import FS, Entry, write_record, write_reference

#: challenge training-set class shares (v3 labels: N 5,050 · A 738 · O 2,456 · ~ 284)
CLASS_MIX = {"N": 0.59, "A": 0.09, "O": 0.29, "~": 0.03}
#: wave → (offset from R in s at RR = 1 s, width in s, amplitude relative to R)
SINUS_WAVES = {"P": (-0.17, 0.025, 0.12), "Q": (-0.025, 0.010, -0.10), "R": (0.0, 0.011, 1.0),
               "S": (0.025, 0.011, -0.25), "T": (0.30, 0.055, 0.30)}
#: a premature ventricular beat: wide QRS, no P, discordant T
ECTOPIC_WAVES = {"R": (0.0, 0.035, 1.2), "S": (0.05, 0.04, -0.4), "T": (0.32, 0.07, -0.4)}
OTHER_KINDS = ("ectopic", "brady", "tachy", "av_block")


def class_letters(records: int, rng: np.random.Generator) -> list[str]:
    """Labels in the challenge's proportions (largest remainder, at least one per class)."""
    shares = np.array(list(CLASS_MIX.values())) * records
    counts = np.maximum(np.floor(shares).astype(int), 1)
    while counts.sum() < records:
        counts[np.argmax(shares - counts)] += 1
    while counts.sum() > records:
        counts[np.argmax(counts)] -= 1
    letters = np.repeat(list(CLASS_MIX), counts)
    rng.shuffle(letters)
    return letters.tolist()


def _length_s(rng: np.random.Generator) -> float:
    """Most challenge records are 30 s; the rest spread over 9-61 s."""
    return 30.0 if rng.random() < 0.7 else float(rng.uniform(9.0, 61.0))


def _sinus_rr(duration: float, heart_rate: float, rng: np.random.Generator) -> np.ndarray:
    """RR series with respiratory (~0.25 Hz) and Mayer-wave (~0.1 Hz) modulation plus jitter."""
    mean = 60.0 / heart_rate
    count = int(duration / mean) + 3
    t = np.arange(count) * mean
    resp, mayer = rng.uniform(0.15, 0.35), rng.uniform(0.08, 0.12)
    modulation = (rng.uniform(0.02, 0.05) * np.sin(2 * np.pi * resp * t + rng.uniform(0, 2 * np.pi))
                  + rng.uniform(0.01, 0.03) * np.sin(2 * np.pi * mayer * t + rng.uniform(0, 2 * np.pi)))
    return mean * (1.0 + modulation + rng.normal(0.0, 0.01, count))


def _af_rr(duration: float, rng: np.random.Generator) -> np.ndarray:
    """Irregularly irregular ventricular response: independent log-normal RR intervals."""
    mean = 60.0 / rng.uniform(70.0, 140.0)
    count = int(duration / (0.6 * mean)) + 3
    return np.maximum(mean * rng.lognormal(0.0, rng.uniform(0.18, 0.3), count), 0.28)


def _gaussians(n: int, centres: np.ndarray, widths: np.ndarray, amps: np.ndarray) -> np.ndarray:
    """Sum of Gaussians evaluated only near each centre (±4 widths)."""
    out = np.zeros(n)
    if centres.size == 0:
        return out
    reach = int(np.ceil(4 * widths.max() * FS))
    idx = np.round(centres * FS).astype(np.int64)[:, None] + np.arange(-reach, reach + 1)
    values = amps[:, None] * np.exp(-0.5 * ((idx / FS - centres[:, None]) / widths[:, None]) ** 2)
    inside = (idx >= 0) & (idx < n)
    np.add.at(out, idx[inside], values[inside])
    return out


def _render(n: int, r_times: np.ndarray, rr: np.ndarray, waves: dict, r_amp: float, rng, pr_scale: float = 1.0) -> np.ndarray:
    """Beats of one morphology at ``r_times``; P-R and R-T distances scale with sqrt(RR)."""
    scale = np.sqrt(np.clip(rr, 0.3, 2.0))
    signal = np.zeros(n)
    for name, (offset, width, amp) in waves.items():
        shift = offset * (scale if name in ("P", "T") else 1.0) * (pr_scale if name == "P" else 1.0)
        jitter = rng.normal(1.0, 0.03, r_times.size)
        signal += _gaussians(n, r_times + shift, np.full(r_times.size, width), r_amp * amp * jitter)
    return signal


def beats_at(r_times: np.ndarray, n: int, rng: np.random.Generator, *, p_waves: bool = True,
             r_amp: float = 1.0) -> np.ndarray:
    """Noise-free sinus-morphology beats (mV) with R peaks at ``r_times`` seconds: records with
    known RR intervals for testing detectors and features."""
    r_times = np.asarray(r_times, dtype=np.float64)
    rr = np.diff(r_times, append=r_times[-1] + (r_times[-1] - r_times[-2] if r_times.size > 1 else 0.8))
    waves = {k: v for k, v in SINUS_WAVES.items() if p_waves or k != "P"}
    return _render(n, r_times, rr, waves, r_amp, rng)


def _band_noise(n: int, low: float | None, high: float | None, sd: float, rng) -> np.ndarray:
    noise = rng.normal(0.0, 1.0, n)
    if low and high:
        sos = butter(2, [low, high], btype="bandpass", fs=FS, output="sos")
    elif high:
        sos = butter(2, high, btype="lowpass", fs=FS, output="sos")
    else:
        sos = butter(2, low, btype="highpass", fs=FS, output="sos")
    filtered = sosfiltfilt(sos, noise)
    return sd * filtered / (filtered.std() or 1.0)


def fibrillatory_wave(n: int, rng) -> np.ndarray:
    """f waves: 4-9 Hz oscillation with wandering frequency and amplitude."""
    freq = rng.uniform(5.0, 8.0) + _band_noise(n, None, 0.5, 0.7, rng)
    phase = 2 * np.pi * np.cumsum(np.clip(freq, 4.0, 9.0)) / FS
    amplitude = rng.uniform(0.04, 0.12) * (1.0 + 0.4 * _band_noise(n, None, 0.3, 1.0, rng))
    return amplitude * (np.sin(phase) + 0.3 * np.sin(2 * phase + rng.uniform(0, 2 * np.pi)))


def _artefacts(n: int, rng) -> np.ndarray:
    """Baseline wander, muscle noise and electrode-motion bursts of a noisy recording."""
    t = np.arange(n) / FS
    wander = rng.uniform(0.4, 1.5) * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 2 * np.pi))
    muscle = _band_noise(n, 20.0, 100.0, rng.uniform(0.1, 0.5), rng)
    motion = np.zeros(n)
    for _ in range(rng.integers(2, 8)):
        length = min(n, int(rng.uniform(0.2, 1.5) * FS))
        start = rng.integers(0, n - length + 1)
        motion[start : start + length] += _band_noise(length, 1.0, 15.0, rng.uniform(0.5, 3.0), rng)
    return wander + muscle + motion


def synth_signal(letter: str, rng: np.random.Generator) -> np.ndarray:
    """One record's ECG in mV for a challenge label letter (N, A, O, ~)."""
    duration = _length_s(rng)
    n = int(duration * FS)
    r_amp = rng.uniform(0.5, 2.0) * (-1.0 if rng.random() < 0.1 else 1.0)  # some leads are reversed
    kind = rng.choice(OTHER_KINDS) if letter == "O" else ""
    heart_rate = {"brady": rng.uniform(35, 52), "tachy": rng.uniform(105, 160)}.get(kind, rng.uniform(58, 95))
    rr = _af_rr(duration, rng) if letter == "A" else _sinus_rr(duration, heart_rate, rng)
    ectopic = np.zeros(rr.size, dtype=bool)
    if kind == "ectopic":  # premature beat, then a compensatory pause
        ectopic = rng.random(rr.size) < rng.uniform(0.08, 0.25)
        ectopic[0] = False
        early = rr * (1.0 - rng.uniform(0.55, 0.75)) * ectopic  # how much earlier the ectopic beat comes
        rr = rr - early + np.concatenate([[0.0], early[:-1]])
    r_times = rng.uniform(0.0, rr[0]) + np.concatenate([[0.0], np.cumsum(rr[:-1])])
    keep = r_times < duration
    r_times, rr, ectopic = r_times[keep], rr[keep], ectopic[keep]
    waves = {k: v for k, v in SINUS_WAVES.items() if not (letter == "A" and k == "P")}
    pr_scale = 1.9 if kind == "av_block" else 1.0
    signal = _render(n, r_times[~ectopic], rr[~ectopic], waves, r_amp, rng, pr_scale)
    signal += _render(n, r_times[ectopic], rr[ectopic], ECTOPIC_WAVES, r_amp, rng)
    if letter == "A":
        signal += fibrillatory_wave(n, rng)
    t = np.arange(n) / FS
    signal += rng.uniform(0.03, 0.15) * np.sin(2 * np.pi * rng.uniform(0.15, 0.35) * t + rng.uniform(0, 2 * np.pi))
    signal += rng.normal(0.0, rng.uniform(0.005, 0.025), n)
    if letter == "~":
        signal += _artefacts(n, rng)
        for _ in range(rng.integers(0, 3)):  # lead-off: flat line
            start = rng.integers(0, n)
            signal[start : start + int(rng.uniform(0.5, 4.0) * FS)] = 0.0
    return signal


def write_dataset(out: str | Path, records: int, seed: int) -> dict[str, int]:
    """Write ``records`` records + ``REFERENCE.csv`` to ``out``; return the count per label."""
    if records < len(CLASS_MIX):
        raise ValueError(f"need at least {len(CLASS_MIX)} records (one per class), got {records}")
    out = Path(out)
    letters = class_letters(records, np.random.default_rng(seed))
    entries = [Entry(f"A{i + 1:05d}", letter) for i, letter in enumerate(letters)]
    for i, entry in enumerate(entries):
        write_record(out, entry.record, synth_signal(entry.label, np.random.default_rng([seed, i])))
    write_reference(out, entries)
    return {letter: letters.count(letter) for letter in CLASS_MIX}
