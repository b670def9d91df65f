"""Issue 26 experiment: out-of-fold probabilities of model variants on one feature table,
fold seeds 1 2 3 (5-fold record-level CV, final records removed). Reported only."""
import argparse, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).parent))
from bench_ecg_quality import development_set
from diagnosenet import protocol


def make(name, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier, ExtraTreesClassifier, RandomForestClassifier
    if name == "gbm":
        return HistGradientBoostingClassifier(learning_rate=0.05, max_iter=300, max_leaf_nodes=15, l2_regularization=1.0,
                                              early_stopping=False, random_state=seed)
    if name == "gbm-balanced":
        return HistGradientBoostingClassifier(learning_rate=0.05, max_iter=300, max_leaf_nodes=15, l2_regularization=1.0,
                                              class_weight="balanced", early_stopping=False, random_state=seed)
    if name == "gbm-sqrtbal":
        return "sqrtbal"
    if name == "gbm-slow":
        return HistGradientBoostingClassifier(learning_rate=0.025, max_iter=600, max_leaf_nodes=15, l2_regularization=1.0,
                                              early_stopping=False, random_state=seed)
    if name == "et":
        return ExtraTreesClassifier(n_estimators=500, min_samples_leaf=1, max_features="sqrt", n_jobs=2, random_state=seed)
    if name == "rf":
        return RandomForestClassifier(n_estimators=500, min_samples_leaf=1, max_features="sqrt", n_jobs=2, random_state=seed)
    raise ValueError(name)


def fit_predict(name, seed, Xtr, ytr, Xte):
    from sklearn.ensemble import HistGradientBoostingClassifier
    model = make(name, seed)
    if model == "sqrtbal":
        counts = np.bincount(ytr, minlength=4).astype(float)
        w = np.sqrt(counts.max() / counts)[ytr]
        model = make("gbm", seed)
        model.fit(Xtr, ytr, sample_weight=w)
    else:
        if name in ("et", "rf"):
            Xtr, Xte = np.nan_to_num(Xtr, nan=-1e6, posinf=1e6, neginf=-1e6), np.nan_to_num(Xte, nan=-1e6, posinf=1e6, neginf=-1e6)
        model.fit(Xtr, ytr)
    p = np.zeros((Xte.shape[0], 4)); p[:, model.classes_] = model.predict_proba(Xte)
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--development", type=Path, required=True)
    ap.add_argument("--final", type=Path, required=True)
    ap.add_argument("--extra", type=Path, default=None, help="npz with names, records, values to append")
    ap.add_argument("--drop-extra", nargs="*", default=[])
    ap.add_argument("--only-extra", nargs="*", default=None)
    ap.add_argument("--models", nargs="+", default=["gbm"])
    ap.add_argument("--sets", nargs="+", default=["none"], help="comma-separated prefixes of extra columns, 'all' or 'none'")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    import bench_ecg_quality
    bench_ecg_quality.load_features = lambda d: (np.load(d / "features.npy"), np.load(d / "y.npy"), np.load(d / "records.npy"))
    X, y, rec, *_ = development_set(a.development, a.final)
    if a.extra:
        z = np.load(a.extra)
        names = list(z["names"]); row = {r: k for k, r in enumerate(z["records"].tolist())}
        E_all = z["values"][[row[r] for r in rec.tolist()]]
    X0 = X
    out = {"y": y}
    for spec in a.sets:
      if spec == "none":
        X = X0
      else:
        cols = [k for k, n in enumerate(names) if spec == "all" or any(n.startswith(p) for p in spec.split(","))]
        X = np.hstack([X0, E_all[:, cols]])
        print(spec, "extra columns", [names[k] for k in cols], flush=True)
      for seed in a.seeds:
        folds = protocol.record_folds(y, rec, 5, seed=seed)
        out[f"folds{seed}"] = folds
        for name in a.models:
            t = time.time(); oof = np.zeros((len(y), 4))
            for f in range(5):
                tr, te = folds != f, folds == f
                oof[te] = fit_predict(name, seed, X[tr], y[tr], X[te])
            tag = name if spec == "none" else f"{name}[{spec}]"
            out[f"{tag}|{seed}"] = oof
            print(f"{tag} seed {seed}: {time.time()-t:.0f}s", flush=True)
            np.savez(a.out, **out)

main()
