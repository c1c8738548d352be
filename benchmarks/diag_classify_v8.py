#!/usr/bin/env python
"""Error analysis of a per-breast classifier on development exams (issue 29, classify-v8.md); Markdown.

    OMP_NUM_THREADS=1 python benchmarks/diag_classify_v8.py --cache-dir /tmp/cls16/cache \
        --data malignancy-randomized:7000-7029,malignancy:7000-7029

Training and development seeds only (``--data`` is checked as the trainer checks it: held-out
families and evaluation seeds are refused). Reads each exam's cached candidates
(:func:`~BreastTumorSegLib.training.classify_mip.mip_record`: generated and analysed on a cache miss),
scores them with the model (default the shipped one) and reports, per family:

* every breast that scores on the wrong side of the card's threshold, with why: a malignant breast
  whose lesion is no candidate, whose lesion is outranked in its breast, or whose lesion is its
  breast's top candidate but scores low; a non-malignant breast with a planned benign lesion or
  none (then the high score is an enhancing vessel, node, heart or background patch);
* the lesion plan (kind, curve, margin, rim, radius: :func:`~.phantom.malignancy.draw_plan`, which
  costs nothing) of each malignant breast against its score;
* each feature's power per family: the AUC of the feature alone between the lesions' candidates
  (label 1) and the top candidate of each non-malignant breast, and the medians of both groups;
* how much of the candidates' logit is the exam's: the share of the variance of the non-malignant
  candidates' logits that lies between exams.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

from BreastTumorSegLib.models.classifier import DEFAULT_CLASSIFIER, FEATURES, load_classifier  # noqa: E402
from BreastTumorSegLib.training.classify import parse_data  # noqa: E402
from BreastTumorSegLib.training.classify_mip import mip_record, with_mip  # noqa: E402
from BreastTumorSegLib.training.phantom.malignancy import draw_plan  # noqa: E402

SIDE = {"L": "left", "R": "right"}


def exam_rows(clf, family: str, seed: int, cache_dir: Path) -> list[dict]:
    """One row per breast of the exam: truth, score, the candidates' probabilities, labels and features."""
    rec = with_mip(mip_record(family, seed, cache_dir), context=len(clf.feature_names) > 34)
    x = rec["x"][:, :len(clf.feature_names)]
    p = clf.probability(x) if len(x) else np.zeros(0)
    logit = clf.logit(x) if len(x) else np.zeros(0)
    _, lesions, bpe = draw_plan(seed)
    if family == "malignancy-randomized":
        lesions = lesions[:3]
    rows = []
    for key, truth in rec["truth"].items():
        side = SIDE[key.rsplit(":", 1)[1]]
        mine = np.flatnonzero(rec["keys"] == key)
        order = mine[np.argsort(-p[mine])] if len(mine) else mine
        plan = [les for les in lesions if les["side"] == side]
        rows.append({"family": family, "seed": seed, "key": key, "truth": int(truth), "bpe": bpe,
                     "score": float(p[order[0]]) if len(order) else clf.no_candidate_probability,
                     "n_cand": len(order), "p": p[order], "logit": logit[order], "y": rec["y"][order],
                     "x": x[order, :len(FEATURES)], "plan": plan})
    return rows


def why(r: dict, threshold: float) -> str | None:
    """The error class of a breast on the wrong side of *threshold*, None when right."""
    if r["truth"] and r["score"] < threshold:
        if not r["y"].any():
            return "malignant: lesion is no candidate"
        return "malignant: lesion outranked" if not r["y"][0] else "malignant: lesion is top, scores low"
    if not r["truth"] and r["score"] >= threshold:
        return "benign high: benign lesion planned" if r["plan"] else "benign high: no lesion (vessel/node/BPE)"
    return None


def plan_text(plan: list[dict]) -> str:
    return "; ".join(f"{'M' if les['malignant'] else 'B'} {les['kind']} {les['curve']} {les['margin']}"
                     f"{' rim' if les['rim'] else ''} {les['radius_mm']:.1f} mm" for les in plan) or "none"


def feature_power(rows: list[dict]) -> dict:
    """Per feature: AUC alone (lesion candidates vs the top candidate of each non-malignant breast)
    and the two medians."""
    from sklearn.metrics import roc_auc_score

    pos = [r["x"][r["y"] == 1] for r in rows if r["truth"] and r["y"].any()]
    neg = [r["x"][:1] for r in rows if not r["truth"] and r["n_cand"]]
    pos, neg = np.concatenate(pos), np.concatenate(neg)
    out = {}
    for i, f in enumerate(FEATURES):
        v = np.concatenate([pos[:, i], neg[:, i]])
        lab = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        auc = roc_auc_score(lab, v) if np.ptp(v) > 0 else 0.5
        out[f] = (auc, float(np.median(pos[:, i])), float(np.median(neg[:, i])))
    return out


def exam_share(rows: list[dict]) -> float:
    """Between-exam share of the variance of the non-malignant candidates' logits."""
    by_exam: dict[int, list] = {}
    for r in rows:
        by_exam.setdefault(r["seed"], []).extend(r["logit"][r["y"] == 0].tolist())
    groups = [np.array(v) for v in by_exam.values() if len(v) >= 2]
    allv = np.concatenate(groups)
    between = np.mean([(g.mean() - allv.mean()) ** 2 for g in groups])
    return float(between / allv.var())


def main(argv=None) -> int:
    from sklearn.metrics import roc_auc_score

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="malignancy-randomized:7000-7029,malignancy:7000-7029")
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--model", default=DEFAULT_CLASSIFIER)
    p.add_argument("--models-dir", default=None)
    a = p.parse_args(argv)
    clf = load_classifier(a.model, [a.models_dir] if a.models_dir else None)
    t = clf.threshold
    power, by_family = {}, {}
    for family, seeds in parse_data(a.data):
        for seed in seeds:
            try:
                by_family.setdefault(family, []).extend(exam_rows(clf, family, seed, a.cache_dir))
            except RuntimeError:  # the generator cannot build this seed
                continue
    for family, rows in by_family.items():
        y = np.array([r["truth"] for r in rows])
        s = np.array([r["score"] for r in rows])
        print(f"\n## {family}: {len({r['seed'] for r in rows})} exams, {len(rows)} breasts ({y.sum()} malignant), "
              f"AUC {roc_auc_score(y, s):.3f}, model {clf.model_id}, threshold {t:g}\n")
        counts: dict[str, int] = {}
        print("| breast | truth | score | candidates | lesion's rank | top candidate: p90 PE / washout / persistent / "
              "log SER / late change / log vol / curve known / late gap | error | plan |")
        print("|---|---|---|---|---|---|---|---|")
        for r in sorted(rows, key=lambda r: (r["truth"], r["score"])):
            w = why(r, t)
            rank = (int(np.flatnonzero(r["y"])[0]) + 1) if r["y"].any() else "-"
            top = r["x"][0] if r["n_cand"] else None
            desc = "-" if top is None else " / ".join(f"{top[FEATURES.index(f)]:.2f}" for f in (
                "pe_early_p90", "washout_frac", "persistent_frac", "log_ser_median", "hot_late_change",
                "log_volume_ml", "curve_known", "late_gap_min"))
            if w:
                counts[w] = counts.get(w, 0) + 1
            if w or r["truth"]:
                print(f"| {r['key']} | {r['truth']} | {r['score']:.2f} | {r['n_cand']} | {rank} | {desc} | {w or ''} | "
                      f"{plan_text(r['plan'])} |")
        print("\nErrors at the threshold:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
        mal = [r for r in rows if r["truth"]]
        for kind in ("mass", "nonmass"):
            sc = [r["score"] for r in mal if any(les["malignant"] and les["kind"] == kind for les in r["plan"])]
            if sc:
                print(f"malignant {kind}: {len(sc)} breasts, median score {np.median(sc):.2f}, "
                      f"below threshold {sum(v < t for v in sc)}")
        print(f"between-exam share of the non-malignant candidates' logit variance: {exam_share(rows):.2f}")
        power[family] = feature_power(rows)
    fams = list(power)
    print("\n## Each feature alone: AUC (lesion candidates vs the top candidate of non-malignant breasts) "
          "and medians (lesion / top non-malignant)\n")
    print("| feature | " + " | ".join(f"{f} AUC | {f} medians" for f in fams) + " |")
    print("|---|" + "---|---|" * len(fams))
    for f in FEATURES:
        print(f"| {f} | " + " | ".join(f"{power[fam][f][0]:.2f} | {power[fam][f][1]:.2f} / {power[fam][f][2]:.2f}"
                                       for fam in fams) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
