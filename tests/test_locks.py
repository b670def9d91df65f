"""Both install variants are pinned: the CPU lock (default) and the GPU lock (`make install GPU=1`)."""
from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pins(name: str) -> dict[str, str]:
    text = (REPO / name).read_text()
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", text, re.M)}


def test_the_gpu_lock_has_tensorflow_with_cuda_where_the_cpu_lock_has_the_cpu_wheel():
    cpu, gpu = pins("requirements.lock"), pins("requirements-gpu.lock")
    assert cpu["tensorflow-cpu"] == gpu["tensorflow"] == "2.21.0"
    assert "tensorflow-cpu" not in gpu
    assert any(name.startswith("nvidia-cudnn") for name in gpu) and not any(n.startswith("nvidia-cudnn") for n in cpu)
    # the rest of the stack is the same in both: a result does not depend on the variant
    for name in ("numpy", "scipy", "scikit-learn", "snakemake", "mpi4py", "mpich", "wfdb", "keras"):
        assert cpu[name] == gpu[name], name


@pytest.mark.skipif(platform.machine() != "x86_64" or sys.platform != "linux", reason="the GPU lock is x86-64 Linux")
@pytest.mark.timeout(600)
def test_the_gpu_lock_resolves_here_without_a_gpu():
    """What `make install GPU=1` would install, resolved against the package index (no download
    of the wheels, nothing installed)."""
    uv = Path(sys.executable).parent / "uv"
    proc = subprocess.run([str(uv), "pip", "install", "--dry-run", "--python", sys.executable, "-r",
                           str(REPO / "requirements-gpu.lock")], capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"\+ tensorflow==2\.21\.0\b", proc.stderr), proc.stderr[-3000:]


def test_make_installs_the_gpu_lock_into_its_own_venv_only_when_asked():
    def plan(*args: str) -> str:
        return subprocess.run(["make", "-n", "-B", "install", *args], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout

    gpu, cpu = plan("GPU=1"), plan()
    assert "-r requirements-gpu.lock" in gpu and ".venv-gpu/bin/python" in gpu
    assert "-r requirements.lock" in cpu and ".venv-gpu" not in cpu
