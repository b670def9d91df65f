"""Dry runs: the DAG plans every stage, lints clean, profiles and experiment targets plan the
paper's runs. No job runs here."""
import pytest

from smk import planned_jobs, snakemake, write_config

pytestmark = pytest.mark.snakemake


def test_default_dry_run_plans_every_stage(workdir):
    jobs = planned_jobs(snakemake(workdir, "-n", "--cores", "2").stdout)
    for rule in ("synth_pmsi", "compose_pmsi", "synth_ecg", "window_ecg", "materialise", "shard",
                 "train_desktop", "train_mpi", "train_grpc", "baseline", "aggregate", "ecg_features"):
        assert jobs.get(rule, 0) >= 1, (rule, jobs)
    assert jobs["materialise"] == 2 and jobs["train_desktop"] == 2 and jobs["train_mpi"] == 2


def test_paper_config_plans_the_fixed_final_test_split_and_the_whole_record_net(workdir):
    """config/paper.yaml: the final records form the ECG test split, samples carry the record
    features, the ECG baseline reads the feature table."""
    import yaml

    records = workdir / "records"
    records.mkdir()
    (records / "REFERENCE.csv").write_text("A00001,N\n")
    final = workdir / "final.csv"
    final.write_text("A00001,N\n")
    (workdir / "local.yaml").write_text(yaml.safe_dump(
        {"ecg": {"records_dir": str(records)}, "datasets": {"test_groups": {"ecg": str(final)}}}))
    out = snakemake(workdir, "-n", "-p", "--cores", "2", "--configfile", "config/config.yaml", "config/paper.yaml",
                    "local.yaml").stdout
    commands = [line.strip().removeprefix("Shell command: ") for line in out.splitlines() if "diagnosenet " in line]
    window = [c for c in commands if c.startswith("diagnosenet window-ecg")]
    assert window and "--record-features" in window[0]
    ecg_split = [c for c in commands if c.startswith("diagnosenet materialise") and "/ecg/" in c]
    assert ecg_split and f"--test-groups {final}" in ecg_split[0]
    pmsi_split = [c for c in commands if c.startswith("diagnosenet materialise") and "/pmsi/" in c]
    assert pmsi_split and "--test-groups" not in pmsi_split[0]
    assert any(c.startswith("diagnosenet baseline --task ecg") and "--features results-paper/ecg/features" in c
               for c in commands)
    assert any(c.startswith("diagnosenet ecg-features") for c in commands)


def test_paper_config_predicts_with_the_whole_record_feature_model(workdir):
    """config/paper.yaml's chosen ECG model (5-fold CV, docs/benchmarks.md "Issue 26"): `snakemake
    predict` fits the bag of square-root class-balanced gbms on the record features first (rule
    `baseline --model gbm-bag`) and predicts with it alone; no net is trained for it."""
    import yaml

    records = workdir / "records"
    records.mkdir()
    (records / "REFERENCE.csv").write_text("A00001,N\n")
    (workdir / "local.yaml").write_text(yaml.safe_dump(
        {"ecg": {"records_dir": str(records)}, "datasets": {"test_groups": {"ecg": str(workdir / "final.csv")}},
         "predict": {"records": str(records)}}))
    (workdir / "final.csv").write_text("A00001,N\n")
    out = snakemake(workdir, "predict", "-n", "-p", "--cores", "2", "--configfile", "config/config.yaml",
                    "config/paper.yaml", "local.yaml").stdout
    jobs = planned_jobs(out)
    assert jobs.get("ecg_features") == 1 and jobs.get("baseline") == 1 and jobs.get("predict") == 1, jobs
    assert "train_desktop" not in jobs, jobs
    baseline = [line.strip() for line in out.splitlines() if "diagnosenet baseline --task ecg" in line]
    assert baseline and "--model gbm-bag" in baseline[0], baseline
    predict = [line.strip() for line in out.splitlines() if "diagnosenet predict" in line]
    assert predict and "--model results-paper/ecg/baseline " in predict[0], predict
    assert "--weights" not in predict[0]


def test_a_seed_ensemble_trains_one_run_per_seed_in_any_mode_and_predict_weights_them(workdir):
    """``train.runs[].seeds``: one run per seed, ``train.seed``'s under the plain name, the
    others suffixed ``-seed{s}``, each with its own ``--seed`` and directory (desktop and MPI);
    ``predict.model`` as a list with ``predict.weights`` trains every member first, and
    ``predict.class_weights`` reaches the command."""
    import yaml

    (workdir / "local.yaml").write_text(yaml.safe_dump({
        "tasks": ["ecg"],
        "train": {"runs": [{"mode": "desktop", "workers": 1, "seeds": [1, 2, 3]},
                           {"mode": "mpi-sync", "workers": 2, "seeds": [4]}]},
        "predict": {"name": "ensemble", "records": "some/records",
                    "model": ["results/ecg/runs/desktop-w1", "results/ecg/runs/desktop-w1-seed2",
                              "results/ecg/runs/desktop-w1-seed3", "results/ecg/baseline"],
                    "weights": [0.2, 0.2, 0.2, 0.4], "class_weights": [1, 1.5, 0.85, 2.5]}}))
    out = snakemake(workdir, "all", "predict", "-n", "-p", "--cores", "2", "--configfile", "config/config.yaml",
                    "local.yaml").stdout
    commands = [line.strip().removeprefix("Shell command: ") for line in out.splitlines() if "diagnosenet " in line]
    train = sorted(c for c in commands if c.startswith("diagnosenet train-desktop"))
    assert len(train) == 3, train
    for seed, run in ((1, "desktop-w1"), (2, "desktop-w1-seed2"), (3, "desktop-w1-seed3")):
        assert any(f"--out results/ecg/runs/{run} " in c and f"--seed {seed} " in c for c in train), (seed, train)
    mpi = [c for c in commands if c.startswith("diagnosenet launch-mpi")]
    assert len(mpi) == 1 and "--out results/ecg/runs/mpi-sync-w2-seed4 " in mpi[0] and "--seed 4 " in mpi[0], mpi
    predict = [c for c in commands if c.startswith("diagnosenet predict")]
    assert predict and ("--model results/ecg/runs/desktop-w1 results/ecg/runs/desktop-w1-seed2 "
                        "results/ecg/runs/desktop-w1-seed3 results/ecg/baseline") in predict[0]
    assert "--weights 0.2 0.2 0.2 0.4 --class-weights 1 1.5 0.85 2.5 " in predict[0]
    assert planned_jobs(out).get("baseline") == 1


def test_lint_is_clean(workdir):
    proc = snakemake(workdir, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_jetson_profile_plans_12_workers_plus_master_with_the_hostfile(workdir):
    out = snakemake(workdir, "--profile", "jetson", "-n", "-p").stdout
    mpi_lines = [line for line in out.splitlines() if "diagnosenet launch-mpi" in line]
    assert mpi_lines, out[-3000:]
    for line in mpi_lines:
        assert line.strip().removeprefix("Shell command: ").startswith(
            "diagnosenet launch-mpi --launcher 'mpirun -disable-auto-cleanup -f results/cluster/hostfile' --tasks 13 -- ")
        assert "--workers 12" in line
    assert "cluster_files" in planned_jobs(out)


def test_slurm_profile_plans_hydra_inside_the_allocation(workdir):
    """Under Slurm launch-mpi gets a bare Hydra and places the ranks on the allocation itself
    (docs/slurm.md); the run itself is tests/workflow/test_emulated_slurm.py."""
    out = snakemake(workdir, "--profile", "slurm", "-n", "-p").stdout
    mpi_lines = [line for line in out.splitlines() if "diagnosenet launch-mpi" in line]
    assert mpi_lines and all(line.strip().removeprefix("Shell command: ").startswith(
        "diagnosenet launch-mpi --launcher 'mpirun -disable-auto-cleanup' --tasks 13 -- ") for line in mpi_lines)


def test_scalability_target_plans_the_configured_grid(workdir):
    path = write_config(workdir, {"experiments": {
        "scalability": {"tasks": ["pmsi"], "modes": ["mpi-sync", "mpi-async", "grpc-async"], "workers": [1, 2, 4]},
        "hyperparameters": {"units": [16, 64, 128], "layers": [2, 4], "batch_sizes": [256, 512],
                            "input_size": 14637, "max_epochs": 2}}})
    jobs = planned_jobs(snakemake(workdir, "scalability", "-n", "--cores", "2", "--configfile", str(path)).stdout)
    assert jobs["train_mpi"] == 6 and jobs["train_grpc"] == 3
    jobs = planned_jobs(snakemake(workdir, "hyperparameters", "-n", "--cores", "2", "--configfile", str(path)).stdout)
    assert jobs["train_desktop_hparams"] == 3 * 2 * 2 and jobs["table4"] == 1
    assert jobs["shard"] == 2  # one shard set per batch size


def test_a_grpc_run_asked_for_by_path_alone_gets_its_own_port_block(workdir):
    """Runs outside train.runs and the scalability grid (e.g. `snakemake results/ecg/runs/
    grpc-sync-w2/metrics.json`) plan too, with port blocks distinct from the configured ones."""
    import re

    out = snakemake(workdir, "results/ecg/runs/grpc-sync-w2/metrics.json", "results/ecg/runs/grpc-async-w3/metrics.json",
                    "results/pmsi/runs/grpc-async-w2/metrics.json", "-n", "-p", "--cores", "2").stdout
    ports = [int(p) for p in re.findall(r"--base-port (\d+)", out)]
    assert len(ports) == 3 and len(set(ports)) == 3, out[-3000:]
    assert all(abs(a - b) >= 20 for a in ports for b in ports if a != b)


def test_measured_balance_trains_on_shards_from_the_calibration_runs_speeds(workdir):
    """shards.balance: measured — the calibration run (speeds_from) trains on equal shards; the
    balanced shards are written from its timeline and every other run of that worker count
    trains on them."""
    import yaml

    (workdir / "local.yaml").write_text(yaml.safe_dump({
        "tasks": ["pmsi"], "shards": {"batch_size": 128, "seed": 42, "balance": "measured", "speeds_from": "mpi-sync-w2"},
        "train": {**yaml.safe_load((workdir / "config" / "config.yaml").read_text())["train"],
                  "runs": [{"mode": "mpi-sync", "workers": 2}, {"mode": "mpi-async", "workers": 2}]}}))
    out = snakemake(workdir, "-n", "-p", "--cores", "2", "--configfile", "config/config.yaml", "local.yaml").stdout
    commands = [line.strip().removeprefix("Shell command: ") for line in out.splitlines() if "diagnosenet " in line]
    shard = [c for c in commands if c.startswith("diagnosenet shard") and "-measured" in c]
    assert shard and "--speeds-from results/pmsi/runs/mpi-sync-w2" in shard[0], shard
    train = {mode: next(c for c in commands if "launch-mpi" in c and f"--mode {mode}" in c)
             for mode in ("mpi-sync", "mpi-async")}
    assert "--shards results/pmsi/shards/w2-b128 " in train["mpi-sync"]
    assert "--shards results/pmsi/shards/w2-b128-measured " in train["mpi-async"]
    # measured without a calibration run is refused by the schema
    (workdir / "bad.yaml").write_text(yaml.safe_dump({"shards": {"batch_size": 128, "seed": 42, "balance": "measured"}}))
    bad = snakemake(workdir, "-n", "--cores", "2", "--configfile", "config/config.yaml", "bad.yaml", check=False)
    assert bad.returncode != 0 and "speeds_from" in bad.stdout, bad.stdout[-2000:]
