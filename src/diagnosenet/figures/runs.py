"""Read finished run directories into one tidy table (one row per run).

A run directory is ``{task}/runs/{mode}-w{N}/`` with ``metrics.json`` and ``track.csv``
written by every training mode (``training.evaluation.finalise_run``), and optional
``monitor/*.csv``; this module only reads them, so figures never depend on a mode. A
baseline directory (``{task}/baseline/``) has the same ``metrics.json`` keys but no mode:
it becomes a row with mode ``baseline``, so the table compares every model with it.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

#: columns of runs.csv, in order
COLUMNS = ("task", "mode", "workers", "accuracy", "macro_f1", "challenge_f1", "best_epoch", "epochs_run",
           "time_to_best_s", "train_seconds", "samples_per_second", "bytes_exchanged_per_epoch",
           "energy_total_j", "energy_to_best_j", "cpu_core_seconds", "energy_status", "energy_sources", "slurm_job",
           "nodes", "run_dir")


def energy_sources(energy: dict) -> str | None:
    """Which sources were counted on which host: ``"node0: nvml, process; node1: rapl, process"``
    (host-wide devices once per host, then the processes' own figures); None when not recorded."""
    hosts = energy.get("hosts") or {}
    return "; ".join(f"{host}: {', '.join(entry.get('sources') or []) or 'none'}"
                     for host, entry in sorted(hosts.items())) or None


def read_track(run_dir: Path) -> list[dict[str, float]]:
    with open(Path(run_dir) / "track.csv", newline="", encoding="utf-8") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]


def read_run(run_dir: str | Path) -> dict:
    """One row of runs.csv from a run or baseline directory (missing energy → empty cells, never an error)."""
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    energy = metrics.get("energy") or {}
    row = {key: metrics.get(key) for key in COLUMNS}
    row.update(task=metrics.get("task", run_dir.parents[1].name), mode=metrics.get("mode", "baseline"),
               workers=metrics.get("workers", 1), run_dir=run_dir.as_posix(),
               energy_total_j=energy.get("joules_total"), energy_to_best_j=energy.get("joules_to_best"),
               cpu_core_seconds=(energy.get("total") or {}).get("cpu_core_seconds"),
               energy_status=energy.get("status"), energy_sources=energy_sources(energy),
               slurm_job=(metrics.get("slurm") or {}).get("job_id"), nodes=nodes_of(metrics))
    return row


def nodes_of(metrics: dict) -> str | None:
    """Where each rank / task ran: ``"rank0 node0, rank1 node1"`` or ``"ps:0 node0, worker:0 node1"``."""
    mpi_hosts = (metrics.get("mpi") or {}).get("hosts")
    if mpi_hosts:
        return ", ".join(f"rank{r} {h}" for r, h in enumerate(mpi_hosts))
    hosts = metrics.get("hosts")
    return ", ".join(f"{task} {h}" for task, h in hosts.items()) if isinstance(hosts, dict) and hosts else None


def write_runs_csv(rows: list[dict], path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in sorted(rows, key=lambda r: (r["task"], r["mode"], int(r["workers"]))):
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
