"""Train the component classifier of :mod:`BreastTumorSegLib.engine.fpreduce` (scikit-learn).

    python -m BreastTumorSegLib.training.fpreduce --seeds 6000-6011 --out models/shipped

For every exam of the training families (``heterogeneous`` and ``vessels``: harmonic tumor
shapes, enhancing vessels as hard negatives; never the held-out ``irregular`` shapes) and every
model, the pipeline runs without the stage; its components are split into candidates exactly as
at run time and each candidate gets its :data:`~..engine.fpreduce.FEATURES`. A candidate is a
tumor (1) when at least half of it lies in a true tumor, not a tumor (0) when at most a tenth
does (vessels, heart, skin...), and is left out in between. A standardisation + logistic
regression (class-balanced) is fitted and written as plain tensors (safetensors) with a card
JSON holding its SHA-256, the feature names, the training data and the cross-validated scores;
run time needs numpy only. scikit-learn is a ``train``/``test`` extra, not a core dependency.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..engine.fpreduce import CLASSIFIER_TASK, DEFAULT_CLASSIFIER, FEATURES, FPReduceSettings, phase_arrays, \
    sub_image, candidates, component_features
from ..core.values import parse_seeds
from .phantom.families import make_exam

TRAIN_FAMILIES = ("heterogeneous", "vessels")


def exam_candidates(ph, model: str, settings: FPReduceSettings | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of one phantom's candidates under *model* (labels 1, 0, or -1 = unsure)."""
    from ..engine.pipeline import SegmentSettings, segment_exam

    s = settings or FPReduceSettings()
    res = segment_exam(ph.exam, model=model, device="cpu",
                       settings=SegmentSettings(registration="none", fp_reduction=False))
    if not res.lesions:
        return np.zeros((0, len(FEATURES))), np.zeros(0)
    comps = sitk.RelabelComponent(sitk.ConnectedComponent(res.label, True), sortByObjectSize=True)
    truth = sitk.GetArrayViewFromImage(ph.tumor_mask) > 0
    prob = sitk.GetArrayViewFromImage(res.probability)
    pre, early, late = phase_arrays(list(ph.exam.phases), ph.exam.effective_times())
    xs, ys = [], []
    for c in candidates(comps, s):
        like = sub_image(comps, c.box)
        xs.append(component_features(c.mask, like, np.asarray(prob[c.box], np.float32),
                                     np.asarray(pre[c.box], np.float32), np.asarray(early[c.box], np.float32),
                                     None if late is None else np.asarray(late[c.box], np.float32)))
        frac = float(truth[c.box][c.mask].mean())
        ys.append(1 if frac >= 0.5 else (0 if frac <= 0.1 else -1))
    return np.array(xs), np.array(ys)


def collect(families, seeds, models, log=print) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for fam in families:
        for seed in seeds:
            ph = make_exam(fam, seed)
            for m in models:
                x, y = exam_candidates(ph, m)
                log(f"  {fam} {seed} {m}: {int((y == 1).sum())} tumor, {int((y == 0).sum())} not, "
                    f"{int((y == -1).sum())} unsure")
                xs.append(x)
                ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    return x[y >= 0], y[y >= 0]


def fit(x: np.ndarray, y: np.ndarray, c: float = 1.0):
    """A fitted sklearn pipeline (StandardScaler + LogisticRegression) and its 5-fold CV scores."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=2000))
    folds = int(min(5, np.bincount(y.astype(int)).min())) if len(set(y.tolist())) == 2 else 0
    cv = {}
    if folds >= 2:
        cv = {"roc_auc": float(cross_val_score(model, x, y, cv=folds, scoring="roc_auc").mean()),
              "balanced_accuracy": float(cross_val_score(model, x, y, cv=folds, scoring="balanced_accuracy").mean()),
              "folds": folds}
    model.fit(x, y)
    return model, cv


def save(model, out_dir: Path, name: str, training: dict, threshold: float = 0.5) -> Path:
    """Write ``<name>.safetensors`` and ``<name>.json`` (card with the SHA-256)."""
    import torch

    from ..models.weights import save_state_dict

    scaler, lr = model[0], model[-1]
    state = {"mean": torch.tensor(scaler.mean_, dtype=torch.float64),
             "scale": torch.tensor(scaler.scale_, dtype=torch.float64),
             "coef": torch.tensor(lr.coef_[0], dtype=torch.float64),
             "intercept": torch.tensor([float(lr.intercept_[0])], dtype=torch.float64)}
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = save_state_dict(state, out_dir / f"{name}.safetensors")
    card = {"name": name, "version": "1", "task": CLASSIFIER_TASK,
            "description": "Tumor-or-not classifier of lesion components (standardisation + logistic regression "
                           "over shape, tubularity, kinetics and probability features), used by the engine's "
                           "false-positive reduction to remove enhancing vessels. Trained only on synthetic "
                           "exams; not for clinical use.",
            "architecture": {"type": "logistic_regression", "standardised": True},
            "features": list(FEATURES), "threshold": threshold, "weights": f"{name}.safetensors", "sha256": digest,
            "coefficients": {f: round(float(w), 4) for f, w in zip(FEATURES, lr.coef_[0])},
            "training": training}
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default=",".join(TRAIN_FAMILIES))
    p.add_argument("--seeds", default="6000-6011")
    p.add_argument("--models", default="st-demo,ftv")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default=DEFAULT_CLASSIFIER)
    p.add_argument("--features-cache", type=Path, action="append", default=[],
                   help="reuse/store the collected features (.npz); several: their union is used")
    p.add_argument("--note", default="", help="appended to the card's training description")
    a = p.parse_args(argv)
    fams, models = [f for f in a.families.split(",") if f], [m for m in a.models.split(",") if m]
    if "irregular" in fams or "ellipse" in fams:
        print("refusing to train on an evaluation-only family", file=sys.stderr)
        return 2
    if a.features_cache and all(c.exists() for c in a.features_cache):
        parts = [np.load(c) for c in a.features_cache]
        x, y = np.concatenate([d["x"] for d in parts]), np.concatenate([d["y"] for d in parts])
    else:
        x, y = collect(fams, parse_seeds(a.seeds), models)
        if a.features_cache:
            np.savez(a.features_cache[0], x=x, y=y)
    model, cv = fit(x, y)
    training = {"data": f"synthetic exams only: families {', '.join(fams)} seeds {a.seeds} (harmonic tumor shapes, "
                        f"enhancing vessels as hard negatives); candidates from models {', '.join(models)}"
                        + (f"; {a.note}" if a.note else ""),
                "n_candidates": int(len(y)), "n_tumor": int(y.sum()), "n_not_tumor": int(len(y) - y.sum()),
                "cross_validation": cv, "sklearn": "StandardScaler + LogisticRegression(class_weight='balanced')"}
    print(json.dumps(training, indent=2))
    print(save(model, a.out, a.name, training))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
