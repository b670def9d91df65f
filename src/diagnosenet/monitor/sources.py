"""Sample sources of the monitor: each is a callable returning ``{column: value}`` for one sample.

A source that cannot be opened on this host (no NVIDIA driver, no ``tegrastats``, powercap
not readable without privileges) is reported by :func:`open_sources` as missing with the
reason, never raised: the monitor must run on a laptop, a Slurm node and a Jetson alike.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import psutil

Source = Callable[[], dict]
#: column -> unit, for the CSV header (columns not listed are unit-less counts)
UNITS = {"cpu_percent": "%", "rss_bytes": "B", "threads": "1", "io_read_bytes": "B", "io_write_bytes": "B",
         "host_cpu_percent": "%", "host_cpu_mhz": "MHz", "host_mem_used_bytes": "B",
         "net_sent_bytes": "B", "net_recv_bytes": "B"}
#: sources that measure the monitored processes (summed over ranks); every other source reads
#: devices of the whole host (GPUs, Jetson rails, RAPL zones), which every rank on it sees
PROCESS_SOURCES = frozenset({"process"})
_PROCESS_COLUMNS = frozenset({"cpu_percent", "rss_bytes", "threads", "io_read_bytes", "io_write_bytes"})
_GPU_UNITS = {"power_w": "W", "energy_j": "J", "sm_mhz": "MHz", "mem_mhz": "MHz", "util_percent": "%",
              "mem_used_bytes": "B", "temp_c": "C"}


def unit_of(column: str) -> str:
    if column in UNITS:
        return UNITS[column]
    if column.startswith("rapl_") and column.endswith("_j"):
        return "J"
    if column.startswith("jetson_") and column.endswith("_w"):
        return "W"
    if column.startswith("jetson_"):
        return "%" if column.endswith("_percent") else "MB"
    suffix = column.split("_", 1)[1] if column.startswith("gpu") else ""
    return _GPU_UNITS.get(suffix, "")


def source_of(column: str) -> str | None:
    """The source that writes ``column`` (for monitor CSVs whose sidecar does not say)."""
    if column in _PROCESS_COLUMNS:
        return "process"
    for prefix, source in (("host_", "host"), ("net_", "host"), ("gpu", "nvml"), ("jetson_", "tegrastats"),
                           ("rapl_", "rapl")):
        if column.startswith(prefix):
            return source
    return None


def processes_source(pids: Sequence[int]) -> Source:
    """CPU %, RSS, threads and I/O bytes summed over the owned processes and their children."""
    procs = {pid: psutil.Process(pid) for pid in pids}
    for proc in procs.values():
        proc.cpu_percent(None)  # first call primes the counter

    def family() -> list[psutil.Process]:
        for root in [procs[pid] for pid in pids]:
            try:
                for child in root.children(recursive=True):
                    if child.pid not in procs:
                        child.cpu_percent(None)
                        procs[child.pid] = child
            except psutil.Error:
                continue
        return list(procs.values())

    def sample() -> dict:
        total = dict(cpu_percent=0.0, rss_bytes=0, threads=0, io_read_bytes=0, io_write_bytes=0)
        for proc in family():
            try:
                with proc.oneshot():
                    total["cpu_percent"] += proc.cpu_percent(None)
                    total["rss_bytes"] += proc.memory_info().rss
                    total["threads"] += proc.num_threads()
                    io = proc.io_counters() if hasattr(proc, "io_counters") else None
                    if io is not None:
                        total["io_read_bytes"] += io.read_bytes
                        total["io_write_bytes"] += io.write_bytes
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    return sample


def host_source() -> Source:
    psutil.cpu_percent(None)

    def sample() -> dict:
        freq = psutil.cpu_freq()
        net = psutil.net_io_counters()
        return {"host_cpu_percent": psutil.cpu_percent(None), "host_cpu_mhz": freq.current if freq else float("nan"),
                "host_mem_used_bytes": psutil.virtual_memory().used, "net_sent_bytes": net.bytes_sent,
                "net_recv_bytes": net.bytes_recv}

    return sample


def nvml_source() -> Source:
    """Every NVIDIA GPU through NVML: power, energy counter (Volta+), clocks, utilisation, memory, temperature."""
    import pynvml

    pynvml.nvmlInit()
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    if not handles:
        raise RuntimeError("NVML found no GPU")

    def read(fn, *args, scale=1.0):
        try:
            return fn(*args) * scale
        except pynvml.NVMLError:
            return float("nan")

    def sample() -> dict:
        row = {}
        for i, h in enumerate(handles):
            util = read(lambda h: pynvml.nvmlDeviceGetUtilizationRates(h).gpu, h)
            row.update({f"gpu{i}_power_w": read(pynvml.nvmlDeviceGetPowerUsage, h, scale=1e-3),
                        f"gpu{i}_energy_j": read(pynvml.nvmlDeviceGetTotalEnergyConsumption, h, scale=1e-3),
                        f"gpu{i}_sm_mhz": read(pynvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_SM),
                        f"gpu{i}_mem_mhz": read(pynvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_MEM),
                        f"gpu{i}_util_percent": util,
                        f"gpu{i}_mem_used_bytes": read(lambda h: pynvml.nvmlDeviceGetMemoryInfo(h).used, h),
                        f"gpu{i}_temp_c": read(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU)})
        return row

    return sample


POWERCAP_ROOT = Path("/sys/class/powercap")


def rapl_source(root: str | Path = POWERCAP_ROOT) -> Source:
    """CPU package/DRAM energy counters (Intel RAPL, AMD via the same interface), in joules.

    ``energy_uj`` wraps to 0 after ``max_energy_range_uj`` (e.g. 262 kJ, ~40 min of a 100 W
    package): the source unwraps it, so each column is a non-decreasing counter since the
    source was opened — a sample below the previous one adds ``max - previous + new``. A zone
    without a readable ``max_energy_range_uj`` is taken to have restarted from 0 (``new`` is
    added: a lower bound). Wraps are seen if the counter is sampled at least once per range.
    """
    root = Path(root)
    zones = sorted(p for p in root.glob("intel-rapl:*") if (p / "energy_uj").exists()) if root.exists() else []
    if not zones:
        raise RuntimeError(f"{root}: no RAPL zone")
    names, ranges = {}, {}
    for zone in zones:  # intel-rapl:0 is a package (top level); intel-rapl:0:1 one of its parts
        index = zone.name.split(":", 1)[1].split(":")
        level = f"top{index[0]}" if len(index) == 1 else "sub" + "_".join(index)
        label = re.sub(r"\W+", "_", (zone / "name").read_text().strip())
        names[zone] = f"{level}_{label}"
        try:
            ranges[zone] = int((zone / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            ranges[zone] = None
    last = {zone: int((zone / "energy_uj").read_text()) for zone in zones}  # PermissionError when not readable
    offset = dict.fromkeys(zones, 0)

    def sample() -> dict:
        row = {}
        for z in zones:
            raw = int((z / "energy_uj").read_text())
            if raw < last[z]:  # wrapped (or restarted) since the previous sample
                offset[z] += ranges[z] if ranges[z] else last[z]
            last[z] = raw
            row[f"rapl_{names[z]}_j"] = (raw + offset[z]) * 1e-6
        return row

    return sample


#: ``NAME current/average`` in mW, with (JetPack 5) or without (JetPack 4) the unit; ``RAM 2088/7854MB``
#: and ``IRAM 0/252kB`` do not match because another unit follows the number
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) +(\d+)(?:mW)?/(\d+)(?:mW)?(?!\w)")
_RAM = re.compile(r"RAM (\d+)/(\d+)MB")
_GR3D = re.compile(r"GR3D_FREQ (\d+)%")
_CPU = re.compile(r"CPU \[([^\]]*)\]")


def parse_tegrastats(line: str) -> dict:
    """One ``tegrastats`` line → RAM, GPU load, mean CPU load and every power rail in watts.

    Handles TX2/Nano/Xavier lines (``VDD_IN 2459/2459``, ``POM_5V_IN 1234/1234``, ``GPU 0/0``: mW
    current/average) and JetPack 5 lines (``VDD_GPU_SOC 1992mW/1992mW``); the original monitor kept
    none of the rails.
    """
    row: dict = {}
    if m := _RAM.search(line):
        row["jetson_ram_used_mb"] = float(m.group(1))
    if m := _GR3D.search(line):
        row["jetson_gpu_percent"] = float(m.group(1))
    if m := _CPU.search(line):
        loads = [float(x) for x in re.findall(r"(\d+)%@", m.group(1))]
        if loads:
            row["jetson_cpu_percent"] = sum(loads) / len(loads)
    for name, current, _average in _RAIL.findall(line):
        row[f"jetson_{name.lower()}_w"] = int(current) / 1000.0
    return row


class TegrastatsSource:
    """Runs ``tegrastats --interval`` (no sudo) and keeps its latest parsed line."""

    def __init__(self, interval_ms: int):
        exe = shutil.which("tegrastats")
        if exe is None:
            raise RuntimeError("tegrastats not on PATH (not a Jetson board)")
        self.proc = subprocess.Popen([exe, "--interval", str(interval_ms)], stdout=subprocess.PIPE, text=True)
        self.latest: dict = {}
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.time() + 3
        while not self.latest and time.time() < deadline and self.proc.poll() is None:
            time.sleep(0.05)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.latest = parse_tegrastats(line)

    def __call__(self) -> dict:
        return dict(self.latest)

    def close(self) -> None:
        """Stop only the tegrastats process this source started (by its pid)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def open_sources(pids: Sequence[int], rate_hz: float, wanted: Sequence[str],
                 powercap_root: str | Path = POWERCAP_ROOT) -> tuple[dict[str, Source], dict[str, str]]:
    """``(available sources, {missing source: reason})`` for the names in ``wanted``."""
    openers = {"process": lambda: processes_source(pids), "host": host_source, "nvml": nvml_source,
               "rapl": lambda: rapl_source(powercap_root),
               "tegrastats": lambda: TegrastatsSource(max(int(1000 / rate_hz), 100))}
    sources, missing = {}, {}
    for name in wanted:
        if name not in openers:
            raise ValueError(f"unknown monitor source {name!r}; known: {sorted(openers)}")
        try:
            sources[name] = openers[name]()
        except Exception as exc:  # any failure to open a source means "absent here", by design
            missing[name] = f"{type(exc).__name__}: {exc}"
    return sources, missing
