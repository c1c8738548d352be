"""How long does loading a clinical-size DICOM DCE exam take?

Writes a 6-phase 448 x 448 x 160 exam (960 single-frame files, about 385 MB) into a temporary
folder in two vendor layouts (GE-style single series, Siemens-style one series per phase) plus
the Philips-style enhanced multi-frame file, then times:

* ``find_dce``   -- header scan and phase decision (what ``dicom-list`` does);
* ``load``       -- the whole ``load_dicom_exam`` (headers + pixels + float32 images);
* ``sitk-gdcm``  -- for reference, SimpleITK's GDCM series reader on the same files
  (one ImageSeriesReader call per phase series; it does not split phases by itself).

Target (issue 4): ``load`` <= 5 s on the 2-core development machine. Each timing is the best
of ``--repeat`` runs with a warm page cache (the files were just written). Nothing is kept.

    python benchmarks/bench_dicom.py [--repeat 2] [--layouts ge,siemens,philips] [--small]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))
sys.path.insert(0, str(ROOT / "Testing"))

import dicom_fixtures as fx  # noqa: E402
from BreastTumorSegLib.io.dicom import reader as dicom  # noqa: E402
from BreastTumorSegLib.core.exam import DCEExam  # noqa: E402

TIMES = [0.0, 1.3, 2.6, 3.9, 5.2, 6.5]


def clinical_exam(size=(448, 448, 160), spacing=(0.75, 0.75, 1.2), seed=0) -> fx.FixtureExam:
    """A cheap large exam: smooth anatomy-like pattern, a bright sphere that enhances, noise."""
    nx, ny, nz = size
    rng = np.random.default_rng(seed)
    z = np.linspace(-1, 1, nz, dtype=np.float32)[:, None, None]
    y = np.linspace(-1, 1, ny, dtype=np.float32)[None, :, None]
    x = np.linspace(-1, 1, nx, dtype=np.float32)[None, None, :]
    base = (300 + 120 * np.cos(3 * x) * np.cos(2 * y) + 40 * z).astype(np.float32)
    tumor = ((x - 0.4) ** 2 + y ** 2 + z ** 2) < 0.02
    phases = []
    for t in TIMES:
        img = base + np.float32(0 if t == 0 else 500 * (1 - np.exp(-t))) * tumor
        img = img + rng.normal(0, 5, size=(1, ny, nx)).astype(np.float32)  # cheap: one noise slab
        im = sitk.GetImageFromArray(np.ascontiguousarray(img, dtype=np.float32))
        im.SetSpacing(spacing)
        im.SetOrigin((-168.0, -140.0, -96.0))
        phases.append(im)
    mask = sitk.GetImageFromArray(np.broadcast_to(tumor, (nz, ny, nx)).astype(np.uint8))
    mask.CopyInformation(phases[0])
    return fx.FixtureExam(DCEExam(phases, list(TIMES), "bench"), mask, seed)


def best_of(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall-clock seconds, the CPU seconds of that run, and the result."""
    best, cpu, out = float("inf"), float("nan"), None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu = wall, time.process_time() - c0
    return best, cpu, out


def sitk_reference(folder: Path) -> float:
    """SimpleITK/GDCM: one series reader per series and folder (it neither recurses nor splits phases,
    so the GE single series comes back as one mixed volume): a reference for the pixel path only."""
    t0 = time.perf_counter()
    reader = sitk.ImageSeriesReader()
    for d in sorted({p.parent for p in folder.rglob("*") if p.is_file()}):
        for sid in reader.GetGDCMSeriesIDs(str(d)) or []:
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(d), sid))
            reader.Execute()
    return time.perf_counter() - t0


def folder_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--layouts", default="ge,siemens,philips")
    ap.add_argument("--small", action="store_true", help="128x128x40 instead of 448x448x160 (smoke test)")
    args = ap.parse_args()
    size = (128, 128, 40) if args.small else (448, 448, 160)
    writers = {"ge": ("GE single series", fx.write_ge_multiphase),
               "siemens": ("Siemens series per phase", fx.write_siemens_per_phase),
               "philips": ("Philips enhanced multi-frame", fx.write_philips_enhanced)}
    print(f"exam: {len(TIMES)} phases of {size[0]}x{size[1]}x{size[2]}; cpu cores: {os.cpu_count()}; "
          f"best of {args.repeat}")
    t0 = time.perf_counter()
    exam = clinical_exam(size)
    print(f"phantom built in {time.perf_counter() - t0:.1f} s")
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_dicom_"))
    try:
        for key in args.layouts.split(","):
            name, writer = writers[key]
            folder = tmp / key
            t0 = time.perf_counter()
            writer(exam, folder)
            t_write = time.perf_counter() - t0
            n_files = sum(1 for p in folder.rglob("*") if p.is_file())
            t_find, _, plan = best_of(lambda f=folder: dicom.find_dce(f), args.repeat)
            t_load, c_load, loaded = best_of(lambda f=folder: dicom.load_dicom_exam(f), args.repeat)
            ok = loaded.n_phases == len(TIMES) and np.allclose(loaded.times_min, TIMES, atol=1e-3)
            t_sitk = sitk_reference(folder) if key != "philips" else float("nan")
            rows.append((name, n_files, folder_size_mb(folder), t_write, t_find, t_load, c_load, t_sitk, ok))
            del loaded, plan
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"{'layout':<30} {'files':>6} {'MB':>6} {'write s':>8} {'find_dce s':>10} {'load s':>7} "
          f"{'load cpu s':>10} {'sitk-gdcm s':>11} {'<=5 s':>6} {'phases ok':>9}")
    for name, n, mb, tw, tf, tl, cl, ts, ok in rows:
        print(f"{name:<30} {n:>6} {mb:>6.0f} {tw:>8.1f} {tf:>10.2f} {tl:>7.2f} {cl:>10.2f} {ts:>11.2f} "
              f"{'yes' if tl <= 5 else 'NO':>6} {'yes' if ok else 'NO':>9}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"(1-minute load average at the end: {load:.1f} on {os.cpu_count()} cores; wall times grow with it, "
          "CPU seconds do not)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
