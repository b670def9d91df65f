"""The report's figures (paper figures 2-3 and the enerGyPU dashboard), drawn with matplotlib.

Every function takes already-read data and an output path, so the same code serves the
workflow's rules, a notebook and the tests.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(run: dict) -> str:
    return f"{run['task']} {run['mode']} w{run['workers']}"


def convergence(runs: Sequence[dict], tracks: Sequence[list[dict]], out: str | Path) -> None:
    """Train/valid loss and valid metric vs epoch and vs wall time, one line per run."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for run, track in zip(runs, tracks):
        epochs = [r["epoch"] for r in track]
        wall = [r["wall_seconds"] for r in track]
        line, = axes[0, 0].plot(epochs, [r["valid_loss"] for r in track], marker="o", ms=3, label=_label(run))
        axes[0, 0].plot(epochs, [r["train_loss"] for r in track], ls="--", color=line.get_color(), alpha=0.6)
        axes[0, 1].plot(wall, [r["valid_loss"] for r in track], marker="o", ms=3, color=line.get_color())
        axes[1, 0].plot(epochs, [r["valid_metric"] for r in track], marker="o", ms=3, color=line.get_color())
        axes[1, 1].plot(wall, [r["valid_metric"] for r in track], marker="o", ms=3, color=line.get_color())
    for ax, (x, y) in zip(axes.flat, [("epoch", "loss (solid valid, dashed train)"), ("wall time (s)", "validation loss"),
                                      ("epoch", "validation accuracy"), ("wall time (s)", "validation accuracy")]):
        ax.set(xlabel=x, ylabel=y)
        ax.grid(alpha=0.3)
    if runs:
        axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def scalability(rows: Sequence[dict], out: str | Path, predicted: Sequence[dict] = ()) -> None:
    """Figures 2-3 analogue from ``figures.scaling.scaling_table`` rows, one line per task and
    mode: time to the target accuracy, weak-scaling efficiency (the 80 % goal dashed) with the
    cost model's prediction (``figures.cost_model.model_table`` rows) dotted beside it, and
    per-step compute and exchange seconds with the ring model's exchange beside them."""
    plt = _pyplot()
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["task"], row["mode"])].append(row)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))

    def value(row, key):
        v = row.get(key)
        return np.nan if v in (None, "") else float(v)

    for (task, mode), members in sorted(groups.items()):
        members.sort(key=lambda r: int(r["workers"]))
        workers = [int(r["workers"]) for r in members]
        label = f"{task} {mode}"
        axes[0].plot(workers, [value(r, "time_to_target_s") for r in members], marker="o", label=label)
        measured, = axes[1].plot(workers, [value(r, "efficiency") for r in members], marker="o", label=label)
        model = sorted((r for r in predicted if (r["task"], r["mode"]) == (task, mode)), key=lambda r: r["workers"])
        if model:
            axes[1].plot([r["workers"] for r in model], [r["predicted_efficiency"] for r in model], ls=":",
                         color=measured.get_color(), label=f"{label}: predicted (cost model)")
        line, = axes[2].plot(workers, [value(r, "exchange_s_per_step") for r in members], marker="o",
                             label=f"{label} exchange")
        axes[2].plot(workers, [value(r, "model_exchange_s_per_step") for r in members], ls=":",
                     color=line.get_color(), label=f"{label} ring model")
        axes[2].plot(workers, [value(r, "compute_s_per_step") for r in members], ls="--", marker="x",
                     color=line.get_color(), label=f"{label} compute")
    axes[1].axhline(0.8, color="grey", ls="--", lw=1)
    titles = ("time to target validation accuracy", "weak-scaling efficiency", "seconds per step (median)")
    for ax, title, ylabel in zip(axes, titles, ("seconds", "sps(N) / (N sps(1))", "seconds")):
        ax.set(xlabel="workers (nodes)", ylabel=ylabel, title=title)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if groups:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def step_timeline(steps: Sequence[dict], title: str, out: str | Path, max_steps: int = 40) -> None:
    """One run's communication timeline: per rank, each step's compute (solid) and exchange
    (hatched) as bars on a shared clock (the first ``max_steps`` steps of every rank)."""
    plt = _pyplot()
    ranks = sorted({int(s["rank"]) for s in steps})
    fig, ax = plt.subplots(figsize=(12, 1 + 0.6 * max(len(ranks), 1)))
    t0 = min((float(s["start"]) for s in steps), default=0.0)
    for y, rank in enumerate(ranks):
        mine = sorted((s for s in steps if int(s["rank"]) == rank), key=lambda s: (s["epoch"], s["step"]))[:max_steps]
        compute = [(float(s["start"]) - t0, float(s["compute_s"])) for s in mine]
        exchange = [(float(s["start"]) - t0 + float(s["compute_s"]), float(s["exchange_s"])) for s in mine]
        ax.broken_barh(compute, (y - 0.35, 0.7), color="tab:blue", label="compute" if y == 0 else None)
        ax.broken_barh(exchange, (y - 0.35, 0.7), color="tab:orange", hatch="//", label="exchange" if y == 0 else None)
    ax.set_yticks(range(len(ranks)), [f"rank {r}" for r in ranks])
    ax.set(xlabel="seconds since the first step", title=title)
    if ranks:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def timelines(monitors: Sequence[tuple[str, dict[str, np.ndarray]]], out: str | Path) -> None:
    """Per worker/rank: process CPU use and RSS over time, and every power column (W) when measured."""
    plt = _pyplot()
    power = any(c.endswith("_w") for _, s in monitors for c in s)
    fig, axes = plt.subplots(3 if power else 2, 1, figsize=(12, 9 if power else 6), sharex=True, squeeze=False)
    colours = plt.get_cmap("tab20")  # 20 distinct colours: a rank per line, even for 12 Jetson workers
    for i, (name, samples) in enumerate(monitors):
        t = samples["timestamp"] - samples["timestamp"].min()
        line, = axes[0, 0].plot(t, samples.get("cpu_percent", np.full_like(t, np.nan)), label=name, lw=1,
                                color=colours(i % 20))
        axes[1, 0].plot(t, samples.get("rss_bytes", np.full_like(t, np.nan)) / 2**20, color=line.get_color(), lw=1)
        if power:
            for column in (c for c in samples if c.endswith("_w")):
                axes[2, 0].plot(t, samples[column], lw=1, label=f"{name} {column[:-2]}")
    axes[0, 0].set(ylabel="process CPU (%)")
    axes[1, 0].set(ylabel="RSS (MiB)")
    if power:
        axes[2, 0].set(ylabel="power (W)")
        axes[2, 0].legend(fontsize=6)
    axes[-1, 0].set(xlabel="seconds since the monitor started")
    if monitors:
        axes[0, 0].legend(fontsize=7, ncol=4)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def energy_accuracy(runs: Sequence[dict], out: str | Path) -> None:
    """Energy (joules, or CPU core-seconds where no power source exists) to best epoch vs test accuracy."""
    plt = _pyplot()
    measured = [r for r in runs if r.get("energy_to_best_j") not in (None, "")]
    key, unit = ("energy_to_best_j", "energy to best epoch (J)") if measured else \
        ("cpu_core_seconds", "CPU core-seconds of the run (no power source on this host)")
    fig, ax = plt.subplots(figsize=(7, 5))
    for run in runs:
        if run.get(key) not in (None, ""):
            ax.scatter(float(run[key]), float(run["accuracy"]), s=40)
            ax.annotate(_label(run), (float(run[key]), float(run["accuracy"])), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    ax.set(xlabel=unit, ylabel="test accuracy", title="cost vs accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def confusions(runs: Sequence[dict], matrices: Sequence[tuple[list[str], np.ndarray]], out: str | Path) -> None:
    """Row-normalised test confusion matrix of every run (counts printed in the cells)."""
    plt = _pyplot()
    n = max(len(runs), 1)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.2 * rows), squeeze=False)
    for ax, run, (classes, matrix) in zip(axes.flat, runs, matrices):
        norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        ticks = range(len(classes))
        ax.set_xticks(ticks, classes, rotation=90, fontsize=6)
        ax.set_yticks(ticks, classes, fontsize=6)
        if len(classes) <= 6:
            for i in ticks:
                for j in ticks:
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7)
        ax.set(title=_label(run), xlabel="predicted", ylabel="true")
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
