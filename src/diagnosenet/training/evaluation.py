"""The end of every run, whatever its mode: test metrics, energy, run description, manifest.

``finalise_run`` receives test-split probabilities computed with the best weights in
inference mode and writes ``metrics.json``, ``per_class.csv``, ``confusion.csv`` and
``run.json`` into ``settings.out_dir``, then the run's manifest. The monitor is optional:
when ``diagnosenet.monitor`` is missing the run still completes and says so in ``run.json``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from diagnosenet import metrics, slurm
from diagnosenet.artifacts import write_json, write_manifest
from diagnosenet.training.settings import TrainSettings

log = logging.getLogger(__name__)
STAGE = "train"
MONITOR_DIR = "monitor"


def monitor_for(settings: TrainSettings, name: str, pids: Sequence[int] | None = None):
    """``(context manager, status)``: a sampler writing ``monitor/<name>.csv``, or a no-op."""
    if settings.monitor_rate_hz <= 0:
        return contextlib.nullcontext(), "monitor disabled (rate 0)"
    try:
        from diagnosenet.monitor import Monitor
    except ImportError as exc:
        return contextlib.nullcontext(), f"monitor unavailable: {exc}"
    path = settings.out_dir / MONITOR_DIR / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    return Monitor(path, pids=list(pids or [os.getpid()]), rate_hz=settings.monitor_rate_hz), f"sampled at {settings.monitor_rate_hz} Hz"


def _energy(out_dir: Path, best_epoch: int) -> dict:
    csvs = sorted((out_dir / MONITOR_DIR).glob("*.csv"))
    if not csvs:
        return {"status": "no monitor samples"}
    try:
        from diagnosenet.monitor.energy import run_energy
    except ImportError as exc:
        return {"status": f"monitor unavailable: {exc}"}
    return run_energy(csvs, out_dir / "track.csv", best_epoch)


def _versions() -> dict:
    versions = {"python": sys.version.split()[0], "numpy": np.__version__}
    for name in ("tensorflow", "mpi4py", "scipy", "sklearn"):
        module = sys.modules.get(name)  # report what the run used; import nothing new
        if module is not None:
            versions[name] = getattr(module, "__version__", "unknown")
    return versions


def _hardware() -> dict:
    info = {"machine": platform.machine(), "system": platform.system(), "processor": platform.processor(),
            "cpu_count": os.cpu_count()}
    with contextlib.suppress(ImportError):
        import psutil

        info["memory_bytes"] = psutil.virtual_memory().total
    return info


def training_devices() -> list[str]:
    """The devices the process that finalises the run trained on: TensorFlow's GPUs when it
    sees any (it places work on them by itself), else ``["cpu"]`` (the NumPy backend too).
    TensorFlow is asked only when the run already imported it."""
    tf = sys.modules.get("tensorflow")
    gpus = tf.config.list_logical_devices("GPU") if tf is not None else []
    return [d.name for d in gpus] or ["cpu"]


def _write_test_predictions(settings: TrainSettings, out: Path, proba: np.ndarray, y: np.ndarray,
                            classes: Sequence[str]) -> None:
    """The test split's probabilities per row (``test_proba.npy``, what an export must reproduce)
    and per record / stay (``test_predictions.csv``: ECG windows averaged per record, as scored;
    PMSI stays under their pseudonyms)."""
    from diagnosenet.datasets.materialise import load_split
    from diagnosenet.predict.table import rows_by_group, write_predictions

    np.save(out / "test_proba.npy", np.asarray(proba, np.float32))
    groups = load_split(settings.dataset_dir, "test")[2]
    rows, _, _ = rows_by_group(groups, y, proba, classes)
    write_predictions(out / "test_predictions.csv", rows, classes)


def finalise_run(settings: TrainSettings, proba_test: np.ndarray, y_test: np.ndarray, classes: Sequence[str],
                 progress_summary: dict) -> dict:
    """Write the run's metrics files and manifest; return the ``metrics.json`` content."""
    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    groups = None
    if settings.task == "ecg":  # windows -> records for the challenge's record-level score
        from diagnosenet.datasets.materialise import load_split

        groups = load_split(settings.dataset_dir, "test")[2]
        if len(groups) != len(y_test):
            raise ValueError(f"{settings.dataset_dir}/test has {len(groups)} rows, {len(y_test)} were scored")
    scores = metrics.score_task(settings.task, y_test, proba_test, classes, groups)
    summary = dict(progress_summary)
    summary.setdefault("energy", _energy(out, int(summary.get("best_epoch", 0))))
    result = {"task": settings.task, "mode": settings.mode, "workers": settings.workers, **scores, **summary,
              "devices": training_devices()}
    job = slurm.record()
    if job:   # the Slurm job that ran it; the node of every rank/task is in mpi.hosts / hosts
        result["slurm"] = job
    write_json(out / "metrics.json", result)
    _write_test_predictions(settings, out, proba_test, y_test, classes)
    metrics.write_per_class_csv(out / "per_class.csv", scores["per_class"])
    metrics.write_confusion_csv(out / "confusion.csv", scores["confusion"], classes)
    write_json(out / "run.json", {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(settings).items()},
        "hardware": _hardware(), "versions": _versions(),
        "monitor": summary.get("monitor", "not recorded"),
    })
    files = [p.relative_to(out).as_posix() for p in sorted(out.rglob("*"))
             if p.is_file() and p.name != "manifest.json" and not p.name.startswith(".")
             and not {"checkpoint", "launch"} & set(p.relative_to(out).parts)]   # resume and launch-mpi state
    write_manifest(out, stage=STAGE, files=files,
                   params={"task": settings.task, "mode": settings.mode, "workers": settings.workers,
                           "seed": settings.seed, "batch_size": settings.batch_size})
    log.info("%s %s-w%d: accuracy %.4f, macro F1 %.4f", settings.task, settings.mode, settings.workers,
             result["accuracy"], result["macro_f1"])
    return result
