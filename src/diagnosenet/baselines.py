"""Non-neural baselines the networks must beat, scored with the same metrics.

PMSI: multinomial logistic regression on the sparse stay x feature matrix (no densifying).
ECG: whole-record features (``ecg-features``: RR irregularity over the whole record,
template morphology, the atrial residual, spectra; ecg/features.py) classified by histogram
gradient boosting, one decision per record, scored on the nets' test records and fitted on
every featurised record outside them. It reaches official F1 0.83 on
the 300 challenge validation records (docs/ecg-quality.md), so a net has to earn its place.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from diagnosenet import metrics
from diagnosenet.artifacts import write_json, write_manifest

#: whole-record ECG feature models (ecg/features.py), compared by record-level CV in
#: bench/bench_ecg_quality.py; `models.ecg_features` names the one rule `baseline` fits (paper config: `gbm-bag`)
ECG_FEATURE_MODELS = ("logistic", "gbm", "gbm-balanced", "cascade", "cascade-unweighted", "gbm-weighted",
                      "gbm-sqrt-balanced", "gbm-sqrt-balanced-weighted", "gbm-bag",
                      "gbm-bag-weighted")


#: what the report calls each feature model
ECG_MODEL_NAMES = {"logistic": "logistic regression", "gbm": "gradient boosting",
                   "gbm-balanced": "gradient boosting (balanced)",
                   "cascade": "gradient boosting, noise model and CV decision weights",
                   "cascade-unweighted": "gradient boosting and noise model",
                   "gbm-weighted": "gradient boosting and CV decision weights",
                   "gbm-sqrt-balanced": "gradient boosting, square-root class balance",
                   "gbm-sqrt-balanced-weighted": "gradient boosting, square-root class balance and CV decision weights",
                   "gbm-bag": "3 gradient boosters on random halves of the features, square-root class balance, "
                              "rounds chosen by CV",
                   "gbm-bag-weighted": "3 gradient boosters on random halves of the features, square-root class balance, "
                                       "rounds and decision weights chosen by CV"}


def ecg_feature_model(name: str = "gbm", seed: int = 1):
    """A scikit-learn classifier of whole-record features (NaN = undefined feature).

    ``logistic``: median imputation, standardisation, multinomial logistic regression with
    balanced class weights. ``gbm``: histogram gradient boosting (NaN handled natively), small
    trees, shrinkage 0.05, 300 rounds, L2 1.0; ``gbm-balanced``: the same with class weights
    inversely proportional to class frequency (AF is 9 % of the records). ``cascade``: the
    gbm with a dedicated noise model and decision weights chosen by CV inside ``fit``
    (ecg/classifier.py); ``cascade-unweighted`` without the weights, ``gbm-weighted`` without
    the noise model. ``gbm-sqrt-balanced``: the gbm with each record weighted by
    (n_largest_class / n_its_class) ** 0.5, fixed a priori; ``gbm-sqrt-balanced-weighted`` adds the
    CV decision weights. ``gbm-bag``: three such boosters (31 leaves), each splitting on a random half
    of the features at every node, averaged, with the number of rounds (50 … 250) chosen by
    4-fold CV inside ``fit`` (ecg/classifier.py); ``gbm-bag-weighted`` adds decision weights
    maximising the official F1 on the same inner CV's probabilities."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    if name == "logistic":
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                             LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000, random_state=seed))
    if name in ("gbm", "gbm-balanced"):
        return HistGradientBoostingClassifier(learning_rate=0.05, max_iter=300, max_leaf_nodes=15, l2_regularization=1.0,
                                              class_weight="balanced" if name == "gbm-balanced" else None,
                                              early_stopping=False, random_state=seed)
    if name in ("gbm-sqrt-balanced", "gbm-sqrt-balanced-weighted"):
        from diagnosenet.ecg.classifier import RecordClassifier

        return RecordClassifier(noise_model=False, tune_weights=name.endswith("-weighted"), class_weight_power=0.5,
                                random_state=seed)
    if name in ("gbm-bag", "gbm-bag-weighted"):
        from diagnosenet.ecg.classifier import RecordClassifier

        weighted = name.endswith("-weighted")
        return RecordClassifier(noise_model=False, tune_weights=weighted,
                                weights_objective="official" if weighted else "four_class", class_weight_power=0.5,
                                n_boosters=3, max_features=0.5, max_leaf_nodes=31, max_iter=250,
                                rounds_grid=(50, 100, 150, 200, 250), random_state=seed)
    if name in ("cascade", "cascade-unweighted", "gbm-weighted"):
        from diagnosenet.ecg.classifier import RecordClassifier

        return RecordClassifier(noise_model=name != "gbm-weighted", tune_weights=name != "cascade-unweighted",
                                random_state=seed)
    raise ValueError(f"unknown ECG feature model {name!r}; choose from {ECG_FEATURE_MODELS}")


def _proba(model, X, n_classes: int) -> np.ndarray:
    proba = np.zeros((X.shape[0], n_classes))
    proba[:, model.classes_] = model.predict_proba(X)
    return proba


def _pmsi_inputs(dataset_dir: Path):
    """Rows of train+valid (fit) and test, as materialised."""
    import scipy.sparse as sp

    from diagnosenet.datasets.materialise import load_split

    parts = [load_split(dataset_dir, split, verify=split == "train") for split in ("train", "valid")]
    X_train = sp.vstack([p[0] for p in parts]).tocsr() if sp.issparse(parts[0][0]) else np.concatenate([p[0] for p in parts])
    return X_train, np.concatenate([p[1] for p in parts]), *load_split(dataset_dir, "test")


def _ecg_record_inputs(dataset_dir: Path, features_dir: Path):
    """Feature rows for fitting and for the test split's records (the nets' test records).

    The fit uses every featurised record outside the test split: those of train+valid, and
    also those the windowing stage could not use (too few beats: mostly noisy records, which
    the feature model can still learn from). A test record without a feature row (quarantined
    by ``ecg-features`` only) is kept with NaN features, so it is still scored."""
    from diagnosenet.datasets.materialise import load_split
    from diagnosenet.datasets.splits import group_labels
    from diagnosenet.ecg.feature_table import load_features

    features, labels, records = load_features(features_dir)
    _, y_test_rows, groups_test = load_split(dataset_dir, "test")
    test_names, y_test, _ = group_labels(y_test_rows, groups_test)
    row_of = {name: k for k, name in enumerate(records.tolist())}
    X_test = np.full((len(test_names), features.shape[1]), np.nan)
    found = [k for k, name in enumerate(test_names) if name in row_of]
    X_test[found] = features[[row_of[test_names[k]] for k in found]]
    fit = ~np.isin(records, test_names)
    return features[fit], labels[fit], X_test, y_test, test_names


def run_baseline(task: str, dataset_dir: str | Path, out_dir: str | Path, *, seed: int = 1,
                 features_dir: str | Path | None = None, ecg_model: str = "gbm") -> dict:
    """Fit on everything outside the test split, score on test; write metrics.json,
    per_class.csv, confusion.csv.

    ECG needs ``features_dir`` (an ``ecg-features`` directory of the same records)."""
    from diagnosenet.datasets.materialise import load_classes

    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = load_classes(dataset_dir)
    if task == "pmsi":
        from sklearn.linear_model import LogisticRegression

        X_train, y_train, X_test, y_test, groups_test = _pmsi_inputs(dataset_dir)
        model, name = LogisticRegression(max_iter=1000, random_state=seed), "multinomial logistic regression"
    elif task == "ecg":
        if features_dir is None:
            raise ValueError("the ECG baseline needs --features (an ecg-features directory of the same records)")
        X_train, y_train, X_test, y_test, groups_test = _ecg_record_inputs(dataset_dir, Path(features_dir))
        model, name = ecg_feature_model(ecg_model, seed), f"whole-record features + {ECG_MODEL_NAMES[ecg_model]}"
    else:
        raise ValueError(f"task must be 'pmsi' or 'ecg', got {task!r}")
    model.fit(X_train, y_train)
    proba = _proba(model, X_test, len(classes))
    result = {"task": task, "model": name, "n_train": int(len(y_train)),
              **metrics.score_task(task, y_test, proba, classes, groups_test)}
    write_json(out_dir / "metrics.json", result)
    metrics.write_per_class_csv(out_dir / "per_class.csv", result["per_class"])
    metrics.write_confusion_csv(out_dir / "confusion.csv", result["confusion"], classes)
    files = ["metrics.json", "per_class.csv", "confusion.csv"]
    if task == "ecg":  # the best ECG model so far: keep it usable by `diagnosenet predict`
        files += save_feature_model(out_dir, model, name, classes, Path(features_dir), dataset_dir)
    write_manifest(out_dir, stage="baseline", files=files,
                   params={"task": task, "seed": seed, "features_dir": str(features_dir) if features_dir else None,
                           **({"ecg_model": ecg_model} if task == "ecg" else {})})
    return result


#: the fitted feature model and what ``predict`` needs to rebuild its input
FEATURE_MODEL_FILE, FEATURE_LINEAGE_FILE = "model.joblib", "lineage.json"


def save_feature_model(out_dir: Path, model, name: str, classes: list[str], features_dir: Path,
                       dataset_dir: Path) -> list[str]:
    """``model.joblib`` + ``lineage.json`` (input: the record features of the same detector)."""
    import joblib

    from diagnosenet.artifacts import read_json
    from diagnosenet.ecg.features import FEATURE_NAMES
    from diagnosenet.predict.lineage import Lineage

    params = read_json(features_dir / "manifest.json").get("params") or {}
    joblib.dump(model, out_dir / FEATURE_MODEL_FILE)
    lineage = Lineage(task="ecg", classes=list(classes), input_size=len(FEATURE_NAMES), model={"kind": name},
                      preprocessing={"input": "record-features", "detector": params.get("detector", "xqrs"),
                                     "features": list(FEATURE_NAMES)},
                      data={"dataset_dir": str(dataset_dir), "features_dir": str(features_dir)})
    write_json(out_dir / FEATURE_LINEAGE_FILE, lineage.to_json())
    return [FEATURE_MODEL_FILE, FEATURE_LINEAGE_FILE]
