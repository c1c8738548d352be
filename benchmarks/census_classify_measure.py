#!/usr/bin/env python
"""Measurement records of classify-v12 (issue 29): per exam of a malignancy family, every candidate
``classify_exam`` scores (the finder's and, as shipped, the segmenter's lesions) with version 3's
features (:data:`FEATURES`), the measurement features (:data:`MEASURE_FEATURES`,
``engine/classify_measure.py``), the trainer's label and the true lesion it overlaps most (label,
share of the candidate inside it, share of the lesion it covers), plus the generator's lesions
(kind, curve, volume, malignancy) for the census.

    OMP_NUM_THREADS=1 python benchmarks/census_classify_measure.py record --family malignancy-randomized \
        --seeds 7000-7049 --out /work/runs/cls20/rec

One ``<family>_<seed>.measure.npz`` + ``.measure.json`` per exam (skipped when present; an exam the
generator cannot build is written as ``{"unbuildable": true}``). Seeds of the evaluation sets are
refused unless ``--held-out-run`` (the one run a committed rule allows).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

from BreastTumorSegLib.core.values import parse_seeds  # noqa: E402
from BreastTumorSegLib.engine import classify as C  # noqa: E402
from BreastTumorSegLib.engine.classify_lesions import segmenter_label  # noqa: E402
from BreastTumorSegLib.models.classifier import MEASURE_FEATURES  # noqa: E402
from BreastTumorSegLib.training.classify import candidate_labels  # noqa: E402
from BreastTumorSegLib.training.phantom.malignancy import held_out_seed, make_class_exam  # noqa: E402


def lesion_match(ph, cands) -> np.ndarray:
    """(label, share of the candidate inside it, share of the lesion covered) of the true lesion each
    candidate overlaps most (label 0: none)."""
    labels = sitk.GetArrayViewFromImage(ph.tumor_labels)
    sizes = {t["label"]: int((labels == t["label"]).sum()) for t in ph.tumors}
    out = []
    for c in cands:
        inside = labels[c.box][c.mask]
        vals, counts = np.unique(inside[inside > 0], return_counts=True)
        if not len(vals):
            out.append((0, 0.0, 0.0))
            continue
        i = int(np.argmax(counts))
        out.append((int(vals[i]), counts[i] / max(len(inside), 1), counts[i] / max(sizes.get(int(vals[i]), 1), 1)))
    return np.array(out, np.float64).reshape(-1, 3)


def record(family: str, seed: int, out: Path, segmenter: bool = True) -> None:
    path = out / f"{family}_{seed}.measure.npz"
    if path.exists():
        return
    meta = path.with_name(path.name[:-4] + ".json")
    try:
        ph = make_class_exam(family, seed)
    except RuntimeError:
        meta.write_text(json.dumps({"unbuildable": True}))
        np.savez(path, unbuildable=np.array(1))
        return
    exam, sides, own, maps, context = C.exam_candidates(ph.exam, register=False)
    seg = C.segmenter_candidates(exam, maps, sides, context["breast_hint"], context,
                                 segmenter_label(exam)) if segmenter else []
    rec = {}
    cands = own + seg
    C.add_measure_features(exam, maps, cands, context)
    x, y, where = candidate_labels(ph, cands)
    rec["x"], rec["y"] = x, y
    rec["m"] = np.array([c.measure_features for c in cands]).reshape(len(cands), len(MEASURE_FEATURES))
    rec["keys"] = np.array([k for k, _ in where], dtype="U64")
    rec["src"] = np.array([0] * len(own) + [1] * len(seg), int)
    rec["match"] = lesion_match(ph, cands)
    tmp = path.with_name(path.name[:-4] + ".tmp.npz")
    np.savez(tmp, **rec)
    tumors = [{k: (t.get(k) if not isinstance(t.get(k), (np.floating, np.integer)) else t.get(k).item())
               for k in ("label", "kind", "curve", "side", "radius_mm", "volume_ml", "peak_enhancement", "malignant")}
              for t in ph.tumors]
    info = {"case_id": ph.case_id, "tumors": tumors, "breast_truth": ph.breast_truth,
            "n_phases": ph.params.get("n_phases"), "times_min": ph.params.get("times_min"),
            "orientation": ph.params.get("orientation"), "spacing": list(ph.exam.pre.GetSpacing()),
            "kinetics": maps.info(), "segmenter": segmenter}
    meta.write_text(json.dumps(info, default=str))
    tmp.replace(path)


def load_records(out: Path, family: str, seeds) -> list[tuple[dict, dict]]:
    """(arrays, info) of every recorded, buildable exam of *seeds*."""
    recs = []
    for seed in seeds:
        path = out / f"{family}_{seed}.measure.npz"
        if not path.exists():
            continue
        info = json.loads(path.with_name(path.name[:-4] + ".json").read_text())
        if info.get("unbuildable"):
            continue
        recs.append((dict(np.load(path)), info))
    return recs


def _acquired(info: dict, t: dict) -> str:
    return t["curve"] if info["kinetics"].get("ser_available") else "unknown"


def census(out: Path, family: str, seeds, model: str = "breastcls-demo") -> int:
    """The measurement census: for each true lesion the candidate covering most of it, its features
    against the lesion's kind, curve and volume; the breasts version 3 ranks wrong."""
    from sklearn.metrics import roc_auc_score

    from BreastTumorSegLib.models.classifier import FEATURES, MEASURE_FEATURES, load_classifier
    from BreastTumorSegLib.training.classify import breast_scores

    fi = {f: i for i, f in enumerate(FEATURES)}
    mi = {f: i for i, f in enumerate(MEASURE_FEATURES)}
    recs = load_records(out, family, seeds)
    rows = []  # one per true lesion
    for r, info in recs:
        for t in info["tumors"]:
            hit = np.flatnonzero(r["match"][:, 0] == t["label"]) if len(r["y"]) else np.zeros(0, int)
            row = {"case": info["case_id"], "lesion": t, "curve_acq": _acquired(info, t), "spacing": info["spacing"]}
            if len(hit):
                j = hit[np.argmax(r["match"][hit, 2])]
                row.update(x=r["x"][j], m=r["m"][j], cover=float(r["match"][j, 2]), src=int(r["src"][j]))
            rows.append(row)
    found = [w for w in rows if "x" in w]
    print(f"{family}: {len(recs)} exams, {len(rows)} true lesions, {len(found)} with a covering candidate "
          f"({sum(w['src'] == 1 for w in found)} best covered by a segmenter lesion); "
          f"median share covered {np.median([w['cover'] for w in found]):.2f}")
    # curve
    print("\n## curve (lesions with a late phase): a feature read as washout < -0.1 < plateau < 0.1 < persistent")
    known = [w for w in found if w["curve_acq"] != "unknown"]
    truth = np.array([w["curve_acq"] for w in known])

    def call(v):
        return np.where(v < -0.1, "washout", np.where(v > 0.1, "persistent", "plateau"))
    for name, get in (("hot_late_change (v3, top quarter, smoothed ranks)", lambda w: w["x"][fi["hot_late_change"]]),
                      ("argmax washout/plateau/persistent fractions (v3)",
                       lambda w: [-1, 0, 1][int(np.argmax(w["x"][[fi["washout_frac"], fi["plateau_frac"], fi["persistent_frac"]]]))] * 0.2),
                      *[(f"{k}", (lambda k: lambda w: w["m"][mi[k]])(k)) for k in
                        ("m_hot10_change", "m_hot25_change", "m_hot10_enh_change", "m_hot10_peak_change")]):
        v = np.array([get(w) for w in known], float)
        c = call(v)
        acc = float(np.mean(c == truth)) if len(v) else float("nan")
        per = ", ".join(f"{k} {np.mean(c[truth == k] == k):.2f} (n={int((truth == k).sum())})" for k in ("washout", "plateau", "persistent") if (truth == k).any())
        wo = (truth == "washout").astype(int)
        auc = roc_auc_score(wo, -v) if 0 < wo.sum() < len(wo) else float("nan")
        print(f"- {name}: accuracy {acc:.2f}; right per true curve: {per}; AUC washout vs rest {auc:.3f}")
    print(f"  lesions with one post-contrast phase (curve unknown): {len(found) - len(known)}")
    # size
    print("\n## size: log volume of the candidate against log of the true placed volume")
    tv = np.log([max(w["lesion"]["volume_ml"] or 1e-3, 1e-3) for w in found])
    for name, v in (("log_volume_ml (v3)", [w["x"][fi["log_volume_ml"]] for w in found]),
                    ("m_halfmax_log_ml", [w["m"][mi["m_halfmax_log_ml"]] for w in found]),
                    ("m_core_log_ml", [w["m"][mi["m_core_log_ml"]] for w in found]),
                    ("log_major_axis_mm (v3)", [w["x"][fi["log_major_axis_mm"]] for w in found])):
        v = np.asarray(v, float)
        err = v - tv
        print(f"- {name}: correlation {np.corrcoef(v, tv)[0, 1]:.3f}; median log ratio {np.median(err):+.2f}, "
              f"median |log ratio| {np.median(np.abs(err - np.median(err))):.2f}")
    # kind
    print("\n## kind: mean (sd) of each margin/rim feature per true kind, and AUC of the kind against the others")
    kinds = np.array([w["lesion"]["kind"] for w in found])
    feats = [("rim_ratio", "x"), ("radial_cv", "x"), ("solidity", "x"), ("roundness", "x"), ("pe_cv", "x"),
             ("m_rim_profile", "m"), ("m_halfmax_solidity", "m"), ("m_fill", "m"), ("m_halfmax_radial_cv", "m"),
             ("m_edge_contrast", "m")]
    ks = sorted(set(kinds))
    print("| feature | " + " | ".join(f"{k} (n={int((kinds == k).sum())})" for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    for f, src in feats:
        v = np.array([w[src][(fi if src == "x" else mi)[f]] for w in found], float)
        cells = []
        for k in ks:
            sel = kinds == k
            a = roc_auc_score(sel.astype(int), v) if 0 < sel.sum() < len(sel) else float("nan")
            cells.append(f"{v[sel].mean():.3f} ({v[sel].std():.3f}) AUC {a:.2f}")
        print(f"| {f} | " + " | ".join(cells) + " |")
    # breasts v3 ranks wrong
    clf = load_classifier(model)
    xs = [r["x"] for r, _ in recs if len(r["y"])]
    keys = np.concatenate([r["keys"] for r, _ in recs if len(r["y"])])
    truth_b = {f"{info['case_id']}:{'L' if s == 'left' else 'R'}": int(v) for _, info in recs for s, v in info["breast_truth"].items()}
    p = clf.probability(np.concatenate(xs))
    yb, sb = breast_scores(p, keys, truth_b, clf.no_candidate_probability)
    names = sorted(truth_b)
    print(f"\n## breasts: version 3 AUC {roc_auc_score(yb, sb):.4f} ({len(yb)} breasts, {int(yb.sum())} malignant); "
          f"wrong side of {clf.threshold:g}:")
    by_breast = {}
    for _, info in recs:
        for t in info["tumors"]:
            by_breast.setdefault(f"{info['case_id']}:{'L' if t['side'] == 'left' else 'R'}", []).append(
                (t, _acquired(info, t), info["spacing"]))
    for k, y_, s_ in zip(names, yb, sb):
        if (y_ == 1) != (s_ >= clf.threshold):
            les = "; ".join(f"{'M' if t['malignant'] else 'B'} {t['kind']} {c} {t['volume_ml']:.2f} mL"
                            for t, c, _ in by_breast.get(k, [])) or "no lesion"
            sp = by_breast.get(k, [(None, None, None)])[0][2]
            print(f"- {k}: truth {y_}, v3 {s_:.2f}; {les}" + (f"; spacing {[round(x, 2) for x in sp]}" if sp else ""))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["record", "census"])
    p.add_argument("--family")
    p.add_argument("--seeds")
    p.add_argument("--jobs", type=Path, help="record: a file of 'family seed' lines, in order (--family/--seeds unused)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--held-out-run", action="store_true")
    p.add_argument("--no-segmenter", action="store_true", help="the finder's candidates only (training exams)")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.what == "census":
        return census(a.out, a.family, parse_seeds(a.seeds))
    jobs = ([(f, int(s)) for f, s in (line.split()[:2] for line in a.jobs.read_text().splitlines() if line.strip())]
            if a.jobs else [(a.family, s) for s in parse_seeds(a.seeds)])
    for family, seed in jobs:
        if held_out_seed(seed) and not a.held_out_run:
            p.error(f"seed {seed} is an evaluation seed")
        t0 = time.time()
        record(family, seed, a.out, not a.no_segmenter)
        print(f"{family} {seed}: {time.time() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
