"""The scaling cost model: exact on runs made by a known model, honest about the ones that are not."""
from __future__ import annotations

import pytest

from diagnosenet.figures.cost_model import (StepModel, calibrate, latency_rounds, model_table, mva_cycle_seconds,
                                            validation_summary)


def test_mean_value_analysis_has_the_limits_of_a_closed_network():
    assert mva_cycle_seconds(1, 0.3, 0.1) == pytest.approx(0.4)                 # alone: think + service
    T, D = 0.4, 0.1
    assert mva_cycle_seconds(2, T - D, D) == pytest.approx(T + D * D / T)       # two customers, closed form
    assert mva_cycle_seconds(8, 0.0, 0.1) == pytest.approx(0.8)                 # no think time: the server's queue
    assert mva_cycle_seconds(16, 0.3, 0.1) == pytest.approx(1.6, rel=1e-3)      # saturated: N × D
    assert mva_cycle_seconds(4, 0.3, 1e-9) == pytest.approx(0.3)                # no contention


def run_row(mode, workers, step_s, **parts):
    return {"task": "pmsi", "mode": mode, "workers": workers, "micro_batch": 64,
            "step_samples_per_second": workers * 64 / step_s, **parts}


def collective_rows(model: StepModel, counts):
    rows = []
    for n in counts:
        exchange = model.step_seconds(n) - model.local_s if n > 1 else 0.0
        rows.append(run_row("mpi-sync", n, model.step_seconds(n), compute_s_per_step=model.local_s * 0.6,
                            apply_s_per_step=model.local_s * 0.4, exchange_s_per_step=exchange,
                            bytes_per_step=model.bytes_per_step))
    return rows


def test_a_collective_mode_calibrated_on_two_workers_predicts_its_own_larger_runs():
    truth = StepModel("pmsi", "mpi-sync", "collective", one_worker_step_s=0.30, local_s=0.25,
                      bytes_per_step=3.9e6, latency_s=0.04)
    table = model_table(collective_rows(truth, (1, 2, 4, 6)))
    by_n = {r["workers"]: r for r in table}
    assert by_n[2]["role"] == "calibration" and by_n[4]["role"] == by_n[6]["role"] == "validation"
    assert by_n[12]["role"] == "prediction" and by_n[12]["measured_step_s"] is None
    assert by_n[4]["error"] == pytest.approx(0.0, abs=1e-9) and by_n[6]["error"] == pytest.approx(0.0, abs=1e-9)
    assert by_n[12]["predicted_step_s"] == pytest.approx(0.25 + 4 * 0.04 + 2 * 11 / 12 * 3.9e6 / 125e6)
    assert by_n[4]["predicted_efficiency"] == pytest.approx(0.30 / truth.step_seconds(4))
    assert latency_rounds(6) == 3 and latency_rounds(1) == 0


def test_a_run_off_the_model_shows_as_validation_error():
    truth = StepModel("pmsi", "mpi-sync", "collective", one_worker_step_s=0.30, local_s=0.25,
                      bytes_per_step=3.9e6, latency_s=0.04)
    rows = collective_rows(truth, (1, 2, 4))
    rows[2]["step_samples_per_second"] /= 1.25             # the 4-worker run took 25 % longer per step
    table = model_table(rows)
    assert next(r["error"] for r in table if r["workers"] == 4) == pytest.approx(1 / 1.25 - 1)   # predicted 20 % short
    assert validation_summary(table) == {("pmsi", "mpi-sync"): pytest.approx(0.2)}


def test_a_server_mode_recovers_the_servers_demand_and_predicts_the_saturation():
    think, demand = 0.08, 0.32
    rows = [run_row("mpi-async", n, mva_cycle_seconds(n, think, demand)) for n in (1, 2, 4, 6)]
    model = calibrate(rows)
    assert model.family == "server"
    assert model.demand_s == pytest.approx(demand, rel=0.01) and model.think_s == pytest.approx(think, rel=0.05)
    table = {r["workers"]: r for r in model_table(rows)}
    assert abs(table[4]["error"]) < 0.01 and abs(table[6]["error"]) < 0.01
    assert table[16]["predicted_efficiency"] == pytest.approx((think + demand) / (16 * demand), rel=0.02)


def test_more_servers_share_the_demand():
    one = StepModel("pmsi", "mpi-async", "server", one_worker_step_s=0.40, think_s=0.08, demand_s=0.32)
    two = one.with_servers(2)
    assert two.step_seconds(1) == pytest.approx(0.08 + 0.16)
    assert two.efficiency(4) > one.efficiency(4)
    assert one.with_servers(100).efficiency(4) == pytest.approx(1.0, abs=0.02)


def test_no_model_without_a_one_worker_and_a_two_worker_run():
    assert calibrate([run_row("mpi-async", 4, 1.0)]) is None
    assert calibrate([run_row("mpi-async", 1, 0.4), run_row("mpi-async", 4, 1.0)]) is None
    assert calibrate([run_row("desktop", 1, 0.4), run_row("desktop", 2, 0.4)]) is None   # no family
    assert model_table([run_row("mpi-async", 4, 1.0)]) == []


def test_a_measured_server_demand_is_used_as_it_is_and_every_larger_run_validates():
    """``server_demand_s`` of the one-worker run (the master's CPU per gradient over its cores):
    no fit, so even the 2-worker run is a validation point; the cycle is ``max(Z + D, N D)``."""
    one_step, demand = 0.154, 0.046
    rows = [run_row("mpi-async", 1, one_step, server_demand_s=demand),
            run_row("mpi-async", 2, 0.175), run_row("mpi-async", 4, 0.181)]
    model = calibrate(rows)
    assert model.demand_measured and model.demand_s == demand and model.think_s == pytest.approx(one_step - demand)
    table = {r["workers"]: r for r in model_table(rows)}
    assert [table[n]["role"] for n in (1, 2, 4, 12)] == ["calibration", "validation", "validation", "prediction"]
    assert table[2]["predicted_step_s"] == pytest.approx(one_step)           # below saturation: no queueing
    assert table[4]["predicted_step_s"] == pytest.approx(4 * demand)         # saturated: the server's pace
    assert table[4]["error"] == pytest.approx(4 * demand / 0.181 - 1)
    assert table[12]["predicted_efficiency"] == pytest.approx(one_step / (12 * demand))
    assert model.with_servers(2).step_seconds(4) == pytest.approx(max(one_step - demand / 2, 2 * demand))
    # a demand the one-worker step cannot hold (or none) falls back to the fit on 2 workers
    rows[0]["server_demand_s"] = 0.2
    assert not calibrate(rows).demand_measured
