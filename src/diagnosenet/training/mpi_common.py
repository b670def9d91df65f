"""What both MPI modes share: bounded waits, state broadcast, replica choice, run inputs.

No MPI call here blocks without a deadline: requests are polled (``Test``) until
``settings.timeout_s`` has passed, so a dead or hung rank turns into a clear error
instead of a job that hangs forever (the original waited for ever).

Hydra (MPICH's ``mpirun``) under ``-disable-auto-cleanup`` sends ``SIGUSR1`` to the
survivors when a rank dies, and to ranks still finalising when others exit first. Its
default action kills the process, and with a Python handler installed the job was still
torn down at random in our trials (probably the signal interrupting MPICH inside a system
call), so :func:`ignore_peer_signals` ignores it: faults are found by the timeouts alone.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from diagnosenet.training.checkpoint import fingerprint
from diagnosenet.training.settings import TrainSettings

log = logging.getLogger(__name__)

POLL_S = 0.0005


class RankTimeout(RuntimeError):
    """A message or collective did not complete within ``timeout_s``."""


def ignore_peer_signals() -> None:
    """Ignore Hydra's SIGUSR1 notices (see the module docstring); an ignored signal also stays
    ignored through interpreter shutdown, when MPI is finalised."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def wait(request, timeout_s: float, what: str) -> None:
    """Poll ``request`` until it completes; :class:`RankTimeout` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not request.Test():
        if time.monotonic() > deadline:
            raise RankTimeout(f"{what}: nothing after {timeout_s:g} s (timeout_s)")
        time.sleep(POLL_S)


def wait_all(requests, timeout_s: float, what: str) -> None:
    for request in requests:
        wait(request, timeout_s, what)


def pack_state(state: dict[str, np.ndarray], meta: dict | None = None) -> np.ndarray:
    """A replica state (and JSON metadata) as one ``uint8`` buffer for buffer-based messages."""
    buffer = io.BytesIO()
    np.savez(buffer, **state, __meta__=np.frombuffer(json.dumps(meta or {}).encode(), dtype=np.uint8))
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def unpack_state(buffer: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(io.BytesIO(buffer.tobytes()), allow_pickle=False) as data:
        state = {k: data[k] for k in data.files if k != "__meta__"}
        meta = json.loads(bytes(data["__meta__"]).decode())
    return state, meta


def bcast_bytes(comm, payload: np.ndarray | None, root: int, timeout_s: float, what: str) -> np.ndarray:
    """Broadcast a ``uint8`` buffer of unknown length from ``root`` (two bounded ``Ibcast``s)."""
    size = np.array([0 if payload is None else payload.size], dtype=np.int64)
    wait(comm.Ibcast(size, root=root), timeout_s, f"{what} (size)")
    buffer = payload if comm.Get_rank() == root else np.empty(int(size[0]), dtype=np.uint8)
    wait(comm.Ibcast(buffer, root=root), timeout_s, what)
    return buffer


def weights_sha256(weights: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(weights, dtype=np.float32).tobytes()).hexdigest()


def make_replica(settings: TrainSettings, input_size: int, n_classes: int):
    """``model.backend: numpy`` selects :class:`NumpyReplica` (tests); otherwise TensorFlow."""
    model = dict(settings.model)
    backend = model.pop("backend", "tensorflow")
    if backend == "numpy":
        from diagnosenet.training.numpy_replica import NumpyReplica

        return NumpyReplica(input_size, n_classes, model.get("hidden_units", ()), seed=settings.seed,
                            learning_rate=settings.learning_rate, delay_s=model.get("delay_s", 0.0))
    if backend != "tensorflow":
        raise ValueError(f"model backend {backend!r} is neither 'tensorflow' nor 'numpy'")
    import tensorflow as tf

    from diagnosenet.models.replica import make_replica as make_tf_replica

    tf.config.experimental.enable_op_determinism()
    return make_tf_replica(settings.task, model, input_size, n_classes, seed=settings.seed,
                           learning_rate=settings.learning_rate)


@dataclass
class WorkerData:
    """One worker's train and validation shards (rank ``r`` reads shard ``r - 1``)."""

    train: Any
    valid: Any


def shard_manifest(settings: TrainSettings) -> dict:
    from diagnosenet.artifacts import verify_manifest

    return verify_manifest(settings.shards_dir, stage="shard",
                           params={"workers": settings.workers, "batch_size": settings.batch_size},
                           check_hashes=False)


def load_worker_data(settings: TrainSettings, rank: int) -> WorkerData:
    from diagnosenet.datasets.shards import load_shard

    kw = dict(workers=settings.workers, batch_size=settings.batch_size)
    return WorkerData(load_shard(settings.shards_dir, "train", rank - 1, **kw),
                      load_shard(settings.shards_dir, "valid", rank - 1, **kw))


def model_shape(settings: TrainSettings) -> tuple[int, int]:
    """``(input size, number of classes)`` from the data set, as desktop mode reads them."""
    from diagnosenet.datasets.materialise import load_classes, load_split

    X_valid, _, _ = load_split(settings.dataset_dir, "valid")
    return int(X_valid.shape[1]), len(load_classes(settings.dataset_dir))


def broadcast_start(comm, settings: TrainSettings, replica, stopper) -> dict:
    """Give every rank rank 0's replica state: fresh, or its last checkpoint (resume).

    Returns the checkpoint's progress (``epoch`` 0 when starting afresh); ``stopper`` is
    restored from it on every rank.
    """
    from diagnosenet.training.checkpoint import load_checkpoint

    payload, checkpoints = None, settings.out_dir / "checkpoint"
    if comm.Get_rank() == 0:
        checkpoint = load_checkpoint(checkpoints)
        if checkpoint is not None and checkpoint["progress"].get("settings") != fingerprint(settings):
            log.warning("%s: checkpoint written with other settings; starting afresh", checkpoints)
            checkpoint = None
        if checkpoint is None:
            payload = pack_state(replica.get_state(), {"epoch": 0, "wall_seconds": 0.0, "samples": 0})
        else:
            log.info("resuming %s after epoch %d", settings.out_dir, checkpoint["epoch"])
            payload = pack_state(checkpoint["replica_state"], {**checkpoint["progress"], "epoch": checkpoint["epoch"]})
    state, meta = unpack_state(bcast_bytes(comm, payload, 0, settings.timeout_s, "initial replica state"))
    replica.set_state(state)
    if "early_stopping" in meta:  # every rank, so that all see the same initial stop decision
        stopper.load_state_dict(meta["early_stopping"])
    return meta


def check_world(comm, settings: TrainSettings) -> None:
    if comm.Get_size() != settings.workers + 1:
        raise SystemExit(f"{settings.mode} with --workers {settings.workers} needs mpirun -n "
                         f"{settings.workers + 1} (1 master + workers), got {comm.Get_size()} ranks")


def abort(comm, message: str, code: int = 3) -> None:
    """Print one clear line and take the whole job down (``MPI_Abort``): the synchronous fault path."""
    print(f"diagnosenet {message}", file=sys.stderr, flush=True)
    comm.Abort(code)


def run_guarded(comm, body: Callable[[], Any], describe: Callable[[BaseException], str]):
    """Run ``body``; a timeout aborts the whole job with ``describe(exc)``."""
    try:
        return body()
    except RankTimeout as exc:
        abort(comm, describe(exc))


def finish(settings: TrainSettings, replica, summary: dict) -> dict:
    """Test-split probabilities with the (best) weights now in ``replica``, then the run's files."""
    from diagnosenet.datasets.materialise import load_classes, load_split
    from diagnosenet.training.evaluation import finalise_run

    X_test, y_test, _ = load_split(settings.dataset_dir, "test")
    return finalise_run(settings, replica.predict_proba(X_test), y_test, load_classes(settings.dataset_dir), summary)
