"""Before/after of ``engine.dark_behind.DARK_BEHIND`` in one process (issue 25, docs/decisions/missed-randomized-v2-issue25.md).

The same exams, pipeline and scores as ``bench_generalization.py --models ftv-outline --hybrids`` (its own
``motion_free``, ``hybrid_makers``, ``exam_scores``, ``summary_row``, ``table``), each exam generated once and segmented
with the step off ("before"). The step's own finder is then run on the very inputs the pipeline hands the step
(captured at its call): when it adds nothing, the pipeline with the step on is the same computation as without it up
to the label map, so "after" = "before" for that exam; when it adds something the exam is segmented again with the
step on. Prints per-exam lines and the two summary tables (FROC left out)::

    python benchmarks/run_dark_behind_pair.py --seeds 7000-7009 --threads 1
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generalization import exam_scores, hybrid_makers, motion_free, summary_row, table  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="7000-7009")
    p.add_argument("--families", default="phantom,randomized,ellipse,heterogeneous,vessels,irregular")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from BreastTumorSegLib.core.values import parse_seeds
    from BreastTumorSegLib.engine import dark_behind, pipeline
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.kinetics.ftv import roi_array
    from BreastTumorSegLib.models.registry import get_segmenter
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    seen: dict = {}
    real = dark_behind.add_dark_behind

    def spy(segmenter, exam, prob, breast_mask, context, region, options):
        if breast_mask is not None and region is not None and region.get("level") is not None:
            roi, _ = roi_array(breast_mask, exam.reference)
            add = dark_behind.dark_components(exam, segmenter.last_result, segmenter.settings,
                                              segmenter.kinetic_maps(exam), context, roi)[0]
            seen["adds"] = bool(add.any())
        else:
            seen["adds"] = False
        return real(segmenter, exam, prob, breast_mask, context, region, options)

    pipeline.dark_behind.add_dark_behind = spy
    makers = {f: FAMILIES[f] for f in a.families.split(",") if f}
    makers.update(hybrid_makers())
    rows = []
    for fam, make in makers.items():
        per = {st: {"rows": [], "secs": []} for st in ("before", "after")}
        gen = []
        for s in parse_seeds(a.seeds):
            t0 = time.perf_counter()
            ph = make(s)
            exam = motion_free(ph)
            gen.append(time.perf_counter() - t0)
            seen.clear()
            dark_behind.DARK_BEHIND = False
            t0 = time.perf_counter()
            res = segment_exam(exam, model=get_segmenter("ftv-outline"), device="cpu",
                               settings=SegmentSettings(registration="none"))
            secs = time.perf_counter() - t0
            before = exam_scores(ph, res.label)
            after, secs_after, how = before, secs, "same (the step adds nothing)"
            if seen.get("adds"):
                dark_behind.DARK_BEHIND = True
                t0 = time.perf_counter()
                res = segment_exam(exam, model=get_segmenter("ftv-outline"), device="cpu",
                                   settings=SegmentSettings(registration="none"))
                secs_after = time.perf_counter() - t0
                dark_behind.DARK_BEHIND = False
                after, how = exam_scores(ph, res.label), "segmented again with the step on"
            for st, x, sec in (("before", before, secs), ("after", after, secs_after)):
                per[st]["rows"].append(x)
                per[st]["secs"].append(sec)
                print(f"  {fam} seed {s} ftv-outline {st}: " + ("no tumor in truth" if x["tumor_free"] else
                      f"Dice {x['dice']:.3f}") + f", found {x['found1']}/{x['true1']}, FP lesions {x['fp']}, "
                      f"voxel recall {x['recall']:.3f}, {sec:.1f} s" + (f" ({how})" if st == "after" else ""), flush=True)
        for st, r in per.items():
            rows.append(summary_row(fam, "ftv-outline", st, r["rows"], r["secs"], gen))
    print(f"\n### DARK_BEHIND off (before) / on (after), seeds {a.seeds}, CPU, {a.threads} thread(s)\n")
    print(table(["family", "model", "DARK_BEHIND", "median Dice", "lesion sens. >= 0.1 mL", "lesion sens. >= 0.2 mL",
                 "FP lesions/exam (median)", "FP lesions/exam (mean)", "median voxel recall",
                 "median FP outside breast (mL)", "n exams", "tumor-free exams (their FP lesions)", "s/exam (pipeline)",
                 "s/exam (generation)"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
