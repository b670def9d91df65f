"""Progress lines ("done/total (pct), rate/s, ETA") and ``diagnosenet --version``.

The lines in the real Snakemake logs of window-ecg, compose-pmsi and training are read by
``tests/workflow/test_run.py``; here the helper itself, the RHS line count it relies on, and
the command's version flag.
"""
from __future__ import annotations

import logging
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from diagnosenet.datasets.shards import Shard
from diagnosenet.pmsi.compose import count_lines
from diagnosenet.progress_log import ENV_INTERVAL, Progress, format_seconds, interval_s

BIN = Path(sys.executable).parent
LINE = re.compile(r"^(?P<what>.+) (?P<done>[\d,]+)/(?P<total>[\d,]+)(?: (?P<unit>[\w ]+?))? \((?P<pct>[\d.]+)%\), "
                  r"(?P<rate>[\d,.]+) (?P<rate_unit>[\w ]+)/s, ETA (?P<eta>.+)$")


def test_lines_carry_count_percentage_rate_and_eta(caplog):
    caplog.set_level(logging.INFO)
    progress = Progress(8, "windowed", "records", every_s=0)
    for _ in range(4):
        progress.update()
    progress.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5  # one per update at interval 0, and the final line
    match = LINE.match(lines[1])
    assert match, lines[1]
    assert (match["what"], match["done"], match["total"], match["unit"], match["pct"]) == \
        ("windowed", "2", "8", "records", "25.0")
    assert match["rate_unit"] == "records" and re.fullmatch(r"\d+ s|\d+ min \d\d s|\d+ h \d\d min", match["eta"])
    assert lines[-1].startswith("windowed 4/8 records in ") and lines[-1].endswith("records/s")


def test_interval_bounds_the_number_of_lines(caplog):
    caplog.set_level(logging.INFO)
    progress = Progress(100_000, "read", "RHS lines", every_s=3600, final=False)
    for _ in range(100_000):
        progress.update()
    progress.close()   # no interim line, so a short pass ends silently when final=False
    assert caplog.records == []


def test_rows_make_the_rate_rows_per_second(caplog):
    caplog.set_level(logging.INFO)
    progress = Progress(10, "epoch 3: step", every_s=0, final=False)
    progress.update(1, rows=64)
    match = LINE.match(caplog.records[0].getMessage())
    assert match and match["what"] == "epoch 3: step" and match["rate_unit"] == "rows"


def test_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(ENV_INTERVAL, raising=False)
    assert interval_s() == 10.0
    monkeypatch.setenv(ENV_INTERVAL, "0.5")
    assert interval_s() == 0.5 and Progress(1, "x").every_s == 0.5
    monkeypatch.setenv(ENV_INTERVAL, "soon")
    with pytest.raises(ValueError, match=ENV_INTERVAL):
        interval_s()


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 42.4, 185, 7620)] == ["0 s", "42 s", "3 min 05 s", "2 h 07 min"]


def test_count_lines_matches_the_reader_numbering(tmp_path):
    (tmp_path / "a").write_bytes(b"x\ny\n")
    (tmp_path / "b").write_bytes(b"x\ny\nlast without newline")
    (tmp_path / "c").write_bytes(b"")
    assert count_lines([tmp_path / "a", tmp_path / "b", tmp_path / "c"]) == 5


def test_microbatches_are_sized_for_step_progress():
    shard = Shard(X=np.arange(10.0)[:, None], y=np.arange(10), boundaries=np.array([0, 4, 8, 10]), worker=0,
                  split="train")
    batches = shard.microbatches(np.array([2, 0, 1]))
    assert len(batches) == 3 and [len(y) for _, y in batches] == [2, 4, 4]


def test_version_flag_prints_the_package_version():
    out = subprocess.run([str(BIN / "diagnosenet"), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"diagnosenet {version('diagnosenet')}"


def test_epoch_logs_step_progress_with_rows_per_second(caplog, monkeypatch):
    """The shared epoch loop (every synchronous mode and desktop) logs "epoch E: step s/S"."""
    import scipy.sparse as sp

    from diagnosenet.training.loop import run_epoch
    from diagnosenet.models.numpy_backend import NumpyReplica

    monkeypatch.setenv(ENV_INTERVAL, "0")
    caplog.set_level(logging.INFO, logger="diagnosenet.training.loop")
    X = sp.random(10, 9, density=0.5, format="csr", dtype=np.float32, random_state=1)
    shard = Shard(X=X, y=np.arange(10) % 3, boundaries=np.array([0, 4, 8, 10]), worker=0, split="train")
    run_epoch(NumpyReplica(9, 3, [], seed=1), shard.microbatches(np.array([2, 0, 1])), epoch=2)
    lines = [r.getMessage() for r in caplog.records]
    assert [LINE.match(line)["done"] for line in lines[:3]] == ["1", "2", "3"], lines
    assert all(LINE.match(line)["what"] == "epoch 2: step" and LINE.match(line)["total"] == "3" for line in lines[:3])
    assert LINE.match(lines[0])["rate_unit"] == "rows" and lines[-1].startswith("epoch 2: step 3/3 in ")
