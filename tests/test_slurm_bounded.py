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
