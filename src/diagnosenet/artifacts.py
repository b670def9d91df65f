"""On-disk artefacts with manifests: every stage writes one, the next stage verifies it.

A manifest is a small JSON file beside the artefact files that records what produced them
(stage, parameters), their row/class counts, and a sha256 per file. Readers call
:func:`verify_manifest` before trusting the bytes, so a stale or half-written artefact is
refused with a message naming the file instead of being silently reused.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Mapping

MANIFEST_NAME = "manifest.json"


class ArtifactError(RuntimeError):
    """An artefact on disk does not match its manifest (stale, truncated or foreign)."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], *, binary: bool = False) -> None:
    """Call ``write(handle)`` on a temporary file, fsync, then rename it to ``path``, so a crash
    never leaves a half-written file (outputs, checkpoints); a write that fails (a full disk)
    leaves the previous file as it was and raises ``OSError`` naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise naming(exc, path) from exc
    try:
        with os.fdopen(fd, "wb" if binary else "w") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise naming(exc, path) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def naming(exc: OSError, path: str | os.PathLike) -> OSError:
    """``exc`` with ``path`` as its file name when it has none: a write or fsync that fails for
    lack of space says only "No space left on device", not where."""
    if exc.filename is not None:
        return exc
    return type(exc)(exc.errno, f"{exc.strerror or exc} (writing)", str(path))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as handle:
        return json.load(handle)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_manifest(
    directory: str | os.PathLike,
    *,
    stage: str,
    files: list[str],
    params: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict:
    """Hash ``files`` (names relative to ``directory``) and write ``manifest.json`` last."""
    directory = Path(directory)
    manifest = {
        "stage": stage,
        "params": dict(params or {}),
        "files": {name: sha256_file(directory / name) for name in sorted(files)},
        **extra,
    }
    write_json(directory / MANIFEST_NAME, manifest)
    return manifest


def rehash_manifest(directory: str | os.PathLike) -> dict:
    """Hash again the files ``manifest.json`` lists, keeping everything else: for a stage whose
    outputs other processes close after it wrote its manifest (the gRPC launcher's monitors of
    the parameter servers and workers stop in its teardown, after the chief wrote the run)."""
    directory = Path(directory)
    manifest = read_json(directory / MANIFEST_NAME)
    manifest["files"] = {name: sha256_file(directory / name) for name in sorted(manifest["files"])}
    write_json(directory / MANIFEST_NAME, manifest)
    return manifest


def verify_manifest(
    directory: str | os.PathLike,
    *,
    stage: str | None = None,
    params: Mapping[str, Any] | None = None,
    check_hashes: bool = True,
) -> dict:
    """Return the manifest of ``directory`` after checking it matches what the caller expects.

    ``params`` are compared key by key with the manifest's recorded parameters, so a reader
    asking for 4 workers never accepts shards written for 3.
    """
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not path.exists():
        raise ArtifactError(f"{path}: manifest missing; re-run the stage that writes {directory}")
    manifest = read_json(path)
    if stage is not None and manifest.get("stage") != stage:
        raise ArtifactError(f"{path}: written by stage {manifest.get('stage')!r}, expected {stage!r}")
    for key, expected in (params or {}).items():
        found = manifest.get("params", {}).get(key)
        if found != expected:
            raise ArtifactError(
                f"{path}: parameter {key!r} is {found!r} on disk but {expected!r} was requested; "
                "the files are stale — re-run the stage"
            )
    if check_hashes:
        for name, digest in manifest.get("files", {}).items():
            file = directory / name
            if not file.exists():
                raise ArtifactError(f"{file}: listed in {path} but missing")
            if sha256_file(file) != digest:
                raise ArtifactError(f"{file}: sha256 differs from {path}; the file changed after it was written")
    return manifest
