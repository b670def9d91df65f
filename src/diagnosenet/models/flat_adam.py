"""Adam and lazy Adam on one flat ``float32`` vector, in TensorFlow's arithmetic, without TensorFlow.

Why: the ``mpi-async`` master applies every worker's gradient, and through TensorFlow each
step pays op dispatch and copies in and out of variables (about 10 ms of a core per
paper-size MLP gradient, ``bench/bench_master_step.py``) on the node every worker waits for.
Here the step is a handful of in-place NumPy passes over the flat weights the master replies
from. The NumPy test model steps with it too, so there is one NumPy Adam.

The operations and their order are those of :class:`~diagnosenet.models.optim.Adam` (TF's
``ApplyAdam`` kernel: ``m += (g − m)(1 − β₁)``, ``v += (g² − v)(1 − β₂)``,
``w −= (m α) / (√v + ε)`` with ``α = lr √(1 − β₂ᵗ) / (1 − β₁ᵗ)``) and of
:class:`~diagnosenet.models.optim.LazyAdam` for the rows of the input ``block`` (the same
formulas on the rows with a non-zero gradient; the others keep weights and moments; its
``1 − β`` constants are rounded from double, the kernel's from float32), each a single float32
rounding, so the weights and moments are TensorFlow's bit for bit given the same ``βᵗ``
(tested). TensorFlow's float32 ``pow`` is not NumPy's (they differ in the last bit for some
``t``, e.g. ``0.9ᵗ`` from ``t = 829`` on): a TensorFlow replica passes its own as ``powers``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

F32 = np.float32
#: ``t → (β₁ᵗ, β₂ᵗ)`` as float32
Powers = Callable[[int], tuple[np.float32, np.float32]]


def numpy_powers(beta1: float, beta2: float) -> Powers:
    return lambda t: (np.power(F32(beta1), F32(t)), np.power(F32(beta2), F32(t)))


class FlatAdam:
    """The moments and step count of Adam over ``n`` parameters; lazy on the ``block`` rows.

    ``block = (inputs, units)``: the leading ``inputs × units`` parameters are a kernel fed by a
    sparse input, updated lazily by rows (``train.optimizer: lazy-adam``); ``None``: Adam.
    """

    def __init__(self, n: int, lr: float, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-7, *,
                 block: tuple[int, int] | None = None, powers: Powers | None = None):
        if lr <= 0:
            raise ValueError(f"Adam learning rate must be > 0, got {lr}")
        self.n, self.lr, self.beta1, self.beta2, self.epsilon = int(n), F32(lr), beta1, beta2, F32(epsilon)
        self.block = None if block is None else (int(block[0]), int(block[1]))
        self.head = 0 if self.block is None else self.block[0] * self.block[1]
        self.powers = powers or numpy_powers(beta1, beta2)
        self.m, self.v = np.zeros(self.n, F32), np.zeros(self.n, F32)
        self.t = 0
        self._scratch = np.empty((2, self.n - self.head), F32)   # no allocation per step

    def step_size(self) -> np.float32:
        """``α`` of the next step (``t + 1``), as the kernel computes it."""
        beta1_power, beta2_power = self.powers(self.t + 1)
        return self.lr * np.sqrt(F32(1) - F32(beta2_power)) / (F32(1) - F32(beta1_power))

    def apply(self, w: np.ndarray, g: np.ndarray) -> None:
        """One step on ``w`` (in place) with the dense gradient ``g``: under a block, its rows
        with any non-zero value move lazily, the rest as Adam."""
        g = np.asarray(g, F32)
        if self.block is not None:
            kernel = g[:self.head].reshape(self.block)
            rows = np.flatnonzero(kernel.any(axis=1))
            self.apply_rows(w, rows, kernel[rows], g[self.head:])
            return
        self._dense(w, g, self.step_size())
        self.t += 1

    def apply_rows(self, w: np.ndarray, rows: np.ndarray, values: np.ndarray, rest: np.ndarray) -> None:
        """One lazy step: the block's gradient is ``values`` at ``rows`` (sorted, unique; zero
        elsewhere), then ``rest`` for every parameter after the block. A listed row whose values
        are all zero does not move (as ``LazyAdam``)."""
        if self.block is None:
            raise ValueError("apply_rows needs a lazy block (train.optimizer: lazy-adam)")
        alpha = self.step_size()
        moving = values.any(axis=1)
        rows, g = np.asarray(rows, np.int64)[moving], np.asarray(values, F32)[moving]
        units = self.block[1]
        m = self.m[:self.head].reshape(-1, units)
        v = self.v[:self.head].reshape(-1, units)
        kernel = w[:self.head].reshape(-1, units)
        m_rows = m[rows]
        m_rows += (g - m_rows) * F32(1 - self.beta1)
        v_rows = v[rows]
        v_rows += (g * g - v_rows) * F32(1 - self.beta2)
        m[rows], v[rows] = m_rows, v_rows
        kernel[rows] -= (alpha * m_rows) / (np.sqrt(v_rows) + self.epsilon)
        self._dense(w[self.head:], np.asarray(rest, F32), alpha, self.m[self.head:], self.v[self.head:])
        self.t += 1

    def _dense(self, w: np.ndarray, g: np.ndarray, alpha: np.float32, m: np.ndarray | None = None,
               v: np.ndarray | None = None) -> None:
        """``ApplyAdam`` on whole vectors, in place, one rounding per operation."""
        m = self.m if m is None else m
        v = self.v if v is None else v
        a, b = self._scratch[0][:g.size], self._scratch[1][:g.size]
        np.subtract(g, m, out=a)
        a *= F32(1) - F32(self.beta1)
        m += a
        np.multiply(g, g, out=a)
        a -= v
        a *= F32(1) - F32(self.beta2)
        v += a
        np.sqrt(v, out=a)
        a += self.epsilon
        np.multiply(m, alpha, out=b)
        b /= a
        w -= b

    def state(self) -> dict[str, np.ndarray]:
        """The checkpoint keys of every replica's state (``adam_m``, ``adam_v``, ``adam_iterations``)."""
        return {"adam_m": self.m.copy(), "adam_v": self.v.copy(), "adam_iterations": np.asarray([self.t], np.int64)}

    def load(self, state: dict[str, np.ndarray]) -> None:
        for key in ("adam_m", "adam_v"):
            if np.asarray(state[key]).size != self.n:
                raise ValueError(f"{key} has {np.asarray(state[key]).size} values, the model needs {self.n}")
        self.m = np.asarray(state["adam_m"], F32).copy()
        self.v = np.asarray(state["adam_v"], F32).copy()
        self.t = int(np.asarray(state["adam_iterations"]).ravel()[0])
