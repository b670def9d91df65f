"""One real, small end-to-end Snakemake run of every stage on embedded synthetic data, the
scalability experiment (2 modes x 1-2 workers), the HTML report, and re-running one stage.

This is the suite's most expensive test (several TensorFlow processes); everything it checks
shares the one run through a module-scoped fixture.
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from smk import REPO, planned_jobs, snakemake, write_config

pytestmark = [pytest.mark.snakemake, pytest.mark.tensorflow, pytest.mark.mpi]

SMALL = {
    "pmsi": {"synthetic": {"patients": 400, "seed": 5}},
    "ecg": {"synthetic": {"records": 40, "seed": 6}},
    "shards": {"batch_size": 64, "seed": 1},
    "models": {"pmsi": {"hidden_units": [32], "dropout_keep": 0.8},
               "ecg": {"filters": [8, 16], "blocks_per_stage": 1, "kernel_size": 16, "dropout_keep": 0.8}},
    "train": {"seed": 1, "max_epochs": 2, "patience": 2, "learning_rate": 0.001,
              "runs": [{"mode": "desktop", "workers": 1}]},
    "experiments": {
        "scalability": {"tasks": ["pmsi"], "modes": ["desktop", "mpi-sync"], "workers": [1, 2]},
        "hyperparameters": {"units": [16], "layers": [2], "batch_sizes": [64], "input_size": 14637, "max_epochs": 1},
    },
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e")
    for name in ("workflow", "profiles"):
        (workdir / name).symlink_to(REPO / name)
    (workdir / "config").mkdir()
    (workdir / "config" / "config.yaml").symlink_to(REPO / "config" / "config.yaml")
    config = write_config(workdir, SMALL)
    targets = ("all", "scalability", "hyperparameters")
    snakemake(workdir, *targets, "--cores", "2", "--configfile", str(config), timeout=1500)
    # the report collects the report() outputs of the DAG of the targets it is given
    snakemake(workdir, *targets, "--report", "results/report.html", "--cores", "2", "--configfile", str(config),
              timeout=300)
    return workdir, config


@pytest.mark.timeout(1800)
def test_every_stage_wrote_its_outputs(finished_run):
    workdir, _ = finished_run
    results = workdir / "results"
    for task in ("pmsi", "ecg"):
        metrics = json.loads((results / task / "runs" / "desktop-w1" / "metrics.json").read_text())
        assert 0.0 <= metrics["accuracy"] <= 1.0
        baseline = json.loads((results / task / "baseline" / "metrics.json").read_text())
        assert 0.0 <= baseline["accuracy"] <= 1.0
        table = (results / task / "dataset" / "class_table.csv").read_text().splitlines()
        assert len(table) == (15 if task == "pmsi" else 5)
    for workers in (1, 2):
        track = (results / "pmsi" / "runs" / f"mpi-sync-w{workers}" / "track.csv").read_text().splitlines()
        assert len(track) >= 2  # header + at least one epoch
    assert (results / "experiments" / "scalability.png").stat().st_size > 5000


@pytest.mark.timeout(1800)
def test_report_holds_every_figure_with_its_caption(finished_run):
    workdir, _ = finished_run
    html = (workdir / "results" / "report.html").read_text()
    assert "scalability.png" in html and "class_table.csv" in html
    # every caption file used by a rule is rendered into the report (first words suffice)
    for caption in (REPO / "workflow" / "report").glob("*.rst"):
        words = re.sub(r"\{\{.*?\}\}|[*`]", "", caption.read_text()).split()[:4]
        if caption.name == "workflow.rst":
            continue
        phrase = " ".join(words)
        assert phrase in html or base64.b64encode(phrase.encode()).decode()[:8] in html, caption.name


@pytest.mark.timeout(1800)
def test_forcing_one_rule_reruns_it_and_its_downstream_only(finished_run):
    workdir, config = finished_run
    out = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(config), "--forcerun", "shard").stdout
    jobs = planned_jobs(out)
    assert jobs.get("shard", 0) >= 1 and jobs.get("train_desktop", 0) >= 1
    for upstream in ("synth_pmsi", "compose_pmsi", "synth_ecg", "window_ecg", "materialise"):
        assert upstream not in jobs, (upstream, jobs)
    out = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(config),
                    "--forcerun", "materialise", "--until", "materialise").stdout
    assert set(planned_jobs(out)) == {"materialise"}
