"""The scalability experiment's table, cost model and recommendation (the paper's "automatic").

From finished runs (``metrics.json``, ``track.csv``, ``timeline/rank*.csv``) of one task at
several worker counts and modes, :func:`scaling_table` gives one row per run:

- per step: median compute and exchange seconds and bytes handed to the exchange, from the
  timelines of the workers (``training.timeline``);
- ``step_samples_per_second`` = the sum over workers of a worker's median micro-batch / its
  median step seconds (compute + exchange + apply): N × micro-batch / step seconds with equal
  shards, and right with balanced ones, whose micro-batches differ; the **weak-scaling efficiency** ``sps(N) / (N × sps(1))`` against the same
  mode's (else desktop's) one-worker run: each worker keeps its own micro-batch, so the work
  per worker and step is constant (the per-GPU throughput ratio Horovod reports). Without a
  timeline (``grpc-async``), ``steady_samples_per_second`` stands in: training rows per second
  over the epochs after the first (validation included; the first carries start-up and
  tracing), and without a second epoch the run's end-to-end ``samples_per_second``;
- the ring cost model beside the measured exchange: ``2 (N − 1) / N × bytes / link`` seconds
  per step (all-reduce; for the sparse exchange the rows' all-gather is counted as if
  all-reduced, a lower bound);
- time and CPU-seconds to the **target** validation accuracy (default: the best one-worker
  accuracy minus 0.5 point), and the best validation accuracy reached.

:func:`pareto` keeps the runs no other run beats on both time and CPU-seconds (joules when
every run measured them) to the target; :func:`recommend` picks, under a time or an energy
budget, the cheapest run that meets it.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from diagnosenet.figures.runs import read_run, read_track

#: the emulated and the paper's link: 1 Gbit/s
GIGABIT_BYTES_PER_S = 125e6
TARGET_MARGIN = 0.005   # the target is the one-worker accuracy minus half a point
SCALING_COLUMNS = ("task", "mode", "workers", "exchange", "micro_batch", "samples_per_second",
                   "step_samples_per_second", "efficiency",
                   "steady_samples_per_second", "compute_s_per_step", "exchange_s_per_step", "apply_s_per_step",
                   "bytes_per_step", "model_exchange_s_per_step", "server_demand_s",
                   "best_valid_accuracy", "time_to_best_s", "target_accuracy", "time_to_target_s", "cpu_s_to_target",
                   "energy_to_target_j", "run_dir")


def ring_allreduce_seconds(payload_bytes: float, workers: int, link_bytes_per_s: float = GIGABIT_BYTES_PER_S) -> float:
    """Bandwidth term of a ring all-reduce of ``payload_bytes`` over ``workers`` (0 for one)."""
    return 2 * (workers - 1) / workers * payload_bytes / link_bytes_per_s if workers > 1 else 0.0


def worker_throughputs(steps: list[dict]) -> dict[int, float | None]:
    """``{rank: samples/s}`` from timeline rows: a worker's median micro-batch over its median
    step (balanced shards give the workers different micro-batches)."""
    out = {}
    for rank in sorted({r["rank"] for r in steps}):
        mine = [r for r in steps if r["rank"] == rank]
        step_s = statistics.median(r["compute_s"] + r["exchange_s"] + r["apply_s"] for r in mine)
        out[rank] = statistics.median(r["rows"] for r in mine) / step_s if step_s > 0 else None
    return out


def step_profile(run_dir: Path) -> dict:
    """Medians over every worker step of a run's timeline (empty dict without one)."""
    from diagnosenet.training.timeline import read_timeline

    steps = [r for r in read_timeline(run_dir) if r["rows"] > 0]
    if not steps:
        return {}
    per_worker = list(worker_throughputs(steps).values())
    batch = statistics.median(r["rows"] for r in steps)
    return {"step_samples_per_second": sum(per_worker) if None not in per_worker else None,
            "compute_s_per_step": statistics.median(r["compute_s"] for r in steps),
            "exchange_s_per_step": statistics.median(r["exchange_s"] for r in steps),
            "apply_s_per_step": statistics.median(r["apply_s"] for r in steps),
            "bytes_per_step": statistics.median(r["payload_bytes"] for r in steps),
            "micro_batch": batch}


def steady_samples_per_second(track: list[dict]) -> float | None:
    """Training rows per second over the epochs after the first (which carries start-up and
    tracing), validation included: the throughput of a mode without a per-step timeline."""
    later = [r for r in track[1:] if r.get("samples") and r.get("epoch_seconds")]
    return sum(r["samples"] for r in later) / sum(r["epoch_seconds"] for r in later) if later else None


def time_to(track: list[dict], target: float) -> float | None:
    """Wall seconds at the end of the first epoch whose validation accuracy reaches ``target``."""
    for row in track:
        if row.get("valid_metric", -1.0) >= target:
            return row["wall_seconds"]
    return None


def server_demand_seconds(run_dir: Path) -> float | None:
    """Wall seconds the ``mpi-async`` master spends per gradient: its measured main-thread CPU
    per gradient over the cores it may use (at most one: the loop is one thread), e.g.
    0.0107 s ÷ 0.25 core on an emulated node; None for other modes and older runs."""
    import json

    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    mpi = metrics.get("mpi") or {}
    cpu_ms, cores = mpi.get("service_cpu_ms_per_gradient"), mpi.get("master_cpu_cores")
    if not cpu_ms or not cores:
        return None
    return cpu_ms / 1000 / min(float(cores), 1.0)


def scaling_table(run_dirs: list[Path], *, target: float | None = None,
                  link_bytes_per_s: float = GIGABIT_BYTES_PER_S) -> list[dict]:
    """One row per run (see the module docstring), sorted by task, mode and workers."""
    import json

    rows = []
    for run_dir in map(Path, run_dirs):
        run, track = read_run(run_dir), read_track(run_dir)
        settings = json.loads((run_dir / "run.json").read_text()).get("settings", {}) \
            if (run_dir / "run.json").exists() else {}
        row = {**run, "micro_batch": settings.get("batch_size"), **step_profile(run_dir),
               "steady_samples_per_second": steady_samples_per_second(track),
               "exchange": settings.get("exchange", "dense"),
               "best_valid_accuracy": max((r.get("valid_metric", 0.0) for r in track), default=None),
               "_track": track}
        row["server_demand_s"] = server_demand_seconds(run_dir)
        row["model_exchange_s_per_step"] = (ring_allreduce_seconds(row["bytes_per_step"], int(row["workers"]),
                                                                   link_bytes_per_s)
                                            if row.get("bytes_per_step") is not None else None)
        rows.append(row)
    for task in {r["task"] for r in rows}:
        mine = [r for r in rows if r["task"] == task]
        singles = [r for r in mine if int(r["workers"]) == 1]
        goal = target if target is not None else (
            max(r["best_valid_accuracy"] for r in singles) - TARGET_MARGIN if singles else None)
        for row in mine:
            one = [r for r in singles if r["mode"] == row["mode"]] or [r for r in singles if r["mode"] == "desktop"]
            key = next((k for k in ("step_samples_per_second", "steady_samples_per_second")
                        if row.get(k) and one and one[0].get(k)), "samples_per_second")
            base = one[0].get(key) if one else None
            row["efficiency"] = row[key] / (int(row["workers"]) * base) if base and row.get(key) else None
            row["target_accuracy"] = goal
            reached = time_to(row["_track"], goal) if goal is not None else None
            row["time_to_target_s"] = reached
            share = reached / row["train_seconds"] if reached is not None and row.get("train_seconds") else None
            row["cpu_s_to_target"] = row["cpu_core_seconds"] * share if share and row.get("cpu_core_seconds") else None
            row["energy_to_target_j"] = row["energy_total_j"] * share if share and row.get("energy_total_j") else None
    for row in rows:
        row.pop("_track")
    return sorted(rows, key=lambda r: (r["task"], r["mode"], int(r["workers"])))


def _cost(row: dict, energy: bool) -> float | None:
    return row.get("energy_to_target_j") if energy else row.get("cpu_s_to_target")


def pareto(rows: list[dict]) -> list[dict]:
    """Runs that reached the target and that no other such run beats on both time and cost
    (joules when every candidate has them, else CPU-seconds), fastest first."""
    energy = all(r.get("energy_to_target_j") for r in rows if r.get("time_to_target_s") is not None)
    candidates = [r for r in rows if r.get("time_to_target_s") is not None and _cost(r, energy) is not None]
    front = []
    for r in candidates:
        t, c = r["time_to_target_s"], _cost(r, energy)
        dominated = any(o is not r and o["time_to_target_s"] <= t and _cost(o, energy) <= c
                        and (o["time_to_target_s"] < t or _cost(o, energy) < c) for o in candidates)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r["time_to_target_s"])


def recommend(rows: list[dict], *, time_budget_s: float | None = None, cost_budget: float | None = None) -> dict | None:
    """The Pareto run to use: within ``time_budget_s`` the cheapest; within ``cost_budget``
    (CPU-seconds, or joules when measured) the fastest; with neither, the fastest. None if
    no run meets the budget."""
    front = pareto(rows)
    energy = all(r.get("energy_to_target_j") for r in front)
    if time_budget_s is not None:
        fits = [r for r in front if r["time_to_target_s"] <= time_budget_s]
        return min(fits, key=lambda r: _cost(r, energy)) if fits else None
    if cost_budget is not None:
        fits = [r for r in front if _cost(r, energy) <= cost_budget]
        return min(fits, key=lambda r: r["time_to_target_s"]) if fits else None
    return front[0] if front else None


def describe(row: dict) -> str:
    return f"{row['mode']} × {int(row['workers'])} worker(s), micro-batch {int(row.get('micro_batch') or 0)}"


def recommendation_markdown(rows: list[dict]) -> str:
    """The report's answer: the Pareto set and which run to use under which budget."""
    lines = []
    for task in sorted({r["task"] for r in rows}):
        mine = [r for r in rows if r["task"] == task]
        front = pareto(mine)
        target = next((r["target_accuracy"] for r in mine if r.get("target_accuracy") is not None), None)
        lines.append(f"## {task}: target validation accuracy "
                     f"{'n/a' if target is None else f'{target:.4f}'}")
        if not front:
            lines.append("No run reached the target.")
            continue
        energy = all(r.get("energy_to_target_j") for r in front)
        unit = "J" if energy else "CPU-s"
        lines.append(f"| configuration | time to target (s) | {unit} to target | efficiency |")
        lines.append("|---|---|---|---|")
        for r in front:
            eff = "" if r.get("efficiency") is None else f"{r['efficiency']:.0%}"
            lines.append(f"| {describe(r)} | {r['time_to_target_s']:.1f} | {_cost(r, energy):.1f} | {eff} |")
        fastest, cheapest = front[0], min(front, key=lambda r: _cost(r, energy))
        lines.append("")
        lines.append(f"Fastest: **{describe(fastest)}**. Cheapest: **{describe(cheapest)}**. Under a time budget "
                     f"T, use the cheapest row whose time ≤ T; under a budget of E {unit}, the fastest row "
                     f"whose cost ≤ E.")
        lines.append("")
    return "\n".join(lines) + "\n"
