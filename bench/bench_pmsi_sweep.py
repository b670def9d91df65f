"""PMSI MLP vs tuned logistic regression vs the generator's Bayes limit, selected on validation only.

Inputs: a materialised PMSI data set and one-worker shards under ``--root`` (``dataset/``,
``shards/w1-b{B}/``), plus the generator's ``posterior.csv`` and the compose salt for the Bayes
numbers. Every choice is made on the validation split; the test split is read once per
reported model. Sub-commands (results go to a JSON or JSON-lines file under ``--root``)::

    R=bench/out/pmsi-mlp B=bench/out/pmsi-116831-2020
    P=".venv/bin/python bench/bench_pmsi_sweep.py --root $R"
    $P bayes --raw $B/raw --salt-file $B/bench.salt    # bayes.json: Bayes limit on each split
    $P logistic                                        # logistic.json: C chosen on valid, test once
    $P logistic --binarise-rehab                       # the same with CdARR counts as 0/1 flags
    $P logistic --binarise-rehab --oracle-columns      # ... on the generator's informative columns only
    $P mlp --config '{"name": "w256", "hidden_units": [256, 256], "dropout_keep": 0.8, "lr": 0.001, "batch_size": 128}'
    $P choose                                          # best validation accuracy -> its test scores
    $P l2-probe --l2 1e-5 --config '{...}'             # the same MLP + L2 on the input kernel (not an option yet)

Diagnostics (not candidates: other feature sets): ``columns --which oracle|min-count`` writes a
composed directory with a subset of the columns (same rows, labels and groups, so ``materialise``
with the same seed gives the same split); train on it with ``--root`` pointing elsewhere.

``mlp`` runs ``diagnosenet train-desktop`` in a child process (``runs/<name>/``) and records only
validation numbers in ``sweep.jsonl``; the run's own ``metrics.json`` holds test scores too,
which ``choose`` reads for the selected configuration alone.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REHAB_PREFIX = "rehabilitation_time."


def sampling_sd(accuracy: float, n: int) -> float:
    """1 s.d. of an accuracy measured on ``n`` independent rows."""
    return math.sqrt(accuracy * (1 - accuracy) / n)


def _load(root: Path, split: str):
    from diagnosenet.datasets.materialise import load_split

    return load_split(root / "dataset", split)


def cmd_bayes(args) -> dict:
    """Bayes limit on each split: mean max posterior (expected accuracy of the Bayes classifier)
    and the accuracy of argmax posterior against the drawn labels of that split's stays."""
    from diagnosenet.privacy import load_or_create_salt, pseudonymise

    salt = load_or_create_salt(args.salt_file)
    posterior = {}
    with open(args.raw / "posterior.csv", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            posterior[pseudonymise(row[0], salt)] = np.array(row[1:], dtype=float)
    out = {"all_stays": json.loads((args.raw / "bayes.json").read_text())["bayes_accuracy"]}
    for split in ("train", "valid", "test"):
        _, y, groups = _load(args.root, split)
        p = np.stack([posterior[g] for g in groups])
        expected, realised = float(p.max(axis=1).mean()), float((p.argmax(axis=1) == y).mean())
        out[split] = {"n": int(len(y)), "expected": expected, "argmax_posterior_accuracy": realised,
                      "sd": sampling_sd(realised, len(y))}
    return out


def _rehab_binarised(X, columns):
    X = X.tocsc(copy=True)
    for j in columns:
        X.data[X.indptr[j]:X.indptr[j + 1]] = 1.0
    return X.tocsr()


def oracle_columns(vocabulary: dict) -> list[int]:
    """Columns the generator's label model reads (diagnostic only: a real data set has no such list).

    Class-dependent clinical variables: age band, sex, admission, unit authorisation (specialty),
    surgery, dependence, presence of each CdARR category, the signal DAS codes, FPP and the
    class-profile MMP/AE codes; the long tails, acts, residence, exits and presence days are out.
    """
    from diagnosenet.pmsi import synth

    tables = synth.model()
    codes = {"comorbidities.das": set(tables["bernoulli"]["das"][0]),
             "morbidity.mmp": set(tables["categorical"]["mmp"][0]),
             "aetiology.ae": set(tables["categorical"]["ae"][0])}
    prefixes = ("demographics.age=", "demographics.sex=", "admission.", "hospitalisation.unit_authorisation=",
                "physical_dependence.", "cognitive_dependence.", "rehabilitation_time.category=", "morbidity.fpp=")
    keep = []
    for name, entry in vocabulary.items():
        field, _, value = name.partition("=")
        if name.startswith(prefixes) or name == "hospitalisation.surgery" or value in codes.get(field, ()):
            keep.append(entry["column"])
    return sorted(keep)


def cmd_logistic(args) -> dict:
    """Multinomial logistic regression (the pipeline's baseline model): C chosen on validation
    (fit on train), then refit on train+valid at that C (as ``diagnosenet baseline`` does) and
    scored once on test."""
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    from diagnosenet import metrics
    from diagnosenet.datasets.materialise import load_classes

    (Xtr, ytr, _), (Xva, yva, _), (Xte, yte, _) = (_load(args.root, s) for s in ("train", "valid", "test"))
    vocabulary = json.loads((args.composed / "vocabulary.json").read_text())
    if args.binarise_rehab:
        columns = [e["column"] for name, e in vocabulary.items() if name.startswith(REHAB_PREFIX)]
        Xtr, Xva, Xte = (_rehab_binarised(X, columns) for X in (Xtr, Xva, Xte))
    if args.oracle_columns:
        keep = oracle_columns(vocabulary)
        Xtr, Xva, Xte = (X[:, keep] for X in (Xtr, Xva, Xte))
    grid = []
    for C in args.C:
        tic = time.time()
        model = LogisticRegression(C=C, max_iter=args.max_iter, random_state=1).fit(Xtr, ytr)
        acc = float((model.predict(Xva) == yva).mean())
        grid.append({"C": C, "valid_accuracy": acc, "iterations": int(np.max(model.n_iter_)),
                     "fit_seconds": time.time() - tic})
        print(json.dumps(grid[-1]), flush=True)
    best = max(grid, key=lambda g: g["valid_accuracy"])
    tic = time.time()
    model = LogisticRegression(C=best["C"], max_iter=args.max_iter, random_state=1).fit(
        sp.vstack([Xtr, Xva]).tocsr(), np.concatenate([ytr, yva]))
    classes = load_classes(args.root / "dataset")
    proba = np.zeros((Xte.shape[0], len(classes)))
    proba[:, model.classes_] = model.predict_proba(Xte)
    scores = metrics.score_task("pmsi", yte, proba, classes, None)
    return {"binarise_rehab": args.binarise_rehab, "oracle_columns": args.oracle_columns,
            "n_features": int(Xte.shape[1]), "grid": grid, "chosen_C": best["C"],
            "refit_seconds": time.time() - tic, "test_accuracy": scores["accuracy"],
            "test_macro_f1": scores["macro_f1"], "n_test": int(len(yte)),
            "test_sd": sampling_sd(scores["accuracy"], len(yte))}


def cmd_columns(args) -> dict:
    """A composed directory holding only some columns: the generator's informative ones
    (``oracle``), or those non-zero in at least ``--min-count`` rows of the training split."""
    import scipy.sparse as sp

    vocabulary = json.loads((args.composed / "vocabulary.json").read_text())
    if args.which == "oracle":
        keep = oracle_columns(vocabulary)
    else:
        X_train, _, _ = _load(args.root, "train")
        keep = np.flatnonzero(np.diff(X_train.tocsc().indptr) >= args.min_count).tolist()
    args.out.mkdir(parents=True, exist_ok=True)
    X = sp.load_npz(args.composed / "X.npz").tocsc()[:, keep].tocsr()
    sp.save_npz(args.out / "X.npz", X, compressed=True)
    for name in ("y.npy", "groups.npy", "classes.json"):
        (args.out / name).write_bytes((args.composed / name).read_bytes())
    by_column = {e["column"]: name for name, e in vocabulary.items()}
    (args.out / "vocabulary.json").write_text(json.dumps(
        {by_column[j]: {"column": i, "group": by_column[j].split(".", 1)[0]} for i, j in enumerate(keep)}))
    from diagnosenet.artifacts import write_manifest

    result = {"which": args.which, "min_count": args.min_count, "columns": len(keep), "source": str(args.composed)}
    write_manifest(args.out, stage="compose-pmsi", files=["X.npz", "y.npy", "groups.npy", "classes.json",
                                                           "vocabulary.json"], params=result)
    return {**result, "out": str(args.out)}


def cmd_mlp(args) -> dict:
    config = json.loads(args.config)
    name = config.pop("name")
    lr, batch = float(config.pop("lr", 1e-3)), int(config.pop("batch_size", 128))
    run = args.root / "runs" / name
    run.mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).with_name("diagnosenet")), "train-desktop", "--task", "pmsi",
               "--dataset", str(args.root / "dataset"), "--shards", str(args.root / "shards" / f"w1-b{batch}"),
               "--out", str(run), "--model-json", json.dumps(config), "--max-epochs", str(args.max_epochs),
               "--patience", str(args.patience), "--lr", str(lr), "--batch-size", str(batch),
               "--monitor-rate", "0"]
    tic = time.time()
    with open(run / "train.log", "w") as log:  # the log names the test accuracy: not printed here
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    wall = time.time() - tic
    result = json.loads((run / "metrics.json").read_text())
    with open(run / "track.csv", newline="") as handle:
        track = list(csv.DictReader(handle))
    best = next(row for row in track if int(row["epoch"]) == int(result["best_epoch"]))
    row = {"name": name, **config, "lr": lr, "batch_size": batch, "n_params": result["n_params"],
           "best_epoch": int(result["best_epoch"]), "epochs_run": len(track),
           "valid_accuracy": float(best["valid_metric"]), "valid_loss": float(best["valid_loss"]),
           "valid_accuracy_max": max(float(r["valid_metric"]) for r in track),
           "train_seconds": float(result["train_seconds"]), "wall_seconds": wall,
           "command": " ".join(command)}
    with open(args.root / "sweep.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")
    return row


def cmd_choose(args) -> dict:
    rows = [json.loads(line) for line in (args.root / "sweep.jsonl").read_text().splitlines() if line.strip()]
    chosen = max(rows, key=lambda r: (r["valid_accuracy"], -r["valid_loss"]))
    result = json.loads((args.root / "runs" / chosen["name"] / "metrics.json").read_text())
    return {"chosen": chosen, "test_accuracy": result["accuracy"], "test_macro_f1": result["macro_f1"],
            "n_test": result["n_test"], "test_sd": sampling_sd(result["accuracy"], result["n_test"])}


def cmd_l2_probe(args) -> dict:
    """What a missing option would buy: the same MLP (project graph, Adam, dropout) with
    ``l2 * sum(W1 ** 2)`` of the first (input) kernel added to the loss. A probe, not a candidate:
    ``models.pmsi`` has no such key. Early stopping on validation loss as in the pipeline;
    validation numbers only (``--test`` scores the best epoch's weights on test once)."""
    import tensorflow as tf

    from diagnosenet.datasets.materialise import load_classes
    from diagnosenet.models.graphs import build_graph
    from diagnosenet.models.optim import Adam
    from diagnosenet.models.tensorflow_backend import TFReplica
    from diagnosenet.training.progress import EarlyStopping

    config = json.loads(args.config)
    name = config.pop("name")
    lr, batch = float(config.pop("lr", 1e-3)), int(config.pop("batch_size", 128))
    (Xtr, ytr, _), (Xva, yva, _) = (_load(args.root, s) for s in ("train", "valid"))
    classes = load_classes(args.root / "dataset")
    tf.random.set_seed(1)
    graph = build_graph("pmsi", config, Xtr.shape[1], len(classes), seed=1)
    graph.optimizer = Adam(lr=lr)
    l2 = float(args.l2)

    class L2Replica(TFReplica):
        def _loss(self, x, y):
            loss, logits = super()._loss(x, y)
            return loss + l2 * tf.reduce_sum(tf.square(self.variables[0])), logits

    replica = L2Replica(graph)
    stopper, rng, track, best_state = EarlyStopping(args.patience), np.random.default_rng(1), [], None
    tic = time.time()
    for epoch in range(1, args.max_epochs + 1):
        order = rng.permutation(len(ytr))
        for lo in range(0, len(order), batch):
            index = np.sort(order[lo:lo + batch])
            replica.train_step(Xtr[index], ytr[index])
        proba = replica.predict_proba(Xva)
        loss = float(-np.log(np.maximum(proba[np.arange(len(yva)), yva], 1e-12)).mean())
        track.append({"epoch": epoch, "valid_loss": loss, "valid_accuracy": float((proba.argmax(1) == yva).mean()),
                      "seconds": time.time() - tic})
        print(json.dumps(track[-1]), flush=True)
        if stopper.update(loss):
            best_state = replica.get_state()
        if stopper.should_stop:
            break
    best = track[stopper.best_epoch - 1]
    row = {"name": name, **config, "lr": lr, "batch_size": batch, "l2": l2, "best_epoch": stopper.best_epoch,
           "epochs_run": len(track), "valid_accuracy": best["valid_accuracy"], "valid_loss": best["valid_loss"],
           "train_seconds": time.time() - tic}
    if args.test:
        from diagnosenet import metrics

        replica.set_state(best_state)
        Xte, yte, _ = _load(args.root, "test")
        scores = metrics.score_task("pmsi", yte, replica.predict_proba(Xte), classes, None)
        row.update(test_accuracy=scores["accuracy"], test_macro_f1=scores["macro_f1"],
                   test_sd=sampling_sd(scores["accuracy"], len(yte)))
    with open(args.root / "l2-probe.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("bench/out/pmsi-mlp"))
    sub = parser.add_subparsers(dest="command", required=True)
    bayes = sub.add_parser("bayes")
    bayes.add_argument("--raw", type=Path, required=True, help="synth-pmsi output (posterior.csv, bayes.json)")
    bayes.add_argument("--salt-file", type=Path, required=True, help="the salt compose-pmsi used")
    logistic = sub.add_parser("logistic")
    logistic.add_argument("--C", type=float, nargs="+", default=[0.03, 0.1, 0.3, 1.0, 3.0])
    logistic.add_argument("--max-iter", type=int, default=1000)
    logistic.add_argument("--binarise-rehab", action="store_true",
                          help="CdARR occurrence counts -> presence flags (diagnostic: the generator's "
                               "label depends on a category's presence, the features carry its count)")
    logistic.add_argument("--oracle-columns", action="store_true",
                          help="keep only the columns the generator's label model reads (diagnostic)")
    logistic.add_argument("--composed", type=Path, default=Path("bench/out/pmsi-116831-2020/composed"))
    mlp = sub.add_parser("mlp")
    mlp.add_argument("--config", required=True, help="JSON: name, hidden_units, dropout_keep, lr, batch_size")
    mlp.add_argument("--max-epochs", type=int, default=40)
    mlp.add_argument("--patience", type=int, default=3)
    sub.add_parser("choose")
    probe = sub.add_parser("l2-probe")
    probe.add_argument("--config", required=True, help="as for mlp")
    probe.add_argument("--l2", type=float, required=True, help="weight of sum(W1 ** 2) in the loss")
    probe.add_argument("--max-epochs", type=int, default=40)
    probe.add_argument("--patience", type=int, default=3)
    probe.add_argument("--test", action="store_true", help="score the best epoch on test (once, after choosing)")
    columns = sub.add_parser("columns")
    columns.add_argument("--which", choices=("oracle", "min-count"), required=True)
    columns.add_argument("--min-count", type=int, default=50)
    columns.add_argument("--composed", type=Path, default=Path("bench/out/pmsi-116831-2020/composed"))
    columns.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = {"bayes": cmd_bayes, "logistic": cmd_logistic, "mlp": cmd_mlp, "choose": cmd_choose,
              "columns": cmd_columns, "l2-probe": cmd_l2_probe}[args.command](args)
    name = args.command
    if args.command == "logistic":
        name += "-binarised" * args.binarise_rehab + "-oracle" * args.oracle_columns
    if args.command not in ("mlp", "columns", "l2-probe"):
        (args.root / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
