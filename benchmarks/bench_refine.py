#!/usr/bin/env python
"""Click-to-correct with the standard interactive protocol; prints Markdown tables.

    python benchmarks/bench_refine.py                                   # the README table
    python benchmarks/bench_refine.py --seeds 5000-5001 --families ellipse --starts empty
    python benchmarks/bench_refine.py --timing-only                     # per-click time, 448x448x160

Protocol (as in DeepEdit / SAM-style evaluations): the next click goes to the point of the
largest error region (26-connected component of prediction XOR truth) that lies farthest from
that region's boundary (Euclidean distance transform in mm); it is positive when the region is
missed tumor and negative when it is false tumor. Ten clicks per exam (NoC capped at 10: an exam
that never reaches the level counts 10). Reported per family and start: median Dice after 0, 1,
3 and 5 clicks, median NoC@85 and NoC@90, the share of clicks that lowered Dice, and the median
per-click time. Starts: the model's output (``segment_exam``, CPU, no registration: the known
motion of each exam is removed first with its ground-truth transforms, as in
bench_generalization.py) and an empty mask. Families not used for training: held-out seeds of
our ``phantom`` family, the ``ellipse`` family, and real-anatomy hybrids (axial bilateral,
sagittal single breast) when ``../shared/data/real-anatomy`` is there.

``--timing`` (on by default) also times clicks on one clinical-size exam (448 x 448 x 160,
0.75 x 0.75 x 1.25 mm): the protocol from an empty mask, five clicks.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from BreastTumorSegLib.engine.refine import Click, Refiner  # noqa: E402
from BreastTumorSegLib.evaluation.metrics import dice  # noqa: E402
from BreastTumorSegLib.core.values import parse_seeds  # noqa: E402
from bench_generalization import hybrid_makers, motion_free, table  # noqa: E402

FULL = np.ones((3, 3, 3), bool)


def next_click(pred: np.ndarray, truth: np.ndarray, ref: sitk.Image) -> Click | None:
    """The protocol's next click (None when there is no error left)."""
    err = pred ^ truth
    lab, n = ndimage.label(err, structure=FULL)
    if n == 0:
        return None
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    region = lab == int(np.argmax(sizes))
    sl = ndimage.find_objects(region.astype(np.uint8))[0]
    sub = np.pad(region[sl], 1)
    edt = ndimage.distance_transform_edt(sub, sampling=np.asarray(ref.GetSpacing())[::-1])[1:-1, 1:-1, 1:-1]
    k = np.unravel_index(int(np.argmax(edt)), edt.shape)
    zyx = tuple(int(a + s.start) for a, s in zip(k, sl))
    lps = ref.TransformIndexToPhysicalPoint(zyx[::-1])
    return Click(tuple(float(v) for v in lps), bool(truth[zyx]))


def run_protocol(exam, start, truth: np.ndarray, n_clicks: int = 10) -> dict:
    """Dice after each click (index 0 = before any click), per-click seconds, signs."""
    refiner = Refiner(exam, start)
    dices = [float(dice(refiner.label, truth))]
    secs, signs = [], []
    for _ in range(n_clicks):
        click = next_click(refiner.label, truth, exam.reference)
        if click is None:
            dices.append(dices[-1])
            continue
        t0 = time.perf_counter()
        refiner.add(click)
        secs.append(time.perf_counter() - t0)
        signs.append(click.sign)
        dices.append(float(dice(refiner.label, truth)))
    return {"dice": dices, "secs": secs, "signs": signs}


def noc(dices: list[float], level: float, cap: int = 10) -> int:
    for k, d in enumerate(dices[: cap + 1]):
        if d >= level:
            return k
    return cap


def empty_result(exam, case_id: str):
    from BreastTumorSegLib.core.results import SegmentationResult

    empty = sitk.Image(exam.reference.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(exam.reference)
    return SegmentationResult(case_id=case_id, label=empty, probability=sitk.Cast(empty, sitk.sitkFloat32),
                              lesions=[], model_id="empty")


def summarize(runs: list[dict]) -> list:
    d = np.array([r["dice"] for r in runs])
    lowered = sum(sum(b < a - 1e-9 for a, b in zip(r["dice"][:-1], r["dice"][1:])) for r in runs)
    n_clicks = sum(len(r["secs"]) for r in runs)
    secs = [s for r in runs for s in r["secs"]]
    return [len(runs), f"{np.median(d[:, 0]):.3f}", f"{np.median(d[:, 1]):.3f}", f"{np.median(d[:, 3]):.3f}",
            f"{np.median(d[:, 5]):.3f}", f"{np.median([noc(r['dice'], 0.85) for r in runs]):g}",
            f"{np.median([noc(r['dice'], 0.90) for r in runs]):g}",
            f"{lowered}/{n_clicks} ({100.0 * lowered / max(n_clicks, 1):.1f} %)",
            f"{1000 * np.median(secs):.0f}" if secs else "-"]


def clinical_timing(seed: int, n_clicks: int = 5) -> list:
    from BreastTumorSegLib.training.phantom import make_phantom

    t0 = time.perf_counter()
    ph = make_phantom(seed, size="clinical", motion_mm=0)
    gen = time.perf_counter() - t0
    truth = sitk.GetArrayFromImage(ph.tumor_mask) > 0
    t0 = time.perf_counter()
    start = empty_result(ph.exam, ph.case_id)
    refiner_setup = Refiner(ph.exam, start)
    setup = time.perf_counter() - t0
    del refiner_setup
    run = run_protocol(ph.exam, start, truth, n_clicks)
    t0 = time.perf_counter()
    Refiner(ph.exam, start).result()
    result_s = time.perf_counter() - t0
    size = "x".join(str(v) for v in ph.exam.reference.GetSize())
    return [size, n_clicks, f"{1000 * np.median(run['secs']):.0f}", f"{1000 * max(run['secs']):.0f}",
            f"{setup:.2f}", f"{result_s:.2f}", f"{run['dice'][-1]:.3f}", f"{gen:.0f}"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="5000-5005")
    p.add_argument("--families", default="phantom,ellipse")
    p.add_argument("--no-hybrids", action="store_true")
    p.add_argument("--model", default="st-demo", help="the model whose output is corrected (default: %(default)s)")
    p.add_argument("--starts", default="model,empty")
    p.add_argument("--clicks", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--timing-only", action="store_true")
    p.add_argument("--no-timing", action="store_true")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    rows, timing = [], None
    if not a.timing_only:
        from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
        from BreastTumorSegLib.training.phantom.families import FAMILIES

        makers = {f: FAMILIES[f] for f in a.families.split(",") if f}
        if not a.no_hybrids:
            makers.update(hybrid_makers())
        starts = [s for s in a.starts.split(",") if s]
        for fam, make in makers.items():
            runs = {s: [] for s in starts}
            for seed in parse_seeds(a.seeds):
                ph = make(seed)
                exam = motion_free(ph)
                truth = sitk.GetArrayFromImage(ph.tumor_mask) > 0
                for s in starts:
                    if s == "model":
                        start = segment_exam(exam, model=a.model, device="cpu",
                                             settings=SegmentSettings(registration="none"))
                    else:
                        start = empty_result(exam, ph.case_id)
                    r = run_protocol(exam, start, truth, a.clicks)
                    runs[s].append(r)
                    print(f"  {fam} seed {seed} from {s}: Dice " + " ".join(f"{d:.2f}" for d in r["dice"][:6])
                          + f" ... {r['dice'][-1]:.2f}; clicks {''.join(r['signs'])}", flush=True)
            for s in starts:
                rows.append([fam, a.model if s == "model" else "empty mask", *summarize(runs[s])])
    if not a.no_timing:
        timing = clinical_timing(5000)
    print(f"\n### Click-to-correct, standard protocol (seeds {a.seeds}, CPU, {a.threads} thread(s))\n")
    if rows:
        print(table(["family", "start", "exams", "Dice 0 clicks", "Dice 1", "Dice 3", "Dice 5", "NoC@85", "NoC@90",
                     "clicks that lowered Dice", "ms/click (median)"], rows))
    if timing:
        print("\nPer-click time, clinical-size exam, protocol from an empty mask:\n")
        print(table(["exam", "clicks", "median ms/click", "max ms/click", "set-up s", "result() s",
                     "Dice after", "generation s"], [timing]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
