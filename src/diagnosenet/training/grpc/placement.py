"""Where ``grpc-async`` puts each variable when there are several parameter servers.

TensorFlow's ``ParameterServerStrategy`` places variables round-robin by creation order, which
for an MLP puts every kernel on one server and every bias on the other, and may put a kernel's
Adam moments on a server other than the kernel's (each lazy step would then read them across
the network). Here each variable goes to the server that so far carries the fewest bytes per
step, and an optimizer slot goes where its variable is
(:func:`diagnosenet.models.optim.colocated`).

Bytes per step of a variable: the worker reads it and writes its gradient, ``2 × 4 × size``;
the input kernel of a sparse MLP read by rows moves only the rows a micro-batch names
(``rows_per_step``, measured on the shards), and under lazy Adam its gradient is those rows too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class StepBytes:
    """Bytes one step moves for a variable of ``shape``: whole for dense variables; by rows for
    the input kernel of a sparse input read by rows (``shape[0] == input_size``; ``rows_per_step``
    of its rows), and under lazy Adam its gradient is those rows as well."""

    input_size: int | None = None
    rows_per_step: float = 0.0
    lazy: bool = False

    def __call__(self, shape: tuple[int, ...]) -> float:
        size = 4.0 * float(np.prod(shape)) if shape else 4.0
        if self.input_size is None or len(shape) != 2 or shape[0] != self.input_size:
            return 2.0 * size
        rows = 4.0 * shape[1] * min(self.rows_per_step, shape[0])
        return rows + (rows if self.lazy else size)


@dataclass
class BalancedPlacement:
    """A variable creator (``tf.variable_creator_scope``) inside a ``ParameterServerStrategy``
    scope: each variable it sees is colocated with the least-loaded server's anchor variable.

    ``anchors[i]`` is a scalar variable on ``ps:i`` (:func:`make_anchors`); ``load[i]`` the bytes
    per step placed there so far."""

    anchors: list
    step_bytes: StepBytes
    load: list[float] = field(default_factory=list)
    placed: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self):
        self.load = [0.0] * len(self.anchors)

    def __call__(self, next_creator, **kwargs):
        if "colocate_with" in kwargs:   # an optimizer slot: it follows its variable
            return next_creator(**kwargs)
        shape = tuple(kwargs.get("shape") or np.shape(_initial(kwargs)))
        server = int(np.argmin(self.load))
        self.load[server] += self.step_bytes(shape)
        kwargs["use_resource"] = True
        kwargs["colocate_with"] = self.anchors[server]   # what strategy.extended.colocate_vars_with sets
        variable = next_creator(**kwargs)
        self.placed.append((variable.name, server))
        return variable


def _initial(kwargs):
    value = kwargs.get("initial_value")
    return value() if callable(value) else value


def make_anchors(strategy, servers: int) -> list:
    """One scalar variable per parameter server, in task order (round-robin placement)."""
    import tensorflow as tf

    with strategy.scope():
        made = [tf.Variable(0.0, trainable=False, name=f"ps_anchor_{i}") for i in range(servers)]
    by_task = {}
    for variable in made:
        task = tf.DeviceSpec.from_string(variable.device).task
        by_task.setdefault(task, variable)
    missing = sorted(set(range(servers)) - set(by_task))
    if missing:
        raise RuntimeError(f"no variable could be placed on ps task(s) {missing}: {[v.device for v in made]}")
    return [by_task[i] for i in range(servers)]


def rows_per_step(shards_dir, workers: list[int], limit: int = 64) -> float:
    """Mean number of distinct input features per training micro-batch of the given workers'
    shards (the first ``limit`` micro-batches of each): the input-kernel rows a step reads."""
    from diagnosenet.datasets.shards import load_shard

    counts = []
    for worker in workers:
        for index, (X, _) in enumerate(load_shard(shards_dir, "train", worker).microbatches()):
            if index >= limit:
                break
            counts.append(len(np.unique(X.indices)) if hasattr(X, "indices") else X.shape[1])
    return float(np.mean(counts)) if counts else 0.0
