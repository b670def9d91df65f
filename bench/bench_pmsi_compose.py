"""Wall time and peak RSS of ``diagnosenet compose-pmsi`` on the paper's 116,831 stays.

Usage: .venv/bin/python bench/bench_pmsi_compose.py [--patients 116831] [--seed 2020]
The synthetic RHS files are generated once into bench/out/pmsi-<patients>-<seed>/raw (git-ignored)
and reused while their manifest matches; each command runs as its own process and its peak
RSS comes from ``os.wait4`` (that child only). Targets: compose ≤ 60 s and ≤ 1.5 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from diagnosenet.artifacts import ArtifactError, verify_manifest
from diagnosenet.pmsi.synth import generator_params

OUT = Path(__file__).resolve().parent / "out"


def timed(command: list[str], log: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process; its output goes to ``log``."""
    with open(log, "w") as handle:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}); see {log}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=116_831)
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()
    base = OUT / f"pmsi-{args.patients}-{args.seed}"
    raw, composed = base / "raw", base / "composed"
    cli = [sys.executable, "-m", "diagnosenet"]
    base.mkdir(parents=True, exist_ok=True)
    try:
        verify_manifest(raw, stage="synth-pmsi",
                        params={"patients": args.patients, "seed": args.seed, **generator_params()})
        print(f"reusing {raw}")
    except ArtifactError:
        shutil.rmtree(raw, ignore_errors=True)
        wall, rss = timed([*cli, "synth-pmsi", "--patients", str(args.patients), "--seed", str(args.seed),
                           "--out", str(raw)], base / "synth.log")
        print(f"synth-pmsi: {wall:.1f} s, peak RSS {rss:.0f} MiB")
    shutil.rmtree(composed, ignore_errors=True)
    wall, rss = timed([*cli, "compose-pmsi", "--rhs", str(raw / "rhs_*.txt"), "--labels", str(raw / "labels.csv"),
                       "--out", str(composed), "--salt-file", str(base / "bench.salt")], base / "compose.log")
    counts = json.loads((composed / "counts.json").read_text())
    mib = sum(p.stat().st_size for p in raw.glob("rhs_*.txt")) / 2**20
    print(f"compose-pmsi: {wall:.1f} s, peak RSS {rss:.0f} MiB; {counts['lines_read']} lines ({mib:.0f} MiB) → "
          f"{counts['rows']} rows × {counts['features']} features, {counts['nonzeros']} non-zeros, "
          f"{counts['lines_quarantined']} quarantined")
    print(f"targets: ≤ 60 s {'met' if wall <= 60 else 'MISSED'}, ≤ 1.5 GB {'met' if rss <= 1536 else 'MISSED'}")


if __name__ == "__main__":
    main()
