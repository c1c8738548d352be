#!/usr/bin/env python
"""Census of the lesions "ftv-outline" misses or finds poorly (issue 25): the step of the chain that drops each.

    PYTHONPATH=BreastTumorSeg python benchmarks/census_missed_small.py \\
        --families hybrid-axial-irregular,hybrid-sagittal-irregular,irregular,heterogeneous --seeds 7000-7009

DEVELOPMENT seeds only (6000+, 7000+). The whole pipeline runs as ``bench_generalization.py`` runs it
(no registration, the known motion removed, false-positive reduction and every post step as shipped);
its intermediate images are taken from inside the run, and for each truth lesion >= ``--min-ml`` whose
final recall is below ``--recall`` the voxels of that lesion surviving each step are counted, in order:

``roi`` (the breast region the segmenter was given), ``bg`` (+ FTV's background condition, pre-contrast
signal >= its threshold), ``pe`` (+ PE >= FTV's pe_threshold, and SER condition), ``neigh`` (+ FTV's
neighbour rule), ``core`` (FTV's core: + the vessel opening and the skin rule), ``outline`` (the
whole-tumor outline), ``prob`` (the probability map >= the threshold), ``post`` (after postprocess:
breast gate, minimum size), ``fp`` (after the false-positive reduction), ``final`` (after the kept-lesion
steps). The first step leaving no voxel (or, for a partly found lesion, the largest drop) is named.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_generalization import hybrid_makers, motion_free, table  # noqa: E402
from BreastTumorSegLib.core.values import parse_seeds  # noqa: E402

STEPS = ("roi", "bg", "pe", "neigh", "core", "outline", "prob", "post", "fp", "final")


def traced_run(exam):
    """``segment_exam`` of *exam* with ftv-outline; returns (result, segmenter, captured intermediates)."""
    from BreastTumorSegLib.engine import pipeline
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.models.registry import get_segmenter

    seg = get_segmenter("ftv-outline")
    cap: dict = {}
    predict, post, fpr = seg.predict, pipeline.postprocess, pipeline.reduce_false_positives

    def spy_predict(ex, bmask, *a, **k):
        cap["roi"] = bmask
        return predict(ex, bmask, *a, **k)

    def spy_post(prob, settings, *a, **k):
        cap["prob"], cap["threshold"] = prob, settings.threshold
        out = post(prob, settings, *a, **k)
        cap["post"] = out[0]
        return out

    def spy_fp(*a, **k):
        out = fpr(*a, **k)
        cap["fp"], cap["fp_report"] = out[0], out[3].as_dict()
        return out

    seg.predict = spy_predict
    pipeline.postprocess, pipeline.reduce_false_positives = spy_post, spy_fp
    try:
        res = segment_exam(exam, model=seg, device="cpu", settings=SegmentSettings(registration="none"))
    finally:
        pipeline.postprocess, pipeline.reduce_false_positives = post, fpr
    return res, seg, cap


def census(fam: str, seed: int, ph, min_ml: float, max_recall: float) -> tuple[list, int, int]:
    from BreastTumorSegLib.kinetics.ftv import _neighbours_rule, roi_array

    exam = motion_free(ph)
    res, seg, cap = traced_run(exam)
    r = seg.last_result
    ref = exam.reference
    sp = np.asarray(ref.GetSpacing())[::-1]
    vox_ml = float(np.prod(sp)) / 1000.0
    arr = lambda im: sitk.GetArrayFromImage(im) > 0  # noqa: E731
    roi, _ = roi_array(cap["roi"], ref)
    pe = r.maps.array("pe_early")
    valid = r.maps.array("valid") > 0
    pre = sitk.GetArrayFromImage(exam.pre)
    s = r.settings
    bg = roi & valid & (pre >= r.background_threshold)
    pe_ok = bg & (pe >= s.pe_threshold)
    if r.ser_used:
        pe_ok &= r.maps.array("ser") >= s.ser_min
    masks = {"roi": roi, "bg": bg, "pe": pe_ok, "neigh": _neighbours_rule(pe_ok, s.min_neighbors), "core": arr(r.mask),
             "outline": arr(r.outline) if r.outline is not None else np.zeros_like(roi),
             "prob": sitk.GetArrayFromImage(cap["prob"]) >= cap["threshold"], "post": arr(cap["post"]),
             "fp": arr(cap["fp"]), "final": arr(res.label)}
    labels = sitk.GetArrayFromImage(ph.tumor_labels)
    rows, n_found, n_true = [], 0, 0
    for lab in range(1, int(labels.max()) + 1):
        t = labels == lab
        n = int(t.sum())
        if n * vox_ml < min_ml:
            continue
        n_true += 1
        counts = [int((t & masks[k]).sum()) for k in STEPS]
        recall = counts[-1] / n
        n_found += counts[-1] > 0
        if recall >= max_recall:
            continue
        info = ph.tumors[lab - 1] if lab - 1 < len(ph.tumors) else {}
        p = pe[t]
        depth = ndimage.distance_transform_edt(t, sampling=sp).max()
        if counts[-1] == 0:  # the first step of the run of zeros that ends the chain
            last = max(i for i, c in enumerate(counts) if c > 0) if any(counts) else -1
            lost = STEPS[last + 1]
        else:
            drops = [counts[i - 1] - counts[i] if i else n - counts[0] for i in range(len(STEPS))]
            lost = "partly: " + STEPS[int(np.argmax(drops))]
        rows.append([fam, seed, lab, f"{n * vox_ml:.2f}", n, "x".join(f"{v:g}" for v in sp[::-1]),
                     info.get("pattern", "-"), f"{depth:.1f}", "/".join(f"{np.percentile(p, q):.0f}" for q in (10, 50, 90)),
                     f"{np.mean(p >= s.pe_threshold):.2f}", " / ".join(str(c) for c in counts), f"{recall:.2f}",
                     f"{r.outline_level:.0f}" if r.outline_level is not None else "-", lost])
    return rows, n_found, n_true


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default="hybrid-axial-irregular,hybrid-sagittal-irregular,irregular,heterogeneous")
    p.add_argument("--seeds", default="7000-7009")
    p.add_argument("--min-ml", type=float, default=0.1)
    p.add_argument("--recall", type=float, default=0.5, help="list lesions whose final recall is below this")
    a = p.parse_args(argv)
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    seeds = parse_seeds(a.seeds)
    if any(s < 6000 for s in seeds):
        p.error("development seeds only (6000+, 7000+)")
    makers = {**FAMILIES, **hybrid_makers()}
    rows, tally = [], {}
    for fam in a.families.split(","):
        for s in seeds:
            got, found, true = census(fam, s, makers[fam](s), a.min_ml, a.recall)
            f0, t0 = tally.get(fam, (0, 0))
            tally[fam] = (f0 + found, t0 + true)
            print(f"# {fam} {s}: found {found}/{true}", flush=True)
            for row in got:
                print("  " + " | ".join(str(c) for c in row), flush=True)
            rows += got
    print("\n" + table(["family", "seed", "lesion", "mL", "voxels", "spacing mm", "pattern", "depth mm",
                        "PE p10/50/90", "share PE>=thr", "voxels " + " / ".join(STEPS), "recall", "level %",
                        "lost at"], rows))
    print("\nfound (>= %.2f mL): " % a.min_ml + ", ".join(f"{k} {f}/{t}" for k, (f, t) in tally.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
