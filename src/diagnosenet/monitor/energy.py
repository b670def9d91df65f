"""Energy of a run from its monitor CSVs: joules per source, per epoch and to the best epoch.

Power columns (``*_w``) are integrated with the trapezoid rule over the samples' own
timestamps; energy counters (``*_j``: NVML total energy, RAPL) are differenced, which is
exact between samples. Hosts without a power source (this CPU-only CI machine) get
``cpu_core_seconds`` instead — the integral of process CPU use — and say so: a proxy is
never reported as joules. Idle samples (phase ``idle``) give the baseline power, reported
separately so users can compute net energy.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

import numpy as np


def read_samples(path: str | Path) -> dict[str, np.ndarray]:
    """A monitor CSV as column arrays (numbers as float, ``phase`` as str)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    columns = {}
    for name in rows[0]:
        values = [r[name] for r in rows]
        columns[name] = np.array(values) if name == "phase" else np.array(
            [float(v) if v not in ("", None) else math.nan for v in values])
    return columns


def _integrate(t: np.ndarray, y: np.ndarray, start: float, end: float) -> float:
    """∫ y dt over [start, end], linear between samples (NaN samples dropped)."""
    ok = ~np.isnan(y)
    t, y = t[ok], y[ok]
    if len(t) < 2 or end <= start:
        return 0.0
    grid = np.concatenate(([start], t[(t > start) & (t < end)], [end]))
    values = np.interp(grid, t, y)
    return float(np.sum((values[1:] + values[:-1]) * np.diff(grid)) / 2)


def _difference(t: np.ndarray, y: np.ndarray, start: float, end: float) -> float:
    ok = ~np.isnan(y)
    if ok.sum() < 2:
        return 0.0
    return float(np.interp(end, t[ok], y[ok]) - np.interp(start, t[ok], y[ok]))


def energy_between(samples: dict[str, np.ndarray], start: float, end: float) -> dict[str, float]:
    """Joules per power/energy column (and CPU core-seconds) between two Unix times."""
    t = samples["timestamp"]
    out = {}
    for name, values in samples.items():
        if name.endswith("_w"):
            out[name[:-2] + "_j"] = _integrate(t, values, start, end)
        elif name.endswith("_j"):
            out[name] = _difference(t, values, start, end)
    if "cpu_percent" in samples:
        out["cpu_core_seconds"] = _integrate(t, samples["cpu_percent"] / 100.0, start, end)
    return out


def idle_power(samples: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean power (W) of each ``*_w`` column over the idle phase before training."""
    idle = samples["phase"] == "idle"
    return {name: float(np.nanmean(v[idle])) for name, v in samples.items()
            if name.endswith("_w") and idle.any() and not np.isnan(v[idle]).all()}


def _sum(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0.0) + value
    return total


def _epoch_windows(track_csv: Path) -> list[tuple[int, float, float]]:
    with open(track_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [(int(r["epoch"]), float(r["timestamp"]) - float(r["epoch_seconds"]), float(r["timestamp"])) for r in rows]


def board_joules(energy: dict[str, float]) -> float | None:
    """Joules of the whole measured hardware, counting every device once.

    Per GPU the NVML energy counter when it counts, else its integrated power; on a Jetson the
    board input rail (``VDD_IN``/``*_IN``) when present, else the sum of the rails; for RAPL
    only top-level zones (packages, psys), whose sub-zones they already contain.
    """
    parts, gpus = [], {k.split("_", 1)[0] for k in energy if k.startswith("gpu")}
    for gpu in sorted(gpus):
        counter = energy.get(f"{gpu}_energy_j", 0.0)
        parts.append(counter if counter > 0 else energy.get(f"{gpu}_power_j", 0.0))
    rails = {k: v for k, v in energy.items() if k.startswith("jetson_") and k.endswith("_j")}
    board = [v for k, v in rails.items() if k.endswith("_in_j")]
    parts += board[:1] if board else list(rails.values())
    parts += [v for k, v in energy.items() if k.startswith("rapl_top")]
    return float(sum(parts)) if parts else None


def run_energy(csv_paths: Sequence[str | Path], track_csv: str | Path, best_epoch: int) -> dict:
    """Energy of a run summed over its monitor CSVs (one per rank/host/role)."""
    monitors = [s for s in (read_samples(p) for p in csv_paths) if s]
    if not monitors:
        return {"status": "no monitor samples"}
    track_csv = Path(track_csv)
    windows = _epoch_windows(track_csv) if track_csv.exists() else []
    run_start = min(float(s["timestamp"][s["phase"] == "run"].min()) if (s["phase"] == "run").any()
                    else float(s["timestamp"].min()) for s in monitors)
    run_end = max(float(s["timestamp"].max()) for s in monitors)
    total = _sum([energy_between(s, run_start, run_end) for s in monitors])
    per_epoch = [{"epoch": e, **_sum([energy_between(s, a, b) for s in monitors])} for e, a, b in windows]
    best_end = next((b for e, a, b in windows if e == best_epoch), None)
    to_best = _sum([energy_between(s, run_start, best_end) for s in monitors]) if best_end else {}
    joules_total = board_joules(total)
    return {
        "status": "measured" if joules_total is not None else "no power source on this host (CPU core-seconds only)",
        "sources": sorted({c for s in monitors for c in s if c.endswith(("_w", "_j"))}),
        "total": total, "per_epoch": per_epoch, "to_best_epoch": to_best,
        "joules_total": joules_total,
        "joules_to_best": board_joules(to_best) if to_best else None,
        "idle_power_w": _sum([idle_power(s) for s in monitors]),
        "seconds": run_end - run_start,
    }
