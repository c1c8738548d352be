#!/usr/bin/env python
"""The ceiling of the per-breast malignancy AUC on the malignancy families (classify-v10, issue 29):
an ORACLE that reads the generator's own drawn lesion parameters.

Every breast is malignant (one malignant lesion, 20 % a benign one beside it), benign (one benign
lesion) or normal (none), and each lesion's curve, margin, rim, size and mass/non-mass are drawn from
class-conditional distributions that overlap on purpose (``training/phantom/malignancy.py``:
``draw_plan``, ``draw_lesion``). Since those distributions are known exactly, the best possible
ranking of breasts given the lesions' parameters is the likelihood ratio (Neyman-Pearson), and its
AUC is the ceiling of *any* classifier that sees no more than those parameters: the image of an exam
is rendered from them and from class-independent draws (anatomy, contrast, noise, grid), so no
classifier of the image can beat the oracle in expectation.

Views of a lesion (what the oracle is allowed to read):

* ``drawn``: everything ``draw_lesion`` draws (curve, margin, rim, radius, mass / non-mass);
* ``randomized``: what the domain-randomised generator renders of it (``_randomized``: the kind
  non-mass / spiculated / rim / lobulated, so smooth and lobulated margins look alike and a
  spiculated rim lesion is spiculated; curve; radius);
* ``randomized-acquired`` (exams only): as ``randomized`` with the curve as the exam's phases can
  show it (the generator renders a persistent / washout curve that the times cannot show as a
  plateau; with one post-contrast phase the curve is unknown and marginalised).

Modes:

    python benchmarks/classify_oracle.py population --exams 200000      # draw_plan only, no images
    python benchmarks/classify_oracle.py dev --dir /work/runs/cls18/dev  # the analysed development exams

``dev`` also cross-validates (exam-grouped, 5 folds x 20 shuffles) a small model (logistic
regression) on per-breast summaries of the true parameters, as a fitted oracle beside the exact one.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

from BreastTumorSegLib.training.phantom.malignancy import BREAST_CLASS_P, draw_plan  # noqa: E402

CURVE_P = {True: {"persistent": 0.1, "plateau": 0.35, "washout": 0.55},
           False: {"persistent": 0.7, "plateau": 0.25, "washout": 0.05}}
RADIUS = {True: (5.0, 16.0), False: (3.0, 9.0)}  # log-uniform (mm)
NONMASS_P = {True: 0.15, False: 0.25}
RIM_P = {True: 0.35, False: 0.05}
MARGIN_P = {True: {"spiculated": 0.55, "lobulated": 0.45}, False: {"smooth": 0.65, "lobulated": 0.35}}
EXTRA_BENIGN_P = 0.2  # a malignant breast's second (benign) lesion


def _radius_density(r: float, malignant: bool) -> float:
    lo, hi = RADIUS[malignant]
    return 1.0 / (r * math.log(hi / lo)) if lo <= r <= hi else 0.0


def randomized_kind(les: dict) -> str:
    """The kind the domain-randomised generator renders (``malignancy._randomized``)."""
    return ("nonmass" if les["kind"] == "nonmass" else "spiculated" if les["margin"] == "spiculated"
            else "rim" if les["rim"] else "lobulated")


def kind_p(kind: str, malignant: bool) -> float:
    """P(randomised kind | class)."""
    nm = NONMASS_P[malignant]
    mass = 1 - nm
    spic = MARGIN_P[malignant].get("spiculated", 0.0)
    return {"nonmass": nm, "spiculated": mass * spic, "rim": mass * (1 - spic) * RIM_P[malignant],
            "lobulated": mass * (1 - spic) * (1 - RIM_P[malignant])}[kind]


def lesion_likelihood(les: dict, malignant: bool, view: str) -> float:
    """P(the lesion's parameters visible in *view* | its class)."""
    curve = les.get("curve")
    p = 1.0 if curve is None else CURVE_P[malignant][curve]
    if les.get("radius_mm") is not None:
        p *= _radius_density(float(les["radius_mm"]), malignant)
    if view == "drawn":
        p *= NONMASS_P[malignant] if les["kind"] == "nonmass" else 1 - NONMASS_P[malignant]
        p *= MARGIN_P[malignant].get(les["margin"], 0.0)
        if les["kind"] != "nonmass":  # the rim of a non-mass lesion is never set
            p *= RIM_P[malignant] if les["rim"] else 1 - RIM_P[malignant]
    else:
        p *= kind_p(les["rkind"] if "rkind" in les else randomized_kind(les), malignant)
    return p


def breast_score(lesions: list[dict], view: str) -> float:
    """log P(malignant | the breast's lesions) - log P(not): the exact posterior log-odds (+-50 for
    the certain cases: no lesion, or two lesions, which only a malignant breast has)."""
    if not lesions:
        return -50.0
    if len(lesions) >= 2:
        return 50.0
    les = lesions[0]
    pm = BREAST_CLASS_P[0] * (1 - EXTRA_BENIGN_P) * lesion_likelihood(les, True, view)
    pb = BREAST_CLASS_P[1] * lesion_likelihood(les, False, view)
    if pm == 0:
        return -40.0
    if pb == 0:
        return 40.0
    return math.log(pm / pb)


def auc(y, s) -> float:
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, s))


def population(n_exams: int, start: int, view: str, randomized_cap: bool, hide=()) -> dict:
    """Oracle AUC over *n_exams* plans (no images): every drawn lesion placed, both breasts in view;
    *hide*: lesion fields the oracle may not read ("curve", "radius_mm")."""
    ys, ss, lesion_breast = [], [], []
    for seed in range(start, start + n_exams):
        classes, lesions, _ = draw_plan(seed)
        if randomized_cap:
            lesions = lesions[:3]
        lesions = [{**les, **{h: None for h in hide}} for les in lesions]
        for side in ("left", "right"):
            mine = [les for les in lesions if les["side"] == side]
            y = int(any(les["malignant"] for les in mine))
            ys.append(y)
            ss.append(breast_score(mine, view))
            lesion_breast.append(bool(mine))
    ys, ss, lb = np.array(ys), np.array(ss), np.array(lesion_breast)
    return {"breasts": len(ys), "malignant": int(ys.sum()), "auc": auc(ys, ss),
            "auc_lesion_breasts": auc(ys[lb], ss[lb]), "lesion_breasts": int(lb.sum())}


# ------------------------------------------------------------------------------ development exams
def dev_breasts(d: Path, family: str) -> list[dict]:
    """Per breast of the analysed exams (``diag_classify_segmenter.py``): truth and placed lesions."""
    out = []
    for js in sorted(d.glob(f"{family}_*.json")):
        info = json.loads(js.read_text())
        seed = int(js.stem.rsplit("_", 1)[1])
        drawn = info["lesions"] or []
        rendered = {r["request"]: r for r in info["rendered"] if r.get("request") is not None}
        one_phase = int(info.get("n_phases") or 3) <= 2
        for side, truth in info["breast_truth"].items():
            placed = []
            for i in info["placed"]:
                les = drawn[i]
                if les["side"] != side:
                    continue
                r = rendered.get(i, {})
                acq = dict(les)
                acq["rkind"] = r.get("kind") or randomized_kind(les)
                acq["curve"] = None if one_phase else (r.get("curve") or les["curve"])
                acq["volume_ml"] = float(r.get("volume_ml") or 0.0)
                placed.append({"drawn": les, "acquired": acq})
            out.append({"seed": seed, "side": side, "truth": int(truth), "lesions": placed,
                        "key": f"{info['case_id']}:{'L' if side == 'left' else 'R'}"})
    return out


def summary_row(lesions: list[dict]) -> list[float]:
    """A breast's true-parameter summary for the fitted oracle: number of lesions, and over its lesions
    the largest log radius and whether any is washout / plateau / spiculated / rim / non-mass /
    smooth-margined."""
    if not lesions:
        return [0, math.log(1.0), 0, 0, 0, 0, 0, 0]
    return [len(lesions), max(math.log(les["radius_mm"]) for les in lesions),
            *[float(any(les["curve"] == c for les in lesions)) for c in ("washout", "plateau")],
            float(any(les["margin"] == "spiculated" for les in lesions)), float(any(les["rim"] for les in lesions)),
            float(any(les["kind"] == "nonmass" for les in lesions)), float(any(les["margin"] == "smooth" for les in lesions))]


def rendered_row(lesions: list[dict]) -> list[float]:
    """As :func:`summary_row` from what the randomised exam shows: the rendered kind, the curve as
    acquired (unknown with one post-contrast phase), the size as the placed volume's equivalent radius."""
    if not lesions:
        return [0, 0, 0, 0, 0, 0, 0]
    return [len(lesions), max(math.log(max(les["volume_ml"], 1e-3)) for les in lesions),
            *[float(any(les["curve"] == c for les in lesions)) for c in ("washout", "plateau")],
            *[float(any(les["rkind"] == k for les in lesions)) for k in ("spiculated", "rim", "nonmass")]]


def fitted_oracle_cv(breasts: list[dict], n_shuffles: int = 20, rendered: bool = False) -> tuple[float, float, float]:
    """Exam-grouped 5-fold CV AUC of a logistic regression on :func:`summary_row` (*rendered*:
    :func:`rendered_row`) (mean, min, max over shuffles)."""
    from sklearn.linear_model import LogisticRegression

    x = np.array([rendered_row([les["acquired"] for les in b["lesions"]]) if rendered
                  else summary_row([les["drawn"] for les in b["lesions"]]) for b in breasts])
    y = np.array([b["truth"] for b in breasts])
    groups = np.array([b["seed"] for b in breasts])
    aucs = []
    for rep in range(n_shuffles):
        rng = np.random.default_rng(rep)
        perm = rng.permutation(np.unique(groups))
        fold_of = {g: i % 5 for i, g in enumerate(perm)}
        folds = np.array([fold_of[g] for g in groups])
        p = np.zeros(len(y))
        for k in range(5):
            tr, te = folds != k, folds == k
            m = LogisticRegression(C=1.0, max_iter=2000).fit(x[tr], y[tr])
            p[te] = m.predict_proba(x[te])[:, 1]
        aucs.append(auc(y, p))
    return float(np.mean(aucs)), float(np.min(aucs)), float(np.max(aucs))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("population")
    p.add_argument("--exams", type=int, default=200000)
    p.add_argument("--start", type=int, default=10_000_000, help="plan seeds (no image is made)")
    d = sub.add_parser("dev")
    d.add_argument("--dir", type=Path, required=True)
    d.add_argument("--family", default="malignancy-randomized")
    a = ap.parse_args(argv)
    if a.mode == "population":
        for view, cap, hide in (("drawn", False, ()), ("randomized", True, ()), ("randomized", True, ("curve",)),
                                ("randomized", True, ("radius_mm",)), ("randomized", True, ("curve", "radius_mm"))):
            r = population(a.exams, a.start, view, cap, hide)
            hidden = f" without {' and '.join(hide)}" if hide else ""
            print(f"{view}{hidden}: {r['breasts']} breasts ({r['malignant']} malignant): oracle AUC {r['auc']:.4f}; "
                  f"breasts with a lesion only ({r['lesion_breasts']}): {r['auc_lesion_breasts']:.4f}", flush=True)
        return 0
    breasts = dev_breasts(a.dir, a.family)
    y = np.array([b["truth"] for b in breasts])
    print(f"{a.family}: {len(breasts)} breasts, {int(y.sum())} malignant, "
          f"{len({b['seed'] for b in breasts})} exams")
    for view, which in (("drawn", "drawn"), ("randomized", "drawn"), ("randomized-acquired", "acquired")):
        s = np.array([breast_score([les[which] for les in b["lesions"]], "drawn" if view == "drawn" else "randomized")
                      for b in breasts])
        print(f"exact oracle, view {view}: AUC {auc(y, s):.4f}")
    m, lo, hi = fitted_oracle_cv(breasts)
    print(f"fitted oracle (logistic regression on the true parameters, exam-grouped 5-fold CV, 20 shuffles): "
          f"AUC {m:.4f} (shuffles {lo:.4f}-{hi:.4f})")
    m, lo, hi = fitted_oracle_cv(breasts, rendered=True)
    print(f"fitted oracle on what the exam shows (rendered kind, curve as acquired, placed volume), same CV: "
          f"AUC {m:.4f} (shuffles {lo:.4f}-{hi:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
