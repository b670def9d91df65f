"""``diagnosenet export``: a model directory usable without this package, with its model card.

The directory holds a TensorFlow SavedModel whose ``serving_default`` signature takes the
model's input (``x``: float32 ``[batch, 1300]`` ECG samples of 5 R-centred 260-sample windows,
or ``[batch, features]`` PMSI rows, dense) and returns ``probabilities``; ``lineage.json`` (the
preprocessing and, for PMSI, the vocabulary: what ``predict`` needs); and the model card
(``model_card.md`` and ``model_card.json``): task, classes, input and preprocessing, training
data, mode and workers, test scores, time and energy to the best epoch, software versions,
intended use and limits.
"""
from __future__ import annotations

import csv
import json
import platform
from pathlib import Path

from diagnosenet.artifacts import read_json, sha256_file, write_json
from diagnosenet.predict.lineage import from_run
from diagnosenet.predict.model import LINEAGE_FILE, run_replica

INTENDED_USE = ("Research use only: reproducing and studying the DiagnoseNET workflow (García, Precioso, "
                "Staccini, Riveill). Not a medical device; not validated for diagnosis or any clinical decision.")
LIMITS = {
    "ecg": "Single-lead 300 Hz AliveCor-like recordings of the PhysioNet/CinC 2017 challenge; other devices, "
           "sampling rates or leads are out of scope. Records that cannot be windowed are reported as noisy.",
    "pmsi": "French SSR RHS M05 summaries coded like the training hospital's; codes unseen in training are "
            "ignored (and counted). Trained on the data set named below, which may be synthetic.",
}


def export(run_dir: str | Path, out: str | Path) -> dict:
    """Write the export of ``run_dir`` into ``out``; return the model card."""
    import tensorflow as tf

    run_dir, out = Path(run_dir), Path(out)
    lineage = from_run(run_dir)
    replica = run_replica(run_dir, lineage)
    if not hasattr(replica, "graph"):
        raise ValueError(f"{run_dir}: a NumPy-backend run cannot be exported as a SavedModel")
    graph = replica.graph

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.graph = graph

        @tf.function(input_signature=[tf.TensorSpec([None, lineage.input_size], tf.float32, name="x")])
        def serve(self, x):
            return {"probabilities": tf.nn.softmax(self.graph(x, training=False))}

    module = Serving()
    out.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve})
    write_json(out / LINEAGE_FILE, lineage.to_json())
    card = model_card(run_dir, lineage)
    write_json(out / "model_card.json", card)
    (out / "model_card.md").write_text(model_card_markdown(card), encoding="utf-8")
    return card


def _class_counts(dataset_dir: Path) -> dict:
    path = dataset_dir / "class_table.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as handle:
        return {row["class"]: {k: v for k, v in row.items() if k != "class"} for row in csv.DictReader(handle)}


def model_card(run_dir: Path, lineage) -> dict:
    metrics = read_json(run_dir / "metrics.json")
    run = read_json(run_dir / "run.json")
    energy = metrics.get("energy") or {}
    scores = {k: metrics.get(k) for k in ("accuracy", "macro_f1", "challenge_f1") if metrics.get(k) is not None}
    if metrics.get("record_level"):
        scores["record_level"] = {k: v for k, v in metrics["record_level"].items()
                                  if k in ("accuracy", "macro_f1", "challenge_f1")}
    return {
        "task": lineage.task,
        "classes": lineage.classes,
        "input": {"name": "x", "dtype": "float32", "shape": [None, lineage.input_size],
                  "description": ("5 R-peak-centred 260-sample windows, concatenated (300 Hz)"
                                  if lineage.task == "ecg" else "first-week PMSI feature row (dense; see lineage.json "
                                                                 "vocabulary)")},
        "output": {"name": "probabilities", "shape": [None, len(lineage.classes)]},
        "preprocessing": lineage.preprocessing,
        "training_data": {"dataset_manifest_sha256": lineage.data.get("dataset_manifest_sha256"),
                          "rows": lineage.data.get("rows"), "class_counts": _class_counts(Path(lineage.data["dataset_dir"])),
                          "source_counts": lineage.data.get("source_counts")},
        "training": {"mode": metrics.get("mode"), "workers": metrics.get("workers"), "model": lineage.model,
                     "best_epoch": metrics.get("best_epoch"), "epochs_run": metrics.get("epochs_run"),
                     "time_to_best_s": metrics.get("time_to_best_s"),
                     "energy_to_best_j": energy.get("joules_to_best"), "energy_status": energy.get("status")},
        "test_scores": scores,
        "software": {**(run.get("versions") or {}), "python": platform.python_version()},
        "checkpoint_sha256": sha256_file(run_dir / "checkpoint" / "best.npz"),
        "intended_use": INTENDED_USE,
        "limits": LIMITS.get(lineage.task, ""),
    }


def model_card_markdown(card: dict) -> str:
    def block(value) -> str:
        return "```json\n" + json.dumps(value, indent=2, sort_keys=True) + "\n```"

    t = card["training"]
    lines = [f"# Model card: DiagnoseNET {card['task']} model", "",
             f"**Intended use.** {card['intended_use']}", "", f"**Limits.** {card['limits']}", "",
             "## Task and classes", "", f"{card['task']}: {', '.join(card['classes'])}", "",
             "## Input and preprocessing", "",
             f"`{card['input']['name']}`: {card['input']['dtype']} {card['input']['shape']} — "
             f"{card['input']['description']}; output `probabilities` {card['output']['shape']}.", "",
             block(card["preprocessing"]), "",
             "## Training data", "", block(card["training_data"]), "",
             "## Training", "",
             f"Mode {t['mode']} with {t['workers']} worker(s); best epoch {t['best_epoch']} of {t['epochs_run']}, "
             f"reached after {t['time_to_best_s']} s; energy to the best epoch: {t['energy_to_best_j']} J "
             f"({t['energy_status']}).", "", block(t["model"]), "",
             "## Scores on the test split", "", block(card["test_scores"]), "",
             "## Software", "", block(card["software"]), "",
             f"Checkpoint sha256: `{card['checkpoint_sha256']}`", ""]
    return "\n".join(lines)
