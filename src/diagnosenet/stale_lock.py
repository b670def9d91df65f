"""Remove Snakemake's lock after a hard kill, and only then: ``make run`` calls this first.

A Snakemake killed with SIGKILL (or a closed terminal's process group) cannot remove
``.snakemake/locks``, and every later run stops with "Directory cannot be locked" until
``snakemake --unlock``. Unlocking while another Snakemake works in the same directory would let
two runs write the same files, so this unlocks only when no process whose working directory
is this one runs Snakemake. Usage: ``python -m diagnosenet.stale_lock [DIRECTORY]``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil


def locks(directory: Path) -> list[Path]:
    """Lock files Snakemake left in ``directory``."""
    folder = directory / ".snakemake" / "locks"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def snakemake_processes(directory: Path) -> list[int]:
    """Pids of the processes working in ``directory`` whose command names ``snakemake``
    (``.venv/bin/snakemake ...``, ``python -m snakemake ...``); this one and its parents excluded."""
    here = os.path.realpath(directory)
    me = psutil.Process()
    mine = {me.pid, *(p.pid for p in me.parents())}
    found = []
    for process in psutil.process_iter(["pid", "cwd", "cmdline"], ad_value=None):
        info = process.info
        if info["pid"] in mine or not info["cwd"] or os.path.realpath(info["cwd"]) != here:
            continue
        if any(os.path.basename(arg) == "snakemake" for arg in info["cmdline"] or []):
            found.append(info["pid"])
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0] if args else ".").resolve()
    stale = locks(directory)
    if not stale:
        return 0
    alive = snakemake_processes(directory)
    if alive:
        print(f"Snakemake is running in {directory} (pid {', '.join(map(str, alive))}): its lock stays; "
              "wait for it or stop it", file=sys.stderr)
        return 0   # the run that follows reports the lock itself
    print(f"{len(stale)} stale Snakemake lock file(s) in {directory} and no Snakemake running there "
          "(a hard kill?): snakemake --unlock", file=sys.stderr)
    snakemake = Path(sys.executable).parent / "snakemake"
    return subprocess.call([str(snakemake), "--unlock", "--cores", "1"], cwd=directory, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
