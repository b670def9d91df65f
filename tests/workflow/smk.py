"""Real Snakemake runs from pytest: a scratch working directory that looks like the repository
root (workflow/, config/, profiles/ and the profile links are symlinks), so `results/` and
`.snakemake/` of a test never touch the developer's own."""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def snakemake(workdir: Path, *args: str, timeout: float = 600, check: bool = True,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {}), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [str(BIN / "snakemake"), *args], cwd=workdir, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-6000:]}")
    return proc


def write_config(workdir: Path, overrides: dict) -> Path:
    """A config file: the default config updated (one level deep per section) by ``overrides``."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = workdir / "test-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from Snakemake's dry-run job table."""
    table = output.split("Job stats:")[1] if "Job stats:" in output else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M) if m.group(1) != "total"}


@contextlib.contextmanager
def emulated_cluster(*up_args: str):
    """``diagnosenet emulate-cluster up UP_ARGS`` for the ``with`` block (one left by a killed
    earlier run removed first), then ``down``, and nothing of it left: no namespace, no state."""
    def diagnosenet(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "diagnosenet"), *args], text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)

    diagnosenet("emulate-cluster", "down")
    up = diagnosenet("emulate-cluster", "up", *up_args)
    assert up.returncode == 0, up.stdout
    try:
        yield
    finally:
        down = diagnosenet("emulate-cluster", "down")
        assert down.returncode == 0, down.stdout
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert "dn-" not in left, left
        assert not Path("/run/diagnosenet-emulated").exists()
        assert not list(Path("/etc/netns").glob("dn-*"))

