"""Census of the components that ``engine/dark_before`` adds (issue 25, development seeds only).

For each exam given, the pipeline (``ftv-outline``, the step on) runs once with the step's three finders watched;
every component a finder adds is described: which part added it, volume, whether it is a true tumor (the phantom's
truth), where it lies (the phantom's tissues in and around it, the share inside the breast region, depth under the
skin), its kinetics (early PE, SER), its pre-contrast level against the first run's background level and the exam's
fat level, the final probability, its shape (elongation, thickness) and the component classifier's tumor score with
its features. One JSON line per component; a table at the end.

    python benchmarks/dark_before_census.py randomized 7012 7017 --out census.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generalization import motion_free  # noqa: E402

from BreastTumorSegLib.engine import behind_floor as bf  # noqa: E402
from BreastTumorSegLib.engine import dark_before as db  # noqa: E402
from BreastTumorSegLib.engine.fpreduce import FEATURES, phase_arrays  # noqa: E402
from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam  # noqa: E402
from BreastTumorSegLib.kinetics.beside_region import elongation  # noqa: E402
from BreastTumorSegLib.kinetics.outline import FULL26  # noqa: E402
from BreastTumorSegLib.kinetics.outline_shells import body_of  # noqa: E402
from BreastTumorSegLib.kinetics.significance import difference_noise  # noqa: E402
from BreastTumorSegLib.models.registry import get_segmenter  # noqa: E402
from BreastTumorSegLib.training.phantom.families import FAMILIES  # noqa: E402

PARTS = ("fatsat_lesions", "beside_lesions", "behind_lesions")


def watch():
    """Wrap the three finders; return the list their calls are recorded in."""
    calls = []
    for name in PARTS:
        real = getattr(db, name)

        def wrapped(*args, _real=real, _name=name):
            out = _real(*args)
            calls.append((_name, args, out[0]))
            return out
        setattr(db, name, wrapped)
    return calls


def describe(ph, exam, part, args, add, res) -> list[dict]:
    first, settings, maps = args[1], args[2], args[3]
    roi = args[-1]
    sp = np.asarray(exam.reference.GetSpacing(), float)[::-1]
    vox_ml = float(np.prod(sp)) / 1000.0
    truth = sitk.GetArrayViewFromImage(ph.tumor_labels) > 0
    tissue = sitk.GetArrayViewFromImage(ph.tissue_labels) if getattr(ph, "tissue_labels", None) is not None else None
    names = {v: k for k, v in ph.params.get("tissue_labels", {}).items()}
    breast_truth = sitk.GetArrayViewFromImage(ph.breast_mask) > 0
    valid = maps.array("valid") > 0
    body = body_of(valid)
    skin_depth = ndimage.distance_transform_edt(body, sampling=sp)
    pe = maps.array("pe_early")
    pre, early, late = phase_arrays(list(exam.phases), exam.effective_times())
    pre = np.asarray(pre, np.float32)
    early = np.asarray(early, np.float32)
    late = None if late is None else np.asarray(late, np.float32)
    region = roi & valid
    fat = float(np.percentile(pre[region], 50.0)) if region.any() else float("nan")
    bg = float(first.background_threshold)
    sd = difference_noise(pre, early, region) if region.any() else None
    label = sitk.GetArrayViewFromImage(res.label) > 0
    prob = sitk.GetArrayViewFromImage(res.probability)
    first_run = (sitk.GetArrayViewFromImage(first.mask) > 0) | (sitk.GetArrayViewFromImage(first.outline) > 0)
    d_first = ndimage.distance_transform_edt(~first_run, sampling=sp) if first_run.any() else None
    labels, n = ndimage.label(add, structure=FULL26)
    whole = tuple(slice(0, k) for k in add.shape)
    phases = (pre, early, late)
    feats = {}
    real_cf = bf.component_features

    def grab(*a, **k):
        f = real_cf(*a, **k)
        feats["f"] = f
        return f
    out = []
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        comp = labels[sl] == lab
        full = np.zeros(add.shape, bool)
        full[sl] = comp
        nv = int(comp.sum())
        bf.component_features = grab
        try:
            score = bf._tumor_score(comp, whole, sl, exam, labels, pe, settings.pe_threshold, phases)
        finally:
            bf.component_features = real_cf
        shell = ndimage.binary_dilation(full, structure=FULL26, iterations=2) & ~full
        thick = 2.0 * float(ndimage.distance_transform_edt(np.pad(comp, 1), sampling=sp).max())
        idx = np.argwhere(full)
        cen = idx.mean(0)
        ppre, pearly = pre[full], early[full]
        ser = (pearly - ppre) / np.maximum((late[full] - ppre) if late is not None else 1.0, 1e-6)
        row = {"family": ph.params.get("family"), "seed": ph.params.get("seed"), "part": part.split("_")[0],
               "ml": round(nv * vox_ml, 3), "true": bool(truth[full].any()), "truth_share": round(float(truth[full].mean()), 2),
               "kept": round(float(label[full].mean()), 2), "centroid_zyx": [int(c) for c in cen],
               "in_region": round(float(roi[full].mean()), 2), "in_breast_truth": round(float(breast_truth[full].mean()), 2),
               "skin_depth_mm_min": round(float(skin_depth[full].min()), 1),
               "skin_depth_mm_med": round(float(np.median(skin_depth[full])), 1),
               "dist_first_run_mm": None if d_first is None else round(float(d_first[full].min()), 1),
               "pre_over_bg": round(float(np.median(ppre)) / bg, 2) if bg > 0 else None,
               "pre_over_fat": round(float(np.median(ppre)) / fat, 2) if fat > 0 else None,
               "dark_share": round(float((ppre < bg).mean()), 2),
               "sub_z_med": round(float(np.median(pearly - ppre)) / sd, 1) if sd else None,
               "sub_over_pre_fat": round(float(np.median(pearly - ppre)) / fat, 2) if fat > 0 else None,
               "pe_med": round(float(np.median(pe[full])), 1), "ser_med": round(float(np.median(ser)), 2),
               "p_final_med": round(float(np.median(prob[full])), 2), "p_final_max": round(float(prob[full].max()), 2),
               "elongation": round(float(elongation(comp, sp)), 2), "thickness_mm": round(thick, 1),
               "tumor_score": round(score, 3), "fatsat": bool(first.fat_suppression.get("fat_suppressed"))}
        if "f" in feats:
            row["features"] = {k: round(float(v), 3) for k, v in zip(FEATURES, feats.pop("f"))}
        if tissue is not None:
            t_in, c_in = np.unique(tissue[full], return_counts=True)
            t_sh, c_sh = np.unique(tissue[shell], return_counts=True)
            row["tissue_in"] = {names.get(int(t), str(t)): round(float(c) / nv, 2) for t, c in zip(t_in, c_in)}
            row["tissue_around"] = {names.get(int(t), str(t)): round(float(c) / max(int(shell.sum()), 1), 2) for t, c in zip(t_sh, c_sh)}
        out.append(row)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("family")
    p.add_argument("seeds", nargs="+", type=int)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    calls = watch()
    db.DARK_BEFORE = True
    for seed in a.seeds:
        if not 6000 <= seed < 8000:
            raise SystemExit(f"seed {seed}: the census is for development seeds (6000-7999) only")
        ph = FAMILIES[a.family](seed)
        exam = motion_free(ph)
        calls.clear()
        res = segment_exam(exam, model=get_segmenter("ftv-outline"), device="cpu",
                           settings=SegmentSettings(registration="none"))
        rows = []
        for part, args, add in calls:
            if add.any():
                rows += describe(ph, exam, part, args, add, res)
        with open(a.out, "a") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
        for r in rows:
            print(f"{a.family} {seed} {r['part']:7s} {'TRUE ' if r['true'] else 'FALSE'} kept {r['kept']:.2f} "
                  f"{r['ml']:6.2f} mL in_reg {r['in_region']:.2f} skin {r['skin_depth_mm_min']:5.1f} "
                  f"subZ {r['sub_z_med']} sub/fat {r['sub_over_pre_fat']} pre/bg {r['pre_over_bg']} pre/fat {r['pre_over_fat']} PE {r['pe_med']} SER {r['ser_med']} "
                  f"p {r['p_final_med']} el {r['elongation']} th {r['thickness_mm']} score {r['tumor_score']} "
                  f"tissue {r.get('tissue_in')} around {r.get('tissue_around')}", flush=True)
        if not rows:
            print(f"{a.family} {seed}: nothing added", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
