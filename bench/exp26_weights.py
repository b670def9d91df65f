"""Nested decision weights on out-of-fold probabilities: weights chosen on 4 folds' OOF
probabilities, applied to the 5th (as bench_ecg_blend_cv.py --class-weights). Reported only."""
import sys
import numpy as np
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import exp26_score as S
from diagnosenet.ecg import classifier as C
from diagnosenet import protocol
from diagnosenet.ecg.records import CLASSES


def nested(y, folds, proba, objective):
    pred = np.zeros_like(y)
    for f in range(5):
        tr, te = folds != f, folds == f
        if objective == "four":
            w = C.choose_weights(y[tr], proba[tr])
        else:
            orig = C.four_class_f1
            C.four_class_f1 = lambda yy, pp, n=4: protocol.official_f1(yy, pp, CLASSES)
            try:
                w = C.choose_weights(y[tr], proba[tr])
            finally:
                C.four_class_f1 = orig
        pred[te] = np.argmax(proba[te] * w, axis=1)
    return pred


if __name__ == "__main__":
    fn, key = sys.argv[1], sys.argv[2]
    z = np.load(fn); y = z["y"]
    for objective in ("none", "four", "official"):
        rows = []
        for s in (1, 2, 3):
            p = z[f"{key}|{s}"]; folds = z[f"folds{s}"]
            pred = p.argmax(1) if objective == "none" else nested(y, folds, p, objective)
            fs = [protocol.official_f1(y[folds == f], pred[folds == f], CLASSES) for f in range(5)]
            rows.append((np.mean(fs), np.std(fs, ddof=1), S.f1c(y, pred, 3)))
        print(f"{key} weights={objective:8s} F1 " + " / ".join(f"{r[0]:.4f}" for r in rows)
              + f" mean {np.mean([r[0] for r in rows]):.4f} | Noisy " + " / ".join(f"{r[2]:.3f}" for r in rows)
              + f" mean {np.mean([r[2] for r in rows]):.3f}")
