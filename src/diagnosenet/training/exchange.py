"""How synchronous workers combine their gradients: dense, or only the input rows a batch touched.

Both reducers return the same thing, the **row-weighted mean** ``Σ rows_i g_i / Σ rows_i`` of
the workers' micro-batch gradients (``docs/training.md``, the gradient), so the optimizer
step does not depend on the choice; they differ in what travels:

- :class:`RowWeighted` (``train.exchange: dense``): one all-reduce of every parameter plus the
  row count, ``4 (n_params + 1)`` bytes handed to the all-reduce per worker and step.
- :class:`SparseInputRows` (``train.exchange: sparse``): a first layer fed sparse inputs has a
  gradient that is zero in every row whose feature is absent from the batch
  (``dW1 = Xᵀ δ``); each worker ships only its non-zero rows, as ``[row index, values…]``
  (an all-gather of variable length), and all-reduces the rest. Rebuilding the dense sum from
  the gathered rows gives the dense gradient again, so Adam's step is the dense one (tested to
  rtol 1e-6). Payload per worker and step: ``4 k (units + 1) + 4 + 4 (n_params − inputs·units + 1)``
  bytes for ``k`` non-zero rows. With 14,637 PMSI features and a micro-batch touching a few
  hundred of them, that is ~30× less than the dense 33 MB of the paper-size MLP.

**Precision** (``mpi.precision``): ``float32`` (default) reduces exactly as above;
``bfloat16`` hands the all-reduced part (every parameter for ``dense``, the parameters after the
first layer for ``sparse``) to the all-reduce as bfloat16 (round to nearest even) and sums
it in float32 at every hop (:func:`sum_bfloat16`, an MPI user operation), so half the bytes
travel; the row count and the gathered sparse rows stay exact (float32). The step is then
no longer bit-identical to the dense one: its accuracy parity is measured
(``docs/benchmarks.md``), and the decoded gradient is within bfloat16's relative error
(2⁻⁸ per rounding) of the exact one (tested).

``payload_bytes`` holds what the last call handed to the collectives on this worker; the
wire traffic of a ring all-reduce is ``2 (W − 1) / W`` times the all-reduced payload, and an
all-gather moves every other worker's rows to each worker (``bench/bench_scaling.py``'s cost
model).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import ml_dtypes
import numpy as np

#: sums a vector over every worker (identity for one process); all workers receive the sum
AllReduceSum = Callable[[np.ndarray], np.ndarray]
#: every worker's float32 vector (lengths may differ), in worker order, on every worker
AllGather = Callable[[np.ndarray], list[np.ndarray]]
#: sums a bfloat16 vector (``uint16`` bit patterns) over every worker, in float32 at each hop
AllReduceHalf = Callable[[np.ndarray], np.ndarray]
EXCHANGES = ("dense", "sparse")
PRECISIONS = ("float32", "bfloat16")


def to_bfloat16(values: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns (``uint16``), rounded to nearest even (``ml_dtypes``)."""
    return np.asarray(values, np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)


def from_bfloat16(half: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (``uint16``) → float32 (exact)."""
    return np.asarray(half, np.uint16).view(ml_dtypes.bfloat16).astype(np.float32)


def sum_bfloat16(incoming: np.ndarray, inout: np.ndarray) -> None:
    """``inout ← bf16(f32(incoming) + f32(inout))``: one hop of a bfloat16 reduction (the body
    of the MPI user operation; symmetric in its arguments, so every rank gets the same bits)."""
    inout[:] = to_bfloat16(from_bfloat16(incoming) + from_bfloat16(inout))


class Alone:
    """One worker: its gradient is the step's (the desktop step exactly; nothing to exchange)."""

    payload_bytes = total_bytes = 0

    def __call__(self, grads: np.ndarray, rows: int) -> np.ndarray:
        return grads


class RowWeighted:
    """Dense reduction: ``rows × gradient`` and the rows in one all-reduce (bfloat16: the
    gradient in one, the exact row count in a second, 4-byte all-reduce)."""

    def __init__(self, allreduce_sum: AllReduceSum, allreduce_half: AllReduceHalf | None = None):
        self.allreduce_sum, self.allreduce_half = allreduce_sum, allreduce_half
        self.payload_bytes = self.total_bytes = 0

    def __call__(self, grads: np.ndarray, rows: int) -> np.ndarray:
        if self.allreduce_half is not None:
            half = to_bfloat16(grads * np.float32(rows))
            self.payload_bytes = half.nbytes + 4
            self.total_bytes += self.payload_bytes
            summed = self.allreduce_half(half)
            total_rows = self.allreduce_sum(np.array([rows], np.float32))[0]
            if total_rows <= 0:
                raise ValueError("a synchronous step with no rows on any worker")
            return from_bfloat16(summed) / total_rows
        buffer = np.empty(grads.size + 1, np.float32)
        np.multiply(grads, np.float32(rows), out=buffer[:-1])
        buffer[-1] = rows
        self.payload_bytes = buffer.nbytes
        self.total_bytes += self.payload_bytes
        total = self.allreduce_sum(buffer)
        if total[-1] <= 0:
            raise ValueError("a synchronous step with no rows on any worker")
        return total[:-1] / total[-1]


class SparseInputRows:
    """Sparse reduction of the leading ``(inputs, units)`` block (see the module docstring)."""

    def __init__(self, allreduce_sum: AllReduceSum, allgather: AllGather, block: tuple[int, int],
                 allreduce_half: AllReduceHalf | None = None):
        self.allreduce_sum, self.allgather, self.allreduce_half = allreduce_sum, allgather, allreduce_half
        self.inputs, self.units = (int(b) for b in block)
        self.head = self.inputs * self.units
        self.payload_bytes = self.total_bytes = 0
        self._out: np.ndarray | None = None     # reused: only the rows touched last step are cleared
        self._touched = np.zeros(0, np.int64)

    def __call__(self, grads: np.ndarray, rows: int) -> np.ndarray:
        packed = pack_rows(grads, (self.inputs, self.units), rows)
        if self.allreduce_half is not None:   # the row count rides, exact, at the end of the gathered part
            packed = np.append(packed, np.float32(rows))
            half = to_bfloat16(grads[self.head:] * np.float32(rows))
            self.payload_bytes = packed.nbytes + 4 + half.nbytes
            parts = self.allgather(packed)
            summed = self.allreduce_half(half)
            rest_total = np.float32(sum(float(part[-1]) for part in parts))
            parts = [part[:-1] for part in parts]
            total = np.append(from_bfloat16(summed), rest_total)
        else:
            rest = np.empty(grads.size - self.head + 1, np.float32)
            np.multiply(grads[self.head:], np.float32(rows), out=rest[:-1])
            rest[-1] = rows
            self.payload_bytes = packed.nbytes + 4 + rest.nbytes   # + the length of this worker's part
            parts = self.allgather(packed)
            total = self.allreduce_sum(rest)
        self.total_bytes += self.payload_bytes
        if total[-1] <= 0:
            raise ValueError("a synchronous step with no rows on any worker")
        # one output buffer for every step: untouched block rows stay zero, so only the rows the
        # last step wrote are cleared (no 33 MB allocation or pass per step for the paper's MLP)
        if self._out is None or self._out.size != grads.size:
            self._out = np.zeros(grads.size, np.float32)
        out = self._out
        block = out[:self.head].reshape(self.inputs, self.units)
        block[self._touched] = 0.0
        touched = []
        for part in parts:
            got = part.reshape(-1, self.units + 1)
            index = got[:, 0].astype(np.int64)
            block[index] += got[:, 1:]
            touched.append(index)
        self._touched = np.unique(np.concatenate(touched)) if touched else np.zeros(0, np.int64)
        if self._touched.size:   # divided like the dense reduction divides, so the result is the same bits
            block[self._touched] /= total[-1]
        np.divide(total[:-1], total[-1], out=out[self.head:])
        return out


def nonzero_rows(grads: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """Indices of the rows of the leading ``block`` of ``grads`` with a non-zero value: the rows
    a sparse batch touched, which the sparse exchange sends and ``lazy-adam`` updates."""
    inputs, units = block
    return np.flatnonzero(grads[:inputs * units].reshape(inputs, units).any(axis=1))


def pack_rows(grads: np.ndarray, block: tuple[int, int], scale: float = 1.0) -> np.ndarray:
    """``[index, scale × values…]`` for every non-zero row of the leading ``block``, flattened."""
    inputs, units = block
    rows = grads[:inputs * units].reshape(inputs, units)
    present = nonzero_rows(grads, block)   # no boolean temporary of the whole block
    packed = np.empty((present.size, units + 1), np.float32)
    packed[:, 0] = present           # exact in float32 below 2**24 features
    np.multiply(rows[present], np.float32(scale), out=packed[:, 1:])
    return packed.ravel()


def unpack_rows(parts: list[np.ndarray], block: tuple[int, int]) -> np.ndarray:
    """The dense block (flattened) of the packed rows of ``parts``, summed in order."""
    inputs, units = block
    dense = np.zeros((inputs, units), np.float32)
    for part in parts:
        rows = part.reshape(-1, units + 1)
        dense[rows[:, 0].astype(np.int64)] += rows[:, 1:]   # indices are unique within a part
    return dense.ravel()


def input_block(replica) -> tuple[int, int] | None:
    """The replica's leading ``(inputs, units)`` weight block fed by the (sparse) input, if any."""
    return getattr(replica, "input_block", None)


def make_reducer(exchange: str, replica, allreduce_sum: AllReduceSum, allgather: AllGather | None = None, *,
                 workers: int = 2, allreduce_half: AllReduceHalf | None = None):
    """The reducer for ``mpi.exchange`` among ``workers``; ``sparse`` on a model without an
    input block (the ECG CNN) is the dense one; one worker exchanges nothing. With
    ``allreduce_half`` (``mpi.precision: bfloat16``) the all-reduced part travels as bfloat16."""
    if exchange not in EXCHANGES:
        raise ValueError(f"exchange {exchange!r} is not one of {', '.join(EXCHANGES)}")
    if workers == 1:
        return Alone()
    block = input_block(replica)
    if exchange == "sparse" and block is not None and allgather is not None:
        return SparseInputRows(allreduce_sum, allgather, block, allreduce_half)
    return RowWeighted(allreduce_sum, allreduce_half)


def payload_formula(n_params: int, block: tuple[int, int] | None, rows_sent: int | None,
                    precision: str = "float32") -> int:
    """Bytes one worker hands to the collectives in one step (dense when ``rows_sent`` is None)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    half = precision == "bfloat16"
    if rows_sent is None or block is None:
        return 2 * n_params + 4 if half else 4 * (n_params + 1)
    inputs, units = block
    rest = n_params - inputs * units
    gathered = 4 * rows_sent * (units + 1) + 4   # rows + this worker's length
    return gathered + 4 + 2 * rest if half else gathered + 4 * (rest + 1)


def reply_floats(block: tuple[int, int], n_params: int) -> int:
    """The largest row reply: every block row with its index, and the rest."""
    inputs, units = block
    return inputs * (units + 1) + n_params - inputs * units


class RowServer:
    """The ``mpi-async`` master's model under row replies (``lazy-adam``, a sparse input
    block): flat NumPy weights, the replica's optimizer as a lazy
    :class:`~diagnosenet.models.flat_adam.FlatAdam`, and per block row the version of its last
    change. TensorFlow is not in the loop: a step and a reply are a few NumPy passes.

    Under lazy Adam an input-block row changes only on an update whose gradient has it, so a
    worker at version ``h`` needs exactly the rows changed after ``h``, plus every parameter
    after the block (those change on every update). A reply is ``[index, row values…]`` per
    such row, then the rest; :func:`apply_reply` writes it into the worker's copy, which then
    equals these weights bit for bit (tested). A worker whose version is unknown gets every
    weight. :meth:`into` hands weights and optimizer state back to the replica (validation,
    checkpoints), whose own step this one equals bit for bit (tested, both backends).
    """

    def __init__(self, replica):
        block = input_block(replica)
        if block is None:
            raise ValueError("row replies need a model with a sparse input block")
        self.inputs, self.units = (int(b) for b in block)
        self.head, self.n_params = self.inputs * self.units, int(replica.n_params)
        self.adam = replica.flat_adam()
        if self.adam.block != (self.inputs, self.units):
            raise ValueError("row replies need lazy-adam: under Adam every row changes on every step")
        self.weights = np.array(replica.get_weights(), np.float32)
        self.changed_at = np.full(self.inputs, -1, np.int64)

    @property
    def max_floats(self) -> int:
        return reply_floats((self.inputs, self.units), self.n_params)

    def apply(self, grad: "RowGradient", version: int) -> None:
        """The update that makes ``version``: one lazy Adam step with ``grad``."""
        self.adam.apply_rows(self.weights, grad.rows, grad.values, grad.rest)
        self.changed_at[grad.with_gradient()] = version

    def changed_since(self, held: int) -> np.ndarray:
        return np.flatnonzero(self.changed_at > held)

    def message(self, held: int | None) -> tuple[np.ndarray, int]:
        """The reply to a worker at version ``held`` (``None``: unknown) and its row count
        (``-1``: every weight, dense); a new buffer (MPI may still be sending the last one)."""
        if held is None:
            return self.weights.copy(), -1
        rows = self.changed_since(held)
        body = np.empty(rows.size * (self.units + 1) + self.n_params - self.head, np.float32)
        packed = body[:rows.size * (self.units + 1)].reshape(rows.size, self.units + 1)
        packed[:, 0] = rows
        packed[:, 1:] = self.weights[:self.head].reshape(self.inputs, self.units)[rows]
        body[packed.size:] = self.weights[self.head:]
        return body, int(rows.size)

    def into(self, replica) -> None:
        """Give the replica these weights and this optimizer state (before it validates or is saved)."""
        state = replica.get_state()
        state.update(self.adam.state(), weights=self.weights.copy())
        replica.set_state(state)


@dataclass
class RowGradient:
    """A gradient whose input block is given by its rows: ``values[i]`` is row ``rows[i]``
    (sorted, unique; every other row is zero), then ``rest``, every parameter after the block.
    What the ``mpi-async`` master steps with under row replies instead of the dense 8.3 M vector."""

    rows: np.ndarray
    values: np.ndarray
    rest: np.ndarray

    @classmethod
    def from_packed(cls, packed: np.ndarray, rest: np.ndarray, units: int) -> "RowGradient":
        """From :func:`pack_rows`'s ``[index, values…]`` rows (unique) and the rest."""
        table = packed.reshape(-1, units + 1)
        rows = table[:, 0].astype(np.int64)
        if np.all(rows[1:] > rows[:-1]):   # as workers send them: no copy
            return cls(rows, table[:, 1:], rest)
        order = np.argsort(rows, kind="stable")
        return cls(rows[order], table[order, 1:], rest)

    @classmethod
    def from_dense(cls, grads: np.ndarray, block: tuple[int, int]) -> "RowGradient":
        inputs, units = block
        rows = nonzero_rows(grads, block)
        return cls(rows, grads[:inputs * units].reshape(inputs, units)[rows], grads[inputs * units:])

    def with_gradient(self) -> np.ndarray:
        """The rows with a non-zero value (``nonzero_rows``' definition): what lazy Adam moves."""
        return self.rows[self.values.any(axis=1)]

    def dense(self, block: tuple[int, int]) -> np.ndarray:
        inputs, units = block
        head = np.zeros((inputs, units), np.float32)
        head[self.rows] = self.values
        return np.concatenate([head.ravel(), self.rest])


def row_weighted_mean(grads: list[RowGradient], rows: list[int]) -> RowGradient:
    """:func:`~diagnosenet.training.loop.weighted_mean` of row gradients, without the dense block:
    the union of their rows, each summed in float64 with the same weights. One gradient is
    its own mean (its weight is exactly 1, so the bits are the same; ``k = 1`` pays nothing)."""
    if len(grads) == 1:
        return grads[0]
    weights = np.asarray(rows, np.float64) / float(np.sum(rows))
    union = np.unique(np.concatenate([g.rows for g in grads]))
    values = np.zeros((union.size, grads[0].values.shape[1]), np.float64)
    for weight, g in zip(weights, grads):
        values[np.searchsorted(union, g.rows)] += weight * g.values
    rest = np.tensordot(weights, np.stack([g.rest for g in grads]), axes=1)
    return RowGradient(union, values.astype(np.float32), rest.astype(np.float32))


def apply_reply(weights: np.ndarray, reply: np.ndarray, rows: int, block: tuple[int, int] | None) -> None:
    """Write a reply of :class:`RowServer` (``rows`` rows, or ``-1``: dense) into ``weights``."""
    if rows < 0 or block is None:
        weights[:] = reply[:weights.size]
        return
    inputs, units = block
    packed = reply[:rows * (units + 1)].reshape(rows, units + 1)
    weights[:inputs * units].reshape(inputs, units)[packed[:, 0].astype(np.int64)] = packed[:, 1:]
    weights[inputs * units:] = reply[rows * (units + 1):rows * (units + 1) + weights.size - inputs * units]
