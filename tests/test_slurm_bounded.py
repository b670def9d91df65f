"""The slurm-bounded executor's status fixes, without a cluster (the emulated-Slurm tests run
it for real)."""
from __future__ import annotations

import asyncio
import logging

import snakemake_executor_plugin_slurm as slurm_plugin

import snakemake_executor_plugin_slurm_bounded as bounded
from snakemake_executor_plugin_slurm_bounded import job_state, status_failure_message


def test_a_state_is_its_first_word():
    assert job_state("CANCELLED by 0") == "CANCELLED"
    assert job_state("COMPLETED") == "COMPLETED" and job_state("") == ""


def test_the_plugin_reads_a_cancelled_job_as_cancelled_not_as_running():
    """sacct prints ``CANCELLED by <uid>``; the plugin's failure states hold only ``CANCELLED``,
    so without the fix a cancelled job counts as running and the workflow never ends."""
    command = "printf '9|CANCELLED by 0\\n10|COMPLETED\\n11|RUNNING\\n'"   # what sacct -X --parsable2 prints
    states, took = asyncio.run(slurm_plugin.query_job_status(command, logging.getLogger("test")))
    assert states == {"9": "CANCELLED", "10": "COMPLETED", "11": "RUNNING"} and took >= 0


def test_a_failed_query_stays_a_failed_query_and_its_error_is_kept_for_the_final_message():
    command = "sh -c 'echo sacct: error: first >&2; echo sacct: error: Problem talking to the database >&2; exit 1'"
    assert asyncio.run(slurm_plugin.query_job_status(command, logging.getLogger("test"))) == (None, None)
    assert "Problem talking to the database" in bounded.last_query_error
    message = status_failure_message("sacct", 42.0, [], bounded.last_query_error)
    assert message.endswith("sacct says: sacct: error: Problem talking to the database"), message


class _Starting:
    """What ``_wait_thread`` reads of an executor whose ``__post_init__`` is still running."""

    def __init__(self):
        import threading

        self.asked_at, self.wait, self.active_jobs = None, False, []
        self.initialised_at = None
        self.logger = logging.getLogger("test")
        self.done = threading.Event()

    async def _wait_for_jobs(self):
        import time

        self.asked_at = time.monotonic()
        self.done.set()


def test_the_status_thread_waits_for_the_end_of_post_init_before_its_first_query():
    """The interface starts the thread in ``__init__``, before ``__post_init__`` sets what a
    status check reads: a first check before then killed the thread unseen (snakemake hung)."""
    import threading
    import time

    from snakemake_executor_plugin_slurm_bounded import Executor

    executor = _Starting()
    thread = threading.Thread(target=Executor._wait_thread, args=(executor,), daemon=True)
    thread.start()
    time.sleep(0.5)                       # __post_init__ still running: no query yet
    assert executor.asked_at is None
    executor.initialised_at = time.monotonic()
    executor._initialised = True          # what the end of Executor.__post_init__ sets
    assert executor.done.wait(10), "the status thread never started querying"
    assert executor.asked_at >= executor.initialised_at
    thread.join(10)
