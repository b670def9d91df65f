"""The paper's gRPC API (code examples 1.3 and 1.4) over the launcher and the gRPC modes.

``between_graph_replication`` starts the user's replica script once per task of the cluster
(parameter servers, workers and the coordinator, each with its ``TF_CONFIG``) under the same
launcher as ``diagnosenet train-grpc``; inside the script, ``DistributedGRPC`` turns the
task it is given into the right role: a parameter server or worker serves, the coordinator
(or, in synchronous mode, every worker) trains.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from diagnosenet.training.grpc.cluster import Task, plan_cluster, tf_config, worker_workdir
from diagnosenet.training.grpc.launcher import Launcher
from diagnosenet.training.settings import TrainSettings

DEFAULT_BASE_PORT = 22220


def _hosts(spec: str | list[str]) -> list[str]:
    return [h.strip() for h in spec.split(",") if h.strip()] if isinstance(spec, str) else list(spec)


def paper_cluster(mode: str, ip_ps: str | list[str], ip_workers: str | list[str], num_ps: int = 1,
                  num_workers: int | None = None, base_port: int = DEFAULT_BASE_PORT) -> list[Task]:
    """The cluster of the paper's host lists (``"host1"``, ``"host2,host3"``); the coordinator
    runs beside the first parameter server, ports count up from ``base_port``."""
    workers = _hosts(ip_workers)
    return plan_cluster(mode, num_workers or len(workers), base_port=base_port, num_ps=num_ps,
                        hosts={"ps": _hosts(ip_ps), "workers": workers})


def between_graph_replication(d_replica_path: str, d_replica_name: str, ip_ps: str, ip_workers: str,
                              num_ps: int = 1, num_workers: int | None = None, *, mode: str = "grpc-async",
                              base_port: int = DEFAULT_BASE_PORT, timeout_s: float = 300.0,
                              wall_limit_s: float = 0.0, remote_prefix: str | None = None,
                              silence_s: float = 120.0) -> int:
    """Run ``d_replica_path/d_replica_name JOB_NAME TASK_INDEX`` for every task; 0 on success.
    A task whose node stops answering for ``silence_s`` stops the run, naming it."""
    script = Path(d_replica_path) / d_replica_name
    if not script.is_file():
        raise FileNotFoundError(f"{script}: replica script not found")
    tasks = paper_cluster(mode, ip_ps, ip_workers, num_ps, num_workers, base_port)
    launcher = Launcher(mode, tasks, lambda task: [sys.executable, str(script), task.type, str(task.index)],
                        timeout_s=timeout_s, silence_s=silence_s, wall_limit_s=wall_limit_s,
                        remote_prefix=remote_prefix)
    return launcher.run()


class DistributedGRPC:
    """One task of a gRPC run, as in the paper's replica script (code example 1.4).

    ``model`` is an unbuilt graph with its optimizer (``dt.SequentialGraph(...)`` or
    ``diagnosenet.models.graphs.build_graph(...)``),
    ``datamanager`` the ``Batching`` the shards were written with, ``monitor`` an optional
    context manager (e.g. ``diagnosenet.monitor.Monitor``) wrapped around training.
    ``ip_ps``/``ip_workers`` build ``TF_CONFIG`` when the process was not started by
    :func:`between_graph_replication` (which sets it).
    """

    def __init__(self, model, datamanager, monitor=None, max_epochs: int = 20, ip_ps: str = "127.0.0.1",
                 ip_workers: str = "127.0.0.1", *, early_stopping: int = 3, seed: int = 1,
                 timeout_s: float = 120.0, base_port: int = DEFAULT_BASE_PORT):
        self.model, self.datamanager, self.monitor = model, datamanager, monitor
        self.max_epochs, self.patience = max_epochs, early_stopping
        self.ip_ps, self.ip_workers, self.seed = ip_ps, ip_workers, seed
        self.timeout_s, self.base_port = timeout_s, base_port

    def asynchronous_training(self, dataset_path, shards_path, out_dir, *, job_name: str, task_index: int,
                              task: str = "pmsi") -> dict | None:
        """Parameter-server training; the coordinator (``chief``) returns the run metrics."""
        return self._run("grpc-async", dataset_path, shards_path, out_dir, job_name, int(task_index), task)

    def synchronous_training(self, dataset_path, shards_path, out_dir, *, job_name: str, task_index: int,
                             task: str = "pmsi") -> dict | None:
        """All-reduce training; worker 0 returns the run metrics."""
        return self._run("grpc-sync", dataset_path, shards_path, out_dir, job_name, int(task_index), task)

    def _run(self, mode, dataset_path, shards_path, out_dir, job_name, task_index, task) -> dict | None:
        from diagnosenet.training import grpc
        from diagnosenet.training.grpc.server import serve

        workers = self.datamanager.devices_number
        if "TF_CONFIG" not in os.environ:
            tasks = paper_cluster(mode, self.ip_ps, self.ip_workers, num_workers=workers, base_port=self.base_port)
            own = next(t for t in tasks if (t.type, t.index) == (job_name, task_index))
            os.environ["TF_CONFIG"] = tf_config(tasks, own)
        out_dir = Path(out_dir)
        if mode == "grpc-async" and job_name in ("ps", "worker"):
            is_worker = job_name == "worker"
            serve(json.loads(os.environ["TF_CONFIG"])["cluster"], job_name, task_index, threads=workers + 1,
                  shards_dir=shards_path if is_worker else None,
                  workdir=worker_workdir(out_dir, task_index) if is_worker else None)
            return None
        settings = TrainSettings(task=task, mode=mode, workers=workers, dataset_dir=dataset_path,
                                 shards_dir=shards_path, out_dir=out_dir, seed=self.seed,
                                 max_epochs=self.max_epochs, patience=self.patience,
                                 learning_rate=self.model.optimizer.lr, batch_size=self.datamanager.batch_size,
                                 timeout_s=self.timeout_s)
        with self.monitor or contextlib.nullcontext():
            return grpc.train(settings, graph=self.model)


#: the spelling of the paper's code example 1.4
Distributed_GRPC = DistributedGRPC
