"""gRPC training modes over TensorFlow's distribution runtime, started by ``diagnosenet train-grpc``.

``grpc-sync`` (:mod:`.sync`): every worker runs the shared epoch code; TensorFlow's collective
all-reduce (``MultiWorkerMirroredStrategy`` over gRPC) is the transport. ``grpc-async``
(:mod:`.asynchronous`): parameter-server training, the paper's gRPC mode. The launcher
(:mod:`.launcher`) starts, watches and stops every process; :mod:`.cluster` plans the tasks.
"""
from __future__ import annotations

from diagnosenet.training.settings import TrainSettings


def train(settings: TrainSettings, graph=None) -> dict | None:
    """Run this process's part of a gRPC run; the chief returns the run metrics.

    ``graph``: an unbuilt model graph (the paper's API passes its own); by default
    ``build_graph(settings.task, settings.model, ...)``.
    """
    if settings.mode == "grpc-async":
        from diagnosenet.training.grpc.asynchronous import train as run
    elif settings.mode == "grpc-sync":
        from diagnosenet.training.grpc.sync import train as run
    else:
        raise ValueError(f"mode {settings.mode!r} is not a gRPC mode")
    return run(settings, graph)
