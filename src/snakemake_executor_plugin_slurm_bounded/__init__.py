"""Snakemake's slurm executor, with a bound on how long job status may go unknown.

With the slurm plugin (2.8), a status cycle in which ``sacct``/``squeue`` fails reports
nothing and hands back no job: the running jobs drop out of its tracking, and ``snakemake``
waits for ever ("No active jobs; skipping status query"), without an error (measured on the
emulated Slurm with its controller stopped). This executor is that plugin with three fixes.
First, jobs of a failed cycle stay tracked, and when no status query has succeeded for
``--slurm-bounded-status-failure-timeout`` seconds every one of them is reported failed with
the query's own error, so the workflow ends and says why. The Slurm jobs
themselves may still be running (nobody can ask); training is checkpointed, so the same
``snakemake`` command resumes once the controller answers (docs/slurm.md).

``--slurm-bounded-max-status-interval`` caps the plugin's wait between status queries, which
grows by 10 s after every query that finds no job finished (up to 180 s): a job of 70 s is
seen finished after 105 s. A small or private cluster (and the emulated one of the tests) can
afford asking every few seconds; a busy site's controller should keep the plugin's default.

Second, ``sacct`` (the plugin's default status query, what sites with accounting use)
reports a cancelled job as ``CANCELLED by <uid>``, which the plugin compares with its plain
``CANCELLED`` and so takes for a job still running: after an ``scancel`` the workflow waits
for ever (seen on the emulated Slurm with slurmdbd; the old Snakemake slurm profile fixed the
same, Snakemake-Profiles/slurm#22). Here every state is cut to its first word before the
plugin reads it. Third, the status thread waits for the end of ``__post_init__`` before its
first query (see :meth:`Executor._wait_thread`).

Every other setting is the slurm plugin's, under the ``slurm-bounded-`` prefix.
"""

import asyncio
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from typing import AsyncGenerator, List, Optional

import snakemake_executor_plugin_slurm as slurm_plugin
from snakemake_executor_plugin_slurm import Executor as SlurmExecutor
from snakemake_executor_plugin_slurm import ExecutorSettings as SlurmExecutorSettings
from snakemake_executor_plugin_slurm import common_settings  # noqa: F401  (the plugin interface)
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo

#: the slurm plugin's counters this executor reads (present in the locked 2.8 line)
_COUNTERS = ("_status_query_calls", "_status_query_failures")
#: seconds the status thread waits for ``__post_init__`` before it gives up (with an error)
INIT_TIMEOUT_S = 600


def job_state(reported: str) -> str:
    """The state word of what ``sacct``/``squeue`` print: ``CANCELLED by 0`` -> ``CANCELLED``."""
    words = reported.split()
    return words[0] if words else reported


_plugin_query_job_status = slurm_plugin.query_job_status
#: the last failed status query's own words (the plugin logs them at debug level only)
last_query_error: Optional[str] = None


class _ErrorKeeper:
    """The logger the plugin's status query writes to: everything passes on, and the query's
    failure message is kept for the error that ends the workflow."""

    def __init__(self, logger):
        self._logger, self.error = logger, None

    def debug(self, message, *args, **kwargs):
        if isinstance(message, str) and message.startswith(("SLURM query command", "Error querying")):
            self.error = message
        self._logger.debug(message, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._logger, name)


async def _query_job_status(command: str, logger):
    """The plugin's status query, its states cut to their first word (:func:`job_state`), and
    its error kept in :data:`last_query_error` when it fails."""
    global last_query_error
    keeper = _ErrorKeeper(logger)
    states, took = await _plugin_query_job_status(command, keeper)
    if states is None:
        last_query_error = keeper.error or f"{command}: failed without an error message"
    else:
        states = {job: job_state(state) for job, state in states.items()}
    return states, took


# the plugin's check_active_jobs calls its module's query_job_status. Snakemake imports every
# installed executor plugin, so the plain slurm executor gets the fix too.
slurm_plugin.query_job_status = _query_job_status


@dataclass
class ExecutorSettings(SlurmExecutorSettings):
    status_failure_timeout: Optional[int] = field(
        default=1800,
        metadata={
            "help": "Seconds without one successful job-status query (sacct or squeue) after "
            "which every active job is reported failed and the workflow ends with the query's "
            "error. The jobs may still run on the cluster: check with squeue, rerun to resume.",
            "env_var": False,
            "required": False,
        },
    )
    max_status_interval: Optional[int] = field(
        default=None,
        metadata={
            "help": "At most this many seconds between two job-status queries (default: the "
            "slurm plugin's own, which grows by 10 s after each query that finds no job "
            "finished, up to 180 s). Small values load the controller: for small clusters.",
            "env_var": False,
            "required": False,
        },
    )


class Executor(SlurmExecutor):
    def __post_init__(self, test_mode: bool = False):
        super().__post_init__(test_mode=test_mode)
        missing = [name for name in _COUNTERS if not hasattr(self, name)]
        if missing:   # a newer slurm plugin renamed them: refuse rather than lose the bound
            raise RuntimeError(f"snakemake-executor-plugin-slurm has no {', '.join(missing)}: "
                               "update snakemake_executor_plugin_slurm_bounded")
        self._status_unknown_since: Optional[float] = None
        self._initialised = True   # the status thread may query now (see _wait_thread)

    def _wait_thread(self):
        """The status thread, which must never end unseen, nor start before the executor is
        initialised. The interface starts it in ``__init__``, *before* ``__post_init__``, where
        the slurm plugin sets the counters every status check reads; when ``__post_init__``
        (which runs ``scontrol``/``sacct``) outlasts ``init_seconds_before_status_checks``, the
        first check raised ``AttributeError: ... '_status_query_calls'``. The interface's
        thread prints such an error and tells the scheduler only if ``workflow.scheduler`` is
        already set, which it is not yet, so the thread ended unseen and ``snakemake`` waited
        for ever (seen twice in the emulated-Slurm tests; named by this thread's log on
        2026-12-07). Here the thread waits for the end of ``__post_init__``; any error is
        logged and handed to the scheduler once it exists; a thread that returns while jobs
        are tracked is logged too."""
        try:
            deadline = time.monotonic() + INIT_TIMEOUT_S
            while not getattr(self, "_initialised", False):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the executor was not initialised after {INIT_TIMEOUT_S} s")
                time.sleep(0.05)
            asyncio.run(self._wait_for_jobs())
        except BaseException as error:  # noqa: BLE001 - whatever it is, the workflow must end
            self.logger.error(f"the Slurm job-status thread stopped: {type(error).__name__}: {error}")
            deadline = time.monotonic() + 300
            while self.workflow.scheduler is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.workflow.scheduler is not None:
                self.workflow.scheduler.executor_error_callback(error)
            return
        if self.wait or self.active_jobs:
            self.logger.error(f"the Slurm job-status thread ended with {len(self.active_jobs)} job(s) tracked")

    async def check_active_jobs(
        self, active_jobs: List[SubmittedJobInfo]
    ) -> AsyncGenerator[SubmittedJobInfo, None]:
        started = time.monotonic()
        answered, failed = self._status_query_calls, self._status_query_failures
        still_active = [job async for job in super().check_active_jobs(active_jobs)]
        cap = self.workflow.executor_settings.max_status_interval
        if cap is not None and self.next_seconds_between_status_checks > cap:
            self.next_seconds_between_status_checks = cap
        if self._status_query_calls > answered or self._status_query_failures == failed:
            self._status_unknown_since = None      # answered, or nothing needed asking
            for job in still_active:
                yield job
            return
        # a cycle where no query answered: the plugin reported nothing and yields nothing, so
        # its jobs would drop out of tracking and the workflow wait for ever ("No active
        # jobs"); keep every one of them tracked until the bound, then fail them
        if self._status_unknown_since is None:
            self._status_unknown_since = started
        unknown_for = time.monotonic() - self._status_unknown_since
        limit = self.workflow.executor_settings.status_failure_timeout
        if limit is None or unknown_for < limit:
            for job in active_jobs:
                yield job
            return
        message = status_failure_message(self.get_status_command(), unknown_for, active_jobs, last_query_error)
        self.logger.error(message)
        for job in active_jobs:
            self.report_job_error(job, msg=message)


def status_failure_message(command: str, unknown_for: float, jobs: List[SubmittedJobInfo],
                           error: Optional[str] = None) -> str:
    """What the user needs: how long, which jobs, and the status command's own error (the last
    failed query's, else asked once more: a hung query costs its whole timeout again)."""
    ids = ", ".join(sorted(str(job.external_jobid) for job in jobs))
    return (f"no Slurm job-status query ({command}) has succeeded for {unknown_for:.0f} s "
            f"(--slurm-bounded-status-failure-timeout): ending the workflow. Slurm job(s) {ids} "
            f"may still be running; check with `squeue -j {ids.replace(', ', ',')}`, and rerun "
            f"the same snakemake command to resume. {command} says: {last_line(error or '') or probe(command)}")


def last_line(text: str) -> str:
    """The last non-empty line (a Slurm command's error is its last line of stderr)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def probe(command: str) -> str:
    """One query of the status command, for its error text (the plugin logs it at debug only)."""
    words = ["squeue", "-h", "-o", "%i"] if command == "squeue" else ["sacct", "-X", "-n", "-o", "JobID"]
    try:
        done = subprocess.run(words, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{shlex.join(words)}: {error}"
    if done.returncode == 0:
        return "it answers again now (exit 0)"
    return f"exit {done.returncode}: {last_line(done.stderr) or '(no error text)'}"
