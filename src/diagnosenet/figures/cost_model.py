"""Predicted step time and weak-scaling efficiency of each training mode for 1–16 nodes.

The paper's figures 2–3 go to 12 workers; an emulated cluster here reaches about 6. So each
mode's measured runs calibrate a small model of one step, which then predicts the rest.
Every measured point is compared with the model, and points not used to calibrate it
count as validation; their error is what the model is worth.

Two families, because the modes wait on different things:

- **collective** (``mpi-sync``, ``grpc-sync``): every worker computes, then all exchange in
  one collective, then all apply. One step = ``local + rounds(N) × latency + 2 (N − 1) / N ×
  bytes / link``: ``local`` is a worker's compute + apply (from the smallest multi-worker run:
  a worker there waits as it will at N nodes), ``bytes`` the median bytes a worker hands to
  the exchange per step, ``link`` the link rate (not fitted), ``rounds(N) = ⌈log₂ N⌉`` the
  latency-bound rounds of a recursive-doubling / reduce-scatter all-reduce, and ``latency``
  the one fitted number: what a round costs beyond its bytes (MPI progress, the CPU quota).
- **server** (``mpi-async``, ``grpc-async``): workers cycle through "compute on my copy" and
  "be served by the master / parameter server", a closed queueing network solved exactly by
  mean-value analysis: a think time ``Z`` at each worker and a service demand ``D`` at the one
  server. ``Z + D`` is the one-worker step; ``D`` is fitted to the two-worker step
  (``step(2) = T + D²/T`` with ``T = Z + D``). Where the one-worker run **measured** ``D``
  (``mpi-async``: the master's CPU per gradient over its cores, ``server_demand_s``), nothing
  is fitted: ``Z = step(1) − D``, and since the emulated workers' compute and the master's
  service take nearly constant times, the cycle is the deterministic one,
  ``max(Z + D, N D)`` (no queueing until the server saturates; MVA's exponential times
  over-predict the step near saturation: +18 % at 4 workers, ``docs/benchmarks.md``); every
  multi-worker run is then a validation point. ``with_servers(S)`` predicts S servers that
  each own 1/S of the parameters and serve a worker's gradient in parallel, in ``D / S`` each.

Efficiency is against the measured one-worker step, as in ``figures.scaling``: the model
predicts the step at N, the reference is measured. Calibration uses the runs of at most
``calibrate_on`` (default 2) workers; the rest are predictions.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from diagnosenet.figures.scaling import GIGABIT_BYTES_PER_S, ring_allreduce_seconds

COLLECTIVE_MODES = ("mpi-sync", "grpc-sync")
SERVER_MODES = ("mpi-async", "grpc-async")
PREDICTED_WORKERS = tuple(range(1, 17))
MODEL_COLUMNS = ("task", "mode", "family", "workers", "predicted_step_s", "predicted_efficiency",
                 "predicted_samples_per_second", "measured_step_s", "measured_efficiency", "error", "role")


def measured_step_seconds(row: dict) -> float | None:
    """A run's step: N × micro-batch ÷ its samples/s (per-step timeline, else steady epochs)."""
    sps = row.get("step_samples_per_second") or row.get("steady_samples_per_second")
    if not sps or not row.get("micro_batch"):
        return None
    return int(row["workers"]) * float(row["micro_batch"]) / float(sps)


def mva_cycle_seconds(workers: int, think_s: float, demand_s: float) -> float:
    """Cycle time (a worker's step) of ``workers`` customers with think time ``think_s`` and
    one queueing station of demand ``demand_s``: exact mean-value analysis."""
    queue, cycle = 0.0, think_s + demand_s
    for n in range(1, workers + 1):
        residence = demand_s * (1 + queue)
        cycle = think_s + residence
        queue = n * residence / cycle
    return cycle


def latency_rounds(workers: int) -> int:
    return math.ceil(math.log2(workers)) if workers > 1 else 0


@dataclass(frozen=True)
class StepModel:
    """One mode's calibrated step (see the module docstring for the two families)."""

    task: str
    mode: str
    family: str                 # "collective" or "server"
    one_worker_step_s: float    # measured: the efficiency's reference
    local_s: float = 0.0        # collective: compute + apply per step
    bytes_per_step: float = 0.0
    link_bytes_per_s: float = GIGABIT_BYTES_PER_S
    latency_s: float = 0.0      # collective: fitted cost of one latency round
    think_s: float = 0.0        # server: a worker's time away from the server
    demand_s: float = 0.0       # server: the server's time per gradient
    servers: int = 1
    demand_measured: bool = False   # server: D measured by the one-worker run (deterministic cycle), not fitted
    calibrated_on: int = 2      # the most workers of a run the calibration used

    def step_seconds(self, workers: int) -> float:
        if self.family == "server" and self.demand_measured:
            service = self.demand_s / self.servers
            return max(self.think_s + service, workers * service)
        if self.family == "server":
            return mva_cycle_seconds(workers, self.think_s, self.demand_s / self.servers)
        if workers == 1:
            return self.one_worker_step_s
        return (self.local_s + latency_rounds(workers) * self.latency_s
                + ring_allreduce_seconds(self.bytes_per_step, workers, self.link_bytes_per_s))

    def efficiency(self, workers: int) -> float:
        """One-worker step ÷ step at ``workers`` (the measured one, except with more servers)."""
        return self.step_seconds(1) / self.step_seconds(workers)

    def with_servers(self, servers: int) -> "StepModel":
        """The same costs over ``servers`` parameter servers (server family only)."""
        from dataclasses import replace

        return replace(self, servers=servers)


def calibrate(rows: list[dict], *, calibrate_on: int = 2,
              link_bytes_per_s: float = GIGABIT_BYTES_PER_S) -> StepModel | None:
    """A mode's :class:`StepModel` from its ``scaling_table`` rows (one task, one mode), or
    None when the runs it needs (1 worker, and 2..``calibrate_on`` workers) are missing."""
    mode, task = rows[0]["mode"], rows[0]["task"]
    family = "collective" if mode in COLLECTIVE_MODES else "server" if mode in SERVER_MODES else None
    steps = {int(r["workers"]): (measured_step_seconds(r), r) for r in rows}
    if family is None or not steps.get(1, (None,))[0]:
        return None
    one = steps[1][0]
    measured = steps[1][1].get("server_demand_s")
    if family == "server" and measured and 0 < measured < one:   # nothing fitted: every other run validates
        return StepModel(task, mode, family, one, think_s=one - measured, demand_s=measured, demand_measured=True,
                         calibrated_on=1)
    multi = sorted(n for n, (s, _) in steps.items() if 1 < n <= calibrate_on and s)
    if not multi:
        return None
    if family == "server":   # D by least squares over the calibration points (a grid: one unknown)
        def error(demand: float) -> float:
            return sum((mva_cycle_seconds(n, one - demand, demand) - steps[n][0]) ** 2 for n in multi)
        demand = min((i * one / 1000 for i in range(1001)), key=error)
        return StepModel(task, mode, family, one, think_s=one - demand, demand_s=demand, calibrated_on=calibrate_on)
    calibration = [steps[n][1] for n in multi]
    needed = ("compute_s_per_step", "apply_s_per_step", "exchange_s_per_step", "bytes_per_step")
    if any(r.get(k) is None for r in calibration for k in needed):
        return None
    local = statistics.mean(r["compute_s_per_step"] + r["apply_s_per_step"] for r in calibration)
    payload = statistics.mean(r["bytes_per_step"] for r in calibration)
    latency = statistics.mean(
        max(r["exchange_s_per_step"] - ring_allreduce_seconds(payload, int(r["workers"]), link_bytes_per_s), 0.0)
        / latency_rounds(int(r["workers"])) for r in calibration)
    return StepModel(task, mode, family, one, local_s=local, bytes_per_step=payload,
                     link_bytes_per_s=link_bytes_per_s, latency_s=latency, calibrated_on=calibrate_on)


def model_table(rows: list[dict], *, calibrate_on: int = 2, workers=PREDICTED_WORKERS) -> list[dict]:
    """Per task and mode with a model: one row per predicted worker count, with the measured
    step and the relative error ``predicted / measured − 1`` where a run exists (``role``:
    ``calibration`` for runs the fit used, ``validation`` for the others, ``prediction``)."""
    out = []
    for key in sorted({(r["task"], r["mode"]) for r in rows}):
        mine = [r for r in rows if (r["task"], r["mode"]) == key]
        model = calibrate(mine, calibrate_on=calibrate_on)
        if model is None:
            continue
        measured = {int(r["workers"]): measured_step_seconds(r) for r in mine}
        batch = next((float(r["micro_batch"]) for r in mine if r.get("micro_batch")), None)
        for n in sorted(set(workers) | set(measured)):
            step = model.step_seconds(n)
            seen = measured.get(n)
            out.append({"task": key[0], "mode": key[1], "family": model.family, "workers": n,
                        "predicted_step_s": step, "predicted_efficiency": model.efficiency(n),
                        "predicted_samples_per_second": n * batch / step if batch else None,
                        "measured_step_s": seen,
                        "measured_efficiency": model.one_worker_step_s / seen if seen else None,
                        "error": step / seen - 1 if seen else None,
                        "role": "prediction" if not seen else "calibration" if n <= model.calibrated_on
                        else "validation"})
    return out


def validation_summary(table: list[dict]) -> dict[tuple[str, str], float | None]:
    """Largest absolute relative error on the validation points, per (task, mode)."""
    out = {}
    for key in sorted({(r["task"], r["mode"]) for r in table}):
        errors = [abs(r["error"]) for r in table if (r["task"], r["mode"]) == key and r["role"] == "validation"]
        out[key] = max(errors) if errors else None
    return out
