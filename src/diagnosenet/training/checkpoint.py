"""Verified checkpoints: ``last.npz`` after every epoch, ``previous.npz`` before it, ``best.npz``
at every new best.

One ``.npz`` holds the replica state arrays and the progress (JSON) together, with a sha256 of
both, written to a temporary file, fsynced and renamed, so a run killed at any moment leaves a
complete checkpoint (the original's restore never worked). The last checkpoint becomes
``previous.npz`` only once its successor is safely written, so a ``last.npz`` damaged later (a
failing disk, a partial copy) still leaves an intact checkpoint one epoch older. Reading one
verifies it: a damaged file raises :class:`CheckpointError` naming it, never a raw traceback.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from diagnosenet.artifacts import atomic_write

LAST, PREVIOUS, BEST = "last.npz", "previous.npz", "best.npz"
#: where a run may resume from, checked in this order (the newest intact one wins)
RESUMABLE = (LAST, PREVIOUS, BEST)
_META = "__meta__"


class CheckpointError(RuntimeError):
    """A checkpoint file is damaged (truncated, altered) or none of a run's is intact."""


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


def state_sha256(state: Mapping[str, np.ndarray], meta: Mapping) -> str:
    """sha256 over every array (name, dtype, shape, bytes) and the metadata: what a checkpoint
    records of itself, so that any change to its content is seen on load."""
    digest = hashlib.sha256(json.dumps(dict(meta), sort_keys=True).encode())
    for name in sorted(state):
        array = np.ascontiguousarray(state[name])
        digest.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_checkpoint(directory: str | Path, *, epoch: int, replica_state: Mapping[str, np.ndarray],
                    progress: Mapping) -> None:
    """Write the last checkpoint (the one before it kept as ``previous.npz``), and the best one
    too when ``progress['best_epoch'] == epoch``. A failed write (a full disk) leaves the
    existing files as they were and raises ``OSError`` naming the file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"epoch": int(epoch), "progress": dict(progress)}
    payload = pack_state(replica_state, {**meta, "sha256": state_sha256(replica_state, meta)}).tobytes()
    pending = directory / f".{LAST}.new"
    atomic_write(pending, lambda handle: handle.write(payload), binary=True)
    if (directory / LAST).exists():
        os.replace(directory / LAST, directory / PREVIOUS)
    os.replace(pending, directory / LAST)
    if progress.get("best_epoch") == epoch:
        atomic_write(directory / BEST, lambda handle: handle.write(payload), binary=True)


def read_checkpoint(path: str | Path) -> dict:
    """``{"epoch", "progress", "replica_state"}`` of one checkpoint file, verified;
    :class:`CheckpointError` naming the file when it cannot be read or its checksum differs."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            state, meta = unpack_state(handle)
        epoch, progress = meta["epoch"], meta["progress"]
    except (zipfile.BadZipFile, ValueError, KeyError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint ({type(exc).__name__}: {exc})") from None
    recorded = meta.get("sha256")
    if recorded is not None and recorded != state_sha256(state, {k: v for k, v in meta.items() if k != "sha256"}):
        raise CheckpointError(f"{path}: damaged checkpoint (its content does not match its sha256)")
    return {"epoch": epoch, "progress": progress, "replica_state": state, "path": path}


def load_checkpoint(directory: str | Path, which: str = LAST) -> dict | None:
    """:func:`read_checkpoint` of ``directory/which``, or ``None`` when there is none."""
    path = Path(directory) / which
    return read_checkpoint(path) if path.exists() else None


def intact_checkpoints(directory: str | Path) -> tuple[list[dict], dict[Path, str]]:
    """Every resumable checkpoint of a run that verifies, newest epoch first, and the damaged
    ones with what is wrong with each."""
    intact, damaged = [], {}
    for name in RESUMABLE:
        try:
            checkpoint = load_checkpoint(directory, name)
        except CheckpointError as exc:
            damaged[Path(directory) / name] = str(exc)
            continue
        if checkpoint is not None:
            intact.append(checkpoint)
    return sorted(intact, key=lambda c: -int(c["epoch"])), damaged


#: settings that must match for a checkpoint to be resumed (max_epochs and patience may change:
#: a rerun with more epochs extends a run)
RESUME_KEYS = ("mode", "task", "model", "seed", "learning_rate", "batch_size", "workers", "class_weight",
               "exchange_precision", "optimizer")
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
