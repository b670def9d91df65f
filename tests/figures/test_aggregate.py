"""Aggregation of run directories (in the format every training mode writes) into the report's files,
and the two experiment figures (``scalability-figure``, ``hyperparameters-figure``)."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from diagnosenet.artifacts import write_json
from diagnosenet.metrics import write_confusion_csv
from diagnosenet.training.progress import TRACK_COLUMNS

BIN = Path(sys.executable).parent


def drawn(png: Path) -> bool:
    """A real picture: a PNG whose pixels are not one flat colour."""
    from matplotlib.image import imread

    pixels = imread(png)
    return png.read_bytes()[:4] == b"\x89PNG" and pixels.std() > 0.01 and (pixels[..., :3] < 0.5).mean() > 0.001


def fake_run(root: Path, task: str, mode: str, workers: int, accuracy: float, monitor: bool) -> Path:
    run = root / task / "runs" / f"{mode}-w{workers}"
    (run / "monitor").mkdir(parents=True)
    with open(run / "track.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TRACK_COLUMNS)
        writer.writeheader()
        for epoch in (1, 2, 3):
            writer.writerow(dict(epoch=epoch, train_loss=1 / epoch, valid_loss=1.2 / epoch, train_metric=0.5,
                                 valid_metric=0.4 + 0.1 * epoch, epoch_seconds=2, wall_seconds=2 * epoch,
                                 timestamp=100 + 2 * epoch, samples=64, bytes_exchanged=0))
    write_confusion_csv(run / "confusion.csv", [[5, 1], [2, 4]], ["A", "B"])
    hosts = {f"node{i}": {"sources": ["rapl", "process"], "joules": 90.0 / workers} for i in range(workers)}
    energy = {"status": "measured", "joules_total": 90.0, "joules_to_best": 60.0 / workers,
              "total": {"cpu_core_seconds": 4.0}, "hosts": hosts} if monitor else {"status": "no monitor samples"}
    write_json(run / "metrics.json", {"task": task, "mode": mode, "workers": workers, "accuracy": accuracy,
                                      "macro_f1": accuracy - 0.1, "best_epoch": 3, "epochs_run": 3,
                                      "time_to_best_s": 6.0 / workers, "train_seconds": 7.0 / workers,
                                      "energy": energy})
    if monitor:
        with open(run / "monitor" / "rank0.csv", "w", newline="") as handle:
            handle.write("timestamp,elapsed_s,phase,cpu_percent,rss_bytes,gpu0_power_w\n")
            handle.writelines(f"{100 + t},{t},run,{50 + t},{1e6},{30 + t}\n" for t in range(8))
    return run


def fake_baseline(root: Path, task: str, accuracy: float) -> Path:
    """A baseline directory as ``diagnosenet baseline`` writes it: no mode, no epochs, no monitor."""
    base = root / task / "baseline"
    base.mkdir(parents=True)
    write_confusion_csv(base / "confusion.csv", [[6, 0], [3, 3]], ["A", "B"])
    write_json(base / "metrics.json", {"task": task, "accuracy": accuracy, "macro_f1": accuracy - 0.2,
                                       "model": "logistic regression"})
    return base


@pytest.mark.timeout(120)
def test_aggregate_and_scalability_write_every_file_with_one_row_per_run(tmp_path):
    runs = [fake_run(tmp_path, "pmsi", "desktop", 1, 0.7, True), fake_run(tmp_path, "pmsi", "mpi-sync", 2, 0.72, True),
            fake_run(tmp_path, "ecg", "desktop", 1, 0.6, False)]
    baseline = fake_baseline(tmp_path, "pmsi", 0.65)
    out = tmp_path / "summary"
    subprocess.run([str(BIN / "diagnosenet"), "aggregate", "--runs", *map(str, runs), "--baselines", str(baseline),
                    "--out", str(out)], check=True, timeout=100)
    for name in ("convergence.png", "timelines.png", "energy_accuracy.png", "confusion.png"):
        assert drawn(out / name), name
    with open(out / "runs.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["task"], r["mode"], r["workers"]) for r in table] == [
        ("ecg", "desktop", "1"), ("pmsi", "baseline", "1"), ("pmsi", "desktop", "1"), ("pmsi", "mpi-sync", "2")]
    assert table[3]["energy_to_best_j"] == "30.0" and table[0]["energy_to_best_j"] == ""
    assert table[1]["accuracy"] == "0.65" and table[1]["time_to_best_s"] == ""
    assert table[0]["energy_status"] == "no monitor samples"
    # which sources were counted on which host, per run
    assert table[3]["energy_sources"] == "node0: rapl, process; node1: rapl, process"
    assert table[2]["energy_sources"] == "node0: rapl, process" and table[0]["energy_sources"] == ""

    figure = tmp_path / "experiments" / "scalability.png"
    subprocess.run([str(BIN / "diagnosenet"), "scalability-figure", "--runs", *map(str, runs[:2]),
                    "--out", str(figure)], check=True, timeout=100)
    assert drawn(figure)
    with open(figure.with_suffix(".csv"), newline="") as handle:
        assert [float(r["time_to_best_s"]) for r in csv.DictReader(handle)] == [6.0, 3.0]
    assert "## pmsi: target validation accuracy" in (figure.parent / "scalability-recommendation.md").read_text()
    assert drawn(figure.parent / "scalability-timeline.png")


def fake_hparam_run(root: Path, units: int, layers: int, batch: int) -> Path:
    """A run of the hyper-parameter grid as ``train-desktop`` writes it, in its ``u-l-b`` directory."""
    run = root / "pmsi" / "hparams" / f"u{units}-l{layers}-b{batch}"
    run.mkdir(parents=True)
    with open(run / "track.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TRACK_COLUMNS)
        writer.writeheader()
        for epoch in (1, 2):
            writer.writerow(dict(epoch=epoch, train_loss=1 / epoch, valid_loss=1.5 / epoch, train_metric=0.5,
                                 valid_metric=0.5, epoch_seconds=1, wall_seconds=epoch, timestamp=100 + epoch,
                                 samples=64, bytes_exchanged=0))
    per_class = {name: {"precision": 0.5, "recall": 0.5, "f1": 0.2 + 0.1 * i} for i, name in enumerate("ABC")}
    write_json(run / "metrics.json", {"task": "pmsi", "mode": "desktop", "workers": 1, "accuracy": 0.5,
                                      "per_class": per_class})
    return run


@pytest.mark.timeout(120)
def test_hyperparameters_figure_draws_every_grain(tmp_path):
    # 16x2: fine (0.24 M), 512x4: middle (8.29 M), 1024x4: coarse (18.15 M) with 14,637 inputs
    runs = [fake_hparam_run(tmp_path, 16, 2, 256), fake_hparam_run(tmp_path, 512, 4, 256),
            fake_hparam_run(tmp_path, 1024, 4, 512)]
    figure = tmp_path / "experiments" / "hyperparameters.png"
    subprocess.run([str(BIN / "diagnosenet"), "hyperparameters-figure", "--runs", *map(str, runs),
                    "--input-size", "14637", "--out", str(figure)], check=True, timeout=100)
    assert drawn(figure)
