"""The contract every training mode is written against: a model replica as flat numpy buffers.

Training modes differ only in how gradients and weights travel (in-process, MPI, gRPC).
Keeping the exchange format to one contiguous float32 vector lets MPI send it with
buffer-based collectives (no pickling) and lets the exchange logic be tested with the
small pure-NumPy model in :mod:`diagnosenet.models.numpy_backend`, without TensorFlow
(:mod:`diagnosenet.models.tensorflow_backend` is the real one).

``X`` batches are ``scipy.sparse.csr_matrix`` (PMSI) or dense ``numpy`` arrays (ECG);
``y`` is an ``int64`` vector of class indices.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Replica(Protocol):
    """One copy of the model with its optimizer; all buffers are flat ``float32`` vectors."""

    #: number of trainable scalars, i.e. ``get_weights().size``
    n_params: int

    def get_weights(self) -> np.ndarray:
        """A copy of the trainable weights, flattened in a fixed order."""

    def set_weights(self, flat: np.ndarray) -> None:
        """Overwrite the trainable weights from a vector produced by :meth:`get_weights`."""

    def get_statistics(self) -> np.ndarray:
        """Non-trainable state learned by forward passes (BatchNorm moving mean/variance), flat;
        empty for a model without. Modes average or ship it; gradients never touch it."""

    def set_statistics(self, flat: np.ndarray) -> None:
        """Overwrite the non-trainable state from a vector produced by :meth:`get_statistics`."""

    def compute_gradients(self, X: Any, y: np.ndarray) -> tuple[np.ndarray, float, int]:
        """Gradient of the mean batch loss (training mode: dropout on, moving statistics
        updated), that loss, and how many rows the training-mode forward pass got right."""

    def apply_gradients(self, flat_grads: np.ndarray) -> None:
        """One optimizer step with the given (possibly averaged) gradient vector."""

    def predict_proba(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities in inference mode (dropout off, batch-norm moving stats)."""

    def get_state(self) -> dict[str, np.ndarray]:
        """Everything a checkpoint needs: weights, optimizer slots and step, other variables."""

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state produced by :meth:`get_state` (same architecture)."""


def mean_cross_entropy(proba: np.ndarray, y: np.ndarray, eps: float = 1e-7,
                       weights: np.ndarray | None = None) -> float:
    """Mean categorical cross-entropy of predicted probabilities against class indices, each
    row's term times its class's weight when ``weights`` is given (as ``CrossEntropy``)."""
    picked = proba[np.arange(len(y)), y]
    terms = -np.log(np.clip(picked, eps, 1.0))
    if weights is not None:
        terms = terms * np.asarray(weights)[y]
    return float(np.mean(terms))
