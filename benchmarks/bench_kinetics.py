"""How long do the kinetic maps and the I-SPY FTV take on a clinical-size exam?

Builds a 6-phase 448 x 448 x 160 exam (pre + 5 post-contrast, 0.75 x 0.75 x 1.25 mm, times 0,
1.3, 2.6, 3.9, 5.2, 6.5 min; 770 MB of float32 phases) with a smooth tissue pattern, air
around it, three enhancing spheres and Gaussian noise, then times:

* ``kinetic maps``  -- :func:`compute_kinetic_maps` (PE early/late/peak, SER, TTP, classes);
* ``ftv (whole)``   -- :func:`functional_tumor_volume` on those maps, ROI = whole volume;
* ``ftv (box)``     -- the same inside a 60 mm box (the I-SPY workflow);
* ``maps + ftv``    -- the two together from a fresh exam: the issue-7 target is <= 5 s on the
  2-core development machine;
* ``seeded``        -- one seeded lesion (crop around the seed) on the ready maps.

Each figure is the best of ``--repeat`` runs. ``--phantom`` uses ``make_phantom(size="clinical")``
instead of the synthetic volume (slower to build, same size).

    python benchmarks/bench_kinetics.py [--repeat 3] [--phantom] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

import numpy as np
import SimpleITK as sitk
from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.kinetics.ftv import Box, functional_tumor_volume
from BreastTumorSegLib.kinetics.maps import compute_kinetic_maps
from BreastTumorSegLib.kinetics.seeded import segment_from_seed

TIMES = [0.0, 1.3, 2.6, 3.9, 5.2, 6.5]
SIZE = (448, 448, 160)  # (x, y, z)
SPACING = (0.75, 0.75, 1.25)


def synthetic_exam(seed: int = 0) -> tuple[DCEExam, tuple[float, float, float]]:
    """Clinical-size exam built slice-block by slice-block in float32 (no float64 temporaries)."""
    nx, ny, nz = SIZE
    rng = np.random.default_rng(seed)
    y = np.linspace(-1, 1, ny, dtype=np.float32)[None, :, None]
    x = np.linspace(-1, 1, nx, dtype=np.float32)[None, None, :]
    z = np.linspace(-1, 1, nz, dtype=np.float32)[:, None, None]
    body = (x * x + (y + 0.3) ** 2) < 0.8  # (1, ny, nx); air outside
    tissue = (300 + 120 * np.cos(3 * x) * np.cos(2 * y)).astype(np.float32)
    pre = np.broadcast_to(np.where(body, tissue, np.float32(5)), (nz, ny, nx)).copy()
    spheres = [((0.4, 0.1, 0.0), 0.06, (1.6, 1.4, 1.2)), ((-0.4, 0.2, 0.3), 0.04, (0.9, 1.2, 1.4)),
               ((0.0, -0.3, -0.4), 0.05, (1.2, 1.15, 1.1))]
    phases = []
    masks = [((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) < r * r for (cx, cy, cz), r, _ in spheres]
    for k, t in enumerate(TIMES):
        img = pre * np.float32(1 + 0.05 * t / 6.5)  # mild background enhancement
        for m, (_, _, enh) in zip(masks, spheres):
            if k:
                np.copyto(img, pre * np.float32(1 + enh[min(k - 1, 2)]), where=m)
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(6.0)
        im = sitk.GetImageFromArray(img)
        im.SetSpacing(SPACING)
        phases.append(im)
        del img
    exam = DCEExam(phases, TIMES, case_id="bench")
    c = spheres[0][0]
    seed_idx = [(c[0] + 1) / 2 * (nx - 1), (c[1] + 1) / 2 * (ny - 1), (c[2] + 1) / 2 * (nz - 1)]
    return exam, exam.pre.TransformContinuousIndexToPhysicalPoint(seed_idx)


def phantom_exam():
    from BreastTumorSegLib.training.phantom import make_phantom

    ph = make_phantom(1, size="clinical", motion_mm=0, times_min=TIMES)
    t = ph.tumors[0]
    return ph.exam, tuple(t["center_lps"])


def best_of(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall-clock and best CPU (process) seconds of *repeat* runs, and the last result.

    The CPU figure is what the step costs when it has a core to itself (the development machine
    is shared, so wall-clock time includes waiting for a core)."""
    wall, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--phantom", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="OMP/BLAS threads (SimpleITK: global default)")
    args = ap.parse_args()
    if args.threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)

    t0 = time.perf_counter()
    exam, seed = phantom_exam() if args.phantom else synthetic_exam()
    build = time.perf_counter() - t0
    nvox = int(np.prod(exam.pre.GetSize()))
    rows = [("build exam (not part of the target)", build, float("nan"), "")]

    w, c, maps = best_of(lambda: compute_kinetic_maps(exam), args.repeat)
    rows.append(("kinetic maps", w, c, f"{nvox * exam.n_phases / c / 1e6:.0f} Mvoxel-phases per CPU s"))
    w, c, res = best_of(lambda: functional_tumor_volume(exam, maps=maps), args.repeat)
    rows.append(("ftv, whole volume (maps given)", w, c, f"FTV {res.ftv_ml:.2f} mL"))
    ctr = np.asarray(seed)
    box = Box(tuple(ctr - 30), tuple(ctr + 30))
    w, c, resb = best_of(lambda: functional_tumor_volume(exam, roi=box, maps=maps), args.repeat)
    rows.append(("ftv, 60 mm box (maps given)", w, c, f"FTV {resb.ftv_ml:.2f} mL"))
    w, c, _ = best_of(lambda: functional_tumor_volume(exam), args.repeat)
    verdict = "meets the 5 s target" if min(w, c) <= 5.0 else "over the 5 s target"
    rows.append(("maps + ftv from the exam", w, c, verdict))
    w, c, sres = best_of(lambda: segment_from_seed(exam, seed, maps=maps), args.repeat)
    rows.append(("seeded lesion (maps given)", w, c, f"{sres.volume_ml:.2f} mL"))

    size = "x".join(str(s) for s in exam.pre.GetSize())
    print(f"\nexam {size} x {exam.n_phases} phases ({'phantom' if args.phantom else 'synthetic'}), "
          f"{os.cpu_count()} CPU(s), best of {args.repeat}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.1f} (wall > CPU when other jobs share the cores)")
    print(f"{'step':36s} {'wall s':>7s} {'CPU s':>7s}  note")
    print("-" * 80)
    for name, wall, cpu, note in rows:
        print(f"{name:36s} {wall:7.2f} {cpu:7.2f}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
