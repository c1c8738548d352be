#!/usr/bin/env python
"""ftv-outline with and without FTV options on the same generated exams; prints a Markdown table.

    python benchmarks/bench_outline_options.py --families vessels,irregular --seeds 7000-7009 \
        --variant "kinetic=outline_kinetic_growth=True" --threads 1
    python benchmarks/bench_outline_options.py --hybrids --variant "off=outline_beyond_roi=False"

Every exam is generated once (no registration: the known motion is removed first, as in
``bench_generalization.py``) and segmented by the whole pipeline with ``ftv-outline`` as shipped
(row "shipped") and with each ``--variant NAME=key=value;key=value`` (options of
:class:`~BreastTumorSegLib.kinetics.ftv.FTVSettings`). Per family and variant: median Dice and voxel
recall over the exams with a tumor, lesion sensitivity (>= 0.1 mL), false-positive lesions per exam
(median, mean). This is the development comparison of a decision rule (docs/decisions/): use
development seeds (6000+, 7000+); a held-out run is done once, after the rule is written.
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_generalization import exam_scores, hybrid_makers, motion_free, table  # noqa: E402
from BreastTumorSegLib.core.values import parse_seeds  # noqa: E402


def variant(text: str) -> tuple[str, dict]:
    """``"name=key=value;key=value"`` -> (name, {key: value})."""
    name, _, rest = text.partition("=")
    opts = {}
    for item in filter(None, (t.strip() for t in rest.split(";"))):
        key, value = item.split("=", 1)
        opts[key.strip()] = ast.literal_eval(value.strip())
    return name.strip(), opts


def summary(rows: list[dict]) -> list:
    dices = [r["dice"] for r in rows if not np.isnan(r["dice"])]
    recall = [r["recall"] for r in rows if not np.isnan(r["recall"])]
    fps = [r["fp"] for r in rows]
    found, true = sum(r["found1"] for r in rows), sum(r["true1"] for r in rows)
    return [f"{np.median(dices):.3f}" if dices else "n/a", f"{np.median(recall):.3f}" if recall else "n/a",
            f"{found}/{true}", f"{np.median(fps):g}", f"{np.mean(fps):.2f}", len(rows)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="7000-7009")
    p.add_argument("--families", default="phantom,randomized,ellipse,heterogeneous,vessels,irregular")
    p.add_argument("--hybrids", action="store_true", help="add the real-anatomy hybrid rows")
    p.add_argument("--variant", action="append", default=[], help="NAME=key=value;key=value (FTV options)")
    p.add_argument("--no-shipped", action="store_true", help="leave out the row of ftv-outline as shipped")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.models.registry import get_segmenter
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    seeds = parse_seeds(a.seeds)
    if any(5000 <= s <= 5099 for s in seeds):
        print("note: seeds 5000-5099 are held out: run them once, after the decision rule is written")
    variants = ([] if a.no_shipped else [("shipped", {})]) + [variant(v) for v in a.variant]
    makers = {f: FAMILIES[f] for f in a.families.split(",") if f}
    if a.hybrids:
        makers.update(hybrid_makers())
    rows = []
    for fam, make in makers.items():
        per = {name: [] for name, _ in variants}
        for s in seeds:
            exam_ph = make(s)
            exam = motion_free(exam_ph)
            line = []
            for name, opts in variants:
                t0 = time.perf_counter()
                res = segment_exam(exam, model=get_segmenter("ftv-outline", **opts), device="cpu",
                                   settings=SegmentSettings(registration="none"))
                x = exam_scores(exam_ph, res.label)
                per[name].append(x)
                line.append(f"{name}: " + ("no tumor" if x["tumor_free"] else f"Dice {x['dice']:.3f} recall {x['recall']:.3f}")
                            + f" found {x['found1']}/{x['true1']} FP {x['fp']} ({time.perf_counter() - t0:.1f} s)")
            print(f"  {fam} {s}: " + " | ".join(line), flush=True)
        for name, _ in variants:
            rows.append([fam, name] + summary(per[name]))
    print(f"\n### ftv-outline options on the same exams (seeds {a.seeds}, {a.threads} thread(s))\n")
    for name, opts in variants:
        print(f"- {name}: {opts or 'as shipped'}")
    print()
    print(table(["family", "variant", "median Dice", "median voxel recall", "lesions found (>= 0.1 mL)",
                 "FP lesions/exam (median)", "FP lesions/exam (mean)", "n exams"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
