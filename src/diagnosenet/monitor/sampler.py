"""The monitor: a background thread sampling the configured sources at a fixed rate.

Every row has the real wall-clock time of its own sample (the original stamped every
Jetson line with one timestamp) and the file is flushed after each row, so a crashed run
keeps what was sampled. A short idle phase before the run is recorded with ``phase=idle``
so energy can be reported net of the host's idle draw. Metadata (sources found, sources
missing and why, units, pids, host and machine, the columns of each source and which of
them are host-wide) go to a JSON file beside the CSV: every rank on a host samples the
host-wide devices, and ``energy.run_energy`` counts them once per machine from these.
"""
from __future__ import annotations

import csv
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Sequence

from diagnosenet.artifacts import write_json
from diagnosenet.monitor.sources import POWERCAP_ROOT, PROCESS_SOURCES, open_sources, unit_of

log = logging.getLogger(__name__)

DEFAULT_SOURCES = ("process", "host", "nvml", "rapl", "tegrastats")
BASE_COLUMNS = ("timestamp", "elapsed_s", "phase")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def machine_id() -> str:
    """Identity of the hardware this process reads: the kernel's boot id (shared by every
    container or network namespace on one machine, so an emulated cluster's nodes share it),
    else the host name."""
    try:
        return BOOT_ID.read_text().strip() or socket.gethostname()
    except OSError:
        return socket.gethostname()


class Monitor:
    """Context manager: ``with Monitor(csv_path, pids=[pid], rate_hz=2.0): train()``."""

    def __init__(self, csv_path: str | os.PathLike, pids: Sequence[int] | None = None, rate_hz: float = 2.0,
                 sources: Sequence[str] = DEFAULT_SOURCES, idle_s: float = 1.0,
                 powercap_root: str | os.PathLike = POWERCAP_ROOT):
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.path = Path(csv_path)
        self.pids = list(pids or [os.getpid()])
        self.period = 1.0 / rate_hz
        self.rate_hz = rate_hz
        self.wanted = tuple(sources)
        self.idle_s = idle_s
        self.powercap_root = Path(powercap_root)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples = 0
        self.write_error: str | None = None
        self.source_columns: dict[str, list[str]] | None = None

    @property
    def metadata_path(self) -> Path:
        return self.path.with_suffix(".json")

    def __enter__(self) -> "Monitor":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sources, self.missing = open_sources(self.pids, self.rate_hz, self.wanted, self.powercap_root)
        self._t0 = time.time()
        first = self._sample("idle")
        self.columns = [*BASE_COLUMNS, *(k for k in first if k not in BASE_COLUMNS)]
        host_wide = [c for name, cols in self.source_columns.items() if name not in PROCESS_SOURCES for c in cols]
        self._file = open(self.path, "w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, restval="", extrasaction="ignore")
        self._writer.writeheader()
        self._write(first)
        write_json(self.metadata_path, {
            "host": socket.gethostname(), "machine": machine_id(), "pids": self.pids, "rate_hz": self.rate_hz,
            "sources": sorted(self.sources), "missing_sources": self.missing,
            "source_columns": self.source_columns, "host_wide_columns": host_wide,
            "units": {c: unit_of(c) for c in self.columns if c not in ("phase",)} | {"timestamp": "s (Unix)",
                                                                                     "elapsed_s": "s"}})
        idle_until = self._t0 + self.idle_s
        while time.time() + self.period <= idle_until:
            time.sleep(self.period)
            self._write(self._sample("idle"))
        self._thread = threading.Thread(target=self._run, name="diagnosenet-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10 * self.period + 5)
        self._write(self._sample("run"))
        try:
            self._file.close()
        except OSError:   # the buffered rows of a failed write (write_error says where)
            pass
        for source in self.sources.values():
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def _sample(self, phase: str) -> dict:
        now = time.time()
        row = {"timestamp": f"{now:.3f}", "elapsed_s": f"{now - self._t0:.3f}", "phase": phase}
        columns = {}
        for name, source in self.sources.items():
            values = source()
            columns[name] = list(values)
            row.update(values)
        if self.source_columns is None:  # the first sample fixes the CSV's columns
            self.source_columns = columns
        return row

    def _write(self, row: dict) -> None:
        if self.write_error is not None:
            return
        try:
            self._writer.writerow(row)
            self._file.flush()
        except OSError as exc:  # a full disk: say where once, stop sampling, never stop the training
            self.write_error = f"{self.path}: {exc.strerror or exc}; the monitor stopped sampling"
            log.error("%s", self.write_error)
            self._stop.set()
            return
        self.samples += 1

    def _run(self) -> None:
        next_time = time.time()
        while not self._stop.is_set():
            self._write(self._sample("run"))
            next_time += self.period
            self._stop.wait(max(0.0, next_time - time.time()))
