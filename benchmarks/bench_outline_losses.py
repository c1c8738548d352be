#!/usr/bin/env python
"""Where does "ftv-outline" lose the tumor? Per exam, the stage that removed each missed truth voxel.

    python benchmarks/bench_outline_losses.py --families heterogeneous,vessels --seeds 7000-7009
    python benchmarks/bench_outline_losses.py --options "outline_half_maximum=True"

Use DEVELOPMENT seeds (not 5000-5029, held out for bench_generalization). For every exam the whole
pipeline runs (no registration: the known motion is removed first) without the false-positive
reduction, which is then applied to that result, so that each missed truth voxel is charged to one
stage, in this order:

* ``roi``: outside the ROI the segmenter was given (the breast mask, with the pipeline's fallbacks);
* ``bg``: fails the FTV background (pre-contrast signal / noise floor) condition;
* ``pe<lvl``: PE below the outline's level (max of outline_pe and the exam's BPE percentile);
* ``not grown``: passes both but is not in the outline (not connected, beyond the margin, the
  one-voxel edge rule, or no core at all: ``core mm`` is then 99);
* ``gate``: in the outline but dropped by postprocess (breast gate, minimum size);
* ``fp``: removed by the false-positive reduction.

Also: the level, the PE of the missed voxels (10th/50th/90th percentile), their median distance
from the FTV core, the false-positive voxels inside inserted vessels and elsewhere, and the lesion
counts. Cost: 2-6 s per exam on one thread.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_generalization import motion_free, table  # noqa: E402
from BreastTumorSegLib.core.values import parse_seeds  # noqa: E402
from BreastTumorSegLib.evaluation.lesions import lesion_level  # noqa: E402
from BreastTumorSegLib.evaluation.metrics import dice  # noqa: E402

STAGES = ("roi", "bg", "pe<lvl", "not grown", "gate", "fp")


def options(text: str) -> dict:
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, value = item.split("=", 1)
        out[key.strip()] = ast.literal_eval(value.strip())
    return out


def losses(ph, seg, captured: dict) -> list:
    from BreastTumorSegLib.engine.fpreduce import reduce_false_positives
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.kinetics.ftv import roi_array
    from BreastTumorSegLib.kinetics.outline import background_enhancement

    exam = motion_free(ph)
    res = segment_exam(exam, model=seg, device="cpu", settings=SegmentSettings(registration="none", fp_reduction=False))
    comps = sitk.RelabelComponent(sitk.ConnectedComponent(res.label, True), sortByObjectSize=True)
    after = reduce_false_positives(comps, res.probability, list(exam.phases), exam.effective_times(), res.lesions)[0]
    r = seg.last_result
    truth = sitk.GetArrayFromImage(ph.tumor_labels) > 0
    pre_fp = sitk.GetArrayFromImage(res.label) > 0
    final = sitk.GetArrayFromImage(after) > 0
    core = sitk.GetArrayFromImage(r.mask) > 0
    outline = sitk.GetArrayFromImage(r.outline) > 0
    roi, _ = roi_array(captured["roi"], exam.reference)
    pe = r.maps.array("pe_early")
    valid = r.maps.array("valid") > 0
    pre = sitk.GetArrayFromImage(exam.pre)
    sp = np.asarray(exam.reference.GetSpacing())[::-1]
    s = r.settings
    tissue_ok = valid & (pre >= r.background_threshold)
    bpe = background_enhancement(pe, roi & tissue_ok, core, sp, s.outline_bpe_percentile)
    level = min(max(s.outline_pe, bpe or 0.0), s.pe_threshold)
    miss = truth & ~final
    stage = {"roi": miss & ~roi}
    stage["bg"] = miss & roi & ~tissue_ok
    stage["pe<lvl"] = miss & roi & tissue_ok & (pe < level)
    stage["not grown"] = miss & ~outline & roi & tissue_ok & (pe >= level)
    stage["gate"] = miss & outline & ~pre_fp
    stage["fp"] = miss & pre_fp & ~final
    dist = ndimage.distance_transform_edt(~core, sampling=sp) if core.any() else np.full(core.shape, 99.0)
    vessel = sitk.GetArrayFromImage(ph.vessel_mask) > 0 if getattr(ph, "vessel_mask", None) is not None \
        else np.zeros(truth.shape, bool)
    fp_vox = final & ~truth
    les = lesion_level(after, ph.tumor_labels, 0.1, ref_is_labels=True)
    n_t = max(int(truth.sum()), 1)
    mp = pe[miss]
    return [f"{dice(final, truth):.3f}", f"{np.sum(final & truth) / n_t:.3f}",
            f"{np.sum(final & truth) / max(int(final.sum()), 1):.3f}", int(truth.sum())] + \
        [int(stage[k].sum()) for k in STAGES] + \
        [f"{level:.0f}", "/".join(f"{np.percentile(mp, q):.0f}" for q in (10, 50, 90)) if mp.size else "-",
         f"{np.median(dist[miss]):.1f}" if miss.any() else "-", int((fp_vox & vessel).sum()), int((fp_vox & ~vessel).sum()),
         f"{les.n_found}/{les.n_true}", les.n_false_positive]



def ftv_outline_keeping_roi(**settings):
    """``ftv-outline`` whose every prediction leaves the breast region it was given in
    ``captured["roi"]`` (the engine computes the region inside ``segment_exam``)."""
    return keeping_roi("ftv-outline", **settings)


def keeping_roi(model: str, **settings):
    """The segmenter *model* whose every prediction leaves the breast region it was given in ``captured["roi"]``."""
    from BreastTumorSegLib.models.registry import get_segmenter

    seg = get_segmenter(model, **settings)
    captured: dict = {}
    predict = seg.predict

    def spy(exam, breast_mask, *args, **kw):
        captured["roi"] = breast_mask
        return predict(exam, breast_mask, *args, **kw)

    seg.predict = spy
    return seg, captured


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default="heterogeneous,vessels,irregular")
    p.add_argument("--seeds", default="7000-7009")
    p.add_argument("--options", default="", help="FTV settings for ftv-outline, e.g. outline_half_maximum=True")
    a = p.parse_args(argv)
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    seeds = parse_seeds(a.seeds)
    if any(5000 <= s <= 5029 for s in seeds):
        print("note: seeds 5000-5029 are held out for bench_generalization; diagnose on others")
    seg, captured = ftv_outline_keeping_roi(**options(a.options))
    rows = []
    for fam in a.families.split(","):
        for s in seeds:
            rows.append([fam, s] + losses(FAMILIES[fam](s), seg, captured))
            print("  " + " ".join(str(c) for c in rows[-1]), flush=True)
    print(f"\n### Missed truth voxels of ftv-outline by stage ({a.options or 'defaults'})\n")
    print(table(["family", "seed", "Dice", "recall", "precision", "truth vox"] + [f"missed: {k}" for k in STAGES] +
                ["level %", "missed PE p10/50/90", "missed: core mm", "FP vox in vessels", "FP vox elsewhere",
                 "found", "FP lesions"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
