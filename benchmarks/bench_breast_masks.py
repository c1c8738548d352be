#!/usr/bin/env python
"""Whole-breast masks across phantom families: Dice against the true mask and plausibility.

    python benchmarks/bench_breast_masks.py                                  # shipped breastmask-demo
    python benchmarks/bench_breast_masks.py --cards old/breastmask-demo.json,runs/bm/breastmask-demo.json

For each family (seeds 5000+, never used for training or validation) and each mask — the learned
model(s) named by their cards and the classical mask — prints the median Dice against the
family's true breast mask and how many masks pass :func:`breast_mask_qa` (the check the pipeline
uses to reject a learned mask). ``ellipse`` is never used for training.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

from BreastTumorSegLib.evaluation.metrics import dice  # noqa: E402
from BreastTumorSegLib.models.breast_model import BreastMaskModel, find_breast_card  # noqa: E402
from BreastTumorSegLib.preprocess import breast_region as br  # noqa: E402
from BreastTumorSegLib.core.values import parse_seeds  # noqa: E402
from BreastTumorSegLib.training.phantom.families import make_exam  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cards", default="", help="comma list of whole-breast model cards (default: the shipped one)")
    p.add_argument("--families", default="phantom:5000-5003,randomized:5000-5005,ellipse:5000-5005")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cards = [Path(c) for c in a.cards.split(",") if c] or [find_breast_card("breastmask-demo")]
    models = {f"{c.parent.name}/{c.stem}": BreastMaskModel.from_card(c) for c in cards}
    rows: dict[tuple[str, str], list[tuple[float, bool]]] = {}
    for spec in a.families.split(","):
        fam, seeds = spec.split(":")
        for s in parse_seeds(seeds):
            ph = make_exam(fam, s)
            truth = sitk.GetArrayFromImage(ph.breast_mask) > 0
            classical, context = br.breast_region(ph.exam.pre)
            masks = {name: m.predict(ph.exam.pre, "cpu") for name, m in models.items()}
            masks["classical"] = classical
            for name, mask in masks.items():
                score = dice(sitk.GetArrayFromImage(mask) > 0, truth)
                rows.setdefault((fam, name), []).append((score, br.breast_mask_qa(mask, context)["plausible"]))
    print("| family | mask | median Dice vs truth | plausible |\n|---|---|---|---|")
    for (fam, name), v in rows.items():
        print(f"| {fam} | {name} | {np.median([x[0] for x in v]):.3f} | {sum(x[1] for x in v)}/{len(v)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
