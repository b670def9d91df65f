"""``diagnosenet aggregate`` (the report's tables and figures) and ``diagnosenet figure-scalability``."""
from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import numpy as np

from diagnosenet.figures import plots
from diagnosenet.figures.runs import read_run, read_track, write_runs_csv

log = logging.getLogger(__name__)
#: files ``aggregate`` writes into --out
AGGREGATE_FILES = ("runs.csv", "convergence.png", "timelines.png", "energy_accuracy.png", "confusion.png")


def read_confusion(run_dir: Path) -> tuple[list[str], np.ndarray]:
    with open(run_dir / "confusion.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0][1:], np.array([[int(v) for v in row[1:]] for row in rows[1:]])


def read_monitors(run_dirs: list[Path]) -> list[tuple[str, dict]]:
    from diagnosenet.monitor.energy import read_samples

    found = []
    for run_dir in run_dirs:
        for path in sorted((run_dir / "monitor").glob("*.csv")):
            samples = read_samples(path)
            if samples:
                found.append((f"{run_dir.parents[1].name} {run_dir.name} {path.stem}", samples))
    return found


def aggregate(run_dirs: list[Path], out: Path, baseline_dirs: list[Path] = ()) -> list[dict]:
    """Write ``AGGREGATE_FILES`` for the given run directories; return the runs table.

    Baselines have no epochs and no monitor: they join only the table and the confusion matrices.
    """
    out.mkdir(parents=True, exist_ok=True)
    runs = [read_run(d) for d in run_dirs]
    baselines = [read_run(d) for d in baseline_dirs]
    write_runs_csv(runs + baselines, out / "runs.csv")
    plots.convergence(runs, [read_track(d) for d in run_dirs], out / "convergence.png")
    plots.timelines(read_monitors(run_dirs), out / "timelines.png")
    plots.energy_accuracy(runs, out / "energy_accuracy.png")
    plots.confusions(runs + baselines, [read_confusion(d) for d in [*run_dirs, *baseline_dirs]], out / "confusion.png")
    return runs + baselines


def _aggregate(args: argparse.Namespace) -> int:
    runs = aggregate([Path(d) for d in args.runs], Path(args.out), [Path(d) for d in args.baselines])
    log.info("aggregated %d runs and baselines into %s", len(runs), args.out)
    return 0


def _scalability(args: argparse.Namespace) -> int:
    runs = [read_run(d) for d in args.runs]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_runs_csv(runs, out.with_suffix(".csv"))
    plots.scalability(runs, out)
    return 0


def register(subparsers) -> None:
    a = subparsers.add_parser("aggregate", help="runs table and figures (convergence, timelines, energy, confusion)")
    a.add_argument("--runs", nargs="+", required=True, help="run directories ({task}/runs/{mode}-w{N})")
    a.add_argument("--baselines", nargs="*", default=[], help="baseline directories ({task}/baseline)")
    a.add_argument("--out", required=True, help="directory for " + ", ".join(AGGREGATE_FILES))
    a.set_defaults(func=_aggregate)
    s = subparsers.add_parser("figure-scalability", help="figures 2-3 analogue: time to solution vs workers")
    s.add_argument("--runs", nargs="+", required=True)
    s.add_argument("--out", required=True, help="PNG path (the table is written beside it as .csv)")
    s.set_defaults(func=_scalability)
