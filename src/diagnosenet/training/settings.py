"""Everything one training run needs, in one value that every mode receives.

The ``diagnosenet train-desktop`` / ``train-mpi`` / ``train-grpc`` commands build a
:class:`TrainSettings` from the same arguments (the Snakemake rules pass config values through); desktop, MPI and gRPC modes read the same
fields, so a run's ``run.json`` describes it fully whatever transport it used.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("desktop", "mpi-sync", "mpi-async", "grpc-sync", "grpc-async")
#: ``adam``: every weight and moment moves every step; ``lazy-adam``: the input layer's rows
#: (weights and moments) move only on a step whose gradient has that row (docs/training.md)
OPTIMIZERS = ("adam", "lazy-adam")


@dataclass
class TrainSettings:
    task: str                      # "pmsi" or "ecg"
    mode: str                      # one of MODES
    workers: int                   # data-parallel workers (MPI: ranks - 1; gRPC: worker tasks)
    dataset_dir: Path              # results/{task}/dataset (valid/test splits, classes.json)
    shards_dir: Path               # results/{task}/shards/w{workers}
    out_dir: Path                  # results/{task}/runs/{mode}-w{workers}
    model: dict[str, Any] = field(default_factory=dict)  # architecture, see config/README.md
    seed: int = 1
    max_epochs: int = 20
    patience: int = 3              # early stopping on validation loss
    learning_rate: float = 1e-3
    class_weight: str = "none"     # "balanced": cross-entropy weighted n / (k n_c) over the training split
    optimizer: str = "adam"        # one of OPTIMIZERS
    batch_size: int = 128          # micro-batch size; must match the shards' manifest
    timeout_s: float = 120.0       # bound on the *silence* of a peer (heartbeats reset it)
    startup_timeout_s: float = 900.0  # bound on start-up (a slow `import tensorflow` included)
    weighting: int = 1             # MPI async: see docs/training.md
    exchange: str = "sparse"       # MPI: "dense", or only the input rows a sparse batch touched (same gradient)
    exchange_precision: str = "float32"  # MPI sync: "bfloat16" halves the all-reduced bytes (not bit-exact)
    monitor_rate_hz: float = 2.0   # 0 disables the monitor
    steps_per_execution: int = 1   # grpc-async: micro-batches a worker trains per closure the chief schedules
    # an asynchronous run re-formed after a node was lost (``launch-mpi``, ``train-grpc``):
    # worker id -> why; those workers are gone and their shards are no longer trained
    lost_workers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.exchange not in ("dense", "sparse"):
            raise ValueError(f"exchange {self.exchange!r} is neither 'dense' nor 'sparse'")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.class_weight not in ("none", "balanced"):
            raise ValueError(f"class_weight {self.class_weight!r} is neither 'none' nor 'balanced'")
        if self.exchange_precision not in ("float32", "bfloat16"):
            raise ValueError(f"exchange_precision {self.exchange_precision!r} is neither 'float32' nor 'bfloat16'")
        if self.timeout_s <= 0 or self.startup_timeout_s <= 0:
            raise ValueError("timeout_s and startup_timeout_s must be > 0")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.steps_per_execution < 1:
            raise ValueError(f"steps_per_execution must be >= 1, got {self.steps_per_execution}")
        self.lost_workers = {str(k): str(v) for k, v in self.lost_workers.items()}
        if self.lost_workers and self.mode not in ("mpi-async", "grpc-async"):
            raise ValueError(f"{self.mode} needs every worker: only the asynchronous modes carry on without lost ones")
        if not set(self.lost_workers) < {str(w) for w in range(1, self.workers + 1)}:
            raise ValueError(f"lost workers {sorted(self.lost_workers)} must be some (not all) of 1..{self.workers}")
        for name in ("dataset_dir", "shards_dir", "out_dir"):
            setattr(self, name, Path(getattr(self, name)))

    @property
    def worker_ids(self) -> list[int]:
        """The workers (1-based: shard index + 1) that run, in rank order: rank r is worker
        ``worker_ids[r - 1]``; every worker unless some were lost."""
        return [w for w in range(1, self.workers + 1) if str(w) not in self.lost_workers]

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in data.items()}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "TrainSettings":
        return cls(**json.loads(text))
