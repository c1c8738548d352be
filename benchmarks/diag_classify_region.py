#!/usr/bin/env python
"""Malignant breasts none of whose classifier candidates overlaps the lesion, and why (issue 29).

    OMP_NUM_THREADS=1 python benchmarks/diag_classify_region.py --data malignancy-randomized:7000-7029 \
        --cache-dir /tmp/cls13/before --lung-cache-dir /tmp/cls13/lungs

Each exam is generated once and analysed twice, with the classifier's region of main
(:data:`~BreastTumorSegLib.engine.classify_region.LUNG_REGION` off) and with the region reaching back
to the lungs' chest wall (on); both records are cached in the format of
:func:`~BreastTumorSegLib.training.classify_mip.mip_record` (``bench_classify.py --cache-dir`` and the
trainer read them). Per malignant breast without a candidate labelled malignant (as the trainer labels
them), per region: the acquisition orientation, the share of the lesion inside the body and inside
the breast's region, its median early enhancement against the candidate threshold, and how far (mm,
LPS y) it lies behind the deepest region voxel of its columns and in front of the chest-wall muscle or
lung of the generator's tissue labels (the domain-randomised family has them). Prints one line per
such breast and a Markdown count per cause. Training and development seeds only: the evaluation
seeds are refused.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

from BreastTumorSegLib.core.imageutil import resample_to  # noqa: E402
from BreastTumorSegLib.engine import classify_region  # noqa: E402
from BreastTumorSegLib.engine.classify import MIN_THRESHOLD_PE, SIDE_CODES, exam_candidates  # noqa: E402
from BreastTumorSegLib.core.values import parse_seeds  # noqa: E402
from BreastTumorSegLib.training.classify import parse_data  # noqa: E402
from BreastTumorSegLib.training.classify_mip import analyse_phantom  # noqa: E402
from BreastTumorSegLib.training.phantom.malignancy import make_class_exam  # noqa: E402


def _save(path: Path, rec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **rec)
    tmp.replace(path)


def _y_mm(img: sitk.Image) -> np.ndarray:
    m = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in img.GetSize()[::-1]), indexing="ij")
    return np.float32(img.GetOrigin()[1]) + np.float32(m[1, 0]) * i + np.float32(m[1, 1]) * j + np.float32(m[1, 2]) * k


def _x_mm(img: sitk.Image) -> np.ndarray:
    m = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in img.GetSize()[::-1]), indexing="ij")
    return np.float32(img.GetOrigin()[0]) + np.float32(m[0, 0]) * i + np.float32(m[0, 1]) * j + np.float32(m[0, 2]) * k


def missed(ph, rec: dict, lungs: bool) -> list[dict]:
    """The malignant breasts of *ph* without a candidate labelled malignant in *rec*, with why."""
    truth = dict(zip(rec["truth_keys"].tolist(), rec["truth_values"].tolist()))
    hit = {k for k, y in zip(rec["keys"].tolist(), rec["y"].tolist()) if y}
    out = [k for k, v in truth.items() if v and k not in hit]
    if not out:
        return []
    classify_region.LUNG_REGION = lungs
    exam, sides, cands, maps, context = exam_candidates(ph.exam, register=False)
    pre = exam.pre
    body = classify_region._on_grid(context["body"], context["work"], pre)
    labels = sitk.GetArrayFromImage(ph.tumor_labels)
    pe = maps.array("pe_early")
    y_mm, x_mm = _y_mm(pre), _x_mm(pre)
    tissue = None
    if getattr(ph, "tissue_labels", None) is not None:
        tissue = sitk.GetArrayFromImage(resample_to(ph.tissue_labels, pre, sitk.sitkNearestNeighbor))
        names = ph.params.get("tissue_labels", {})
    rows = []
    for key in out:
        side = {v: k for k, v in SIDE_CODES.items()}[key.split(":")[1]]
        code = classify_region.LEFT if side == "left" else classify_region.RIGHT
        t = next(t for t in ph.tumors if t.get("malignant") and t.get("side", side) == side)
        les = labels == t["label"]
        r = {"breast": key, "orientation": ph.params.get("orientation", "?"), "region_method": context.get("method", ""),
             "midline": (context.get("layout") or {}).get("midline_x"), "unilateral": (context.get("layout") or {}).get("unilateral_side"),
             "kind": t.get("kind"), "volume_ml": round(float(t.get("volume_ml", 0)), 2),
             "in_body": round(float(body[les].mean()), 2), "in_region": round(float((sides[les] == code).mean()), 2),
             "in_other_side": round(float(((sides[les] > 0) & (sides[les] != code)).mean()), 2),
             "pe_median": round(float(np.median(pe[les])), 1)}
        near = (np.abs(x_mm - float(np.median(x_mm[les]))) < 6) & (sides == code)
        ly = float(np.median(y_mm[les]))
        r["behind_region_mm"] = round(ly - float(y_mm[near].max()), 1) if near.any() else None
        if tissue is not None:
            for what in ("muscle", "lung"):
                if what in names:
                    col = (np.abs(x_mm - float(np.median(x_mm[les]))) < 6) & (tissue == names[what]) & (y_mm > ly - 5)
                    r[f"{what}_behind_mm"] = round(float(y_mm[col].min()) - ly, 1) if col.any() else None
        if r["in_body"] < 0.5:
            r["cause"] = "outside the body mask"
        elif r["in_region"] < 0.5 and r["in_other_side"] >= 0.5:
            r["cause"] = "in the other side's region"
        elif r["in_region"] < 0.5:
            r["cause"] = "behind the region (in the body)"
        elif r["pe_median"] < MIN_THRESHOLD_PE:
            r["cause"] = "enhances below the candidate floor"
        else:
            r["cause"] = "in the region, no candidate a third on it (merged or below the breast's threshold)"
        rows.append(r)
    classify_region.LUNG_REGION = False
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="family:seeds[,family:seeds] (training / development seeds)")
    p.add_argument("--cache-dir", type=Path, required=True, help="records with main's region")
    p.add_argument("--lung-cache-dir", type=Path, required=True, help="records with the region to the lungs")
    p.add_argument("--keep-statistics", action="store_true",
                   help="with the lungs' region, each breast's statistics from main's region (LUNG_KEEPS_STATISTICS)")
    p.add_argument("--no-diagnosis", action="store_true", help="only cache the records (e.g. evaluation exams)")
    a = p.parse_args(argv)
    classify_region.LUNG_KEEPS_STATISTICS = a.keep_statistics
    counts = {False: Counter(), True: Counter()}
    n_mal = {False: 0, True: 0}
    spec = [(f, parse_seeds(s)) for f, _, s in (v.partition(":") for v in a.data.split(","))] if a.no_diagnosis \
        else parse_data(a.data)
    for family, seeds in spec:
        for seed in seeds:
            paths = {False: a.cache_dir / f"{family}_{seed}.npz", True: a.lung_cache_dir / f"{family}_{seed}.npz"}
            try:
                ph = make_class_exam(family, seed)
            except RuntimeError as e:
                print(f"{family} {seed}: not buildable ({e})", flush=True)
                continue
            for lungs in (False, True):
                classify_region.LUNG_REGION = lungs
                rec = analyse_phantom(ph)
                classify_region.LUNG_REGION = False
                _save(paths[lungs], rec)
                if a.no_diagnosis:
                    continue
                n_mal[lungs] += int(rec["truth_values"].sum())
                for r in missed(ph, rec, lungs):
                    counts[lungs][(family, r["cause"])] += 1
                    print(f"{'lungs' if lungs else 'main '} {family} {seed} {r}", flush=True)
            print(f"{family} {seed}: done", flush=True)
    if not a.no_diagnosis:
        print("\n| region | family | cause | malignant breasts |\n|---|---|---|---|")
        for lungs in (False, True):
            for (fam, cause), n in sorted(counts[lungs].items()):
                print(f"| {'to the lungs' if lungs else 'main'} | {fam} | {cause} | {n} |")
            print(f"| {'to the lungs' if lungs else 'main'} | all | malignant breasts analysed | {n_mal[lungs]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
