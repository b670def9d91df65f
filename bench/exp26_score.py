"""Score the OOF probabilities of exp26_models.py: per seed official F1 (mean of 5 folds) and pooled Noisy F1."""
import sys, itertools
import numpy as np
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from diagnosenet import protocol
from diagnosenet.ecg.records import CLASSES

def f1c(y, p, k):
    tp = np.sum((p == k) & (y == k)); d = np.sum(p == k) + np.sum(y == k); return 2 * tp / d if d else 0.0

def score(y, folds, proba):
    pred = proba.argmax(1)
    fs = [protocol.official_f1(y[folds == f], pred[folds == f], CLASSES) for f in range(5)]
    return np.mean(fs), np.std(fs, ddof=1), f1c(y, pred, 3), [f1c(y, pred, k) for k in range(3)]

def report(files, combos=()):
    for fn in files:
        z = np.load(fn); y = z["y"]
        keys = [k for k in z.files if "|" in k]
        models = sorted({k.split("|")[0] for k in keys}, key=lambda m: keys.index(next(k for k in keys if k.startswith(m + "|"))))
        seeds = sorted({int(k.split("|")[1]) for k in keys})
        variants = [(m,) for m in models] + [tuple(c) for c in combos if all(m in models for m in c)]
        for v in variants:
            row = []
            for s in seeds:
                p = np.mean([z[f"{m}|{s}"] for m in v], axis=0)
                row.append(score(y, z[f"folds{s}"], p))
            o = " / ".join(f"{r[0]:.4f}" for r in row); nz = " / ".join(f"{r[2]:.3f}" for r in row)
            pc = np.mean([r[3] for r in row], axis=0)
            print(f"{fn.split('/')[-1]:22s} {'+'.join(v):28s} F1 {o}  mean {np.mean([r[0] for r in row]):.4f} (sd folds {np.mean([r[1] for r in row]):.3f}) | Noisy {nz} mean {np.mean([r[2] for r in row]):.3f} | N/AF/O {pc[0]:.3f}/{pc[1]:.3f}/{pc[2]:.3f}")

if __name__ == "__main__":
    args = sys.argv[1:]
    combos = [tuple(a.split("+")) for a in args if "+" in a and not a.endswith(".npz")]
    report([a for a in args if a.endswith(".npz")], combos)
