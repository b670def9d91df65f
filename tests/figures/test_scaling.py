"""The scalability table, the ring cost model and the Pareto recommendation, on runs with known trade-offs."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from diagnosenet.figures.scaling import (pareto, recommend, recommendation_markdown, ring_allreduce_seconds,
                                         scaling_table)
from diagnosenet.training.timeline import COLUMNS


def row(mode, workers, time_s, cpu_s, joules=None):
    return {"task": "pmsi", "mode": mode, "workers": workers, "time_to_target_s": time_s, "cpu_s_to_target": cpu_s,
            "energy_to_target_j": joules, "micro_batch": 64, "efficiency": None, "target_accuracy": 0.7}


RUNS = [row("desktop", 1, 400.0, 400.0), row("mpi-sync", 2, 220.0, 440.0), row("mpi-sync", 4, 120.0, 480.0),
        row("mpi-async", 4, 150.0, 600.0),      # dominated by mpi-sync x 4 (slower and dearer)
        row("grpc-sync", 4, 120.0, 500.0),      # same time as mpi-sync x 4, dearer: dominated
        row("mpi-async", 6, 100.0, 650.0), row("grpc-async", 2, None, None)]  # never reached the target


def test_pareto_keeps_the_runs_nothing_beats_on_both_time_and_cost():
    front = pareto(RUNS)
    assert [(r["mode"], r["workers"]) for r in front] == [("mpi-async", 6), ("mpi-sync", 4), ("mpi-sync", 2),
                                                          ("desktop", 1)]


def test_the_recommendation_follows_the_budget():
    assert (recommend(RUNS)["mode"], recommend(RUNS)["workers"]) == ("mpi-async", 6)        # no budget: fastest
    within_200s = recommend(RUNS, time_budget_s=200)
    assert (within_200s["mode"], within_200s["workers"]) == ("mpi-sync", 4)                 # cheapest under 200 s
    within_450 = recommend(RUNS, cost_budget=450)
    assert (within_450["mode"], within_450["workers"]) == ("mpi-sync", 2)                   # fastest under 450 CPU-s
    assert recommend(RUNS, time_budget_s=50) is None
    text = recommendation_markdown(RUNS)
    assert "Fastest: **mpi-async × 6 worker(s)" in text and "Cheapest: **desktop × 1 worker(s)" in text


def test_joules_replace_cpu_seconds_when_every_candidate_measured_them():
    runs = [row("mpi-sync", 2, 100.0, 100.0, joules=900.0), row("mpi-sync", 4, 60.0, 200.0, joules=800.0)]
    assert [r["workers"] for r in pareto(runs)] == [4]   # faster and fewer joules, despite more CPU-seconds


def test_ring_model():
    assert ring_allreduce_seconds(33e6, 1) == 0.0
    assert ring_allreduce_seconds(33e6, 4) == pytest.approx(2 * 3 / 4 * 33e6 / 125e6)


def _fake_run(root: Path, mode: str, workers: int, sps: float, valid: list[float], step_s: tuple[float, float]) -> Path:
    run = root / mode / f"w{workers}"
    (run / "timeline").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({
        "task": "pmsi", "mode": mode, "workers": workers, "samples_per_second": sps, "train_seconds": 10.0 * len(valid),
        "energy": {"total": {"cpu_core_seconds": 20.0 * len(valid)}}}))
    (run / "run.json").write_text(json.dumps({"settings": {"exchange": "sparse"}}))
    with open(run / "track.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "valid_metric", "wall_seconds"])
        writer.writeheader()
        writer.writerows({"epoch": e, "valid_metric": v, "wall_seconds": 10.0 * e} for e, v in enumerate(valid, 1))
    for rank in range(1, workers + 1):
        with open(run / "timeline" / f"rank{rank}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            for step in range(1, 4):
                writer.writerow({"rank": rank, "epoch": 1, "step": step, "start": 0, "compute_s": step_s[0],
                                 "exchange_s": step_s[1], "apply_s": 0.01, "rows": 64, "payload_bytes": 1000})
    return run


def test_the_table_measures_weak_scaling_against_the_modes_one_worker_run(tmp_path):
    one = _fake_run(tmp_path, "mpi-sync", 1, 100.0, [0.60, 0.70, 0.72], (0.19, 0.0))
    four = _fake_run(tmp_path, "mpi-sync", 4, 320.0, [0.65, 0.716, 0.73], (0.19, 0.05))
    table = {r["workers"]: r for r in scaling_table([one, four])}
    assert table[1]["step_samples_per_second"] == pytest.approx(64 / 0.2)       # + 0.01 s apply per step
    assert table[4]["step_samples_per_second"] == pytest.approx(4 * 64 / 0.25)
    assert table[4]["efficiency"] == pytest.approx(0.8)                           # 0.2 s / 0.25 s per step
    assert table[4]["target_accuracy"] == pytest.approx(0.715)        # best one-worker accuracy - 0.5 point
    assert table[4]["time_to_target_s"] == 20.0 and table[1]["time_to_target_s"] == 30.0
    assert table[4]["cpu_s_to_target"] == pytest.approx(60.0 * 20 / 30)
    assert table[4]["compute_s_per_step"] == 0.19 and table[4]["exchange_s_per_step"] == 0.05
    assert table[4]["model_exchange_s_per_step"] == pytest.approx(ring_allreduce_seconds(1000, 4))
    assert table[4]["exchange"] == "sparse" and table[4]["micro_batch"] == 64


def test_the_mpi_async_masters_measured_time_per_gradient_is_its_cpu_over_its_cores(tmp_path):
    """``server_demand_s``: CPU seconds per gradient ÷ the master's cores, at most one (its loop
    is one thread); absent for runs that did not record both."""
    from diagnosenet.figures.scaling import server_demand_seconds

    run = _fake_run(tmp_path, "mpi-async", 1, 100.0, [0.6], (0.19, 0.05))
    metrics = json.loads((run / "metrics.json").read_text())
    assert server_demand_seconds(run) is None
    for cores, expected in ((0.25, 0.0428), (2.0, 0.0107)):
        metrics["mpi"] = {"service_cpu_ms_per_gradient": 10.7, "master_cpu_cores": cores}
        (run / "metrics.json").write_text(json.dumps(metrics))
        assert server_demand_seconds(run) == pytest.approx(expected)
    assert scaling_table([run])[0]["server_demand_s"] == pytest.approx(0.0107)


def test_the_figure_writes_the_cost_models_predictions_beside_the_measured_points(tmp_path):
    from diagnosenet.figures.aggregate import scalability_figure

    runs = [_fake_run(tmp_path, "mpi-sync", n, 100.0, [0.6, 0.7], (0.19, exchange))
            for n, exchange in ((1, 0.0), (2, 0.05), (4, 0.09))]
    scalability_figure(runs, tmp_path / "out" / "scalability.png")
    with open(tmp_path / "out" / "scalability-model.csv", newline="") as handle:
        model = {int(r["workers"]): r for r in csv.DictReader(handle)}
    assert sorted(model) == list(range(1, 17))
    assert [model[n]["role"] for n in (1, 2, 4, 12)] == ["calibration", "calibration", "validation", "prediction"]
    assert float(model[2]["error"]) == pytest.approx(0.0, abs=1e-6)     # the calibration point is fitted exactly
    assert float(model[4]["measured_step_s"]) == pytest.approx(0.19 + 0.09 + 0.01)
    assert model[12]["measured_step_s"] == "" and 0 < float(model[12]["predicted_efficiency"]) < 1


def test_steady_throughput_leaves_out_the_first_epoch():
    from diagnosenet.figures.scaling import steady_samples_per_second

    track = [{"samples": 1000, "epoch_seconds": 30.0}, {"samples": 1000, "epoch_seconds": 10.0},
             {"samples": 1000, "epoch_seconds": 15.0}]
    assert steady_samples_per_second(track) == pytest.approx(2000 / 25.0)
    assert steady_samples_per_second(track[:1]) is None
