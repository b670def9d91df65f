"""What a run learned from, and how its inputs were made, read from the run's own files.

A run directory holds ``run.json`` (its settings, among them the data set directory); the
data set's manifest names its source stage directory, whose manifest holds the preprocessing
parameters (ECG: detector, window geometry, normalisation; PMSI: descriptor groups) and, for
PMSI, the vocabulary. ``predict`` reads them here so that new records go through exactly the
preprocessing the model was trained with.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from diagnosenet.artifacts import read_json


@dataclass
class Lineage:
    task: str
    classes: list[str]
    input_size: int
    model: dict
    #: ECG: detector, window, per_sample, stride, normalisation, record_features, sample_rule, variant; PMSI: groups
    preprocessing: dict
    #: PMSI: feature name -> column
    vocabulary: dict[str, int] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"task": self.task, "classes": self.classes, "input_size": self.input_size, "model": self.model,
                "preprocessing": self.preprocessing, "vocabulary": self.vocabulary}

    @classmethod
    def from_json(cls, data: dict) -> "Lineage":
        return cls(task=data["task"], classes=list(data["classes"]), input_size=int(data["input_size"]),
                   model=dict(data["model"]), preprocessing=dict(data["preprocessing"]),
                   vocabulary={k: int(v) for k, v in (data.get("vocabulary") or {}).items()})


def _resolve(path: str, base: Path) -> Path:
    """A path recorded by a stage: absolute, or relative to the directory Snakemake ran in."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    for parent in [base, *base.parents]:
        if (parent / p).exists():
            return parent / p
    return p


def ecg_preprocessing(window_params: dict, variant: str = "") -> dict:
    """What ``predict`` must repeat of a ``window-ecg`` run, from its manifest's params (runs
    made before ``record_features`` and ``sample_rule`` existed get those options' old behaviour)."""
    preprocessing = {key: window_params[key] for key in ("detector", "window", "per_sample", "stride", "normalisation")}
    preprocessing["record_features"] = bool(window_params.get("record_features", False))
    preprocessing["sample_rule"] = window_params.get("sample_rule", "all-peaks")
    preprocessing["variant"] = variant
    return preprocessing


def from_run(run_dir: str | Path) -> Lineage:
    """The lineage of a finished training run."""
    run_dir = Path(run_dir)
    settings = read_json(run_dir / "run.json")["settings"]
    dataset = _resolve(settings["dataset_dir"], run_dir)
    manifest = read_json(dataset / "manifest.json")
    source = _resolve(manifest["source"]["dir"], run_dir)
    source_manifest = read_json(source / "manifest.json")
    classes = read_json(dataset / "classes.json")
    params = dict(source_manifest.get("params") or {})
    task = settings["task"]
    if task == "ecg":
        preprocessing = ecg_preprocessing(params, variant=(manifest.get("params") or {}).get("variant", ""))
        vocabulary = {}
    else:
        preprocessing = {"groups": params.get("groups")}
        vocabulary = {name: int(entry["column"]) for name, entry in read_json(source / "vocabulary.json").items()}
    n_features = manifest["n_features"]
    return Lineage(task=task, classes=list(classes), input_size=int(n_features if isinstance(n_features, int)
                                                                        else n_features[0]),
                   model=dict(settings.get("model") or {}), preprocessing=preprocessing, vocabulary=vocabulary,
                   settings=settings,
                   data={"dataset_dir": str(dataset), "source_dir": str(source), "rows": manifest.get("rows"),
                         "source_counts": source_manifest.get("counts"),
                         "dataset_manifest_sha256": _sha256(dataset / "manifest.json")})


def _sha256(path: Path) -> str:
    from diagnosenet.artifacts import sha256_file

    return sha256_file(path)
