"""When each step computed and when it exchanged, per rank: ``RUN/timeline/rank<R>.csv``.

One row per step of every worker (the thing Horovod's timeline is asked for most): its start
(Unix time), the seconds spent computing the gradient, exchanging it (all-reduce, or the
round trip to the asynchronous master) and applying the update, the micro-batch rows and the
bytes this worker handed to the exchange. ``figures.timeline`` draws one run's; the
scalability benchmark sums compute and exchange per step from these files.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from diagnosenet.artifacts import atomic_write

COLUMNS = ("rank", "epoch", "step", "start", "compute_s", "exchange_s", "apply_s", "rows", "payload_bytes")


class StepTimeline:
    """Appends step rows for one rank; on resume keeps only the rows of checkpointed epochs."""

    def __init__(self, out_dir: Path, rank: int, *, resumed_epoch: int = 0):
        self.path = Path(out_dir) / "timeline" / f"rank{rank}.csv"
        self.rank = rank
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resumed_epoch and self.path.exists():
            with open(self.path, newline="") as handle:
                kept = [row for row in csv.DictReader(handle) if int(row["epoch"]) <= resumed_epoch]
        def rewrite(handle) -> None:   # atomic: a full disk leaves the old timeline as it was
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(kept)

        atomic_write(self.path, rewrite)
        self._handle = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._handle, fieldnames=COLUMNS)

    def record(self, epoch: int, step: int, start: float, compute_s: float, exchange_s: float, apply_s: float,
               rows: int, payload_bytes: int) -> None:
        self._writer.writerow({"rank": self.rank, "epoch": epoch, "step": step, "start": f"{start:.6f}",
                               "compute_s": f"{compute_s:.6f}", "exchange_s": f"{exchange_s:.6f}",
                               "apply_s": f"{apply_s:.6f}", "rows": rows, "payload_bytes": payload_bytes})

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "StepTimeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_timeline(out_dir: Path) -> list[dict]:
    """Every rank's rows of a run, numbers parsed."""
    rows = []
    for path in sorted((Path(out_dir) / "timeline").glob("rank*.csv")):
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                rows.append({k: (float(v) if k in ("start", "compute_s", "exchange_s", "apply_s") else int(v))
                             for k, v in row.items()})
    return rows


def measured_speeds(out_dir: Path, workers: int) -> list[float]:
    """Each worker's training throughput in an earlier run (rows per second of its own compute,
    exchange excluded), from its timeline: the ``speeds`` of balanced shards. Worker ``w``
    (1-based) is the rank ``metrics.json`` maps to it (``mpi.rank_workers``), else rank ``w``;
    the first epoch (TensorFlow's tracing) is left out when there are later ones."""
    from diagnosenet.artifacts import ArtifactError, read_json

    out_dir = Path(out_dir)
    rows = read_timeline(out_dir)
    if len({r["epoch"] for r in rows}) > 1:
        first = min(r["epoch"] for r in rows)
        rows = [r for r in rows if r["epoch"] != first]
    metrics = out_dir / "metrics.json"
    rank_workers = (read_json(metrics).get("mpi", {}).get("rank_workers") if metrics.exists() else None) or {}
    worker_of = {int(rank): int(worker) for rank, worker in rank_workers.items()}
    done, seconds = np.zeros(workers + 1), np.zeros(workers + 1)
    for row in rows:
        worker = worker_of.get(row["rank"], row["rank"])
        if 1 <= worker <= workers:
            done[worker] += row["rows"]
            seconds[worker] += row["compute_s"]
    missing = [w for w in range(1, workers + 1) if seconds[w] <= 0]
    if missing:
        raise ArtifactError(f"{out_dir}/timeline: no timed steps of worker(s) {missing} among {workers}; "
                            "measure speeds on a run with the same number of workers")
    return [float(done[w] / seconds[w]) for w in range(1, workers + 1)]
