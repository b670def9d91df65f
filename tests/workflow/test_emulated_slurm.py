"""``snakemake --profile slurm`` for real, on a real Slurm of 3 emulated nodes.

``diagnosenet emulate-cluster up --slurm`` starts a private munged, slurmctld on the head and
a slurmd per node (Debian's slurm-wlm; ``make slurm-packages``). The profile is the real
slurm profile: only the emulated runs (``config/emulated-slurm.yaml``), small data and a
shorter status interval are layered on top. The cluster has accounting (slurmdbd and MariaDB),
so the executor asks ``sacct``, its default and what real sites use. Needs root; skipped
without it, and without the Slurm packages outside CI (in CI their absence fails).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smk import REPO, emulated_cluster
from test_emulated_cluster import SMALL as JETSON_SMALL, finish_within

pytestmark = [pytest.mark.snakemake, pytest.mark.tensorflow, pytest.mark.mpi, pytest.mark.emulated]

BIN = Path(sys.executable).parent
NODES = ["node0", "node1", "node2"]
#: the small data of the jetson profile's emulated test, without its scalability grid
SMALL = {key: value for key, value in JETSON_SMALL.items() if key != "experiments"}
#: the profile's two training rules (train_mpi, train_grpc); mpi-async is the same rule and
#: launcher as mpi-sync (only its loop differs, which the emulated jetson run and the NumPy
#: fault tests below cover across nodes), so its TensorFlow run here would add only minutes
MODES = ("mpi-sync", "grpc-async")
#: the executor as at a site with accounting (its default sacct status), without an account to
#: charge, asked every 5 s at most (the plugin's wait grows to 180 s: minutes of the suite's time)
EXECUTOR = ["--slurm-bounded-no-account",
            "--slurm-bounded-init-seconds-before-status-checks", "1", "--slurm-bounded-max-status-interval", "5"]


def diagnosenet(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "diagnosenet"), *args], text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, **kw)


def our_daemons() -> list[str]:
    """munged, slurmctld, slurmd or slurmstepd processes (the tests start the only ones here)."""
    import psutil

    return [f"{p.info['pid']} {p.info['name']}" for p in psutil.process_iter(["pid", "name"])
            if p.info["name"] in ("munged", "slurmctld", "slurmd", "slurmstepd")]


@pytest.fixture(scope="module")
def slurm_cluster():
    from diagnosenet.emulation_slurm import why_not_available

    why = why_not_available()
    if why and (os.geteuid() != 0 or os.environ.get("CI") != "true"):
        pytest.skip(why)
    assert why is None, why   # CI runs as root and `make test` installs the packages
    with emulated_cluster("--nodes", "3", "--link", "1gbit", "--cpu", "1.0", "--slurm"):
        yield
    assert our_daemons() == []   # munged is outside the namespaces: gone too


def on_head(*command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return diagnosenet("emulate-cluster", "run", "--", *command, timeout=timeout)


@pytest.mark.timeout(300)
def test_every_node_is_idle_and_runs_a_job_step_and_its_accounting_record(slurm_cluster):
    import time

    states = on_head("sinfo", "-h", "-N", "-o", "%N %t %c")
    assert states.returncode == 0, states.stdout
    assert sorted(states.stdout.split("\n")[:3]) == [f"{n} idle 2" for n in NODES], states.stdout
    steps = on_head("srun", "-N", "3", "-n", "3", "hostname")
    assert steps.returncode == 0, steps.stdout
    assert sorted(steps.stdout.split()) == NODES
    deadline, accounted = time.monotonic() + 60, ""   # the controller sends the record a moment later
    while "hostname|COMPLETED|3" not in accounted.split():
        assert time.monotonic() < deadline, f"not in the accounting database: {accounted!r}"
        time.sleep(0.5)
        accounted = on_head("sacct", "-X", "-n", "-P", "-o", "JobName,State,NNodes").stdout


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("emulated-slurm")
    for name in ("workflow", "profiles", "config"):
        (workdir / name).symlink_to(REPO / name)
    (workdir / "slurm").symlink_to(REPO / "profiles" / "slurm")
    (workdir / "small.yaml").write_text(yaml.safe_dump(SMALL))
    targets = [f"results/pmsi/runs/{mode}-w2/metrics.json" for mode in MODES]
    configs = "--configfile config/config.yaml config/slurm.yaml config/emulated-slurm.yaml small.yaml"
    proc = on_head("sh", "-c", f"cd {workdir} && PATH={BIN}:$PATH snakemake {' '.join(targets)} --profile slurm "
                   f"{configs} --jobs 3 {' '.join(EXECUTOR)}", timeout=1500)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return workdir, proc.stdout


@pytest.mark.timeout(1800)
def test_the_slurm_profile_runs_both_training_rules_as_slurm_jobs_across_the_nodes(slurm_run):
    workdir, _ = slurm_run
    jobs = {}
    for mode in MODES:
        metrics = json.loads((workdir / f"results/pmsi/runs/{mode}-w2/metrics.json").read_text())
        assert metrics["epochs_run"] == 2
        assert metrics["slurm"]["cluster"] == "diagnosenet-emulated", metrics.get("slurm")
        jobs[mode] = metrics["slurm"]["job_id"]
        if mode.startswith("mpi"):
            assert metrics["mpi"]["hosts"] == NODES, metrics["mpi"]      # rank r on node r
        else:
            assert metrics["hosts"] == {"ps:0": "node0", "chief:0": "node0", "worker:0": "node1",
                                        "worker:1": "node2"}
    assert len(set(jobs.values())) == len(MODES), jobs     # one Slurm job per training run
    accounted = on_head("sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(jobs.values()))
    assert sorted(accounted.stdout.split()) == sorted(f"{job}|COMPLETED" for job in jobs.values()), accounted.stdout
    # the preparatory stages (synth_pmsi, compose_pmsi, materialise, shard) ran as one group
    # job: the profile's `groups`; every job of one snakemake run carries the run's name
    names = dict(line.split("|") for line in on_head("sacct", "-X", "-n", "-P", "-S", "2000-01-01", "-o", "JobID,JobName").stdout.split())
    run_name = {names[job] for job in jobs.values()}
    assert len(run_name) == 1, names
    assert sum(name in run_name for name in names.values()) == len(MODES) + 1, names
    import csv

    subprocess.run([str(BIN / "diagnosenet"), "aggregate", "--runs",
                    *[str(workdir / f"results/pmsi/runs/{mode}-w2") for mode in MODES], "--out", str(workdir / "summary")],
                   check=True, timeout=300)
    with open(workdir / "summary" / "runs.csv", newline="") as handle:   # the report's runs table
        table = {r["mode"]: r for r in csv.DictReader(handle)}
    assert {mode: table[mode]["slurm_job"] for mode in MODES} == jobs
    assert table["mpi-sync"]["nodes"] == "rank0 node0, rank1 node1, rank2 node2"
    log = (workdir / "results/logs/train/pmsi_mpi-sync-w2.log").read_text()
    assert f"Slurm job {jobs['mpi-sync']}: ranks on node0 (1 task), node1 (1 task), node2 (1 task)" in log


# -- faults under Slurm (NumPy model: the exchange, without TensorFlow's import) -------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from test_emulated_cluster import _training_fixtures

    fixtures = _training_fixtures()
    root = tmp_path_factory.mktemp("slurm-tiny")
    dataset = fixtures.make_dataset(root, "pmsi")
    return dataset, fixtures.make_shards(dataset, root / "shards", workers=2, batch_size=32)


def training_job(tiny, mode: str, out: Path, epochs: int = 12) -> Path:
    """A batch script that runs what rule train_mpi runs under the slurm profile."""
    dataset, shards = tiny
    args = ["--task", "pmsi", "--mode", mode, "--workers", "2", "--dataset", str(dataset), "--shards", str(shards),
            "--out", str(out), "--batch-size", "32", "--model-json",
            json.dumps({"backend": "numpy", "hidden_units": [16], "delay_s": 0.05}), "--max-epochs", str(epochs),
            "--patience", str(epochs), "--lr", "0.01", "--seed", "3", "--timeout", "10", "--startup-timeout", "600",
            "--monitor-rate", "0"]
    script = out.parent / f"{out.name}.sh"
    out.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/bin/sh\n" + f"export PATH={BIN}:$PATH\nexec diagnosenet launch-mpi --launcher "
                      f"'mpirun -disable-auto-cleanup' --tasks 3 -- {shlex.join(args)}\n")
    script.chmod(0o755)
    return script


def submit(script: Path, log: Path) -> list[str]:
    """``sbatch --wait`` of a training script on the 3 nodes, as the slurm profile asks for it."""
    return [str(BIN / "diagnosenet"), "emulate-cluster", "run", "--", "sbatch", "--wait", "--no-kill", "-N", "3",
            "-n", "3", "-o", str(log), str(script)]


#: a longer mpi-sync run of the same data under another seed (a run of its own: ``-seed7``), so
#: that a fault lands mid-run; only training differs from the profile run's config
FAULTS = {"train": {"max_epochs": 150, "patience": 150, "timeout_s": 10,
                    "runs": [{"mode": "mpi-sync", "workers": 2, "tasks": ["pmsi"], "seeds": [7]}]}}


@pytest.mark.timeout(900)
def test_a_cancelled_training_job_resumes_when_the_same_snakemake_command_runs_again(slurm_run):
    """``scancel`` of the training job after epoch 3: the workflow fails (``CANCELLED``) and
    Snakemake deletes the job's outputs; the same ``snakemake --profile slurm`` command submits
    it again, which resumes from the checkpoint (the track rebuilt from its journal) and
    finishes every epoch, its ranks again one per node."""
    import re

    from test_emulated_cluster import fault_after_epochs, track_epochs

    workdir, _ = slurm_run
    (workdir / "faults.yaml").write_text(yaml.safe_dump(FAULTS))
    target = "results/pmsi/runs/mpi-sync-w2-seed7"
    out, log = workdir / target, workdir / "results/logs/train/pmsi_mpi-sync-w2-seed7.log"
    configs = "--configfile config/config.yaml config/slurm.yaml config/emulated-slurm.yaml small.yaml faults.yaml"
    # unbuffered: whatever the executor prints reaches the output even if the run must be killed
    command = [str(BIN / "diagnosenet"), "emulate-cluster", "run", "--", "sh", "-c",
               f"cd {workdir} && PATH={BIN}:$PATH PYTHONUNBUFFERED=1 exec snakemake {target}/metrics.json "
               f"--profile slurm {configs} --jobs 1 {' '.join(EXECUTOR)}"]
    epochs, tracked = FAULTS["train"]["max_epochs"], []

    def cancel():
        tracked.append(len(track_epochs(out)))
        assert on_head("scancel", "--partition", "emulated").returncode == 0

    workflow, _ = fault_after_epochs(command, out, 3, cancel)
    output = finish_within(workflow, 300)
    assert workflow.returncode != 0 and "SLURM status is: 'CANCELLED'" in output, output[-3000:]
    assert 3 <= tracked[0] < epochs and not (out / "metrics.json").exists() and not (out / "track.csv").exists()

    rerun = subprocess.Popen(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:   # on overrun, say what snakemake printed (its executor prints errors it cannot log)
        again = finish_within(rerun, 600)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the rerun did not end in 600 s:\n{(exc.output or '')[-3000:]}") from None
    assert rerun.returncode == 0, again[-3000:] + log.read_text()[-3000:]
    resumed = re.search(rf"resuming {target} after epoch (\d+)", log.read_text())
    assert resumed and int(resumed.group(1)) >= tracked[0] - 1, log.read_text()[-3000:]   # a row precedes its checkpoint
    assert track_epochs(out) == list(range(1, epochs + 1))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == epochs and metrics["mpi"]["hosts"] == NODES


#: a workflow of one Slurm job that runs until cancelled
LONG_JOB = """
rule wait:
    output: "done.txt"
    resources: mem_mb=100, runtime=10
    shell: "sleep 900 && touch {output}"
"""


def slurm_jobs() -> dict[str, str]:
    listed = on_head("squeue", "-h", "-o", "%i %T")
    assert listed.returncode == 0, listed.stdout
    return dict(line.split() for line in listed.stdout.splitlines() if line.strip())


@pytest.mark.timeout(600)
def test_a_status_query_that_keeps_failing_ends_the_workflow_with_an_error(slurm_cluster, tmp_path):
    """The accounting daemon stops answering (SIGSTOP of slurmdbd) while a job runs: the
    executor's sacct fails every cycle, and past the status-failure timeout the workflow ends
    with the error, naming the job, instead of waiting for ever (the plugin's own behaviour)."""
    import signal
    import time

    import psutil

    (tmp_path / "Snakefile").write_text(LONG_JOB)
    command = [str(BIN / "diagnosenet"), "emulate-cluster", "run", "--", "sh", "-c",
               f"cd {tmp_path} && PATH={BIN}:$PATH exec snakemake --executor slurm-bounded --jobs 1 "
               f"{' '.join(EXECUTOR)} --slurm-bounded-status-attempts 1 "
               "--slurm-bounded-status-failure-timeout 5"]
    from diagnosenet.emulation import STATE

    slurm_dir = Path(json.loads(STATE.read_text())["slurm"]["dir"])
    accounting = psutil.Process(int((slurm_dir / "state" / "slurmdbd.pid").read_text().split()[0]))
    workflow = subprocess.Popen(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "RUNNING" not in slurm_jobs().values():
            assert workflow.poll() is None and time.monotonic() < deadline, workflow.stdout.read()[-3000:]
            time.sleep(0.5)
        (job,) = slurm_jobs()
        accounting.send_signal(signal.SIGSTOP)
        output = finish_within(workflow, 400)    # bounded: the plugin alone would never end
    finally:
        accounting.send_signal(signal.SIGCONT)
    assert workflow.returncode != 0, output[-3000:]
    assert "no Slurm job-status query (sacct) has succeeded for" in output, output[-3000:]
    assert f"Slurm job(s) {job} may still be running" in output
    said = output.split("sacct says: ", 1)[1][:300]     # the failed query's own error, not asked again
    assert said.startswith("sacct: error:"), said
    assert on_head("scancel", job).returncode == 0
    deadline = time.monotonic() + 120
    while slurm_jobs():
        assert time.monotonic() < deadline, slurm_jobs()
        time.sleep(0.5)
    assert not (tmp_path / "done.txt").exists()


def return_to_service(node: str, timeout_s: float = 180) -> None:
    """Start ``node``'s slurmd again (the board rebooted) and wait until Slurm gives it jobs.
    A job that failed with the node away stays *completing* there until the node is marked
    down, which ends the job's clean-up on it; ``resume`` then returns it to service."""
    import time

    from diagnosenet.emulation import SSH

    assert on_head("scontrol", "update", f"nodename={node}", "state=down", "reason=lost-in-test").returncode == 0
    subprocess.run([str(SSH), node, "/usr/sbin/slurmd"], check=True, timeout=60)
    deadline, shown = time.monotonic() + timeout_s, ""
    while "State=IDLE " not in shown:   # IDLE alone: not IDLE+DRAIN, DOWN, ... (sinfo may say mix)
        assert time.monotonic() < deadline, f"{node} not idle {timeout_s:g} s after its slurmd started: {shown}"
        time.sleep(1)
        on_head("scontrol", "update", f"nodename={node}", "state=resume")   # ReturnToService may not
        shown = on_head("scontrol", "show", "node", node).stdout


@pytest.mark.timeout(900)
def test_a_node_lost_in_a_slurm_job_stops_mpi_sync_naming_it_and_the_same_job_resumes(slurm_cluster, tiny, tmp_path):
    """Every process of node2 killed (its slurmd too) after epoch 2 of an mpi-sync job: the job
    ends with an error naming node2, within the liveness bound; once node2 is back, the same
    batch script resumes from the checkpoint and trains every epoch, one rank per node."""
    import re
    import time

    from test_emulated_cluster import kill_node_after_epochs, track_epochs

    out, log = tmp_path / "sync", tmp_path / "job.log"
    script = training_job(tiny, "mpi-sync", out)
    job, killed_at = kill_node_after_epochs(submit(script, log), out, "node2", epochs=2)
    output = finish_within(job, 300)
    ended_in = time.monotonic() - killed_at
    text = log.read_text()
    assert job.returncode != 0, output[-2000:] + text[-4000:]
    assert "node node2 was lost" in text, text[-4000:]
    assert ended_in < 10 + 60, ended_in     # the heartbeat bound (10 s) and Slurm's own clean-up
    done = track_epochs(out)
    assert 2 <= len(done) < 12 and not (out / "metrics.json").exists()

    return_to_service("node2")
    rerun = finish_within(subprocess.Popen(submit(script, tmp_path / "rerun.log"), text=True, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, start_new_session=True), 600)
    text = (tmp_path / "rerun.log").read_text()
    resumed = re.search(r"resuming \S+ after epoch (\d+)", text)
    assert resumed and int(resumed.group(1)) >= len(done) - 1, rerun[-2000:] + text[-4000:]
    assert track_epochs(out) == list(range(1, 13))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mpi"]["hosts"] == NODES and metrics["slurm"]["job_id"]


@pytest.mark.timeout(900)
def test_a_node_lost_in_a_slurm_job_mpi_async_finishes_on_the_others(slurm_cluster, tiny, tmp_path):
    """Every process of node2 killed (its slurmd too) after epoch 2: launch-mpi, inside the
    allocation, finds the node whose slurmd is silent, re-forms on node0 and node1 and finishes."""
    from test_emulated_cluster import kill_node_after_epochs, track_epochs

    out = tmp_path / "async"
    script = training_job(tiny, "mpi-async", out)
    # the last test of the module: node2 stays down (the controller takes minutes to take it
    # back), and the module's teardown removes the whole cluster
    job, _ = kill_node_after_epochs(submit(script, tmp_path / "job.log"), out, "node2", epochs=2)   # slurmd and every step on it
    output = finish_within(job, 600)
    log = (tmp_path / "job.log").read_text()
    assert job.returncode == 0, output[-2000:] + log[-4000:]
    assert "mpi-async: node node2 was lost" in log and "re-forming on node0, node1" in log
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["mpi"]["lost_workers"]) == ["2"], metrics["mpi"]
    assert "node2" in metrics["mpi"]["lost_workers"]["2"]
    assert metrics["slurm"]["job_id"] and track_epochs(out) == list(range(1, 13))
