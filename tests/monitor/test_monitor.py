"""The monitor on real processes: real timestamps, continuous flushing, missing sources listed."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diagnosenet.monitor import Monitor

BIN = Path(sys.executable).parent
BUSY = "import time\nend = time.time() + {s}\nwhile time.time() < end: pass\n"


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.timeout(60)
def test_samples_a_busy_child_with_increasing_timestamps_flushed_while_running(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", BUSY.format(s=3)])
    path = tmp_path / "rank0.csv"
    with Monitor(path, pids=[child.pid], rate_hz=10, idle_s=0.3):
        time.sleep(1.2)
        during = rows(path)  # readable before the monitor stops: nothing is lost in a crash
        # the child's own CPU time, from its own exit: not RUSAGE_CHILDREN, which also counts any
        # earlier test's process of this worker that subprocess reaps meanwhile (that added
        # ~0.9 s once, and a correct monitor failed the comparison below)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    after = rows(path)
    assert len(during) >= 5 and len(after) > len(during)
    stamps = [float(r["timestamp"]) for r in after]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert {r["phase"] for r in after} == {"idle", "run"} and after[0]["phase"] == "idle"
    # the busy loop is seen, not the monitor's own process: the CPU time the samples add up to
    # is the child's own (as the kernel counted it), whatever share of a core it got beside the
    # suite's other work (a bound on the percentage failed with 4 busy processes on 2 cores)
    child_cpu_s = usage.ru_utime + usage.ru_stime
    run = [(float(r["timestamp"]), float(r["cpu_percent"])) for r in after if r["phase"] == "run"]
    seen_cpu_s = sum(pct / 100 * (t1 - t0) for (t0, _), (t1, pct) in zip(run, run[1:]))
    assert child_cpu_s > 0.3 and seen_cpu_s == pytest.approx(child_cpu_s, rel=0.35), (seen_cpu_s, child_cpu_s)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert {"process", "host"} <= set(meta["sources"]) and meta["units"]["rss_bytes"] == "B"
    # where it ran and which columns every monitor on this host shares (counted once per machine)
    assert meta["host"] and meta["machine"]
    assert "cpu_percent" in meta["source_columns"]["process"] and "cpu_percent" not in meta["host_wide_columns"]
    assert set(meta["source_columns"]["host"]) <= set(meta["host_wide_columns"])


@pytest.mark.timeout(30)
def test_sources_absent_on_this_host_are_listed_not_raised(tmp_path):
    path = tmp_path / "m.csv"
    with Monitor(path, rate_hz=5, sources=("process", "nvml", "tegrastats"), idle_s=0):
        time.sleep(0.3)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert "process" in meta["sources"]
    for name in ("nvml", "tegrastats"):  # no GPU, not a Jetson: explained, never an error
        assert name in meta["sources"] or meta["missing_sources"][name]
    with pytest.raises(ValueError, match="unknown monitor source"):
        Monitor(path, sources=("nvidia-smi",)).__enter__()


@pytest.mark.timeout(60)
def test_cli_returns_the_commands_exit_status_and_writes_samples(tmp_path):
    out = tmp_path / "cmd.csv"
    proc = subprocess.run([str(BIN / "diagnosenet"), "monitor", "--rate", "10", "--out", str(out), "--",
                           sys.executable, "-c", BUSY.format(s=0.5) + "raise SystemExit(3)"], timeout=50)
    assert proc.returncode == 3
    assert len(rows(out)) >= 3


@pytest.mark.timeout(60)
def test_a_crashed_process_leaves_a_complete_flushed_csv(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", BUSY.format(s=30)])
    path = tmp_path / "crash.csv"
    with Monitor(path, pids=[child.pid], rate_hz=10, idle_s=0):
        time.sleep(0.8)
        child.kill()  # the training process dies mid-run
        child.wait()
        time.sleep(0.3)
    table = rows(path)
    assert len(table) >= 5 and all(None not in r.values() and "" not in (r["timestamp"], r["phase"]) for r in table)


@pytest.mark.timeout(90)
def test_stopping_the_monitor_command_stops_only_its_own_child(tmp_path):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        monitor = subprocess.Popen([str(BIN / "diagnosenet"), "monitor", "--rate", "5", "--out", str(tmp_path / "m.csv"),
                                    "--", sys.executable, "-c", "import time; time.sleep(60)"])
        deadline = time.time() + 40
        while not (tmp_path / "m.csv").exists() and time.time() < deadline:
            time.sleep(0.2)
        monitor.terminate()  # SIGTERM is forwarded to the child it started, and to nothing else
        assert monitor.wait(timeout=30) != 0
        assert bystander.poll() is None
    finally:
        bystander.kill()


def test_rapl_reads_a_powercap_tree_in_joules_and_names_packages_apart_from_their_parts(tmp_path):
    from diagnosenet.monitor.sources import rapl_source

    for zone, name, microjoules in (("intel-rapl:0", "package-0", 5_000_000), ("intel-rapl:0:0", "core", 2_500_000)):
        (tmp_path / zone).mkdir()
        (tmp_path / zone / "name").write_text(name + "\n")
        (tmp_path / zone / "energy_uj").write_text(f"{microjoules}\n")
    assert rapl_source(tmp_path)() == {"rapl_top0_package_0_j": 5.0, "rapl_sub0_0_core_j": 2.5}
    with pytest.raises(RuntimeError, match="no RAPL zone"):  # open_sources turns this into "missing"
        rapl_source(tmp_path / "absent")
