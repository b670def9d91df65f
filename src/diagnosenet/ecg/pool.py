"""Per-record work over a challenge directory in a process pool, in reference order.

Records are independent, so ``window-ecg``, ``ecg-features`` and ``predict`` map one function
over them; results come back in the reference order whatever the number of processes, so outputs
are deterministic, and a progress line is logged every few seconds (the 8,528 challenge
records take minutes).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, TypeVar

from diagnosenet.ecg.records import Entry, list_entries
from diagnosenet.progress_log import Progress

log = logging.getLogger(__name__)
T = TypeVar("T")


def _run_chunk(args: tuple) -> list:
    work, items = args
    return [work(item) for item in items]


def _in_directory(entry: Entry, work: Callable[[str, Entry], T], directory: str) -> T:
    return work(directory, entry)


def map_records(directory: str | Path, work: Callable[[str, Entry], T], jobs: int | None = None,
                verb: str = "processed") -> list[T]:
    """``[work(directory, entry) for entry in list_entries(directory)]`` over ``jobs`` processes.

    ``work`` must be picklable (a module-level function or a ``functools.partial`` of one)
    and must not raise for a bad record: it returns the record's outcome instead."""
    return map_items(functools.partial(_in_directory, work=work, directory=str(directory)), list_entries(directory),
                     jobs, verb)


def map_items(work: Callable[[object], T], items: list, jobs: int | None = None, verb: str = "processed") -> list[T]:
    """``[work(item) for item in items]`` over ``jobs`` processes, in order (same contract)."""
    jobs = max(1, jobs or os.cpu_count() or 1)
    chunk = max(1, min(64, len(items) // (4 * jobs)))  # ~4 chunks per worker balances load
    tasks = [(work, items[i: i + chunk]) for i in range(0, len(items), chunk)]
    progress = Progress(len(items), verb, "records", logger=log)
    parts = []
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ProcessPoolExecutor(max_workers=jobs)) if jobs > 1 else None
        for part in (map if pool is None else pool.map)(_run_chunk, tasks):  # in order
            parts.append(part)
            progress.update(len(part))
    progress.close()
    return [outcome for part in parts for outcome in part]
