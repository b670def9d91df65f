"""Per-worker shards with micro-batch boundaries (the paper's data manager, code example 1.2).

Rows of a split are dealt to ``N`` workers class by class (stratified round-robin), so every
worker sees every class in proportion (±1 row) and worker totals differ by at most one row —
the original sharded in contiguous blocks and rare classes landed on one worker. Each shard
is one ``.npz`` (CSR parts for sparse data: nothing is densified) and the manifest records the
parameters, rows, class counts, micro-batch boundaries and sha256 of every shard; readers refuse
a shard set written for other parameters.

Heterogeneous workers (``Batching.speeds``, ``shards.balance: measured``): worker ``i`` gets a
share ``s_i / Σ s`` of each class's rows and a micro-batch of ``batch_size × N × s_i / Σ s``
rows, so every worker has the same number of micro-batches and a synchronous step takes
each worker about the same time. The update is still the row-weighted mean of the
micro-batch gradients (docs/training.md), so an epoch and a step mean what they always mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import scipy.sparse as sp

from diagnosenet.artifacts import ArtifactError, read_json, sha256_file, verify_manifest, write_manifest
from diagnosenet.datasets.materialise import load_classes, load_split

STAGE = "shard"
SHARDED_SPLITS = ("train", "valid")


def stratified_assignment(y: np.ndarray, n_workers: int, seed: int) -> np.ndarray:
    """Worker index of every row: rows of each class (shuffled) dealt round-robin.

    Dealing continues across classes from where the previous class stopped, so both the
    per-class counts and the per-worker totals differ by at most one between workers.
    """
    rng = np.random.default_rng(seed)
    order = np.concatenate([
        rows[rng.permutation(len(rows))] for rows in (np.flatnonzero(y == c) for c in np.unique(y))
    ]) if len(y) else np.empty(0, dtype=np.int64)
    assignment = np.empty(len(y), dtype=np.int64)
    assignment[order] = np.arange(len(order)) % n_workers
    return assignment


def weighted_assignment(y: np.ndarray, shares: Sequence[float], seed: int) -> np.ndarray:
    """:func:`stratified_assignment` with worker ``i`` dealt a share ``shares[i] / Σ shares`` of
    each class (smooth weighted round-robin: each row goes to the worker furthest below its
    share). With equal shares it is exactly the round-robin deal."""
    shares = np.asarray(shares, np.float64)
    if shares.ndim != 1 or not len(shares) or np.any(shares <= 0):
        raise ValueError(f"shares must be positive, one per worker, got {shares.tolist()}")
    equal = stratified_assignment(y, len(shares), seed)
    if np.allclose(shares, shares[0]):
        return equal
    rng = np.random.default_rng(seed)
    order = np.concatenate([
        rows[rng.permutation(len(rows))] for rows in (np.flatnonzero(y == c) for c in np.unique(y))
    ]) if len(y) else np.empty(0, dtype=np.int64)
    target, counts = shares / shares.sum(), np.zeros(len(shares))
    assignment = np.empty(len(y), dtype=np.int64)
    for k, row in enumerate(order):
        worker = int(np.argmax(target * (k + 1) - counts))
        assignment[row], counts[worker] = worker, counts[worker] + 1
    return assignment


def row_bytes(X) -> float:
    """Average in-memory bytes per row (CSR: values + column indices + row pointer)."""
    if sp.issparse(X):
        return (X.data.itemsize + X.indices.itemsize) * X.nnz / max(X.shape[0], 1) + X.indptr.itemsize
    return float(np.prod(X.shape[1:])) * X.dtype.itemsize


@dataclass(frozen=True)
class Batching:
    """How a data set is spread over devices and micro-batched (paper, code example 1.2).

    ``batch_size`` fixes the micro-batch; ``memory_budget_mb`` instead derives it from the
    memory one micro-batch may take on a worker (input rows only; activations are the
    model's business), whichever is smaller when both are given.
    """

    devices_number: int = 1
    batch_size: int | None = 128
    memory_budget_mb: float | None = None
    valid_size: float = 0.05
    dataset_name: str | None = None
    #: relative speed of each worker (rows/s); None: equal shards (see the module docstring)
    speeds: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.devices_number < 1:
            raise ValueError("devices_number must be >= 1")
        if self.batch_size is None and self.memory_budget_mb is None:
            raise ValueError("give batch_size, memory_budget_mb or both")
        if self.speeds is not None:
            if len(self.speeds) != self.devices_number or any(not s > 0 for s in self.speeds):
                raise ValueError(f"speeds must be {self.devices_number} positive numbers (one per worker), "
                                 f"got {list(self.speeds)}")
            object.__setattr__(self, "speeds", tuple(float(s) for s in self.speeds))

    def shares(self) -> np.ndarray:
        """Each worker's fraction of the rows (equal without ``speeds``)."""
        speeds = np.asarray(self.speeds or [1.0] * self.devices_number, np.float64)
        return speeds / speeds.sum()

    def worker_batch_sizes(self, batch_size: int) -> list[int]:
        """Each worker's micro-batch: ``batch_size`` (the mean) scaled by its share."""
        n = self.devices_number
        return [max(1, int(round(batch_size * n * share))) for share in self.shares()]

    def micro_batch_size(self, bytes_per_row: float) -> int:
        sizes = [self.batch_size] if self.batch_size else []
        if self.memory_budget_mb:
            sizes.append(max(1, int(self.memory_budget_mb * 2**20 // max(bytes_per_row, 1.0))))
        return int(min(sizes))

    @staticmethod
    def boundaries(n_rows: int, batch_size: int) -> np.ndarray:
        """Offsets ``[0, b, 2b, ..., n_rows]`` of the micro-batches of a shard."""
        return np.unique(np.append(np.arange(0, n_rows, batch_size), n_rows)).astype(np.int64)


def _save_shard(path: Path, X, y: np.ndarray, rows: np.ndarray, boundaries: np.ndarray) -> None:
    arrays = {"y": y.astype(np.int64), "rows": rows, "boundaries": boundaries}
    if sp.issparse(X):
        X = X.tocsr()
        arrays.update(X_data=X.data, X_indices=X.indices, X_indptr=X.indptr,
                      X_shape=np.asarray(X.shape, dtype=np.int64))
    else:
        arrays["X"] = np.ascontiguousarray(X, dtype=np.float32)
    np.savez(path, **arrays)


def write_shards(dataset_dir: str | Path, out_dir: str | Path, batching: Batching, *, seed: int) -> dict:
    """Write ``{split}_{i:02d}.npz`` for every worker and split, then the manifest."""
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    source = verify_manifest(dataset_dir, stage="materialise")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.npz"):  # never let files of an earlier run survive beside new ones
        stale.unlink()
    n = batching.devices_number
    classes = load_classes(dataset_dir)
    files, shards, batch_size = [], {}, None
    for split in SHARDED_SPLITS:
        X, y, _ = load_split(dataset_dir, split)
        batch_size = batch_size or batching.micro_batch_size(row_bytes(X))
        worker_batches = batching.worker_batch_sizes(batch_size)
        assignment = weighted_assignment(y, batching.shares(), seed)
        rng = np.random.default_rng([seed, n, SHARDED_SPLITS.index(split)])
        shards[split] = []
        for worker in range(n):
            rows = np.flatnonzero(assignment == worker)
            rows = rows[rng.permutation(len(rows))]  # mix classes inside micro-batches
            bounds = Batching.boundaries(len(rows), worker_batches[worker])
            name = f"{split}_{worker:02d}.npz"
            _save_shard(out_dir / name, X[rows], y[rows], rows, bounds)
            files.append(name)
            shards[split].append({
                "file": name, "rows": int(len(rows)),
                "class_counts": np.bincount(y[rows], minlength=len(classes)).tolist(),
                "micro_batches": int(len(bounds) - 1), "batch_size": int(worker_batches[worker]),
            })
    return write_manifest(
        out_dir, stage=STAGE, files=files,
        params={"workers": n, "batch_size": int(batch_size), "seed": seed,
                "requested_batch_size": batching.batch_size,
                "memory_budget_mb": batching.memory_budget_mb,
                "balance": "equal" if batching.speeds is None else "measured",
                "speeds": list(batching.speeds) if batching.speeds else None},
        source={"dir": str(dataset_dir), "files": source["files"]},
        classes=classes, shards=shards,
    )


@dataclass
class Shard:
    """One worker's rows of one split, with its micro-batch offsets."""

    X: object
    y: np.ndarray
    boundaries: np.ndarray
    worker: int
    split: str

    @property
    def n_rows(self) -> int:
        return int(len(self.y))

    def microbatches(self, order: np.ndarray | None = None) -> "MicroBatches":
        """``(X_b, y_b)`` per micro-batch, in ``order`` (batch indices) if given."""
        return MicroBatches(self, range(len(self.boundaries) - 1) if order is None else order)


@dataclass
class MicroBatches:
    """One pass over a shard's micro-batches; sized, so the epoch loop can log "step s/S, ETA"."""

    shard: Shard
    order: Sequence[int]

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[tuple[object, np.ndarray]]:
        bounds = self.shard.boundaries
        for b in self.order:
            yield self.shard.X[bounds[b]:bounds[b + 1]], self.shard.y[bounds[b]:bounds[b + 1]]


def load_shard(shards_dir: str | Path, split: str, worker: int, *, workers: int | None = None,
               batch_size: int | None = None, verify: bool = True) -> Shard:
    """Read and verify one worker's shard; refuse shards written for other parameters."""
    shards_dir = Path(shards_dir)
    expected = {k: v for k, v in {"workers": workers, "batch_size": batch_size}.items() if v is not None}
    if verify:
        manifest = verify_manifest(shards_dir, stage=STAGE, params=expected, check_hashes=False)
    else:
        manifest = read_json(shards_dir / "manifest.json")
    n = manifest["params"]["workers"]
    if not 0 <= worker < n:
        raise ArtifactError(f"{shards_dir}: worker {worker} requested but the shards are for {n} workers")
    name = f"{split}_{worker:02d}.npz"
    if verify:  # hash only this worker's file: each worker reads its own shard
        if sha256_file(shards_dir / name) != manifest["files"].get(name):
            raise ArtifactError(f"{shards_dir / name}: sha256 differs from the manifest; re-run the shard stage")
    with np.load(shards_dir / name, allow_pickle=False) as data:
        if "X" in data:
            X = data["X"]
        else:
            X = sp.csr_matrix((data["X_data"], data["X_indices"], data["X_indptr"]),
                              shape=tuple(data["X_shape"]))
        return Shard(X=X, y=data["y"], boundaries=data["boundaries"], worker=worker, split=split)
