#!/usr/bin/env python
"""CPU time of the false-positive reduction stage on a clinical-size exam (448x448x160 x 6 phases).

    python benchmarks/bench_fpreduce.py                 # models st-demo and ftv
    python benchmarks/bench_fpreduce.py --models ftv --repeats 5

The phantom of ``bench_pipeline.py`` (seed 11, clinical size) is segmented once per model without
the stage (no registration: this benchmark is about the stage), then
:func:`~BreastTumorSegLib.engine.fpreduce.reduce_false_positives` runs ``--repeats`` times on that
result. Prints per model the components, the stage's median seconds and its share of the
pipeline time measured here (without registration) and of ``bench_pipeline.py``'s total.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastTumorSeg"))

PIPELINE_TOTAL_S = 22.0  # bench_pipeline.py on 2 CPU threads, README "Performance" (21.9-22.8 s)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="st-demo,ftv")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    import SimpleITK as sitk
    import torch

    from BreastTumorSegLib.engine.fpreduce import get_classifier, reduce_false_positives
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.training.phantom import make_phantom

    torch.set_num_threads(a.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(a.threads)
    ph = make_phantom(11, size="clinical", n_phases=6)
    exam = ph.exam
    get_classifier("vesselfilter-demo")  # loaded once per process, as in the batch runner
    rows = []
    for m in [m for m in a.models.split(",") if m]:
        t0 = time.perf_counter()
        res = segment_exam(exam, model=m, device="cpu",
                           settings=SegmentSettings(registration="none", fp_reduction=False))
        pipe = time.perf_counter() - t0
        comps = sitk.RelabelComponent(sitk.ConnectedComponent(res.label, True), sortByObjectSize=True)
        secs = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            out = reduce_false_positives(comps, res.probability, list(exam.phases), exam.effective_times(),
                                         res.lesions)
            secs.append(time.perf_counter() - t0)
        rep = out[3]
        rows.append((m, len(res.lesions), rep.candidates, rep.kept, float(np.median(secs)), pipe))
    print(f"\n### False-positive reduction on {exam.reference.GetSize()} x {exam.n_phases} phases "
          f"(CPU, {a.threads} threads)\n")
    print("| model | components | candidates | kept | stage s (median) | pipeline s here (no registration) | "
          f"share of {PIPELINE_TOTAL_S:g} s bench_pipeline total |")
    print("|---|---|---|---|---|---|---|")
    for m, n, c, k, s, pipe in rows:
        print(f"| {m} | {n} | {c} | {k} | {s:.2f} | {pipe:.1f} | {100 * s / PIPELINE_TOTAL_S:.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
