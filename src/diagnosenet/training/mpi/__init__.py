"""MPI training modes, run under ``mpirun -n workers+1``: rank 0 is the master, ranks 1..N workers.

``diagnosenet train-mpi`` calls :func:`train`; the paper's API (code example 1.5) is
:class:`~diagnosenet.training.mpi.api.DistributedMPI`. mpi4py is imported only when a mode
runs, so desktop users need no MPI at all.
"""
from __future__ import annotations

from diagnosenet.training.settings import TrainSettings


def train(settings: TrainSettings) -> dict | None:
    """This rank's part of an MPI run; rank 0 returns the run metrics, workers ``None``."""
    if settings.mode == "mpi-sync":
        from diagnosenet.training.mpi.sync import train as run
    elif settings.mode == "mpi-async":
        from diagnosenet.training.mpi.asynchronous import train as run
    else:
        raise ValueError(f"mode {settings.mode!r} is not an MPI mode")
    from mpi4py import MPI

    from diagnosenet.training.mpi.common import stop_every_rank_on_error

    return stop_every_rank_on_error(MPI.COMM_WORLD, settings, lambda: run(settings))
