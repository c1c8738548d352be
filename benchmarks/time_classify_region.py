#!/usr/bin/env python
"""Run time of ``classify_exam`` on the demo exam with each variant of the classifier's region (issue 29).

    OMP_NUM_THREADS=1 python benchmarks/time_classify_region.py --repeat 3

The demo exam (phantom seed 3000, with registration), in one process, the variants interleaved
(main's region first in every round), best of *--repeat* each, as the process's CPU time
(``time.process_time``: on a shared machine the wall time of one run swings several-fold with the
load) and wall time; prints a Markdown table with the change against main's region and the breast
probabilities (rule 3 of ``docs/decisions/classify-v7-body.md``: at most +30 % CPU time).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

from BreastTumorSegLib.engine import classify_body, classify_region  # noqa: E402
from BreastTumorSegLib.engine.classify import classify_exam  # noqa: E402
from BreastTumorSegLib.training.phantom import make_phantom  # noqa: E402

# name -> settings (classify_body.BODY_TO_SKIN, LUNG_REGION, LUNG_KEEPS_STATISTICS, LUNG_COARSE)
VARIANTS = {"main's region": (False, False, False, False),
            "body to the skin (BODY_TO_SKIN)": (True, False, False, False),
            "lungs, main's statistics (v6, 2 mm)": (False, True, True, False),
            "lungs, main's statistics, 4 mm (LUNG_COARSE)": (False, True, True, True),
            "body to the skin + lungs 4 mm": (True, True, True, True)}


def apply(settings) -> None:
    classify_body.BODY_TO_SKIN, classify_region.LUNG_REGION, classify_region.LUNG_KEEPS_STATISTICS, \
        classify_region.LUNG_COARSE = settings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=3000)
    a = p.parse_args(argv)
    exam = make_phantom(a.seed).exam
    best, wall, probs = {}, {}, {}
    for _ in range(a.repeat):
        for name, settings in VARIANTS.items():
            apply(settings)
            t, w = time.process_time(), time.perf_counter()
            res = classify_exam(exam)
            best[name] = min(best.get(name, float("inf")), time.process_time() - t)
            wall[name] = min(wall.get(name, float("inf")), time.perf_counter() - w)
            probs[name] = res.probabilities
    apply(VARIANTS["main's region"])
    base = best["main's region"]
    print(f"classify_exam, demo exam (seed {a.seed}), best of {a.repeat}, one process\n")
    print("| region | CPU seconds | change | wall seconds | probabilities |\n|---|---|---|---|---|")
    for name in VARIANTS:
        p_text = ", ".join(f"{k} {v:.2f}" for k, v in sorted(probs[name].items()))
        print(f"| {name} | {best[name]:.2f} | {100 * (best[name] / base - 1):+.1f} % | {wall[name]:.2f} | {p_text} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
