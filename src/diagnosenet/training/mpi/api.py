"""The paper's MPI platform object (code example 1.5) over :func:`diagnosenet.training.mpi.train`."""
from __future__ import annotations

import contextlib
from pathlib import Path

from diagnosenet.training.mpi import train
from diagnosenet.training.settings import TrainSettings


class DistributedMPI:
    """The paper's MPI platform (code example 1.5); every rank of ``mpirun`` runs the same script.

    ``model`` is the ``models.<task>`` config dict (add ``"backend": "numpy"`` for the NumPy
    test model), ``datamanager`` the :class:`~diagnosenet.datasets.shards.Batching` the shards
    were written with (its ``devices_number`` is the number of workers), ``monitor`` an optional
    context manager wrapped around this rank's training (the run's own per-rank monitor CSVs
    are controlled by ``monitor_rate_hz``). Example, saved as ``run.py`` and started with
    ``mpirun -n 3 python run.py``::

        import diagnosenet as dt
        platform = dt.DistributedMPI(model={"hidden_units": [256]}, datamanager=dt.Batching(devices_number=2),
                                     max_epochs=20, early_stopping=3)
        platform.asynchronous_training("results/pmsi/dataset", "results/pmsi/shards/w2-b128",
                                       "results/pmsi/runs/mpi-async-w2", weighting=1)
    """

    def __init__(self, model: dict, datamanager, monitor=None, max_epochs: int = 20, early_stopping: int = 3, *,
                 task: str = "pmsi", seed: int = 1, learning_rate: float = 1e-3, timeout_s: float = 120.0,
                 monitor_rate_hz: float = 0.0):
        self.model, self.datamanager, self.monitor = dict(model), datamanager, monitor
        self.max_epochs, self.patience, self.task, self.seed = max_epochs, early_stopping, task, seed
        self.learning_rate, self.timeout_s, self.monitor_rate_hz = learning_rate, timeout_s, monitor_rate_hz

    def synchronous_training(self, dataset_path, shards_path, out_dir) -> dict | None:
        return self._run("mpi-sync", dataset_path, shards_path, out_dir, weighting=1)

    def asynchronous_training(self, dataset_path, shards_path, out_dir, weighting: int = 1) -> dict | None:
        return self._run("mpi-async", dataset_path, shards_path, out_dir, weighting=weighting)

    def _run(self, mode, dataset_path, shards_path, out_dir, weighting) -> dict | None:
        settings = TrainSettings(
            task=self.task, mode=mode, workers=self.datamanager.devices_number, dataset_dir=Path(dataset_path),
            shards_dir=Path(shards_path), out_dir=Path(out_dir), model=self.model, seed=self.seed,
            max_epochs=self.max_epochs, patience=self.patience, learning_rate=self.learning_rate,
            batch_size=self.datamanager.batch_size, timeout_s=self.timeout_s, weighting=weighting,
            monitor_rate_hz=self.monitor_rate_hz)
        with self.monitor or contextlib.nullcontext():
            return train(settings)


#: the spelling of the paper's code example 1.5
Distributed_MPI = DistributedMPI
