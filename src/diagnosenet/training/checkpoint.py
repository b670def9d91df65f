"""Atomic checkpoints: ``last.npz`` after every epoch and ``best.npz`` at every new best.

One ``.npz`` holds the replica state arrays and the progress (JSON) together, written to a
temporary file and renamed, so a run killed at any moment leaves a complete checkpoint
(the original's restore never worked).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np

from diagnosenet.artifacts import atomic_write

LAST, BEST = "last.npz", "best.npz"
_META = "__checkpoint__"


def _atomic_savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    atomic_write(path, lambda handle: np.savez(handle, **arrays), binary=True)


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


#: settings that must match for a checkpoint to be resumed (max_epochs and patience may change:
#: a rerun with more epochs extends a run)
RESUME_KEYS = ("mode", "task", "model", "seed", "learning_rate", "batch_size", "workers")
#: packages whose code a checkpoint depends on (the workflow's TRAIN_CODE)
CODE_PACKAGES = ("models", "training", "monitor")


def code_digest() -> str:
    """sha256 over the training code, so a checkpoint written by other code is never resumed
    (Snakemake re-runs a training job when that code changes; it must then train afresh)."""
    import hashlib

    import diagnosenet

    root = Path(diagnosenet.__file__).parent
    digest = hashlib.sha256()
    files = [root / "metrics.py", *(f for pkg in CODE_PACKAGES for f in (root / pkg).rglob("*.py"))]
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fingerprint(settings) -> dict:
    """What a resumable checkpoint must have been trained with: these settings, the same shard
    files and the same code."""
    from diagnosenet.artifacts import sha256_file

    return {**{key: getattr(settings, key) for key in RESUME_KEYS},
            "shards_manifest_sha256": sha256_file(Path(settings.shards_dir) / "manifest.json"),
            "code_sha256": code_digest()}
