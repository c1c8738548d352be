"""Train the per-breast malignancy model of :mod:`BreastTumorSegLib.engine.classify` (scikit-learn).

    OMP_NUM_THREADS=1 python -m BreastTumorSegLib.training.classify \
        --data malignancy:100-335,malignancy-randomized:6000-6139 --out models/shipped --cache-dir /tmp/cls

Exams of the training families only (:data:`~.phantom.malignancy.TRAIN_FAMILIES`: our phantom
generator and the domain-randomised one, with benign and malignant inserts,
:mod:`.phantom.malignancy`), never a held-out family nor a held-out seed
(:func:`~.phantom.malignancy.held_out_seed`: 5000-5029, 5100-5129, 5200-5229, 5300-5329, 5400-5429, 5500-5529 and 5600-5629, of any family). Every enhancing candidate (found
exactly as at run time, phases already aligned) is labelled *malignant* when at least a third of
it lies in a malignant lesion or it covers at least a third of one, *not malignant* otherwise
(benign lesions, non-mass enhancement, background enhancement, vessels, nodes). The model is
chosen among :data:`CANDIDATE_MODELS` (logistic regressions and gradient-boosted trees over
feature sets) by the exam-grouped cross-validated breast AUC on the training exams
(:func:`select`), refitted on all of them and written as safetensors with its card (SHA-256,
features, training data, the selection scores); both kinds run with numpy alone
(:mod:`..models.logistic`, :mod:`..models.trees`). A breast without any candidate gets
``no_candidate_probability``: half the lowest candidate probability on the training exams, so that
it ranks below every breast with a candidate.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..engine.classify import SIDE_CODES, breast_probability, exam_candidates
from ..models.classifier import (ALL_FEATURES, CLASSIFICATION_TASK, CONTEXT_FEATURES, DEFAULT_CLASSIFIER, FEATURE_LISTS,
                                 FEATURES, GRID_FEATURES, MEASURE_FEATURES, MIP_FEATURES, WITH_CONTEXT)
from ..core.values import parse_seeds
from .phantom.malignancy import (CLASS_FAMILIES, HELD_OUT, TRAIN_FAMILIES, evaluation_seeds_text, held_out_seed,
                                make_class_exam)

OVERLAP = 1 / 3


def labelled_candidates(ph) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int]]]:
    """(features, candidate labels, [(breast key, index)]) of one phantom; the breast key is
    ``"<case>:<L|R>"`` and the list gives each candidate's breast."""
    _, _, cands, _, _ = exam_candidates(ph.exam, register=False)
    return candidate_labels(ph, cands)


def candidate_labels(ph, cands) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int]]]:
    """:func:`labelled_candidates` of candidates already found on the phantom *ph*."""
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


# The models compared, chosen by the exam-grouped cross-validated breast AUC on the training exams
# only (never a held-out family or seed): logistic regressions (penalty, C) and gradient-boosted
# trees (trees, depth) over a feature set: all of FEATURES, or all but the breast-mask share (the
# breast mask fails on some exams: coronal/sagittal grids, unusual outlines); a left-out feature gets
# coefficient 0 / is never split on.
FEATURE_SETS = {"all": tuple(range(len(FEATURES))),
                "no-mask": tuple(i for i, f in enumerate(FEATURES) if f != "breast_mask_fraction")}
# Version 4's candidates (Dec 6, issue 29): the same plus the second subtraction's MIP features
# (training/classify_mip.py; columns after FEATURES in ALL_FEATURES): all of them, the per-breast
# ones only, the per-candidate ones only.
_MIP = {f: len(FEATURES) + i for i, f in enumerate(MIP_FEATURES)}
FEATURE_SETS.update({
    "no-mask+mip2": FEATURE_SETS["no-mask"] + tuple(_MIP.values()),
    "no-mask+mip2-breast": FEATURE_SETS["no-mask"] + tuple(v for f, v in _MIP.items() if "_cand_" not in f),
    "no-mask+mip2-candidate": FEATURE_SETS["no-mask"] + tuple(v for f, v in _MIP.items() if "_cand_" in f),
    # added after the first comparison on 130 training exams (the blob share hurt our family's CV):
    # the per-breast ones and the candidate's MIP peak
    "no-mask+mip2-breast+peak": FEATURE_SETS["no-mask"] + tuple(v for f, v in _MIP.items() if f != "mip2_cand_blob_share")})
# Version 5's trial (Dec 6, issue 29; docs/decisions/classify-v5-context.md): version 3's features plus
# the breast-context features (engine/classify_context.py; columns after ALL_FEATURES).
FEATURE_SETS["no-mask+ctx"] = FEATURE_SETS["no-mask"] + tuple(len(ALL_FEATURES) + i for i in range(len(CONTEXT_FEATURES)))
# Version 8's trial (Dec 7, issue 29; docs/decisions/classify-v8.md): the margin measured against a smooth
# sphere on the exam's own grid (engine/classify_grid.py; columns after WITH_CONTEXT) instead of the raw
# radial_cv, which a coarse anisotropic grid shifts, and how many voxels the lesion's radius spans.
FEATURE_SETS["no-mask-grid"] = tuple(i for i in FEATURE_SETS["no-mask"] if FEATURES[i] != "radial_cv") \
    + tuple(len(WITH_CONTEXT) + i for i in range(len(GRID_FEATURES)))
# Trees: (number, depth[, learning rate, minimum samples per leaf]); the deeper, slower-learning 300
# trees were added on Dec 6 after a CV sweep on the training exams (150x3: 0.861, 300x3: 0.862,
# 300x4 lr 0.03 leaf 5: 0.867).
CANDIDATE_MODELS = tuple([("logistic", fs, "l2", c) for fs in FEATURE_SETS for c in (0.1, 1.0)]
                         + [("logistic", "all", "l1", 1.0)]
                         + [("trees", fs, 150, 3) for fs in FEATURE_SETS]  # (300 trees of depth 2: worse, dropped)
                         + [("trees", "no-mask", 300, 4, 0.03, 5)]
                         + [("trees", fs, 300, 4, 0.03, 5) for fs in FEATURE_SETS if "+mip2" in fs or "+ctx" in fs]
                         + [("trees", "no-mask-grid", 300, 4, 0.03, 5)])
# Version 5's trial (Dec 8, issue 29; docs/decisions/classify-v12.md): version 3's features (no mask) plus the
# measurement features (engine/classify_measure.py; columns after FEATURES in WITH_MEASURE): all of them, or
# the curve / size / kind ones only. Not in CANDIDATE_MODELS (their columns exist only in WITH_MEASURE data):
# training/classify_measure.py fits them by name.
_MEASURE = {f: len(FEATURES) + i for i, f in enumerate(MEASURE_FEATURES)}
MEASURE_SETS = {"no-mask+measure": FEATURE_SETS["no-mask"] + tuple(_MEASURE.values()),
                "no-mask+measure-curve": FEATURE_SETS["no-mask"] + tuple(v for f, v in _MEASURE.items() if "change" in f),
                "no-mask+measure-size": FEATURE_SETS["no-mask"] + tuple(v for f, v in _MEASURE.items() if "log_ml" in f),
                "no-mask+measure-kind": FEATURE_SETS["no-mask"] + tuple(
                    v for f, v in _MEASURE.items() if "change" not in f and "log_ml" not in f)}
FEATURE_SETS.update(MEASURE_SETS)
CV_REPEATS = 2
TREE_LEARNING_RATE = 0.05  # of an entry without its own
TREE_MIN_LEAF = 1


def _tree_rate_leaf(spec: tuple) -> tuple[float, int]:
    """(learning rate, minimum samples per leaf) of a trees entry of :data:`CANDIDATE_MODELS`."""
    return (float(spec[4]) if len(spec) > 4 else TREE_LEARNING_RATE), (int(spec[5]) if len(spec) > 5 else TREE_MIN_LEAF)


def _pipeline(kind: str, feature_set: str, a, b, *more):
    """The sklearn pipeline of one entry of :data:`CANDIDATE_MODELS`: (``"logistic"``, feature set,
    penalty, C) or (``"trees"``, feature set, number of trees, depth[, learning rate, min leaf])."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    pick = FunctionTransformer(np.take, kw_args={"indices": list(FEATURE_SETS[feature_set]), "axis": 1})
    if kind == "trees":
        rate, leaf = _tree_rate_leaf((kind, feature_set, a, b, *more))
        return make_pipeline(pick, GradientBoostingClassifier(n_estimators=int(a), max_depth=int(b), subsample=0.8,
                                                              learning_rate=rate, min_samples_leaf=leaf, random_state=0))
    lasso = {"l1_ratio": 1.0, "solver": "liblinear"} if a == "l1" else {}
    return make_pipeline(pick, StandardScaler(), LogisticRegression(C=float(b), max_iter=5000, **lasso))


def _name(kind: str, feature_set: str, a, b, *more) -> str:
    if kind == "logistic":
        return f"{kind} {feature_set} {a} C={b:g}"
    return f"trees {feature_set} {a}x depth {b}" + (f" lr {more[0]:g} leaf {more[1]}" if more else "")


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
    """The entry of :data:`CANDIDATE_MODELS` with the best cross-validated breast AUC, and all scores."""
    scores = {_name(*m): cv_breast_auc(_pipeline(*m), data) for m in CANDIDATE_MODELS}
    best = max(CANDIDATE_MODELS, key=lambda m: scores[_name(*m)])
    return best, {k: round(v, 4) for k, v in scores.items()}


def fit(data: dict, spec: tuple):
    """The pipeline of *spec* (an entry of :data:`CANDIDATE_MODELS`) fitted on *data*, its
    no-candidate probability and what the card reports about it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import PredefinedSplit, cross_val_predict

    x, y, keys, truth = data["x"], data["y"], data["keys"], data["truth"]
    # Not class-balanced: a breast's score is its candidates' maximum, and balancing lifts every one of
    # the many benign candidates (training-family CV, by exam: breast AUC 0.87 balanced, 0.89 not).
    model = _pipeline(*spec)
    empty = [k for k in truth if k not in set(keys.tolist())]
    folds = _exam_folds(keys, 0)
    # data["w"]: per-candidate sample weights, when the trainer gives them (classify-v11: the segmenter's lesions)
    weights = {} if data.get("w") is None else {f"{model.steps[-1][0]}__sample_weight": np.asarray(data["w"], float)}
    z_cv = cross_val_predict(model, x, y, cv=PredefinedSplit(folds), method="decision_function", params=weights)
    yb, sb = breast_scores(z_cv, keys, truth, float(z_cv.min()) - 1.0)
    model.fit(x, y, **weights)
    # Breast scale: the breast's maximum candidate logit (cross-validated) -> P(breast malignant),
    # a one-feature logistic fit (Platt scaling); applied to every candidate at run time.
    platt = LogisticRegression(C=1e6, max_iter=5000).fit(sb[:, None], yb)
    calibration = {"a": float(platt.coef_[0, 0]), "b": float(platt.intercept_[0])}
    operating = operating_point(yb, 1 / (1 + np.exp(-(calibration["a"] * sb + calibration["b"]))))
    z_all = model.decision_function(x) * calibration["a"] + calibration["b"]
    no_candidate = 0.5 * float(1 / (1 + np.exp(-z_all.min())))
    p_cv = 1 / (1 + np.exp(-z_cv))
    report = {"n_candidates": int(len(y)), "n_malignant_candidates": int(y.sum()), "n_breasts": len(truth),
              "n_malignant_breasts": int(sum(truth.values())), "breasts_without_candidate": len(empty),
              "cross_validation": {"folds": 5, "by": "exam", "candidate_roc_auc": float(roc_auc_score(y, p_cv)),
                                   "breast_roc_auc": float(roc_auc_score(yb, sb))},
              "breast_calibration": calibration, "operating_point": operating}
    return model, float(no_candidate), report


def operating_point(y: np.ndarray, p: np.ndarray) -> dict:
    """The card's threshold: the breast probability that maximises sensitivity + specificity
    (Youden's J) on the cross-validated breast probabilities *p* of the training exams (labels *y*),
    rounded to 0.01, with the sensitivity and specificity there and at 0.5 (what the card reports)."""
    def rates(t):
        return float(np.mean(p[y == 1] >= t)), float(np.mean(p[y == 0] < t))

    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    best = max(grid, key=lambda t: (sum(rates(t)), -abs(t - 0.5)))
    (se, sp), (se5, sp5) = rates(best), rates(0.5)
    return {"threshold": float(best), "by": "max sensitivity + specificity (Youden) on the exam-grouped "
            "cross-validated breast probabilities of the training exams",
            "cv_sensitivity": round(se, 3), "cv_specificity": round(sp, 3),
            "cv_sensitivity_at_0.5": round(se5, 3), "cv_specificity_at_0.5": round(sp5, 3)}


def feature_list(n_columns: int) -> tuple[str, ...]:
    """The feature list of :data:`~..models.classifier.FEATURE_LISTS` with *n_columns* names."""
    return next(f for f in FEATURE_LISTS if len(f) == n_columns)


def _weights(model, spec: tuple, x: np.ndarray) -> tuple[dict, dict]:
    """(tensors, card fields) of a fitted pipeline, expanded to every feature of FEATURES; the
    exported trees are checked against scikit-learn's own decision function on *x*."""
    from ..models.logistic import fitted_state
    from ..models.trees import TreeEnsemble, fitted_trees

    cols = np.asarray(model[0].kw_args["indices"])
    names = feature_list(x.shape[1])
    if spec[0] == "trees":
        gbc = model[-1]
        state = fitted_trees(gbc)
        inner = state["feature"] >= 0
        state["feature"][inner] = cols[state["feature"][inner]]  # indices into FEATURES
        check = TreeEnsemble(state).logit(x)
        if not np.allclose(check, model.decision_function(x), atol=1e-8):
            raise RuntimeError("the exported trees disagree with scikit-learn's decision function")
        importance = np.zeros(len(names))
        importance[cols] = gbc.feature_importances_
        return state, {"architecture": {"type": "candidate_gradient_boosted_trees", "n_trees": int(len(state["roots"])),
                                        "max_depth": int(spec[3]), "learning_rate": _tree_rate_leaf(spec)[0],
                                        "min_samples_leaf": _tree_rate_leaf(spec)[1],
                                        "split": "left where x[feature] <= threshold"},
                       "feature_importances": {f: round(float(v), 4) for f, v in zip(names, importance)}}
    scaler, lr = model[-2], model[-1]
    fitted = fitted_state(scaler, lr)
    state = {"mean": np.zeros(len(names)), "scale": np.ones(len(names)), "coef": np.zeros(len(names))}
    for k, v in state.items():  # a left-out feature has coefficient 0
        v[cols] = fitted[k]
    state["intercept"] = fitted["intercept"]
    return state, {"architecture": {"type": "candidate_logistic_regression", "standardised": True},
                   "coefficients": {f: round(float(w), 4) for f, w in zip(names, state["coef"])},
                   "intercept": round(float(lr.intercept_[0]), 4)}


def save(model, spec: tuple, data: dict, out_dir: Path, name: str, training: dict, no_candidate: float,
         version: str = "4", card_extra: dict | None = None) -> Path:
    """Write ``<name>.safetensors`` and ``<name>.json`` (card with the SHA-256; *card_extra*: more
    fields of the card, e.g. ``grid_harmonisation``)."""
    import hashlib

    from safetensors.numpy import save as save_numpy

    from ..io.atomic import write_bytes, write_json

    state, fields = _weights(model, spec, data["x"])
    names = feature_list(data["x"].shape[1])
    blob = save_numpy(state)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes(out_dir / f"{name}.safetensors", blob)
    what = ("gradient-boosted trees" if spec[0] == "trees" else "standardisation + logistic regression")
    fields["architecture"].update({
        "aggregation": "breast probability = max over its candidates",
        "region": "engine/classify_region.py: body in front of the chest wall (10 mm beyond the breast mask's depth "
                  "behind the sternum, 30 mm laterally) + breast mask + segmented lesions inside the body",
        "features_used": [names[i] for i in FEATURE_SETS[spec[1]]]})
    card = {"name": name, "version": version, "task": CLASSIFICATION_TASK,
            "description": "Per-breast malignancy probability (left/right) from the enhancing candidates of each "
                           "breast (the body in front of the chest wall, sides from patient coordinates; the "
                           f"breast mask only a hint): {what} (numpy at run time) over kinetic (curve "
                           "type of the whole candidate and of its most enhancing quarter, SER, enhancement, "
                           "whether the exam has a late phase and its timing), morphologic (size, voxel count, "
                           "longest axis, margin, rim) and early-subtraction MIP features; candidate scores "
                           "calibrated to the breast scale (Platt); heatmap = each candidate's probability. "
                           "Trained only on synthetic exams; not a clinical classifier.",
            **fields,
            "inputs": "pre-contrast + >= 1 post-contrast phase with acquisition times (early/late by time)",
            "features": list(names), "n_features": len(names),
            "threshold": training.get("operating_point", {}).get("threshold", 0.5),
            "no_candidate_probability": float(f"{no_candidate:.4g}"),
            "weights": f"{name}.safetensors", "sha256": hashlib.sha256(blob).hexdigest(),
            "breast_calibration": training.get("breast_calibration", {"a": 1.0, "b": 0.0}),
            "intended_use": "research and software testing only: trained on synthetic phantoms, never validated on "
                            "patients; its probabilities are not calibrated for any clinical population",
            "training": training, **(card_extra or {})}
    path = out_dir / f"{name}.json"
    write_json(path, card)
    return path


def parse_data(spec: str) -> list[tuple[str, list[int]]]:
    """``"family:seeds,family:seeds"`` -> [(family, seeds)]; a held-out family or seed is refused
    (:class:`~..core.errors.InputError`)."""
    from ..core.errors import InputError

    out = []
    for part in filter(None, (v.strip() for v in spec.split(","))):
        family, _, seeds = part.partition(":")
        if family not in CLASS_FAMILIES or not seeds:
            raise InputError(f"bad training data {part!r}", "--data", f"use FAMILY:SEEDS with a family of {', '.join(TRAIN_FAMILIES)}")
        if family in HELD_OUT:
            raise InputError(f"refusing to train on the held-out family {family}", "--data",
                             f"use the training families {', '.join(TRAIN_FAMILIES)}")
        seeds = parse_seeds(seeds)
        if any(held_out_seed(s) for s in seeds):
            raise InputError(f"refusing to train on the held-out seeds {evaluation_seeds_text()}",
                             "--data", "pick training seeds outside them")
        out.append((family, seeds))
    return out


def collect_all(data_spec: list[tuple[str, list[int]]], cache_dir: Path | None = None, log=print) -> dict:
    """:func:`collect` over several families, concatenated (breast keys carry the family's case ids)."""
    parts = [collect(f, seeds, cache_dir, log) for f, seeds in data_spec]
    truth = {}
    for d in parts:
        truth.update(d["truth"])
    return {"x": np.concatenate([d["x"] for d in parts]), "y": np.concatenate([d["y"] for d in parts]),
            "keys": np.concatenate([d["keys"] for d in parts]), "truth": truth}


DEFAULT_DATA = "malignancy:100-335,malignancy-randomized:6000-6139"


def main(argv=None, collect=None, card_extra: dict | None = None) -> int:
    """The command line; *collect(data_spec, cache_dir)* gathers the training data (default
    :func:`collect_all`; ``python -m BreastTumorSegLib.training.classify_mip train`` passes the one with
    the MIP features); *card_extra*: more fields of the written card (:func:`save`), or a callable
    giving them once the data are collected."""
    from ..core.errors import InputError

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="training exams, FAMILY:SEEDS[,FAMILY:SEEDS] "
                   f"(families {', '.join(TRAIN_FAMILIES)}; never the held-out seeds)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default=DEFAULT_CLASSIFIER)
    p.add_argument("--model", choices=[_name(*m) for m in CANDIDATE_MODELS], default=None,
                   help="fit this entry of CANDIDATE_MODELS (default: chosen by exam-grouped cross-validation)")
    p.add_argument("--cache-dir", type=Path, help="reuse/store each exam's candidates (<family>_<seed>.npz)")
    p.add_argument("--card-version", default="4", help="the card's version field")
    a = p.parse_args(argv)
    try:
        data_spec = parse_data(a.data)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data = (collect or collect_all)(data_spec, a.cache_dir)
    selection = None
    if a.model is None:
        spec, selection = select(data)
    else:
        spec = next(m for m in CANDIDATE_MODELS if _name(*m) == a.model)
    model, no_candidate, report = fit(data, spec)
    if selection:
        report["model_selection"] = {"by": f"exam-grouped 5-fold cross-validated breast AUC on the training exams, "
                                           f"mean of {CV_REPEATS} shuffles", "scores": selection, "chosen": _name(*spec)}
    training = {"data": f"synthetic exams only: {a.data} (training/phantom/malignancy.py: our phantom generator and "
                        f"the domain-randomised one with benign/malignant inserts); held-out families "
                        f"{', '.join(HELD_OUT)} and the seeds {evaluation_seeds_text()} of "
                        "every family never used for training or model selection",
                **report, "sklearn": _name(*spec)}
    print(json.dumps(training, indent=2))
    extra = card_extra() if callable(card_extra) else card_extra  # a callable: after the data are collected
    print(save(model, spec, data, a.out, a.name, training, no_candidate, a.card_version, extra))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
