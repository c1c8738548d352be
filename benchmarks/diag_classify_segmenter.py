#!/usr/bin/env python
"""Development census for classify-v10 (issue 29): per exam of a malignancy family, the generator's
own lesion parameters (for the oracle ceiling, ``benchmarks/classify_oracle.py``) and three sets of
candidates with version 3's features and the trainer's labels:

* ``own``: the classifier's candidate finder as at run time (``exam_candidates``, phases aligned);
* ``own_les``: the same finder given the shipped segmenter's label map as ``lesion_mask`` (what
  ``segment --classify`` does: the segmenter's lesions inside the body widen the region);
* ``seg``: one candidate per connected lesion of the shipped segmenter (``segment_exam``, default
  ``ftv-outline``, no registration: the exams are motion-free), its features read exactly as a
  finder candidate's (:func:`~BreastTumorSegLib.engine.classify.segmenter_candidates`).

(The development records of classify-v10.md were made by this script's first version, whose own copy
of that function took a lesion's side outside the finder's region from the segmenter's lesion table
instead of the midline rule; on 7005, 7026 and 7038 both give identical candidates.)

    OMP_NUM_THREADS=1 python benchmarks/diag_classify_segmenter.py --family malignancy-randomized \
        --seeds 7000-7049 --out /work/runs/cls18/dev

One ``<family>_<seed>.npz`` + ``.json`` per exam (skipped when present); seeds of the evaluation sets
are refused (:func:`held_out_seed`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

from BreastTumorSegLib.core.values import parse_seeds  # noqa: E402
from BreastTumorSegLib.engine import classify as C  # noqa: E402
from BreastTumorSegLib.engine.pipeline import segment_exam  # noqa: E402
from BreastTumorSegLib.engine.settings import SegmentSettings  # noqa: E402
from BreastTumorSegLib.training.classify import candidate_labels  # noqa: E402
from BreastTumorSegLib.training.phantom.malignancy import held_out_seed, make_class_exam  # noqa: E402


def oracle_params(ph) -> dict:
    """The generator's drawn lesions (requested and as rendered) and the exam's acquisition."""
    mal = ph.params.get("malignancy", {})
    rendered = []
    for t in ph.tumors:
        rendered.append({k: t.get(k) for k in ("request", "kind", "curve", "side", "radius_mm", "volume_ml",
                                                "peak_enhancement", "malignant")})
    return {"lesions": mal.get("lesions"), "placed": mal.get("placed"), "breast_truth": ph.breast_truth,
            "rendered": rendered, "n_phases": ph.params.get("n_phases"), "times_min": ph.params.get("times_min"),
            "orientation": ph.params.get("orientation"), "spacing": list(ph.exam.pre.GetSpacing())}


def analyse(family: str, seed: int) -> tuple[dict, dict]:
    ph = make_class_exam(family, seed)
    t0 = time.process_time()
    exam, sides, own, maps, context = C.exam_candidates(ph.exam, register=False)
    t_own = time.process_time() - t0
    t0 = time.process_time()
    res = segment_exam(ph.exam, device="cpu", settings=SegmentSettings(registration="none"))
    t_seg = time.process_time() - t0
    seg = C.segmenter_candidates(exam, maps, sides, context["breast_hint"], context, res.label)
    _, _, own_les, _, _ = C.exam_candidates(ph.exam, register=False, lesion_mask=res.label)
    rec = {}
    for name, cands in (("own", own), ("own_les", own_les), ("seg", seg)):
        x, y, where = candidate_labels(ph, cands)
        rec[f"{name}_x"], rec[f"{name}_y"] = x, y
        rec[f"{name}_keys"] = np.array([k for k, _ in where], dtype="U64")
        rec[f"{name}_ml"] = np.array([c.volume_ml for c in cands])
    info = oracle_params(ph)
    info.update({"case_id": ph.case_id, "cpu_own_s": t_own, "cpu_seg_s": t_seg, "n_seg_lesions": len(res.lesions)})
    return rec, info


VARIANTS = {"own": ("own",), "own_les": ("own_les",), "seg": ("seg",), "own+seg": ("own", "seg"),
            "own_les+seg": ("own_les", "seg")}


def report(out: Path, family: str, seeds, model: str, models_dir=None) -> int:
    """Per candidate set (:data:`VARIANTS`): the breast AUC with *model*'s probabilities (bootstrap CI
    as ``bench_classify.py``) and the census of malignant breasts none of whose candidates is labelled
    malignant."""
    from BreastTumorSegLib.models.classifier import load_classifier
    from BreastTumorSegLib.training.classify import breast_scores
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_classify import auc_ci

    clf = load_classifier(model, [models_dir] if models_dir else None)
    n = len(clf.feature_names)
    recs, truth = {}, {}
    for seed in seeds:
        path = out / f"{family}_{seed}.npz"
        if not path.exists():
            continue
        recs[seed] = dict(np.load(path))
        info = json.loads(path.with_suffix(".json").read_text())
        truth.update({f"{info['case_id']}:{'L' if s == 'left' else 'R'}": int(v) for s, v in info["breast_truth"].items()})
    mal = sorted(k for k, v in truth.items() if v)
    print(f"{family}: {len(recs)} exams analysed, {len(truth)} breasts, {len(mal)} malignant; model {clf.model_id}")
    found = {}
    for name, parts in VARIANTS.items():
        xs, ys, keys = [], [], []
        for r in recs.values():
            for part in parts:
                if len(r[f"{part}_y"]):
                    xs.append(r[f"{part}_x"][:, :n])
                    ys.append(r[f"{part}_y"])
                    keys += r[f"{part}_keys"].tolist()
        x = np.concatenate(xs) if xs else np.zeros((0, n))
        y = np.concatenate(ys) if ys else np.zeros(0, int)
        keys = np.array(keys)
        p = clf.probability(x) if len(x) else np.zeros(0)
        yb, sb = breast_scores(p, keys, truth, clf.no_candidate_probability)
        a_, lo, hi = auc_ci(yb, sb)
        hit = {k for k, v in zip(keys, y) if v}
        found[name] = hit
        missed = [k for k in mal if k not in hit]
        t = clf.threshold
        sens = float(np.mean(sb[yb == 1] >= t))
        spec = float(np.mean(sb[yb == 0] < t))
        print(f"| {name} | {len(x)} | {len(missed)} of {len(mal)} | {a_:.4f} [{lo:.3f}-{hi:.3f}] | {sens:.2f} / {spec:.2f} |")
        print(f"    never a candidate: {', '.join(missed) or '-'}")
    print(f"malignant breasts the segmenter's lesions reach that the finder misses: "
          f"{sorted(found['seg'] - found['own']) or '-'}; the finder's that the segmenter misses: "
          f"{len(found['own'] - found['seg'])}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="malignancy-randomized")
    ap.add_argument("--seeds", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--report", action="store_true", help="score the analysed exams with --model and print the census")
    ap.add_argument("--model", default="breastcls-demo")
    ap.add_argument("--models-dir", default=None)
    a = ap.parse_args(argv)
    if a.report:
        return report(a.out, a.family, parse_seeds(a.seeds), a.model, a.models_dir)
    a.out.mkdir(parents=True, exist_ok=True)
    for seed in parse_seeds(a.seeds):
        if held_out_seed(seed):
            print(f"refused: {seed} is an evaluation seed", flush=True)
            return 2
        path = a.out / f"{a.family}_{seed}.npz"
        if path.exists():
            continue
        t0 = time.time()
        try:
            rec, info = analyse(a.family, seed)
        except RuntimeError as exc:
            print(f"{a.family} {seed}: unbuildable: {exc}", flush=True)
            continue
        np.savez(path.with_suffix(".tmp.npz"), **rec)
        path.with_suffix(".tmp.npz").replace(path)
        path.with_suffix(".json").write_text(json.dumps(info, default=float))
        print(f"{a.family} {seed}: own {len(rec['own_y'])} ({int(rec['own_y'].sum())} mal) own_les {len(rec['own_les_y'])} "
              f"seg {len(rec['seg_y'])} ({int(rec['seg_y'].sum())} mal) truth {info['breast_truth']} "
              f"cpu own {info['cpu_own_s']:.1f} seg {info['cpu_seg_s']:.1f} wall {time.time() - t0:.1f}", flush=True)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
