"""One real, small end-to-end Snakemake run of every stage on embedded synthetic data, the
scalability experiment (2 modes x 1-2 workers), the HTML report, and re-running one stage.

This is the suite's most expensive test (several TensorFlow processes); everything it checks
shares the one run through a module-scoped fixture.
"""
from __future__ import annotations

import base64
import html as html_module
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
    # progress lines at every update instead of every 10 s, so that the small stages log them too
    snakemake(workdir, *targets, "--cores", "2", "--configfile", str(config), timeout=1500,
              env={"DIAGNOSENET_PROGRESS_S": "0"})
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
        if caption.name == "predictions.rst":  # only in reports of a `snakemake predict` (tests/predict)
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


#: "<what> done/total[ unit] (pct%), rate unit/s, ETA t" (``diagnosenet/progress_log.py``)
PROGRESS = re.compile(r"INFO [\w.]+: (?P<what>.+?) (?P<done>[\d,]+)/(?P<total>[\d,]+)(?: (?P<unit>[\w ]+?))? "
                      r"\([\d.]+%\), [\d,.]+ (?P<rate>[\w ]+)/s, ETA (?:\d+ s|\d+ min \d\d s|\d+ h \d\d min)$", re.M)


def progress_lines(log: Path) -> list[re.Match]:
    return list(PROGRESS.finditer(log.read_text()))


@pytest.mark.timeout(1800)
def test_long_stages_log_progress_into_their_snakemake_logs(finished_run):
    """window-ecg (records), compose-pmsi (RHS lines, stays) and the training epochs (steps,
    rows/s) log "done/total, rate, ETA" into the logs the README points to."""
    workdir, _ = finished_run
    logs = workdir / "results" / "logs"
    windowed = [m for m in progress_lines(logs / "ecg" / "window_ecg.log") if m["what"] == "windowed"]
    assert windowed and windowed[-1]["done"] == windowed[-1]["total"] == "40", windowed
    assert windowed[-1]["rate"] == "records"
    read = [m for m in progress_lines(logs / "pmsi" / "compose_pmsi.log") if m["unit"] == "RHS lines"]
    assert read and read[-1]["done"] == read[-1]["total"] and read[-1]["rate"] == "RHS lines", read[-1:]
    composed = [m for m in progress_lines(logs / "pmsi" / "compose_pmsi.log") if m["unit"] == "stays"]
    assert composed and composed[-1]["done"] == composed[-1]["total"]
    for log in (logs / "train" / "pmsi_desktop-w1.log", logs / "train" / "ecg_desktop-w1.log"):
        steps = [m for m in progress_lines(log) if m["what"].endswith(": step")]
        assert steps and all(m["rate"] == "rows" for m in steps), log.read_text()[-2000:]
        assert any(m["done"] == m["total"] for m in steps)
    mpi = progress_lines(logs / "train" / "pmsi_mpi-sync-w2.log")
    ranks = {re.match(r"rank (\d+) epoch (\d+): step", m["what"]).group(1) for m in mpi}
    assert ranks == {"1", "2"}, [m.group(0) for m in mpi[:4]]   # each worker rank, with its epoch
    stays = {line.split(",")[0] for line in (workdir / "results/pmsi/raw/labels.csv").read_text().split()[1:]}
    for log in logs.rglob("*.log"):   # no stay number (7 digits in the synthetic data) reaches a log
        assert not stays & set(re.findall(r"\b\d{7}\b", log.read_text())), log


def report_parts(html: str) -> tuple[str, dict, dict]:
    """The report's global description as text, its sections and its results, from the JSON the
    Snakemake report page renders in the browser."""
    desc = json.loads(re.search(r"var workflow_desc = (\".*?\");\n", html).group(1))
    categories = json.loads(re.search(r"var categories = (\{.*?\});\n", html).group(1))
    results = json.loads(re.search(r"var results = (\{.*?\});\n", html).group(1))
    text = " ".join(html_module.unescape(re.sub(r"<[^>]+>", "", desc)).split())
    return text, categories, results


@pytest.mark.timeout(1800)
def test_report_cites_the_paper_and_numbers_its_sections_without_gaps(finished_run):
    workdir, _ = finished_run
    html = (workdir / "results" / "report.html").read_text()
    text, categories, results = report_parts(html)
    assert "Mendoza" not in html
    assert ("John A. García H., Frédéric Precioso, Pascal Staccini and Michel Riveill, DiagnoseNET: Automatic "
            "Framework to Scale Neural Networks on Heterogeneous Systems Applied to Medical Diagnosis, ICITCS 2020 - "
            "8th International Conference on IT Convergence and Security (doi:10.1007/978-981-15-9354-3_1)") in text
    assert sorted(categories) == ["1. Data", "2. Training runs", "3. Experiments"]
    assert "Sections of this report: 1. Data, 2. Training runs, 3. Experiments." in text
    numbers = sorted(int(name.split(".")[0]) for name in categories)
    assert numbers == list(range(1, len(numbers) + 1))
    # the configuration as tables, not Python reprs, in the description and every caption
    assert "Training runs (train.runs) mode workers tasks desktop 1 pmsi, ecg" in text, text[:1500]
    assert "train max_epochs 2" in text and "experiments scalability.workers 1, 2" in text
    captions = " ".join(r["caption"] for r in results.values())
    for where in (text, captions):
        assert not re.search(r"\[\s*'|\{'|\[\d+, \d", where), re.search(r".{60}(\[\s*'|\{'|\[\d+, \d).{60}", where)


@pytest.mark.timeout(1800)
def test_predict_trains_a_missing_seed_member_and_weights_the_models(finished_run):
    """``snakemake predict`` with ``predict.model`` listing the run, a second seed of it and the
    ECG feature model: only the missing member is trained (its own seed and directory), then
    every synthetic record is scored by their weighted mean. (Last in this file: it adds runs.)"""
    import yaml

    workdir, config = finished_run
    runs = "results/ecg/runs"
    (workdir / "ensemble.yaml").write_text(yaml.safe_dump({"predict": {
        "name": "ensemble", "records": "results/ecg/raw",
        "model": [f"{runs}/desktop-w1", f"{runs}/desktop-w1-seed2", "results/ecg/baseline"],
        "weights": [0.25, 0.25, 0.5]}}))
    out = snakemake(workdir, "predict", "--cores", "2", "--configfile", str(config), "ensemble.yaml", timeout=900).stdout
    assert planned_jobs(out) == {"train_desktop": 1, "predict": 1}, out[-3000:]
    seeds = {run: json.loads((workdir / runs / run / "run.json").read_text())["settings"]["seed"]
             for run in ("desktop-w1", "desktop-w1-seed2")}
    assert seeds == {"desktop-w1": 1, "desktop-w1-seed2": 2}
    losses = [[row.split(",")[1] for row in (workdir / runs / run / "track.csv").read_text().splitlines()[1:]]
              for run in ("desktop-w1", "desktop-w1-seed2")]
    assert losses[0] and losses[0] != losses[1]   # another initialisation and batch order: other train losses
    counts = json.loads((workdir / "results" / "predict" / "ensemble" / "counts.json").read_text())
    assert counts["combination"]["weights"] == [0.25, 0.25, 0.5] and counts["records_in"] == 40
    rows = (workdir / "results" / "predict" / "ensemble" / "predictions.csv").read_text().splitlines()
    assert len(rows) == 1 + 40
