"""Does rounding noise in an exam's geometry change its segmentation? Prints a Markdown table.

Each development exam (families from ``training.phantom.families``; seeds 6000+/7000+ only) is
segmented with the default pipeline (motion correction on) as generated, then with its geometry
changed by the rounding other software leaves in it:

* ``float32``    -- origin, spacing and direction rounded to float32 (a NIfTI header);
* ``origin+1e-6`` -- the origin moved by 1e-6 mm on every axis;
* ``spacing*(1+1e-7)`` -- the spacing scaled by 1 + 1e-7;
* ``direction+1e-7`` -- the direction cosines moved by 1e-7 (no longer exactly orthonormal);
* ``nifti``      -- written with ``write_phantom`` and read back with ``load_exam``.

Per exam and perturbation: label voxels that changed, Dice to the unperturbed label map and the
Dice to the truth before -> after. Every row should read 0 / 1.0000.

    OMP_NUM_THREADS=1 python benchmarks/bench_geometry_noise.py --seeds 7000-7009 --families phantom,randomized --threads 1
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

from BreastTumorSegLib.core.errors import InputError  # noqa: E402
from _common import development_seeds, set_threads  # noqa: E402
from BreastTumorSegLib.engine.pipeline import segment_exam  # noqa: E402
from BreastTumorSegLib.evaluation.metrics import dice  # noqa: E402
from BreastTumorSegLib.io.files import load_exam  # noqa: E402
from BreastTumorSegLib.training.phantom import write_phantom  # noqa: E402
from BreastTumorSegLib.training.phantom.families import FAMILIES  # noqa: E402


def _changed(img: sitk.Image, origin=None, spacing=None, direction=None) -> sitk.Image:
    out = sitk.Image(img)
    if origin:
        out.SetOrigin(origin(img.GetOrigin()))
    if spacing:
        out.SetSpacing(spacing(img.GetSpacing()))
    if direction:
        out.SetDirection(direction(img.GetDirection()))
    return out


def _f32(values) -> tuple:
    return tuple(float(np.float32(v)) for v in values)


_SKEW = (1, -1, 1, 1, 1, -1, -1, 1, 1)
PERTURBATIONS = {
    "float32": lambda i: _changed(i, _f32, _f32, _f32),
    "origin+1e-6": lambda i: _changed(i, origin=lambda t: tuple(v + 1e-6 for v in t)),
    "spacing*(1+1e-7)": lambda i: _changed(i, spacing=lambda t: tuple(v * (1 + 1e-7) for v in t)),
    "direction+1e-7": lambda i: _changed(i, direction=lambda t: tuple(v + 1e-7 * e for v, e in zip(t, _SKEW))),
}


def _row(fam: str, seed: int, name: str, base: np.ndarray, label: sitk.Image, truth, base_dice: float) -> str:
    a = sitk.GetArrayFromImage(label) > 0
    total = int(a.sum() + base.sum())
    overlap = 1.0 if total == 0 else 2.0 * float((a & base).sum()) / total
    return (f"| {fam} | {seed} | {name} | {int((a != base).sum())} | {overlap:.4f} | "
            f"{base_dice:.3f} -> {dice(label, truth):.3f} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="7000-7009")
    p.add_argument("--families", default="phantom,randomized")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    set_threads(a.threads)
    seeds = development_seeds(a.seeds)
    print("| family | seed | perturbation | label voxels changed | Dice to unperturbed | Dice to truth before -> after |\n"
          "|---|---|---|---|---|---|", flush=True)
    for fam in a.families.split(","):
        for seed in seeds:
            ph = FAMILIES[fam](seed)
            res = segment_exam(ph.exam, device="cpu")
            base, base_dice = sitk.GetArrayFromImage(res.label) > 0, dice(res.label, ph.tumor_mask)
            for name, change in PERTURBATIONS.items():
                exam = ph.exam.with_phases([change(img) for img in ph.exam.phases])
                print(_row(fam, seed, name, base, segment_exam(exam, device="cpu").label, ph.tumor_mask, base_dice),
                      flush=True)
            with tempfile.TemporaryDirectory(prefix="bench_geometry_") as tmp:
                write_phantom(ph, Path(tmp) / "exam")
                try:
                    exam = load_exam(Path(tmp) / "exam")
                except InputError as exc:
                    print(f"| {fam} | {seed} | nifti | refused: {str(exc).splitlines()[0][:120]} | | |", flush=True)
                    continue
                print(_row(fam, seed, "nifti", base, segment_exam(exam, device="cpu").label, ph.tumor_mask, base_dice),
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
