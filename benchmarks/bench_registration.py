"""Motion-correction benchmark: time, accuracy (TRE), lesion volume change and RAM per method.

    python benchmarks/bench_registration.py                    # 448x448x160 x 6 phases, every method
    python benchmarks/bench_registration.py --small            # a quick run on a small phantom
    python benchmarks/bench_registration.py --methods sitk-affine deepali-deformable --dice-seeds 3001 3002

The exam is a phantom with a known motion per phase (``training/phantom/motion.py``: rigid +
bounded affine + smooth non-rigid breast deformation); every method registers phases 1-5 to the
pre-contrast phase. TRE (mm) is measured on breast landmarks and tumour centres (mean over
landmarks, then over phases; "max" is the largest single landmark error); the lesion volume change
is that of the tumour mask moved like its phase and brought back by the method's transform, against
the true volume (the largest change over the phases; "none" row: the moved phase on the grid); RAM is
the peak resident memory above the level before the call (sampled every 20 ms). Methods:

- ``sitk-affine``: rigid -> bounded affine (SimpleITK), the engine's default;
- ``deepali-deformable``: the same, then the hf-deepali B-spline FFD (``--motion deformable``);
- ``sitk-deformable``: the same, then SimpleITK's B-spline (``--registration sitk --motion deformable``);
- ``elastix-deformable``: itk-elastix (default B-spline parameter map, on the same 4 mm images,
  after our affine); a CPU reference, only when ``itk-elastix`` is installed.

``--dice-seeds`` also runs the whole pipeline (``--model ftv`` by default, no network) on small
deformed phantoms with ``--motion affine`` and ``--motion deformable`` and prints the Dice.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastTumorSeg"))

import SimpleITK as sitk  # noqa: E402


class PeakRSS:
    """Peak resident memory (GB) of this process above its level at entry, sampled in a thread."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    @staticmethod
    def _rss() -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024 ** 2
        return 0.0

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.extra_gb = self.peak - self.base


def _elastix(exam, settings):
    """Our rigid/affine levels, then elastix's B-spline on the 4 mm images; one resampling (SimpleITK)."""
    import itk

    from BreastTumorSegLib.preprocess import registration as reg

    lin_settings = reg.RegistrationSettings(method="sitk", motion="affine")
    _, qa, linear = reg.register_exam_detailed(exam, settings=lin_settings)
    ref_d = reg._shrink_to(exam.phases[0], settings.deform_spacing_mm)
    out, transforms = list(exam.phases), [None] * exam.n_phases

    def to_itk(img):
        i = itk.image_view_from_array(sitk.GetArrayFromImage(img))
        i.SetOrigin(img.GetOrigin())
        i.SetSpacing(img.GetSpacing())
        i.SetDirection(np.asarray(img.GetDirection()).reshape(3, 3))
        return i

    params = itk.ParameterObject.New()
    bs = params.GetDefaultParameterMap("bspline", 1, float(settings.control_spacing_mm))
    bs["MaximumNumberOfIterations"] = ["200"]
    params.AddParameterMap(bs)
    for k in range(1, exam.n_phases):
        lin = linear[k] or sitk.Euler3DTransform()
        aligned = sitk.Resample(reg._shrink_to(exam.phases[k], settings.deform_spacing_mm), ref_d, lin,
                                sitk.sitkLinear, 0.0)
        fixed_i, moving_i = to_itk(ref_d), to_itk(aligned)
        _, result = itk.elastix_registration_method(fixed_i, moving_i, parameter_object=params, log_to_console=False)
        with tempfile.TemporaryDirectory() as tmp:  # transformix writes deformationField.nii into the cwd
            cwd = os.getcwd()
            os.chdir(tmp)
            try:
                field = itk.transformix_deformation_field(moving_i, result)
            finally:
                os.chdir(cwd)
        arr = np.asarray(itk.array_from_image(field), dtype=np.float64)
        f = sitk.GetImageFromArray(arr, isVector=True)
        f.CopyInformation(ref_d)
        tx = sitk.CompositeTransform([lin, sitk.DisplacementFieldTransform(sitk.ZeroFluxNeumannPad(f, [2] * 3, [2] * 3))])
        transforms[k] = tx
        out[k] = sitk.Resample(exam.phases[k], exam.phases[0], tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return exam.with_phases(out), transforms, [q["motion_level"] + "+elastix" for q in qa]


def run_method(name, exam):
    from BreastTumorSegLib.preprocess.registration import RegistrationSettings, register_exam_detailed

    settings = {"sitk-affine": RegistrationSettings(method="sitk", motion="affine"),
                "deepali-deformable": RegistrationSettings(method="deepali", motion="deformable"),
                "sitk-deformable": RegistrationSettings(method="sitk", motion="deformable"),
                "elastix-deformable": RegistrationSettings(motion="deformable")}[name]
    if name == "elastix-deformable":
        return _elastix(exam, settings)
    corrected, qa, transforms = register_exam_detailed(exam, settings=settings)
    return corrected, transforms, [q["motion_level"] for q in qa]


def dice_rows(seeds, model):
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.training.phantom.motion import make_moving_phantom

    rows = []
    for seed in seeds:
        mp = make_moving_phantom(seed, "deformable", n_phases=4)
        truth = sitk.GetArrayViewFromImage(mp.phantom.tumor_mask) > 0
        if not truth.any():
            continue
        d = {}
        for motion in ("affine", "deformable"):
            res = segment_exam(mp.exam, model=model, device="cpu", settings=SegmentSettings(motion=motion))
            pred = sitk.GetArrayViewFromImage(res.label) > 0
            d[motion] = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
        rows.append((seed, d["affine"], d["deformable"]))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="small phantom instead of 448x448x160")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--methods", nargs="+",
                   default=["sitk-affine", "deepali-deformable", "sitk-deformable", "elastix-deformable"])
    p.add_argument("--dice-seeds", nargs="*", type=int, default=[3001, 3002, 3003])
    p.add_argument("--model", default="ftv", help="model for the Dice rows (default: ftv, no network)")
    a = p.parse_args(argv)

    import torch

    from BreastTumorSegLib.training.phantom.motion import make_moving_phantom

    t = time.perf_counter()
    mp = make_moving_phantom(a.seed, "deformable", size="small" if a.small else "clinical", n_phases=6)
    t_make = time.perf_counter() - t
    exam = mp.exam
    size = exam.reference.GetSize()
    truth_ml = [mp.true_lesion_volume_ml()] * (exam.n_phases - 1)
    print(f"\nBreastTumorSeg registration benchmark — exam {size[0]}x{size[1]}x{size[2]} x {exam.n_phases} phases "
          f"(known rigid + affine + non-rigid motion, seed {a.seed}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads (phantom made in {t_make:.0f} s, not timed)\n")
    print("| method | seconds (5 phases) | TRE mean (mm) | TRE max (mm) | lesion volume change | extra peak RAM (GB) "
          "| level kept per phase |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    before = [mp.tre_mm(k, None) for k in range(1, exam.n_phases)]
    moved_ml = [mp.lesion_volume_ml(k, None) for k in range(1, exam.n_phases)]
    print(f"| none (motion left) | 0 | {np.mean([b.mean() for b in before]):.2f} | {max(b.max() for b in before):.2f} | "
          f"{_change(moved_ml, truth_ml)} | 0 | |")
    for name in a.methods:
        try:
            with PeakRSS() as mem:
                t = time.perf_counter()
                corrected, transforms, kept = run_method(name, exam)
                sec = time.perf_counter() - t
        except ImportError as exc:
            print(f"| {name} | not run: {exc} | | | | | |")
            continue
        tre = [mp.tre_mm(k, transforms[k]) for k in range(1, exam.n_phases)]
        ml = [mp.lesion_volume_ml(k, transforms[k]) for k in range(1, exam.n_phases)]
        print(f"| {name} | {sec:.1f} | {np.mean([e.mean() for e in tre]):.2f} | {max(e.max() for e in tre):.2f} | "
              f"{_change(ml, truth_ml)} | {mem.extra_gb:.2f} | {', '.join(kept)} |", flush=True)
    if a.dice_seeds:
        print(f"\nDice of the final segmentation (model {a.model}) on small deformed phantoms, 4 phases:\n")
        print("| seed | --motion affine | --motion deformable |\n| --- | ---: | ---: |")
        rows = dice_rows(a.dice_seeds, a.model)
        for seed, d_aff, d_def in rows:
            print(f"| {seed} | {d_aff:.3f} | {d_def:.3f} |")
        if rows:
            print(f"| median | {np.median([r[1] for r in rows]):.3f} | {np.median([r[2] for r in rows]):.3f} |")
    print("\nGPU: not measured (run with a CUDA build of torch and RegistrationSettings(device='cuda')).")
    return 0


def _change(ml, truth_ml) -> str:
    """Largest relative change of the tumour's enhancing volume over the phases, signed."""
    ch = [m / t - 1 for m, t in zip(ml, truth_ml) if t > 0]
    if not ch:
        return "n/a (no tumour)"
    worst = max(ch, key=abs)
    return f"{worst:+.1%}"


if __name__ == "__main__":
    raise SystemExit(main())
