"""Train the per-breast malignancy model of :mod:`BreastTumorSegLib.engine.classify` (scikit-learn).

    OMP_NUM_THREADS=1 python -m BreastTumorSegLib.training.classify --seeds 100-259 --out models/shipped

Exams of the training family only (``malignancy``: our phantom generator with benign and
malignant inserts, :mod:`.phantom.malignancy`; never a held-out family). Every enhancing
candidate (found exactly as at run time, phases already aligned) is labelled *malignant* when at
least a third of it lies in a malignant lesion or it covers at least a third of one, *not
malignant* otherwise (benign lesions, non-mass enhancement, background enhancement, vessels,
nodes). A standardisation + logistic regression is fitted on the candidates (its penalty and C
chosen by exam-grouped cross-validation on the training seeds, :func:`select`) and
written as safetensors with its card (SHA-256, features, coefficients, training data, the
cross-validated candidate AUC and the per-breast AUC on the training exams). A breast without any
candidate gets ``no_candidate_probability``: half the lowest candidate probability on the training
exams, so that it ranks below every breast with a candidate.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..engine.classify import SIDE_CODES, breast_probability, exam_candidates
from ..models.classifier import CLASSIFICATION_TASK, DEFAULT_CLASSIFIER, FEATURES
from ..core.values import parse_seeds
from .phantom.malignancy import HELD_OUT, TRAIN_FAMILY, make_class_exam

OVERLAP = 1 / 3


def labelled_candidates(ph) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int]]]:
    """(features, candidate labels, [(breast key, index)]) of one phantom; the breast key is
    ``"<case>:<L|R>"`` and the list gives each candidate's breast."""
    _, sides, cands, _, _ = exam_candidates(ph.exam, register=False)
    labels = sitk.GetArrayViewFromImage(ph.tumor_labels)
    malignant = [t["label"] for t in ph.tumors if t.get("malignant")]
    mal = np.isin(labels, malignant) if malignant else np.zeros(labels.shape, bool)
    sizes = {v: int((labels == v).sum()) for v in malignant}
    xs, ys, where = [], [], []
    for c in cands:
        inside = mal[c.box][c.mask]
        covered = max([int((labels[c.box][c.mask] == v).sum()) / max(sizes[v], 1) for v in malignant] or [0.0])
        ys.append(int(inside.mean() >= OVERLAP or covered >= OVERLAP))
        xs.append(c.features)
        where.append((f"{ph.case_id}:{SIDE_CODES[c.side]}", len(where)))
    return np.array(xs).reshape(-1, len(FEATURES)), np.array(ys, int), where


def breast_table(ph) -> dict[str, int]:
    """``"<case>:<L|R>" -> 1/0`` for the breasts of the phantom."""
    return {f"{ph.case_id}:{SIDE_CODES[s]}": int(v) for s, v in ph.breast_truth.items()}


def exam_record(family: str, seed: int, cache_dir: Path | None = None) -> dict:
    """Candidates (features, labels, breast keys), breast truth and sides of one exam; cached as
    ``<cache_dir>/<family>_<seed>.npz`` when *cache_dir* is given (a rerun reuses it)."""
    path = None if cache_dir is None else Path(cache_dir) / f"{family}_{seed}.npz"
    if path is not None and path.exists():
        d = np.load(path, allow_pickle=False)
        if np.isfinite(d["x"]).all():  # (a cache written before the NaN guard of the features is redone)
            return {"x": d["x"], "y": d["y"], "keys": d["keys"],
                    "truth": dict(zip(d["truth_keys"].tolist(), d["truth_values"].tolist()))}
    ph = make_class_exam(family, seed)
    x, y, where = labelled_candidates(ph)
    rec = {"x": x, "y": y, "keys": np.array([k for k, _ in where], dtype="U64"), "truth": breast_table(ph)}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, y=y, keys=rec["keys"], truth_keys=np.array(list(rec["truth"]), dtype="U64"),
                 truth_values=np.array(list(rec["truth"].values()), int))
        tmp.replace(path)
    return rec


def collect(family: str, seeds, cache_dir: Path | None = None, log=print) -> dict:
    xs, ys, keys, truth = [], [], [], {}
    for seed in seeds:
        rec = exam_record(family, seed, cache_dir)
        xs.append(rec["x"])
        ys.append(rec["y"])
        keys += rec["keys"].tolist()
        truth.update(rec["truth"])
        log(f"  {family} {seed}: {len(rec['y'])} candidates, {int(rec['y'].sum())} malignant; breasts {rec['truth']}")
    return {"x": np.concatenate(xs).reshape(-1, len(FEATURES)), "y": np.concatenate(ys).astype(int),
            "keys": np.array(keys), "truth": truth}


def breast_scores(p: np.ndarray, keys: np.ndarray, truth: dict, no_candidate: float) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) per breast: the maximum candidate probability, *no_candidate* without one."""
    per: dict[str, list] = {k: [] for k in truth}
    for k, v in zip(keys, p):
        per.setdefault(k, []).append(float(v))
    names = sorted(truth)
    return np.array([truth[k] for k in names]), np.array([breast_probability(per[k], no_candidate) for k in names])


# The models compared (logistic regressions: numpy at run time), chosen by the exam-grouped
# cross-validated breast AUC on the training seeds only (never a held-out family or seed).
# Feature sets: all of FEATURES, the first 14 (the first model's: without the hot-spot kinetics,
# longest axis, radial irregularity, MIP features and the breast-mask share), or those 14 and the
# breast-mask share; a left-out feature gets coefficient 0.
FEATURE_SETS = {"all": tuple(range(len(FEATURES))), "base14": tuple(range(14)),
                "base14+mask": tuple(range(14)) + (FEATURES.index("breast_mask_fraction"),)}
CANDIDATE_MODELS = tuple([(fs, "l2", c) for fs in FEATURE_SETS for c in (0.3, 1.0, 3.0, 10.0)]
                         + [("all", "l1", c) for c in (0.3, 1.0, 3.0)])
CV_REPEATS = 3


def _logistic(penalty: str, c: float, feature_set: str = "all"):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    lasso = {"l1_ratio": 1.0, "solver": "liblinear"} if penalty == "l1" else {}
    pick = FunctionTransformer(np.take, kw_args={"indices": list(FEATURE_SETS[feature_set]), "axis": 1})
    return make_pipeline(pick, StandardScaler(), LogisticRegression(C=c, max_iter=5000, **lasso))


def _name(feature_set: str, penalty: str, c: float) -> str:
    return f"{feature_set} {penalty} C={c:g}"


def _exam_folds(keys: np.ndarray, repeat: int) -> np.ndarray:
    """5 folds by exam (all candidates of one exam in the same fold), shuffled per *repeat*."""
    cases = np.array([k.split(":")[0] for k in keys])
    uniq = np.unique(cases)
    order = np.random.default_rng(repeat).permutation(len(uniq)) if repeat else np.arange(len(uniq))
    return order[np.searchsorted(uniq, cases)] % 5


def cv_breast_auc(model, data: dict, repeats: int = CV_REPEATS) -> float:
    """Mean over *repeats* of the exam-grouped 5-fold cross-validated per-breast AUC."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import PredefinedSplit, cross_val_predict

    aucs = []
    for r in range(repeats):
        folds = _exam_folds(data["keys"], r)
        p = cross_val_predict(model, data["x"], data["y"], cv=PredefinedSplit(folds), method="predict_proba")[:, 1]
        yb, sb = breast_scores(p, data["keys"], data["truth"], 0.0)
        aucs.append(roc_auc_score(yb, sb))
    return float(np.mean(aucs))


def select(data: dict) -> tuple[tuple, dict]:
    """(feature set, penalty, C) of :data:`CANDIDATE_MODELS` with the best cross-validated breast
    AUC, and all scores."""
    scores = {_name(*m): cv_breast_auc(_logistic(m[1], m[2], m[0]), data) for m in CANDIDATE_MODELS}
    best = max(CANDIDATE_MODELS, key=lambda m: scores[_name(*m)])
    return best, {k: round(v, 4) for k, v in scores.items()}


def fit(data: dict, c: float = 1.0, penalty: str = "l2", feature_set: str = "all"):
    """Fitted StandardScaler + LogisticRegression, and what the card reports about it."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import PredefinedSplit, cross_val_predict

    x, y, keys, truth = data["x"], data["y"], data["keys"], data["truth"]
    # Not class-balanced: a breast's score is its candidates' maximum, and balancing lifts every one of
    # the many benign candidates (training-family CV, by exam: breast AUC 0.87 balanced, 0.89 not).
    model = _logistic(penalty, c, feature_set)
    with_cand = set(keys.tolist())
    empty = [k for k in truth if k not in with_cand]
    # No enhancing candidate at all: ranked below every breast that has one (half the lowest candidate
    # probability on the training exams).
    no_candidate = 0.5 * float(model.fit(x, y).predict_proba(x)[:, 1].min())
    folds = _exam_folds(keys, 0)
    p_cv = cross_val_predict(model, x, y, cv=PredefinedSplit(folds), method="predict_proba")[:, 1]
    yb, sb = breast_scores(p_cv, keys, truth, no_candidate)
    # The alternative considered (same exam-grouped folds, training family only): gradient-boosted trees.
    from sklearn.ensemble import HistGradientBoostingClassifier

    gbt = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0)
    p_gbt = cross_val_predict(gbt, x, y, cv=PredefinedSplit(folds), method="predict_proba")[:, 1]
    yg, sg = breast_scores(p_gbt, keys, truth, no_candidate)
    model.fit(x, y)
    # Breast scale: the breast's maximum candidate logit (cross-validated) -> P(breast malignant),
    # a one-feature logistic fit (Platt scaling); applied to every candidate at run time.
    from sklearn.linear_model import LogisticRegression

    logit_cv = np.log(np.clip(p_cv, 1e-9, 1)) - np.log(np.clip(1 - p_cv, 1e-9, 1))
    yl, zl = breast_scores(logit_cv, keys, truth, float(logit_cv.min()) - 1.0)
    platt = LogisticRegression(C=1e6, max_iter=5000).fit(zl[:, None], yl)
    calibration = {"a": float(platt.coef_[0, 0]), "b": float(platt.intercept_[0])}
    z_all = model.decision_function(x) * calibration["a"] + calibration["b"]
    no_candidate = 0.5 * float(1 / (1 + np.exp(-z_all.min())))
    report = {"n_candidates": int(len(y)), "n_malignant_candidates": int(y.sum()), "n_breasts": len(truth),
              "n_malignant_breasts": int(sum(truth.values())), "breasts_without_candidate": len(empty),
              "cross_validation": {"folds": 5, "by": "exam", "candidate_roc_auc": float(roc_auc_score(y, p_cv)),
                                   "breast_roc_auc": float(roc_auc_score(yb, sb)),
                                   "alternative_gradient_boosting_breast_roc_auc": float(roc_auc_score(yg, sg))},
              "breast_calibration": calibration}
    return model, float(no_candidate), report


def save(model, out_dir: Path, name: str, training: dict, no_candidate: float) -> Path:
    """Write ``<name>.safetensors`` and ``<name>.json`` (card with the SHA-256)."""
    import hashlib

    from safetensors.numpy import save as save_numpy

    from ..io.atomic import write_bytes, write_json
    from ..models.logistic import fitted_state

    cols, scaler, lr = model[0].kw_args["indices"], model[-2], model[-1]
    state = fitted_state(scaler, lr)  # expanded to every feature: a left-out one has coefficient 0
    full = {"mean": np.zeros(len(FEATURES)), "scale": np.ones(len(FEATURES)), "coef": np.zeros(len(FEATURES))}
    for k, v in full.items():
        v[cols] = state[k]
    data = save_numpy({**full, "intercept": state["intercept"]})
    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes(out_dir / f"{name}.safetensors", data)
    card = {"name": name, "version": "1", "task": CLASSIFICATION_TASK,
            "description": "Per-breast malignancy probability (left/right) from the enhancing candidates of each "
                           "breast (the body in front of the chest wall, sides from patient coordinates; the "
                           "breast mask only a hint): standardisation + logistic regression over kinetic (curve "
                           "type of the whole candidate and of its most enhancing quarter, SER, enhancement), "
                           "morphologic (size, longest axis, margin, rim) and early-subtraction MIP features, and "
                           "the share of the candidate inside the breast mask (a soft hint; a segmented lesion "
                           "counts as inside); candidate scores calibrated to the breast scale (Platt); "
                           "heatmap = each candidate's probability. Trained only on synthetic exams; not a "
                           "clinical classifier.",
            "architecture": {"type": "candidate_logistic_regression", "standardised": True,
                             "aggregation": "breast probability = max over its candidates",
                             "region": "engine/classify_region.py: body in front of the chest wall (10 mm beyond "
                                       "the breast mask's depth behind the sternum, 30 mm laterally) + breast mask "
                                       "+ segmented lesions inside the body"},
            "inputs": "pre-contrast + >= 1 post-contrast phase with acquisition times (early/late by time)",
            "features": list(FEATURES), "threshold": 0.5, "no_candidate_probability": float(f"{no_candidate:.4g}"),
            "weights": f"{name}.safetensors", "sha256": hashlib.sha256(data).hexdigest(),
            "coefficients": {f: round(float(w), 4) for f, w in zip(FEATURES, full["coef"])},
            "intercept": round(float(lr.intercept_[0]), 4),
            "breast_calibration": training.get("breast_calibration", {"a": 1.0, "b": 0.0}),
            "intended_use": "research and software testing only: trained on synthetic phantoms, never validated on "
                            "patients; its probabilities are not calibrated for any clinical population",
            "training": training}
    path = out_dir / f"{name}.json"
    write_json(path, card)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default=TRAIN_FAMILY)
    p.add_argument("--seeds", default="100-259")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default=DEFAULT_CLASSIFIER)
    p.add_argument("--c", type=float, default=None,
                   help="inverse regularisation of the logistic regression (default: chosen by cross-validation "
                        "on the training seeds among CANDIDATE_MODELS, with the penalty)")
    p.add_argument("--penalty", choices=("l1", "l2"), default="l2", help="with --c")
    p.add_argument("--feature-set", choices=tuple(FEATURE_SETS), default="all", help="with --c")
    p.add_argument("--cache-dir", type=Path, help="reuse/store each exam's candidates (<family>_<seed>.npz)")
    a = p.parse_args(argv)
    if a.family in HELD_OUT:
        print(f"refusing to train on the held-out family {a.family}", file=sys.stderr)
        return 2
    data = collect(a.family, parse_seeds(a.seeds), a.cache_dir)
    selection = None
    if a.c is None:
        (a.feature_set, a.penalty, a.c), selection = select(data)
    model, no_candidate, report = fit(data, a.c, a.penalty, a.feature_set)
    if selection:
        report["model_selection"] = {"by": f"exam-grouped 5-fold cross-validated breast AUC on the training seeds, "
                                           f"mean of {CV_REPEATS} shuffles", "scores": selection,
                                     "chosen": _name(a.feature_set, a.penalty, a.c)}
    training = {"data": f"synthetic exams only: family {a.family} (our phantom generator with benign/malignant "
                        f"inserts, training/phantom/malignancy.py) seeds {a.seeds}; held-out families "
                        f"{', '.join(HELD_OUT)} never used for training or model selection",
                **report, "sklearn": f"features {a.feature_set} ({len(FEATURE_SETS[a.feature_set])}) + StandardScaler + "
                                      f"LogisticRegression(C={a.c:g}, penalty={a.penalty!r})"}
    print(json.dumps(training, indent=2))
    print(save(model, a.out, a.name, training, no_candidate))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
