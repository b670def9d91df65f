"""Energy of a run from its monitor CSVs: joules per source, per epoch, to the best epoch, per host.

Power columns (``*_w``) are integrated with the trapezoid rule over the samples' own
timestamps; energy counters (``*_j``: NVML total energy, RAPL, already unwrapped by the
source) are differenced, which is exact between samples. Hosts without a power source (this
CPU-only CI machine) get ``cpu_core_seconds`` instead — the integral of process CPU use — and
say so: a proxy is never reported as joules. Idle samples (phase ``idle``) give the baseline
power, reported separately so users can compute net energy.

Every training process runs a monitor, and every monitor samples the host-wide devices
(GPUs, Jetson rails, RAPL zones) that all processes of a machine share. So monitors are
grouped by machine (the sidecar's ``machine``, the kernel's boot id; else its ``host``) and a
host-wide column is counted once per machine: each interval between two consecutive sample
times of any of the machine's monitors counts once, as the mean of the monitors that cover it
(so a monitor that stops early, e.g. a lost worker, leaves no gap while another still
samples). Process columns (``process`` source) are counted per monitor and summed.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from diagnosenet.monitor.sources import PROCESS_SOURCES, source_of

UNKNOWN_HOST = "unknown"


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


@dataclass
class MonitorSeries:
    """One monitor CSV with what its sidecar says: where it ran and which columns are host-wide."""

    name: str
    host: str
    machine: str
    samples: dict[str, np.ndarray]
    sources: dict[str, str | None] = field(default_factory=dict)  # column -> source
    host_wide: frozenset[str] = frozenset()


def read_monitor(path: str | Path) -> MonitorSeries | None:
    """A monitor CSV and its ``.json`` sidecar; ``None`` when it has no sample.

    CSVs without a sidecar (hand-made) are put on one host named ``unknown`` and their
    columns are attributed to sources by name.
    """
    path = Path(path)
    samples = read_samples(path)
    if not samples:
        return None
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    host = str(meta.get("host") or UNKNOWN_HOST)
    sources = {c: source_of(c) for c in samples}
    sources.update({c: name for name, columns in (meta.get("source_columns") or {}).items() for c in columns})
    host_wide = meta.get("host_wide_columns")
    if host_wide is None:
        host_wide = [c for c, name in sources.items() if name is not None and name not in PROCESS_SOURCES]
    return MonitorSeries(path.stem, host, str(meta.get("machine") or host), samples, sources, frozenset(host_wide))


def _quantity(column: str) -> tuple[str, bool, float] | None:
    """``(output name, is a counter, scale)`` of a column that adds up over time, else None."""
    if column.endswith("_w"):
        return column[:-2] + "_j", False, 1.0
    if column.endswith("_j"):
        return column, True, 1.0
    if column == "cpu_percent":
        return "cpu_core_seconds", False, 0.01
    return None


def _accumulate(series: Sequence[tuple[np.ndarray, np.ndarray]], start: float, end: float,
                counter: bool) -> float | None:
    """∫ over [start, end] of one quantity sampled by one or more monitors of the same device.

    Power is integrated (trapezoids), a counter differenced (a decrease — a reset the source
    could not unwrap — counts 0, never negative); linear between samples, never extrapolated
    beyond a monitor's first and last valid sample. Each interval between consecutive sample
    times is counted once, as the mean over the monitors covering it. ``None`` when no monitor
    has two valid samples.
    """
    clean = []
    for t, y in series:
        ok = ~np.isnan(y) & ~np.isnan(t)
        if ok.sum() >= 2:
            order = np.argsort(t[ok], kind="stable")
            clean.append((t[ok][order], y[ok][order]))
    if not clean:
        return None
    if end <= start:
        return 0.0
    inner = [t[(t > start) & (t < end)] for t, _ in clean]
    grid = np.unique(np.concatenate([[start, end], *inner]))
    total, count = np.zeros(len(grid) - 1), np.zeros(len(grid) - 1)
    for t, y in clean:
        values = np.interp(grid, t, y)
        part = np.maximum(np.diff(values), 0.0) if counter else (values[1:] + values[:-1]) * np.diff(grid) / 2
        covered = (grid[:-1] >= t[0]) & (grid[1:] <= t[-1])
        total += np.where(covered, part, 0.0)
        count += covered
    seen = count > 0
    return float(np.sum(total[seen] / count[seen]))


def energy_between(samples: dict[str, np.ndarray], start: float, end: float) -> dict[str, float]:
    """Joules per power/energy column (and CPU core-seconds) of one monitor between two Unix times."""
    out = {}
    for column, values in samples.items():
        quantity = _quantity(column)
        if quantity is not None:
            name, counter, scale = quantity
            value = _accumulate([(samples["timestamp"], values * scale)], start, end, counter)
            if value is not None:
                out[name] = value
    return out


def machine_energy(monitors: Sequence[MonitorSeries], start: float, end: float) -> dict[str, float]:
    """Joules per column of the monitors of one machine: host-wide columns once, process columns summed."""
    out: dict[str, float] = {}
    shared = sorted({c for m in monitors for c in m.host_wide if c in m.samples and _quantity(c)})
    for column in shared:
        name, counter, scale = _quantity(column)
        value = _accumulate([(m.samples["timestamp"], m.samples[column] * scale) for m in monitors
                             if column in m.host_wide and column in m.samples], start, end, counter)
        if value is not None:
            out[name] = value
    for monitor in monitors:
        for name, value in process_energy(monitor, start, end).items():
            out[name] = out.get(name, 0.0) + value
    return out


def process_energy(monitor: MonitorSeries, start: float, end: float) -> dict[str, float]:
    """The figures of one monitor's own processes (its columns that are not host-wide)."""
    own = {c: v for c, v in monitor.samples.items() if c not in monitor.host_wide}
    return energy_between({**own, "timestamp": monitor.samples["timestamp"]}, start, end)


def machine_idle_power(monitors: Sequence[MonitorSeries]) -> dict[str, float]:
    """Idle power of one machine: a host-wide column's mean over all its monitors' idle samples
    (counted once), process columns summed over monitors."""
    pooled: dict[str, list[np.ndarray]] = {}
    out: dict[str, float] = {}
    for monitor in monitors:
        idle = monitor.samples["phase"] == "idle"
        for name, values in monitor.samples.items():
            if not name.endswith("_w"):
                continue
            if name in monitor.host_wide:
                pooled.setdefault(name, []).append(values[idle])
            elif idle.any() and not np.isnan(values[idle]).all():
                out[name] = out.get(name, 0.0) + float(np.nanmean(values[idle]))
    for name, parts in pooled.items():
        values = np.concatenate(parts)
        if len(values) and not np.isnan(values).all():
            out[name] = float(np.nanmean(values))
    return out


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


def _counted_sources(energy: dict[str, float], monitors: Sequence[MonitorSeries]) -> list[str]:
    """Names of the sources whose columns made ``energy``: host-wide ones (sorted), then process ones."""
    by_name: dict[str, str] = {}
    for monitor in monitors:
        for column, source in monitor.sources.items():
            quantity = _quantity(column)
            if quantity is not None and source is not None:
                by_name.setdefault(quantity[0], source)
    found = {by_name[name] for name in energy if name in by_name}
    return sorted(found - PROCESS_SOURCES) + sorted(found & PROCESS_SOURCES)


def _add(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(sum(known)) if known else None


def run_energy(csv_paths: Sequence[str | Path], track_csv: str | Path, best_epoch: int) -> dict:
    """Energy of a run from its monitor CSVs (one per rank/task, on one or more hosts).

    Host-wide devices are counted once per machine, process figures per monitor; ``hosts``
    breaks the run down by host (the host names of a machine joined with ``+``): the sources
    counted there, its joules, and each of its monitors' process figures.
    """
    monitors = [m for m in (read_monitor(p) for p in csv_paths) if m is not None]
    if not monitors:
        return {"status": "no monitor samples"}
    track_csv = Path(track_csv)
    windows = _epoch_windows(track_csv) if track_csv.exists() else []
    run_start = min(float(m.samples["timestamp"][m.samples["phase"] == "run"].min())
                    if (m.samples["phase"] == "run").any() else float(m.samples["timestamp"].min()) for m in monitors)
    run_end = max(float(m.samples["timestamp"].max()) for m in monitors)
    best_end = next((b for e, a, b in windows if e == best_epoch), None)
    machines: dict[str, list[MonitorSeries]] = {}
    for monitor in monitors:
        machines.setdefault(monitor.machine, []).append(monitor)

    hosts, totals, to_bests = {}, [], []
    for key, group in machines.items():
        label = "+".join(sorted({m.host for m in group}))
        if label in hosts:  # two machines answering to the same host name
            label = f"{label} ({key[:8]})"
        total = machine_energy(group, run_start, run_end)
        to_best = machine_energy(group, run_start, best_end) if best_end else {}
        totals.append(total)
        to_bests.append(to_best)
        hosts[label] = {
            "sources": _counted_sources(total, group),
            "joules": board_joules(total), "joules_to_best": board_joules(to_best) if to_best else None,
            "total": total, "idle_power_w": machine_idle_power(group),
            "monitors": {m.name: process_energy(m, run_start, run_end) for m in group},
        }
    joules_total = _add([h["joules"] for h in hosts.values()])
    unmeasured = sorted(label for label, h in hosts.items() if h["joules"] is None)
    if joules_total is None:
        status = "no power source on this host (CPU core-seconds only)" if len(hosts) == 1 else \
            "no power source on any host (CPU core-seconds only)"
    elif unmeasured:
        status = f"measured on some hosts only; no power source on {', '.join(unmeasured)} (CPU core-seconds only)"
    else:
        status = "measured"
    return {
        "status": status,
        "sources": sorted({c for m in monitors for c in m.samples if c.endswith(("_w", "_j"))}),
        "total": _sum(totals),
        "per_epoch": [{"epoch": e, **_sum([machine_energy(g, a, b) for g in machines.values()])}
                      for e, a, b in windows],
        "to_best_epoch": _sum(to_bests),
        "joules_total": joules_total,
        "joules_to_best": _add([h["joules_to_best"] for h in hosts.values()]) if best_end else None,
        "idle_power_w": _sum([h["idle_power_w"] for h in hosts.values()]),
        "seconds": run_end - run_start,
        "hosts": hosts,
    }
