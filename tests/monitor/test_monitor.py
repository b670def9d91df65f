"""The monitor on real processes: real timestamps, continuous flushing, missing sources listed."""
from __future__ import annotations

import csv
import json
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
        child.wait()
    after = rows(path)
    assert len(during) >= 5 and len(after) > len(during)
    stamps = [float(r["timestamp"]) for r in after]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert {r["phase"] for r in after} == {"idle", "run"} and after[0]["phase"] == "idle"
    busy = [float(r["cpu_percent"]) for r in after if r["phase"] == "run"]
    assert max(busy) > 50  # the busy loop is seen, not the monitor's own process
    meta = json.loads(path.with_suffix(".json").read_text())
    assert {"process", "host"} <= set(meta["sources"]) and meta["units"]["rss_bytes"] == "B"


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
