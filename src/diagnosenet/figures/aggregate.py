"""The report's run summary and the scalability experiment, from finished run directories.

``aggregate`` writes ``AGGREGATE_FILES`` (rule ``aggregate``: the runs table and the
convergence, timeline, energy and confusion figures); ``scalability_figure`` writes the
figures 2-3 analogue and its table (rule ``scalability_figure``). Both only read what every
training mode writes (``metrics.json``, ``track.csv``, ``confusion.csv``, ``monitor/*.csv``).
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from diagnosenet.figures import plots
from diagnosenet.figures.runs import read_run, read_track, write_runs_csv

log = logging.getLogger(__name__)
#: files ``aggregate`` writes into its output directory
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
    run_dirs, baseline_dirs, out = [Path(d) for d in run_dirs], [Path(d) for d in baseline_dirs], Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [read_run(d) for d in run_dirs]
    baselines = [read_run(d) for d in baseline_dirs]
    write_runs_csv(runs + baselines, out / "runs.csv")
    plots.convergence(runs, [read_track(d) for d in run_dirs], out / "convergence.png")
    plots.timelines(read_monitors(run_dirs), out / "timelines.png")
    plots.energy_accuracy(runs, out / "energy_accuracy.png")
    plots.confusions(runs + baselines, [read_confusion(d) for d in [*run_dirs, *baseline_dirs]], out / "confusion.png")
    log.info("aggregated %d runs and %d baselines into %s", len(runs), len(baselines), out)
    return runs + baselines


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: "" if r.get(k) is None else r[k] for k in columns} for r in rows)


def scalability_figure(run_dirs: list[Path], out: Path) -> list[dict]:
    """The scalability experiment (``figures.scaling``): figure ``out``, the scaling table
    (``out`` with ``.csv``), the cost model's predictions for 1–16 workers beside the measured
    points (``-model.csv``, ``figures.cost_model``), the Pareto recommendation
    (``-recommendation.md``) and the communication timeline of the run with the most workers
    (``-timeline.png``)."""
    from diagnosenet.figures.cost_model import MODEL_COLUMNS, model_table, validation_summary
    from diagnosenet.figures.scaling import SCALING_COLUMNS, recommendation_markdown, scaling_table
    from diagnosenet.training.timeline import read_timeline

    run_dirs, out = [Path(d) for d in run_dirs], Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = scaling_table(run_dirs)
    predicted = model_table(rows)
    _write_csv(out.with_suffix(".csv"), SCALING_COLUMNS, rows)
    _write_csv(out.parent / f"{out.stem}-model.csv", MODEL_COLUMNS, predicted)
    plots.scalability(rows, out, predicted)
    (out.parent / f"{out.stem}-recommendation.md").write_text(recommendation_markdown(rows), encoding="utf-8")
    widest = max(rows, key=lambda r: (int(r["workers"]), r["mode"] != "desktop"), default=None)
    steps = read_timeline(Path(widest["run_dir"])) if widest else []
    title = f"{widest['task']} {widest['mode']} × {widest['workers']}: compute and exchange per step" if widest else ""
    plots.step_timeline(steps, title, out.parent / f"{out.stem}-timeline.png")
    for (task, mode), error in validation_summary(predicted).items():
        log.info("cost model, %s %s: %s", task, mode, "no run beyond the calibration" if error is None
                 else f"largest error {error:.0%} on the runs it was not calibrated on")
    log.info("scalability of %d runs: %s", len(rows), out)
    return rows
