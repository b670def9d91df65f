"""Figure 4 analogue: convergence and per-class test F1 of the model-dimension space, by grain.

Each run directory of the hyper-parameter experiment is named ``u{units}-l{layers}-b{batch}``
and holds ``track.csv`` and ``metrics.json``; the grain (fine, middle, coarse) comes from the
exact parameter count, with the paper's boundaries (1.99 M and 8.29 M).
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from diagnosenet.experiments import grain, mlp_param_count

GRAINS = ("fine", "middle", "coarse")
_NAME = re.compile(r"u(\d+)-l(\d+)-b(\d+)$")


def read_run(run_dir: Path, input_size: int, output_size: int) -> dict:
    units, layers, batch = map(int, _NAME.search(run_dir.name).groups())
    with open(run_dir / "track.csv") as handle:
        track = list(csv.DictReader(handle))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    n_params = mlp_param_count(input_size, [units] * layers, output_size)
    return {"units": units, "layers": layers, "batch": batch, "params": n_params, "grain": grain(n_params),
            "epochs": [int(r["epoch"]) for r in track], "valid_loss": [float(r["valid_loss"]) for r in track],
            "per_class_f1": [c["f1"] for c in metrics["per_class"].values()] if isinstance(metrics.get("per_class"), dict)
            else [c["f1"] for c in metrics.get("per_class", [])]}


def plot(runs: list[dict], out: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(GRAINS), 2, figsize=(11, 3.2 * len(GRAINS)), squeeze=False)
    for row, name in enumerate(GRAINS):
        loss_ax, f1_ax = axes[row]
        members = [r for r in runs if r["grain"] == name]
        for r in members:
            label = f"{r['layers']}x{r['units']} b{r['batch']} ({r['params'] / 1e6:.2f} M)"
            loss_ax.plot(r["epochs"], r["valid_loss"], marker="o", ms=3, label=label)
            f1_ax.plot(range(len(r["per_class_f1"])), r["per_class_f1"], marker="s", ms=3, label=label)
        loss_ax.set(title=f"{name}-grain convergence (validation)", xlabel="epoch", ylabel="validation loss")
        f1_ax.set(title=f"{name}-grain test F1 by class", xlabel="class", ylabel="F1", ylim=(0, 1))
        for ax in (loss_ax, f1_ax):
            if members:
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "no model of this grain in the grid", ha="center", va="center",
                        transform=ax.transAxes)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def hyperparameters_figure(run_dirs: list[str | Path], out: str | Path, input_size: int = 14637,
                           output_size: int = 14) -> list[dict]:
    """Read the grid's run directories and draw the figure 4 analogue into ``out``."""
    runs = [read_run(Path(d), input_size, output_size) for d in run_dirs]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    plot(runs, out)
    return runs
