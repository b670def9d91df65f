"""Energy integration against hand-computed answers, and the tegrastats parser on recorded lines."""
from __future__ import annotations

import csv

import pytest

from diagnosenet.monitor.energy import board_joules, run_energy
from diagnosenet.monitor.sources import parse_tegrastats

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
