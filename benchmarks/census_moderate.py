#!/usr/bin/env python
"""Moderately enhancing tumors missed inside the breast region, and what else enhances at their level (issue 25/31).

    OMP_NUM_THREADS=1 python benchmarks/census_moderate.py --exams heterogeneous:6066-6073 ellipse:7120-7139 \
        --json /work/runs/het20/census.json

Use DEVELOPMENT seeds. For every exam ``ftv-outline`` runs as shipped (known motion removed, no registration,
as ``bench_generalization.py``). Then, inside the breast region the segmenter searched, on tissue passing the
first run's pre-contrast background condition, every 26-connected component of voxels whose 3 x 3 x 3
neighbourhood median PE reaches ``--min-pe`` (40 %; :func:`engine.near_level.near_level_voxels`, skin margin
dropped as FTV drops it), less the first run's result grown by one voxel (as :mod:`engine.moderate` looks), of
>= 0.1 mL and mostly (>= 50 %) outside the final label map, is measured:

* ``tumor``: share of its voxels that are truth tumor (>= 0.3: a tumor component);
* volume, PE p10/50/90, SER median, elongation (:func:`kinetics.beside_region.elongation`);
* its ring (judged tissue 1.5-6 mm around it, the first run's result excluded, :func:`engine.near_level.ring_pe`): PE median and p90, the share of the
  shell that is judged tissue, and the contrast (its PE median minus the ring's median / p90);
* ``touch``: whether it lies beside the first run's result (within two voxels);
* ``prob``: the maximum of the pipeline's probability map in it; ``score``: the false-positive classifier's
  tumor probability less its threshold (:func:`engine.behind_floor._tumor_score`, > 0: called a tumor).

Every truth tumor >= 0.2 mL that no voxel of the final label map overlaps is listed too (``missed``): its
share inside the region, PE p10/50/90, maximum probability, and the component that holds most of it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_generalization import motion_free  # noqa: E402
from bench_outline_losses import keeping_roi  # noqa: E402
from BreastTumorSegLib.core.values import parse_seeds  # noqa: E402


def exam_census(ph, seg, captured: dict, min_pe: float) -> dict:
    from BreastTumorSegLib.engine.behind_floor import _tumor_score
    from BreastTumorSegLib.engine.fpreduce import phase_arrays
    from BreastTumorSegLib.engine.moderate import found_by_first_run
    from BreastTumorSegLib.engine.near_level import near_level_voxels, ring_pe, _touches
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.kinetics.beside_region import elongation
    from BreastTumorSegLib.kinetics.ftv import drop_skin_components, roi_array
    from BreastTumorSegLib.core.imageutil import padded_components

    exam = motion_free(ph)
    res = segment_exam(exam, model=seg, device="cpu", settings=SegmentSettings(registration="none"))
    first = seg.last_result
    maps = seg.kinetic_maps(exam)
    final = sitk.GetArrayFromImage(res.label) > 0
    prob = sitk.GetArrayFromImage(res.probability)
    tl = sitk.GetArrayFromImage(ph.tumor_labels)
    roi, _ = roi_array(captured["roi"], exam.reference)
    pe = maps.array("pe_early")
    ser = maps.array("ser") if maps.ser_available else None
    pre = sitk.GetArrayViewFromImage(exam.pre)
    sp = np.asarray(exam.reference.GetSpacing())[::-1]
    vox_ml = float(np.prod(sp)) / 1000.0
    ok = roi & (maps.array("valid") > 0) & (pre >= np.float32(first.background_threshold))
    cand = near_level_voxels(pe, ok, min_pe)
    found = found_by_first_run(first)
    cand &= ~found
    judged = ok & ~found
    if seg.settings.skin_margin_mm > 0:
        drop_skin_components(cand, maps.array("valid") > 0, sp, seg.settings.skin_margin_mm)
    labels, _ = ndimage.label(cand, structure=np.ones((3, 3, 3), bool))
    phases = phase_arrays(list(exam.phases), exam.effective_times())
    whole = tuple(slice(0, n) for n in pe.shape)
    comps = []
    for lab, sl, comp in padded_components(labels):
        n = int(np.count_nonzero(comp))
        if n * vox_ml < 0.1 or final[sl][comp].mean() >= 0.5:
            continue
        v = pe[sl][comp]
        ring, share = ring_pe(comp, sl, pe, judged, sp)
        rmed = float(np.median(ring)) if ring.size else float("nan")
        r90 = float(np.percentile(ring, 90)) if ring.size else float("nan")
        tumor_share = float((tl[sl][comp] > 0).mean())
        comps.append({"label": lab, "tumor": tumor_share, "ml": n * vox_ml,
                      "pe10": float(np.percentile(v, 10)), "pe50": float(np.median(v)), "pe90": float(np.percentile(v, 90)),
                      "ser": float(np.median(ser[sl][comp])) if ser is not None else float("nan"),
                      "elong": elongation(comp, sp), "ring50": rmed, "ring90": r90, "ring_share": share,
                      "contrast": float(np.median(v)) - rmed, "contrast90": float(np.median(v)) - r90,
                      "touch": _touches(comp, sl, found), "prob": float(prob[sl][comp].max()),
                      "score": _tumor_score(comp, whole, sl, exam, labels, pe, seg.settings.pe_threshold, phases)})
    missed = []
    for t in range(1, int(tl.max()) + 1):
        m = tl == t
        n = int(m.sum())
        if n * vox_ml < 0.2 or (final & m).any():
            continue
        v = pe[m]
        hit = np.bincount(labels[m], minlength=labels.max() + 1)
        hit[0] = 0
        missed.append({"tumor": t, "ml": n * vox_ml, "in_region": float(roi[m].mean()), "bg_ok": float(ok[m].mean()),
                       "pe10": float(np.percentile(v, 10)), "pe50": float(np.median(v)), "pe90": float(np.percentile(v, 90)),
                       "prob": float(prob[m].max()), "comp": int(hit.argmax()) if hit.max() else 0,
                       "comp_share": float(hit.max()) / n})
    found = sum(1 for t in range(1, int(tl.max()) + 1) if (tl == t).sum() * vox_ml >= 0.2 and (final & (tl == t)).any())
    return {"components": comps, "missed": missed, "found": found}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exams", nargs="+", required=True, help="family:seeds, e.g. heterogeneous:6066-6073")
    p.add_argument("--min-pe", type=float, default=40.0)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--model", default="ftv-outline", help="ftv-outline (segmentation default) or ftv (follow-up default)")
    a = p.parse_args(argv)
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    seg, captured = keeping_roi(a.model)
    out = json.loads(a.json.read_text()) if a.json.exists() else {}
    for spec in a.exams:
        fam, seeds = spec.split(":")
        for s in parse_seeds(seeds):
            if any(5000 <= s < 6000 for s in [s]):
                raise SystemExit("held-out seed: use development seeds (6000+, 7000+)")
            key = f"{fam}:{s}"
            if key in out:
                continue
            out[key] = exam_census(FAMILIES[fam](s), seg, captured, a.min_pe)
            r = out[key]
            print(f"{key}: found {r['found']}, missed {len(r['missed'])} "
                  f"{[(round(m['ml'], 2), round(m['pe50']), round(m['in_region'], 2), m['comp']) for m in r['missed']]}; "
                  f"{sum(c['tumor'] >= 0.3 for c in r['components'])} tumor / "
                  f"{sum(c['tumor'] < 0.3 for c in r['components'])} other components", flush=True)
            tmp = a.json.with_suffix(".tmp")
            tmp.write_text(json.dumps(out))
            tmp.replace(a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
