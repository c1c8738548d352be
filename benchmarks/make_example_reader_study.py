"""Generate the example reader-study report in docs/example_reader_study/ and time the analysis.

A simulated 4-reader study with known truth: the true tumour masks come from the synthetic DCE
phantom (``phantom.make_phantom``, one or two tumours of 5-14 mm radius per exam, "small" grids of
1.5-3 mm) or, with ``--source ellipsoids``, from ellipsoids on a 0.8 x 0.8 x 2 mm grid. Readers are the
truth with a boundary bias and smooth noise (see ``READERS``: R1 erodes 1 mm, R2-R4 dilate 0.5,
1.5 and 3 mm, noise 1.5-2.5 mm, about one to two phantom voxels); the model is a probability map
whose 0.5 contour lies 1 mm out with 2.5 mm noise. The voxel-wise ROC is computed inside the
phantom's breast mask. Malignancy scores for the Wu et al. hybrid analysis are simulated
separately (200 exams, 30 % malignant). The folder also gets a README.md saying all this.

Prints a timing table (simulation, analysis per case, report) and, with ``--clinical``, the time of
one ``metrics.evaluate`` call on clinical-size masks (448 x 448 x 160, 0.75 x 0.75 x 1.25 mm).

    python benchmarks/make_example_reader_study.py [--cases 32] [--tune 8] [--source phantom]
           [--out docs/example_reader_study] [--seed 0] [--clinical]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from BreastTumorSegLib.evaluation import metrics
from BreastTumorSegLib.evaluation import readerstudy, simulation
from BreastTumorSegLib.evaluation import report  # noqa: E402

R = simulation.SimulatedRater
# Biases and noise of the order of the phantom's 1.5-3 mm voxels, so that readers differ visibly.
READERS = (R("R1", -1.0, 1.5), R("R2", 0.5, 2.0), R("R3", 1.5, 2.0), R("R4", 3.0, 2.5))
MODEL = R("model", 1.0, 2.5)

README = """# Example reader-study report (simulated data)

Everything in this folder was produced by

    python benchmarks/make_example_reader_study.py {argv}

from **simulated** readers, not real radiologists: {n} synthetic exams (true tumour masks from
`{source}`), four readers made by moving the true boundary by a bias and smooth random noise
({readers}), and a model probability map ({model}). Malignancy scores for the hybrid analysis are
simulated too (200 exams). The numbers show what the report looks like and that the statistics
behave as expected; they say nothing about any real model. They change when the phantom
generator changes.

Start with [summary.md](summary.md); every number is in summary.json and per_case.csv.
"""


def phantom_truths(n: int, seed: int) -> tuple[list[sitk.Image], list[sitk.Image]]:
    """Tumour masks and breast masks of *n* phantoms (1-2 tumours of 5-14 mm radius each)."""
    from BreastTumorSegLib.training.phantom import make_phantom

    rng = np.random.default_rng(seed)
    truths, rois = [], []
    for i in range(n):
        k = int(rng.integers(1, 3))
        ph = make_phantom(seed * 1000 + i, n_tumors=k, tumor_radius_mm=rng.uniform(5, 14, k).tolist(),
                          noise=0, motion_mm=0)
        truths.append(ph.tumor_mask)
        rois.append(ph.breast_mask)
    return truths, rois


def clinical_evaluate_time(repeat: int = 3) -> float:
    """Best-of-*repeat* seconds for metrics.evaluate on two 448 x 448 x 160 masks (a 15 mm lesion)."""
    like = sitk.Image(448, 448, 160, sitk.sitkUInt8)
    like.SetSpacing((0.75, 0.75, 1.25))
    z, y, x = np.ogrid[:160, :448, :448]
    ball = lambda cx, r: ((x * 0.75 - cx) ** 2 + (y * 0.75 - 168) ** 2 + (z * 1.25 - 100) ** 2) <= r * r  # noqa: E731
    a = sitk.GetImageFromArray(ball(168, 15).astype(np.uint8))
    b = sitk.GetImageFromArray(ball(170, 14).astype(np.uint8))
    a.CopyInformation(like)
    b.CopyInformation(like)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        metrics.evaluate(a, b)
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=32)
    ap.add_argument("--tune", type=int, default=8)
    ap.add_argument("--source", choices=["phantom", "ellipsoids"], default="phantom")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "example_reader_study")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clinical", action="store_true", help="also time evaluate() on clinical-size masks")
    args = ap.parse_args(argv)

    timings = {}
    t0 = time.perf_counter()
    rois = None
    truths = None
    if args.source == "phantom":
        truths, rois = phantom_truths(args.cases, args.seed)
    cases, _ = simulation.simulate_study(args.cases, args.tune, READERS, MODEL, seed=args.seed, truths=truths)
    if rois is not None:
        for case, roi in zip(cases, rois):
            case.roi = roi
    scores, malignant = simulation.simulate_scores(200, seed=args.seed + 1)
    timings["simulate study"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = readerstudy.run_reader_study(cases, readerstudy.StudyConfig(seed=args.seed), scores, malignant)
    timings["analysis"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    written = report.write_report(result, args.out, overwrite=True)
    timings["report"] = time.perf_counter() - t0
    describe = lambda r: f"{r.name} {r.bias_mm:+.1f} mm ± {r.noise_mm:.1f} mm"  # noqa: E731
    (args.out / "README.md").write_text(README.format(
        argv=" ".join(sys.argv[1:]) or "(default options)", n=args.cases,
        source="phantom.make_phantom" if args.source == "phantom" else "ellipsoids",
        readers=", ".join(describe(r) for r in READERS), model=describe(MODEL)))

    grid = cases[0].readers["R1"]
    print(f"{args.cases} cases ({args.tune} tuning), source {args.source}, first grid "
          f"{grid.GetSize()} at {tuple(round(s, 2) for s in grid.GetSpacing())} mm")
    print(f"{'stage':<22}{'seconds':>10}{'per case':>10}")
    for k, v in timings.items():
        print(f"{k:<22}{v:>10.2f}{v / args.cases:>10.3f}")
    if args.clinical:
        print(f"{'evaluate 448x448x160':<22}{clinical_evaluate_time():>10.2f}")
    c = result.summary["comparison"]
    print(f"reader order {' > '.join(result.summary['reader_order'])}; median ΔDice {c['median_delta_dice']:+.3f}; "
          f"Wilcoxon p {report.fmt_p(c['wilcoxon_p'])}; TOST p {report.fmt_p(c['tost_p'])} "
          f"({'equivalent' if c['equivalent'] else 'not shown equivalent'})")
    print("wrote", ", ".join(p.name for p in written), "to", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
