"""Energy integration against hand-computed answers, host-wide devices counted once per host, RAPL
wrap-around, and the tegrastats parser on recorded lines."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from diagnosenet.figures.runs import energy_sources
from diagnosenet.monitor import Monitor
from diagnosenet.monitor.energy import board_joules, energy_between, read_samples, run_energy
from diagnosenet.monitor.sources import parse_tegrastats, rapl_source

TX2 = ("RAM 2088/7854MB (lfb 1181x4MB) SWAP 0/3927MB (cached 0MB) CPU [12%@345,off,off,3%@345,8%@345,4%@345] "
       "EMC_FREQ 0% GR3D_FREQ 45% PLL@35C MCPU@35C PMIC@100C Tboard@31C GPU@33.5C BCPU@35C thermal@34.3C "
       "Tdiode@32.5C VDD_SYS_GPU 153/153 VDD_SYS_SOC 460/460 VDD_4V0_WIFI 0/0 VDD_IN 2459/2459 "
       "VDD_SYS_CPU 306/306 VDD_SYS_DDR 426/426")
JP5 = ("11-22-2026 10:00:00 RAM 2845/30536MB (lfb 6283x4MB) SWAP 0/15268MB (cached 0MB) "
       "CPU [4%@1190,1%@1190,0%@1190,0%@1190] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305,305] "
       "VDD_GPU_SOC 1992mW/1992mW VDD_CPU_CV 398mW/398mW VIN_SYS_5V0 2719mW/2719mW")
NANO = ("RAM 1513/3964MB (lfb 123x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
        "CPU [9%@1479,4%@1479,7%@1479,2%@1479] EMC_FREQ 3%@1600 GR3D_FREQ 0%@76 APE 25 PLL@27C "
        "POM_5V_IN 2201/2201 POM_5V_GPU 40/40 POM_5V_CPU 402/402")
XAVIER = ("RAM 3125/15692MB (lfb 2707x4MB) SWAP 0/7846MB (cached 0MB) CPU [2%@1190,1%@1190,off,off] "
          "EMC_FREQ 0% GR3D_FREQ 0% AO@38C GPU@38.5C GPU 0/0 CPU 311/311 SOC 933/933 CV 0/0 VDDRQ 155/155 "
          "SYS5V 1472/1472")


def test_tegrastats_lines_of_both_generations_keep_every_power_rail():
    tx2 = parse_tegrastats(TX2)
    assert tx2["jetson_vdd_in_w"] == pytest.approx(2.459) and tx2["jetson_vdd_sys_gpu_w"] == pytest.approx(0.153)
    assert tx2["jetson_ram_used_mb"] == 2088 and tx2["jetson_gpu_percent"] == 45
    assert tx2["jetson_cpu_percent"] == pytest.approx((12 + 3 + 8 + 4) / 4)
    jp5 = parse_tegrastats(JP5)
    assert jp5["jetson_vdd_gpu_soc_w"] == pytest.approx(1.992) and jp5["jetson_vin_sys_5v0_w"] == pytest.approx(2.719)
    assert {k for k in jp5 if k.endswith("_w")} == {"jetson_vdd_gpu_soc_w", "jetson_vdd_cpu_cv_w", "jetson_vin_sys_5v0_w"}
    nano = parse_tegrastats(NANO)  # RAM/SWAP/IRAM totals are not rails
    assert {k for k in nano if k.endswith("_w")} == {"jetson_pom_5v_in_w", "jetson_pom_5v_gpu_w", "jetson_pom_5v_cpu_w"}
    assert nano["jetson_pom_5v_in_w"] == pytest.approx(2.201)
    xavier = parse_tegrastats(XAVIER)  # JetPack 4 AGX Xavier: bare rail names
    assert xavier["jetson_soc_w"] == pytest.approx(0.933) and xavier["jetson_sys5v_w"] == pytest.approx(1.472)
    assert len([k for k in xavier if k.endswith("_w")]) == 6
    assert len([k for k in tx2 if k.endswith("_w")]) == 6


def write(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_power_is_integrated_per_epoch_and_to_the_best_epoch(tmp_path):
    # 10 W idle, then a ramp 0 -> 20 W over 0..10 s; the GPU's energy counter grows 5 J/s
    write(tmp_path / "rank0.csv", ["timestamp", "elapsed_s", "phase", "gpu0_power_w", "gpu0_energy_j", "cpu_percent"],
          [[-1, 0, "idle", 10, 0, 0], [0, 1, "run", 0, 0, 100]] +
          [[t, t + 1, "run", 2 * t, 5 * t, 100] for t in range(1, 11)])
    write(tmp_path / "track.csv", ["epoch", "timestamp", "epoch_seconds"], [[1, 4, 4], [2, 10, 6]])
    energy = run_energy([tmp_path / "rank0.csv"], tmp_path / "track.csv", best_epoch=1)
    assert energy["total"]["gpu0_power_j"] == pytest.approx(100.0)  # ∫0^10 2t dt
    assert energy["per_epoch"][0]["gpu0_power_j"] == pytest.approx(16.0)  # ∫0^4
    assert energy["per_epoch"][1]["gpu0_power_j"] == pytest.approx(84.0)
    assert energy["to_best_epoch"]["gpu0_energy_j"] == pytest.approx(20.0)
    assert energy["total"]["cpu_core_seconds"] == pytest.approx(10.0)
    assert energy["idle_power_w"] == {"gpu0_power_w": 10.0}
    assert energy["joules_total"] == pytest.approx(50.0)  # the counter, not counter + power integral
    assert energy["joules_to_best"] == pytest.approx(20.0)


def test_a_device_is_counted_once():
    assert board_joules({"jetson_vdd_in_j": 9.0, "jetson_vdd_sys_gpu_j": 3.0}) == 9.0
    assert board_joules({"rapl_top0_package_0_j": 7.0, "rapl_sub0_0_core_j": 5.0}) == 7.0
    assert board_joules({"gpu0_power_j": 4.0, "gpu0_energy_j": float("nan")}) is not None
    assert board_joules({"cpu_core_seconds": 3.0}) is None


# -- counted once per device ------------------------------------------------------------------------------------
def write_monitor(directory, name, host, machine, rows, columns, host_wide):
    """A monitor CSV and its sidecar in the format ``Monitor`` writes (host, machine, host-wide columns)."""
    write(directory / f"{name}.csv", ["timestamp", "elapsed_s", "phase", *columns], rows)
    (directory / f"{name}.json").write_text(json.dumps({
        "host": host, "machine": machine, "sources": ["nvml", "process"],
        "source_columns": {"process": [c for c in columns if c not in host_wide], "nvml": list(host_wide)},
        "host_wide_columns": list(host_wide)}))
    return directory / f"{name}.csv"


def test_host_wide_power_counts_once_per_host_over_the_union_of_its_monitors_and_process_figures_per_rank(tmp_path):
    # node0: rank0 samples 0..6 s, rank1 4..10 s, both see the host's GPU at 100 W; node1: rank2 sees 50 W, 0..10 s
    columns, shared = ["gpu0_power_w", "cpu_percent"], ["gpu0_power_w"]
    paths = [write_monitor(tmp_path, "rank0", "node0", "boot-a", [[t, t, "run", 100, 100] for t in range(0, 7)],
                           columns, shared),
             write_monitor(tmp_path, "rank1", "node0", "boot-a", [[t, t, "run", 100, 50] for t in range(4, 11)],
                           columns, shared),
             write_monitor(tmp_path, "rank2", "node1", "boot-b",
                           [[-1, 0, "idle", 40, 0]] + [[t, t + 1, "run", 50, 200] for t in range(0, 11)],
                           columns, shared)]
    energy = run_energy(paths, tmp_path / "no-track.csv", best_epoch=0)
    assert energy["status"] == "measured"
    assert set(energy["hosts"]) == {"node0", "node1"}
    node0, node1 = energy["hosts"]["node0"], energy["hosts"]["node1"]
    assert node0["joules"] == pytest.approx(1000.0)  # 100 W x 10 s, not 100 W x (6 + 6) s
    assert node1["joules"] == pytest.approx(500.0)
    assert energy["joules_total"] == pytest.approx(1500.0)
    assert node0["sources"] == node1["sources"] == ["nvml", "process"]
    # the processes' own figures are per rank, and summed
    assert node0["monitors"]["rank0"]["cpu_core_seconds"] == pytest.approx(6.0)
    assert node0["monitors"]["rank1"]["cpu_core_seconds"] == pytest.approx(3.0)
    assert node1["monitors"]["rank2"]["cpu_core_seconds"] == pytest.approx(20.0)
    assert energy["total"]["cpu_core_seconds"] == pytest.approx(29.0)
    assert energy["idle_power_w"] == {"gpu0_power_w": 40.0}
    assert energy_sources(energy) == "node0: nvml, process; node1: nvml, process"


def test_a_counter_that_decreases_without_being_unwrapped_never_counts_negative(tmp_path):
    path = tmp_path / "rank0.csv"
    write(path, ["timestamp", "elapsed_s", "phase", "gpu0_energy_j"],
          [[0, 0, "run", 100], [1, 1, "run", 110], [2, 2, "run", 5], [3, 3, "run", 12]])
    assert run_energy([path], tmp_path / "no-track.csv", 0)["joules_total"] == pytest.approx(17.0)


def powercap_zone(root, zone, name, microjoules, max_range=None):
    (root / zone).mkdir(parents=True, exist_ok=True)
    (root / zone / "name").write_text(name + "\n")
    set_counter(root / zone, microjoules)
    if max_range is not None:
        (root / zone / "max_energy_range_uj").write_text(f"{max_range}\n")


def set_counter(zone_dir, microjoules):
    """Replace ``energy_uj`` atomically, as sysfs reads are: a reader never sees a half-written file."""
    tmp = zone_dir / "energy_uj.tmp"
    tmp.write_text(f"{microjoules}\n")
    os.replace(tmp, zone_dir / "energy_uj")


def test_a_rapl_counter_that_wraps_between_two_samples_gives_the_right_energy(tmp_path):
    top = 262_143_328_850  # a real package's max_energy_range_uj
    powercap_zone(tmp_path, "intel-rapl:0", "package-0", top - 1_000_000, max_range=top)
    powercap_zone(tmp_path, "intel-rapl:1", "package-1", 9_000_000)  # no readable range: a restart from 0
    sample = rapl_source(tmp_path)
    before = sample()
    set_counter(tmp_path / "intel-rapl:0", 2_500_000)  # wrapped: (max - previous) + new = 1 J + 2.5 J
    set_counter(tmp_path / "intel-rapl:1", 4_000_000)
    after = sample()
    assert after["rapl_top0_package_0_j"] - before["rapl_top0_package_0_j"] == pytest.approx(3.5)
    assert after["rapl_top1_package_1_j"] - before["rapl_top1_package_1_j"] == pytest.approx(4.0)  # lower bound
    set_counter(tmp_path / "intel-rapl:0", 4_000_000)  # no wrap: the plain difference
    assert sample()["rapl_top0_package_0_j"] - after["rapl_top0_package_0_j"] == pytest.approx(1.5)


@pytest.mark.timeout(60)
def test_three_ranks_on_one_host_reading_one_powercap_tree_count_its_joules_once(tmp_path):
    """Three real monitors (three ranks of one run on this host) sample one test powercap tree whose
    package draws 10 W and wraps during the run; the run's energy is 10 W x its duration, once."""
    watts, top = 10.0, 100_000_000  # the counter wraps every 10 s; it starts 0.5 s before a wrap
    root, run_dir = tmp_path / "powercap", tmp_path / "run"
    powercap_zone(root, "intel-rapl:0", "package-0", top - 5_000_000, max_range=top)
    powercap_zone(root, "intel-rapl:0:0", "core", 0, max_range=top)
    stop, t0 = threading.Event(), time.time()

    def draw():  # the package's counter, advanced every 5 ms like the hardware's
        while not stop.is_set():
            spent = time.time() - t0
            set_counter(root / "intel-rapl:0", (top - 5_000_000 + int(watts * spent * 1e6)) % top)
            set_counter(root / "intel-rapl:0:0", int(watts / 2 * spent * 1e6) % top)
            stop.wait(0.005)

    writer = threading.Thread(target=draw, daemon=True)
    writer.start()
    ranks = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(3)]
    try:
        with contextlib.ExitStack() as stack:
            for r, child in enumerate(ranks):
                stack.enter_context(Monitor(run_dir / "monitor" / f"rank{r}.csv", pids=[child.pid], rate_hz=10,
                                            sources=("process", "rapl"), idle_s=0, powercap_root=root))
            time.sleep(1.5)
    finally:
        stop.set()
        writer.join()
        for child in ranks:
            child.kill()
            child.wait()
    csvs = sorted((run_dir / "monitor").glob("*.csv"))
    metas = [json.loads(p.with_suffix(".json").read_text()) for p in csvs]
    assert len({(m["host"], m["machine"]) for m in metas}) == 1
    assert all("rapl_top0_package_0_j" in m["host_wide_columns"] and "cpu_percent" not in m["host_wide_columns"]
               for m in metas)

    energy = run_energy(csvs, run_dir / "track.csv", best_epoch=0)
    expected = watts * energy["seconds"]
    assert energy["status"] == "measured"
    assert energy["joules_total"] == pytest.approx(expected, rel=0.1)  # once, wrap included
    assert energy["total"]["rapl_sub0_0_core_j"] == pytest.approx(expected / 2, rel=0.1)  # a part, not counted
    (host, entry), = energy["hosts"].items()
    assert host == socket.gethostname() and entry["sources"] == ["rapl", "process"]
    assert sorted(entry["monitors"]) == ["rank0", "rank1", "rank2"]
    assert all("cpu_core_seconds" in figures for figures in entry["monitors"].values())
    # each rank alone saw the whole package: summing the CSVs, as before, counted it three times
    start, end = time.time() - 3600, time.time()
    naive = sum(board_joules(energy_between(read_samples(p), start, end)) for p in csvs)
    assert naive == pytest.approx(3 * energy["joules_total"], rel=0.15)
    assert energy_sources(energy) == f"{host}: rapl, process"
