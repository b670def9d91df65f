"""Atomic checkpoints: ``last.npz`` after every epoch and ``best.npz`` at every new best.

One ``.npz`` holds the replica state arrays and the progress (JSON) together, written to a
temporary file and renamed, so a run killed at any moment leaves a complete checkpoint
(the original's restore never worked).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

LAST, BEST = "last.npz", "best.npz"
_META = "__checkpoint__"


def _atomic_savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(directory: str | Path, *, epoch: int, replica_state: Mapping[str, np.ndarray],
                    progress: Mapping) -> None:
    """Write the last checkpoint, and the best one too when ``progress['best_epoch'] == epoch``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if _META in replica_state:
        raise ValueError(f"replica state may not use the reserved key {_META!r}")
    meta = json.dumps({"epoch": int(epoch), "progress": dict(progress)})
    arrays = {**replica_state, _META: np.frombuffer(meta.encode(), dtype=np.uint8)}
    _atomic_savez(directory / LAST, arrays)
    if progress.get("best_epoch") == epoch:
        _atomic_savez(directory / BEST, arrays)


def load_checkpoint(directory: str | Path, which: str = LAST) -> dict | None:
    """``{"epoch", "progress", "replica_state"}`` of a checkpoint, or ``None`` when there is none."""
    path = Path(directory) / which
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        state = {key: data[key] for key in data.files if key != _META}
        meta = json.loads(bytes(data[_META]).decode())
    return {"epoch": meta["epoch"], "progress": meta["progress"], "replica_state": state}
