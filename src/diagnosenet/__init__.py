"""DiagnoseNET: the paper's API surface, loaded lazily.

``import diagnosenet as dt`` is instant and imports no TensorFlow; ``dt.Relu``,
``dt.SequentialGraph`` and friends load their module on first use (PEP 562), so data stages
never pay the 12-60 s TensorFlow import::

    import diagnosenet as dt
    layers = [dt.Relu(14637, 2048), dt.Relu(2048, 1024), dt.Relu(1024, 1024), dt.Linear(1024, 14)]
    model = dt.SequentialGraph(input_size=14637, output_size=14, layers=layers,
                               loss=dt.CrossEntropy, optimizer=dt.Adam(lr=0.001))
"""
from __future__ import annotations

import importlib

#: public name -> module that defines it
_LAZY = {
    "Relu": "diagnosenet.models.layers",
    "Linear": "diagnosenet.models.layers",
    "SequentialGraph": "diagnosenet.models.graphs",
    "sequentialGraph": "diagnosenet.models.graphs",
    "ResidualECGNet": "diagnosenet.models.graphs",
    "CrossEntropy": "diagnosenet.models.optim",
    "Adam": "diagnosenet.models.optim",
    "Batching": "diagnosenet.datasets.shards",
    "DistributedMPI": "diagnosenet.training.mpi.api",
    "DistributedGRPC": "diagnosenet.training.grpc.api",
    "between_graph_replication": "diagnosenet.training.grpc.api",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'diagnosenet' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
