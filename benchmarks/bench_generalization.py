#!/usr/bin/env python
"""Generalisation of the tumor models across synthetic families; prints a Markdown table.

    python benchmarks/bench_generalization.py                                # 5000-5009, all families
    python benchmarks/bench_generalization.py --models unet-demo,ftv --seeds 5000-5002
    python benchmarks/bench_generalization.py --families ellipse --hybrids

Per family and model, the whole pipeline (``segment_exam``, CPU, no registration: the known
motion of each exam is removed first with its ground-truth transforms) and per exam:

* Dice of the predicted tumor label against the truth (median over exams);
* false-positive volume outside the TRUE breast mask (mL, median): what a model marks in the
  heart, vessels or chest wall;
* per-lesion sensitivity: a true lesion is found when the prediction overlaps it;
* s/exam: wall time of the whole pipeline per exam (generation excluded; shown separately).

Families (:mod:`BreastTumorSegLib.training.phantom.families`): ``phantom`` (our original
family), ``randomized`` (domain-randomised), ``ellipse`` (held out, mimics an independent
generator, never used for training). What each model was trained on is read from its card
(``families_trained_on``; cards without it were trained on "phantom" only) and printed above
the table: a family a model was not trained on is out-of-distribution for it. ``ftv`` is the classical (untrained) functional tumor volume.
``--hybrids`` adds the hybrid family (synthetic lesions on real anatomy) when
``BreastTumorSegLib.training.phantom.hybrid`` exists, and says so when it does not.
Cost: a few seconds to generate and 5-60 s to segment an exam on 2 CPU threads.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

from BreastTumorSegLib.core.imageutil import voxel_volume_ml  # noqa: E402
from BreastTumorSegLib.evaluation.metrics import dice  # noqa: E402
from BreastTumorSegLib.training.datasets import parse_seeds  # noqa: E402


def motion_free(ph):
    """The exam with each phase put back on phase 0 by its ground-truth transform."""
    ref = ph.exam.reference
    return ph.exam.with_phases([p if k == 0 else sitk.Resample(p, ref, ph.motion[k], sitk.sitkLinear, 0.0)
                                for k, p in enumerate(ph.exam.phases)])


def hybrid_makers() -> dict:
    """``{"hybrid-axial": fn, "hybrid-sagittal": fn}`` when the hybrid module exists, else {}."""
    try:
        mod = importlib.import_module("BreastTumorSegLib.training.phantom.hybrid")
    except ImportError:
        return {}
    make = getattr(mod, "make_hybrid", None)
    if make is None:
        return {}
    return {f"hybrid-{a}": (lambda seed, a=a: make(seed, anatomy=a)) for a in ("axial", "sagittal")}


def score(ph, label: sitk.Image) -> tuple[float, float, int, int]:
    """(Dice, false-positive mL outside the true breast, lesions found, lesions)."""
    pred = sitk.GetArrayViewFromImage(label) > 0
    truth = sitk.GetArrayViewFromImage(ph.tumor_labels)
    breast = sitk.GetArrayViewFromImage(ph.breast_mask) > 0
    fp_ml = float(np.count_nonzero(pred & ~breast & (truth == 0)) * voxel_volume_ml(label))
    ids = [i for i in np.unique(truth) if i > 0]
    found = sum(bool(np.any(pred[truth == i])) for i in ids)
    return float(dice(pred, truth > 0)), fp_ml, found, len(ids)


def trained_on(model: str) -> str:
    """The phantom families a registry model was trained on, from its card (and its breast model's)."""
    from BreastTumorSegLib.models.registry import get_segmenter

    card = get_segmenter(model).card
    if "architecture" not in card:
        return "nothing (rule-based)"
    fams = card.get("families_trained_on", ["phantom"])
    text = ", ".join(fams) + " families"
    if card.get("breast_model"):
        from BreastTumorSegLib.models.breast_model import BreastMaskModel

        gate = BreastMaskModel.load(card["breast_model"]).card
        text += f"; its breast model {card['breast_model']}: {', '.join(gate.get('families_trained_on', ['phantom']))}"
    return text


def table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="unet-demo,st-demo,ftv")
    p.add_argument("--seeds", default="5000-5009")
    p.add_argument("--families", default="phantom,randomized,ellipse")
    p.add_argument("--hybrids", action="store_true", help="add hybrid rows if the hybrid module exists")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from BreastTumorSegLib.engine.pipeline import segment_exam
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    seeds = parse_seeds(a.seeds)
    models = [m for m in a.models.split(",") if m]
    makers = {f: FAMILIES[f] for f in a.families.split(",") if f}
    if a.hybrids:
        extra = hybrid_makers()
        if extra:
            makers.update(extra)
        else:
            print("(--hybrids: BreastTumorSegLib.training.phantom.hybrid is not available; no hybrid rows)")
    rows = []
    for fam, make in makers.items():
        per = {m: {"dice": [], "fp": [], "found": 0, "lesions": 0, "secs": []} for m in models}
        gen = []
        for s in seeds:
            t0 = time.perf_counter()
            ph = make(s)
            exam = motion_free(ph)
            gen.append(time.perf_counter() - t0)
            for m in models:
                t0 = time.perf_counter()
                res = segment_exam(exam, model=m, device="cpu", register=False)
                r = per[m]
                r["secs"].append(time.perf_counter() - t0)
                d, fp, found, n = score(ph, res.label)
                r["dice"].append(d)
                r["fp"].append(fp)
                r["found"] += found
                r["lesions"] += n
                print(f"  {fam} seed {s} {m}: Dice {d:.3f}, FP outside breast {fp:.1f} mL, "
                      f"found {found}/{n}, {r['secs'][-1]:.1f} s", flush=True)
        for m in models:
            r = per[m]
            sens = f"{r['found']}/{r['lesions']} ({r['found'] / r['lesions']:.2f})" if r["lesions"] else "n/a"
            rows.append([fam, m, f"{np.median(r['dice']):.3f}", f"{np.median(r['fp']):.1f}", sens, len(r["dice"]),
                         f"{np.mean(r['secs']):.1f}", f"{np.mean(gen):.1f}"])
    print(f"\n### Generalisation across synthetic families (seeds {a.seeds}, CPU, {a.threads} threads)\n")
    for m in models:
        print(f"- {m}: trained on {trained_on(m)}")
    print()
    print(table(["family", "model", "median Dice", "median FP outside breast (mL)", "lesion sensitivity",
                 "n exams", "s/exam (pipeline)", "s/exam (generation)"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
