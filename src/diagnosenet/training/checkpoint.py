"""Atomic checkpoints: ``last.npz`` after every epoch and ``best.npz`` at every new best.

One ``.npz`` holds the replica state arrays and the progress (JSON) together, written to a
temporary file and renamed, so a run killed at any moment leaves a complete checkpoint
(the original's restore never worked).
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Mapping

import numpy as np

from diagnosenet.artifacts import atomic_write

LAST, BEST = "last.npz", "best.npz"
_META = "__meta__"


def pack_state(state: Mapping[str, np.ndarray], meta: Mapping | None = None) -> np.ndarray:
    """A replica state and JSON metadata as one ``uint8`` buffer (an ``.npz``): the format of
    checkpoint files and of every state message between processes."""
    if _META in state:
        raise ValueError(f"replica state may not use the reserved key {_META!r}")
    buffer = io.BytesIO()
    np.savez(buffer, **state, **{_META: np.frombuffer(json.dumps(dict(meta or {})).encode(), dtype=np.uint8)})
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def unpack_state(buffer) -> tuple[dict[str, np.ndarray], dict]:
    """``(state, meta)`` of a :func:`pack_state` buffer (or an open ``.npz`` file)."""
    source = io.BytesIO(buffer.tobytes()) if isinstance(buffer, np.ndarray) else buffer
    with np.load(source, allow_pickle=False) as data:
        state = {k: data[k] for k in data.files if k != _META}
        meta = json.loads(bytes(data[_META]).decode())
    return state, meta


def save_checkpoint(directory: str | Path, *, epoch: int, replica_state: Mapping[str, np.ndarray],
                    progress: Mapping) -> None:
    """Write the last checkpoint, and the best one too when ``progress['best_epoch'] == epoch``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = pack_state(replica_state, {"epoch": int(epoch), "progress": dict(progress)}).tobytes()
    for name in (LAST, BEST) if progress.get("best_epoch") == epoch else (LAST,):
        atomic_write(directory / name, lambda handle: handle.write(payload), binary=True)


def load_checkpoint(directory: str | Path, which: str = LAST) -> dict | None:
    """``{"epoch", "progress", "replica_state"}`` of a checkpoint, or ``None`` when there is none."""
    path = Path(directory) / which
    if not path.exists():
        return None
    with open(path, "rb") as handle:
        state, meta = unpack_state(handle)
    return {"epoch": meta["epoch"], "progress": meta["progress"], "replica_state": state}


#: settings that must match for a checkpoint to be resumed (max_epochs and patience may change:
#: a rerun with more epochs extends a run)
RESUME_KEYS = ("mode", "task", "model", "seed", "learning_rate", "batch_size", "workers", "class_weight",
               "exchange_precision")
#: the training code, relative to ``src/diagnosenet``: the one list that both the checkpoint
#: fingerprint and the workflow's ``code=`` inputs of training rules read (common.smk)
TRAINING_CODE = ("models", "training", "monitor", "metrics.py", "artifacts.py", "datasets/shards.py",
                 "datasets/materialise.py")


def training_code_files(root: Path | None = None) -> list[Path]:
    """The files of :data:`TRAINING_CODE` under ``root`` (default: this installed package)."""
    if root is None:
        import diagnosenet

        root = Path(diagnosenet.__file__).parent
    files: list[Path] = []
    for name in TRAINING_CODE:
        path = root / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return sorted(files)


def code_digest() -> str:
    """sha256 over the training code, so a checkpoint written by other code is never resumed
    (Snakemake re-runs a training job when that code changes; it must then train afresh)."""
    import hashlib

    import diagnosenet

    root = Path(diagnosenet.__file__).parent
    digest = hashlib.sha256()
    for path in training_code_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fingerprint(settings) -> dict:
    """What a resumable checkpoint must have been trained with: these settings, the same shard
    files and the same code."""
    from diagnosenet.artifacts import sha256_file

    return {**{key: getattr(settings, key) for key in RESUME_KEYS},
            "shards_manifest_sha256": sha256_file(Path(settings.shards_dir) / "manifest.json"),
            "code_sha256": code_digest()}
