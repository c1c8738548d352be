"""Motion correction: every phase is registered to a reference phase, in up to three levels.

Levels (``motion``): **rigid**, then a **bounded affine** (rejected, and the rigid result kept,
when a singular value of its matrix departs from 1 by more than ``max_scale_change`` or its
determinant by more than ``max_det_change``: a phase scaled by 10 % would change every measured
lesion volume), then a **deformable** B-spline level (control points every
``control_spacing_mm``; rejected when its Jacobian determinant is not > ``min_jacobian``
everywhere in the body, i.e. when it folds or compresses tissue). Each level is kept only if it
raises the mutual information (MI) with the reference (the deepali deformable level: the local
NCC it maximises, on the voxels it was fitted to); the QA record of every phase says what
was tried, what was kept and why.

The reference is the pre-contrast phase by default, so that the corrected exam, the label map
and the probability map all sit in the pre-contrast frame and grid (where the outputs are
written). Pass ``reference_index=1`` to align to the first post-contrast phase instead.

Estimation runs on copies shrunk to about ``work_spacing_mm`` (rigid, affine) and
``deform_spacing_mm`` (deformable), with Mattes MI because contrast uptake changes intensities
between phases (the deepali deformable level: local NCC, which uptake changes little inside
non-enhancing tissue). Enhancing lesions are not pulled toward their pre-contrast look: the
deformable level's metric ignores strongly enhancing voxels (and a margin around them), its
coarse control grid cannot shrink a lesion on its own, and deepali's also penalises any
divergence of the displacement in those voxels (they keep their volume). The transforms are
composed and each phase is resampled **once**, at full resolution, from the phase as acquired
(``exam.native`` holds phases that were loaded on another grid) to the reference grid. MI
decides because contrast uptake lowers the normalized cross-correlation (NCC) whatever the
alignment; the NCC is recorded too.

Speed (README, *Motion correction*): 4 mm and 15,000 samples per optimiser step for the linear
levels, the QA's MI from one resampling and a joint histogram, and two phases at a time in
threads (SimpleITK releases the GIL): 13.4 s -> 4.1 s for 5 phases of 448x448x160 on two cores
at the same landmark error.
"""
from __future__ import annotations

import os
from concurrent.futures import as_completed
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.interrupts import joined_pool
from ..core.errors import InputError
from ..core.exam import DCEExam
from ..core.progress import Reporter
from . import deformable_torch
from .body import body_mask
from .index_frame import VoxelFrame


def _shrink_to(img: sitk.Image, spacing_mm: float) -> sitk.Image:
    factors = [max(1, int(round(spacing_mm / s))) for s in img.GetSpacing()]
    if all(f == 1 for f in factors):
        return img
    return sitk.BinShrink(img, factors)


def ncc(a: sitk.Image, b: sitk.Image, mask: sitk.Image | None = None) -> float:
    """Normalized cross-correlation of two images on the same grid (optionally inside *mask*)."""
    x = sitk.GetArrayViewFromImage(a).astype(np.float64, copy=False)
    y = sitk.GetArrayViewFromImage(b).astype(np.float64, copy=False)
    if mask is not None:
        m = sitk.GetArrayViewFromImage(mask) > 0
        x, y = x[m], y[m]
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else 0.0


# Metric samples per optimiser step: enough for a stable mutual information, independent of the
# size (15,000 at 4 mm gave the same TRE as 40,000 at 3 mm, in a third of the time: README table).
METRIC_SAMPLES = 15_000


def _sampled_mi(fixed_mask: sitk.Image, seed: int, samples: int = METRIC_SAMPLES) -> sitk.ImageRegistrationMethod:
    """A registration method with Mattes mutual information on about *samples* random voxels
    of *fixed_mask* (seeded) and linear interpolation; the caller sets optimiser and transform."""
    n_mask = int(sitk.GetArrayViewFromImage(fixed_mask).sum()) or 1
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(min(1.0, samples / n_mask), seed)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    return reg


def _run(fixed, moving, fixed_mask, transform, iterations, shrink, seed, learning_rate=1.0,
         samples: int = METRIC_SAMPLES) -> sitk.Transform:
    reg = _sampled_mi(fixed_mask, seed, samples)
    reg.SetOptimizerAsRegularStepGradientDescent(  # steps in mm (physical-shift scales), down to 0.01 mm
        learningRate=learning_rate, minStep=1e-2, numberOfIterations=iterations,
        gradientMagnitudeTolerance=1e-6, relaxationFactor=0.5)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel([max(0.0, f - 1.0) for f in shrink])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(transform, inPlace=False)
    return reg.Execute(fixed, moving)


MI_BINS = 32


def mutual_information(fixed, moving, fixed_mask, transform: sitk.Transform | None = None) -> float:
    """Mutual information (nats) of *moving* (through *transform*) with *fixed*; higher is better.

    Every voxel of the mask that maps inside *moving* counts (no random sampling: deterministic);
    32 x 32 joint histogram over each image's own intensity range, like the Mattes metric the
    optimiser uses. Computed here from one linear resampling and a histogram: SimpleITK's
    ``MetricEvaluate`` gives the same kind of number but spends ~55 ms per call setting the
    metric up (gradient images), three times per phase.
    """
    moved_img = sitk.Resample(moving, fixed, transform if transform is not None else sitk.Transform(),
                              sitk.sitkLinear, float("nan"), sitk.sitkFloat32)
    moved = sitk.GetArrayViewFromImage(moved_img)  # a view: moved_img must outlive it
    inside = (sitk.GetArrayViewFromImage(fixed_mask) > 0) & ~np.isnan(moved)
    x = sitk.GetArrayViewFromImage(fixed)[inside].astype(np.float64)
    y = moved[inside].astype(np.float64)
    if x.size < 2:
        return 0.0

    def bins(v, img):
        a = sitk.GetArrayViewFromImage(img)
        lo, hi = float(a.min()), float(a.max())
        return np.clip(((v - lo) / ((hi - lo) or 1.0) * MI_BINS).astype(np.int64), 0, MI_BINS - 1)

    joint = np.bincount(bins(x, fixed) * MI_BINS + bins(y, moving), minlength=MI_BINS * MI_BINS)
    pxy = joint.reshape(MI_BINS, MI_BINS) / x.size
    px, py = pxy.sum(1, keepdims=True), pxy.sum(0, keepdims=True)
    nz = pxy > 0
    return float((pxy[nz] * np.log(pxy[nz] / (px @ py)[nz])).sum())


# Phases registered at the same time (threads).
PHASE_WORKERS = 2

METHODS = ("auto", "sitk", "deepali", "none")
LEVELS = ("rigid", "affine", "deformable")


@dataclass
class RegistrationSettings:
    """What :func:`register_exam` does; the defaults are the engine's."""

    method: str = "auto"  # auto (= deepali when installed, else sitk), sitk, deepali, none
    motion: str = "affine"  # highest level tried: rigid, affine or deformable (opt-in: see README)
    work_spacing_mm: float = 4.0  # rigid and affine estimation grid
    metric_samples: int = METRIC_SAMPLES  # rigid and affine: Mattes MI samples per optimiser step
    affine_iterations: int = 60  # affine: most optimiser steps
    # deformable estimation grid (the small phantom's 2.5 mm as is: at 5 mm the texture that places the breast
    # is averaged away and the deformable TRE stayed at the affine one)
    deform_spacing_mm: float = 3.0
    control_spacing_mm: float = 40.0  # B-spline control-point spacing
    max_scale_change: float = 0.10  # affine: |singular value - 1| bound (scale and shear)
    max_det_change: float = 0.10  # affine: |det - 1| bound (volume change)
    min_jacobian: float = 0.5  # deformable: smallest Jacobian determinant accepted in the body
    # deformable metric ignores voxels enhancing by more than this x p95(reference) (0.25 left ~25 % of the body out)
    enhancement_fraction: float = 0.5
    min_gain: float = 0.0  # a level is kept only if it raises the MI by at least this much
    deform_iterations: int = 20  # deepali: Adam steps of the free-form deformation
    lesion_volume_weight: float = 30.0  # deepali: squared divergence in enhancing voxels (lesions keep their volume)
    device: str = "cpu"  # deepali: torch device of the deformable level

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown registration method {self.method!r}", "--registration",
                             f"use one of {', '.join(METHODS)}")
        if self.motion not in LEVELS:
            raise InputError(f"unknown motion level {self.motion!r}", "--motion", f"use one of {', '.join(LEVELS)}")
        if self.method == "deepali" and not deformable_torch.available():
            raise InputError("--registration deepali needs the hf-deepali package", "--registration",
                             'install it with: python -m pip install "hf-deepali>=0.6"; or use --registration sitk')

    def resolved_method(self) -> str:
        """The method that runs: ``auto`` becomes deepali when the deformable level is asked for and
        hf-deepali is installed, else sitk (the rigid and affine levels are SimpleITK's in every case)."""
        if self.method != "auto":
            return self.method
        if self.motion != "deformable":
            return "sitk"
        return "deepali" if deformable_torch.available() else "sitk"


@dataclass
class PhaseRegistration:
    """The transform of one phase (reference point -> phase point; None = left as it was) and its QA."""

    transform: sitk.Transform | None
    qa: dict


def _rigid_to_affine(rigid: sitk.Euler3DTransform) -> sitk.AffineTransform:
    aff = sitk.AffineTransform(3)
    aff.SetCenter(rigid.GetCenter())
    aff.SetMatrix(rigid.GetMatrix())
    aff.SetTranslation(rigid.GetTranslation())
    return aff


def affine_bounds(tx: sitk.Transform) -> dict:
    """Singular values and determinant of a linear transform's matrix (scale, shear, volume change)."""
    m = np.asarray(tx.GetMatrix()).reshape(3, 3)
    sv = np.linalg.svd(m, compute_uv=False)
    return {"singular_values": [round(float(v), 4) for v in sv], "det": round(float(np.linalg.det(m)), 4)}


def _bounded(bounds: dict, s: RegistrationSettings) -> str | None:
    """Why an affine is refused (None = within the bounds)."""
    worst = max(abs(v - 1) for v in bounds["singular_values"])
    if worst > s.max_scale_change:
        return (f"scale/shear {worst:.1%} exceeds the {s.max_scale_change:.0%} bound "
                f"(singular values {bounds['singular_values']})")
    if abs(bounds["det"] - 1) > s.max_det_change:
        return f"volume change |det - 1| = {abs(bounds['det'] - 1):.1%} exceeds the {s.max_det_change:.0%} bound"
    return None


def _enhancement_free_mask(ref: sitk.Image, moving_aligned: sitk.Image, mask: sitk.Image, fraction: float) -> sitk.Image:
    """*mask* without strongly enhancing voxels (and 2 voxels around them): the deformable metric's mask."""
    r = sitk.GetArrayViewFromImage(ref)
    m = sitk.GetArrayViewFromImage(mask) > 0
    enh = sitk.GetArrayViewFromImage(moving_aligned) - r
    level = fraction * float(np.percentile(r[m], 95)) if m.any() else np.inf
    strong = ndimage.binary_dilation(enh > level, iterations=2)
    out = sitk.GetImageFromArray((m & ~strong).astype(np.uint8))
    out.CopyInformation(mask)
    return out if int(sitk.GetArrayViewFromImage(out).sum()) > 1000 else mask


def _deformable(fixed, moving, metric_mask, linear, s: RegistrationSettings, seed: int) -> sitk.BSplineTransform:
    """A B-spline displacement (in the reference frame) on top of *linear*: phase point = linear(bspline(p))."""
    extent = [n * sp for n, sp in zip(fixed.GetSize(), fixed.GetSpacing())]
    mesh = [max(1, int(round(e / s.control_spacing_mm))) for e in extent]
    bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
    reg = _sampled_mi(metric_mask, seed)
    reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=20,
                             maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=30,
                             costFunctionConvergenceFactor=1e7)
    reg.SetMovingInitialTransform(linear)
    reg.SetInitialTransform(bspline, inPlace=True)
    reg.Execute(fixed, moving)
    return bspline


def _field_stats(bspline: sitk.Transform, total: sitk.Transform, grid: sitk.Image, mask: sitk.Image) -> tuple[float, float]:
    """Smallest Jacobian determinant of *bspline* and largest displacement (mm) of *total* inside *mask*."""
    args = (sitk.sitkVectorFloat64, grid.GetSize(), grid.GetOrigin(), grid.GetSpacing(), grid.GetDirection())
    m = sitk.GetArrayViewFromImage(mask) > 0
    jac = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(
        sitk.TransformToDisplacementField(bspline, *args)))
    disp = sitk.GetArrayFromImage(sitk.TransformToDisplacementField(total, *args))
    return float(jac[m].min()), float(np.linalg.norm(disp[m], axis=-1).max())


def _max_displacement(tx: sitk.Transform, grid: sitk.Image, mask: sitk.Image) -> float:
    args = (sitk.sitkVectorFloat64, grid.GetSize(), grid.GetOrigin(), grid.GetSpacing(), grid.GetDirection())
    disp = sitk.GetArrayFromImage(sitk.TransformToDisplacementField(tx, *args))
    return float(np.linalg.norm(disp[sitk.GetArrayViewFromImage(mask) > 0], axis=-1).max())


def register_phase(ref: sitk.Image, moving: sitk.Image, mask: sitk.Image, settings: RegistrationSettings,
                   seed: int = 1234, deform_grid: tuple | None = None) -> PhaseRegistration:
    """Register *moving* to *ref* (both on the work grid, *mask* the body there), level by level.

    ``deform_grid`` = (reference, moving, body mask) shrunk to ``deform_spacing_mm`` for the
    deformable level. Returns the kept transform and the QA record (without phase indices).
    """
    s = settings
    mi_before = mutual_information(ref, moving, mask)
    levels: dict[str, dict] = {}
    kept, kept_level, mi_kept, error = None, "none", mi_before, None
    try:
        initial = sitk.CenteredTransformInitializer(
            ref, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY)
        rigid = sitk.Euler3DTransform(_flatten(_run(ref, moving, mask, initial, 60, (2, 1), seed,
                                                    learning_rate=2.0, samples=s.metric_samples)))
        mi = mutual_information(ref, moving, mask, rigid)
        ok = mi >= mi_kept + s.min_gain
        levels["rigid"] = {"mi": round(mi, 4), "accepted": ok, "reason": None if ok else "mutual information not raised"}
        if ok:
            kept, kept_level, mi_kept = rigid, "rigid", mi
        if s.motion in ("affine", "deformable"):
            start = _rigid_to_affine(rigid)
            aff = sitk.AffineTransform(_flatten(_run(ref, moving, mask, start, s.affine_iterations, (1,), seed,
                                                     learning_rate=0.25, samples=s.metric_samples)))
            bounds = affine_bounds(aff)
            mi = mutual_information(ref, moving, mask, aff)
            reason = _bounded(bounds, s) or (None if mi >= mi_kept + s.min_gain else "mutual information not raised")
            levels["affine"] = {"mi": round(mi, 4), **bounds, "accepted": reason is None, "reason": reason}
            if reason is None:
                kept, kept_level, mi_kept = aff, "affine", mi
        if s.motion == "deformable":
            linear = kept if kept is not None else sitk.Euler3DTransform()
            fixed_d, moving_d, mask_d = deform_grid or (ref, moving, mask)
            aligned = sitk.Resample(moving_d, fixed_d, linear, sitk.sitkLinear, 0.0)
            metric_mask = _enhancement_free_mask(fixed_d, aligned, mask_d, s.enhancement_fraction)
            if s.resolved_method() == "deepali":
                # the voxels left out of the metric as enhancing (lesions) keep their volume (divergence penalised)
                lesions = sitk.And(mask_d > 0, metric_mask == 0)
                field = deformable_torch.estimate_bspline(fixed_d, aligned, metric_mask, s.control_spacing_mm,
                                                          s.deform_iterations, device=s.device, preserve=lesions,
                                                          volume_weight=s.lesion_volume_weight)
                # padded (edge values) so that every point of the full-resolution grid lies inside the field
                bspline = sitk.DisplacementFieldTransform(sitk.ZeroFluxNeumannPad(field, [2] * 3, [2] * 3))
            else:
                bspline = _deformable(fixed_d, moving_d, metric_mask, linear, s, seed)
            total = sitk.CompositeTransform([linear, bspline])  # phase point = linear(bspline(p))
            min_jac, max_disp = _field_stats(bspline, total, fixed_d, mask_d)
            mi = mutual_information(ref, moving, mask, total)
            # Judged on the voxels it was fitted to (enhancing ones left out), against the linear result,
            # with the similarity it maximised: MI (SimpleITK) or local NCC (deepali; the 32-bin MI of the
            # whole body can drop a little while the local alignment improves: phantom seed 51, TRE 0.76 -> 0.56 mm).
            mi_lin_d = mutual_information(fixed_d, moving_d, metric_mask, linear)
            mi_def_d = mutual_information(fixed_d, moving_d, metric_mask, total)
            judged = {}
            if s.resolved_method() == "deepali":
                warped = sitk.Resample(moving_d, fixed_d, total, sitk.sitkLinear, 0.0)
                lncc = deformable_torch.local_ncc
                judged = {"similarity": "local NCC",
                          "lncc_non_enhancing_before": round(lncc(fixed_d, aligned, metric_mask), 4),
                          "lncc_non_enhancing_after": round(lncc(fixed_d, warped, metric_mask), 4)}
                raised = judged["lncc_non_enhancing_after"] >= judged["lncc_non_enhancing_before"] + s.min_gain
            else:
                raised = mi_def_d >= mi_lin_d + s.min_gain
            if not min_jac > s.min_jacobian:
                reason = f"min Jacobian determinant {min_jac:.3f} not above {s.min_jacobian} (folding or compression)"
            else:
                reason = None if raised else f"{judged.get('similarity', 'mutual information')} not raised"
            levels["deformable"] = {"mi": round(mi, 4), "mi_non_enhancing_before": round(mi_lin_d, 4),
                                    "mi_non_enhancing_after": round(mi_def_d, 4), **judged,
                                    "min_jacobian": round(min_jac, 4),
                                    "max_displacement_mm": round(max_disp, 3),
                                    "control_spacing_mm": s.control_spacing_mm,
                                    "metric_voxels_masked_as_enhancing": int(
                                        sitk.GetArrayViewFromImage(mask_d).sum()
                                        - sitk.GetArrayViewFromImage(metric_mask).sum()),
                                    "accepted": reason is None, "reason": reason}
            if reason is None:
                kept, kept_level, mi_kept = total, "deformable", mi
    except RuntimeError as exc:  # optimiser failure: keep what was accepted so far, say so
        error = str(exc).strip().splitlines()[-1][:200]
    accepted = kept is not None
    before = ncc(ref, moving, mask)
    after = ncc(ref, sitk.Resample(moving, ref, kept, sitk.sitkLinear, 0.0), mask) if accepted else before
    linear = kept.GetNthTransform(0) if kept_level == "deformable" else kept
    deform = levels.get("deformable", {})
    qa = {"mi_before": round(mi_before, 4), "mi_after": round(mi_kept, 4),
          "ncc_before": round(before, 4), "ncc_after": round(after, 4), "accepted": accepted,
          "transform": _describe(linear) if accepted and not _is_identity(linear) else None, "error": error,
          "method": s.resolved_method(), "motion_requested": s.motion, "motion_level": kept_level,
          "max_displacement_mm": (deform["max_displacement_mm"] if kept_level == "deformable" else
                                  round(_max_displacement(kept, ref, mask), 3) if accepted else 0.0),
          "min_jacobian": deform.get("min_jacobian") if kept_level == "deformable" else
          (levels["affine"]["det"] if kept_level == "affine" else (1.0 if accepted else None)),
          "rejected": {k: v["reason"] for k, v in levels.items() if not v["accepted"]},
          "levels": levels}
    return PhaseRegistration(kept, qa)


def _is_identity(tx) -> bool:
    return tx is None or (tx.GetName() == "Euler3DTransform" and np.allclose(tx.GetParameters(), 0.0))


def _flatten(tx: sitk.Transform) -> sitk.Transform:
    """The single transform inside the (composite) result of a registration."""
    while isinstance(tx, sitk.CompositeTransform) and tx.GetNumberOfTransforms() == 1:
        tx = tx.GetNthTransform(0)
    return tx


def _for_resampling(tx: sitk.Transform, grid: sitk.Image, spacing_mm: float) -> sitk.Transform:
    """*tx* made cheap to evaluate per voxel: a deformable part becomes a displacement field sampled every
    *spacing_mm* (linearly interpolated; the B-spline is smooth over tens of mm), the linear part stays exact."""
    if not isinstance(tx, sitk.CompositeTransform):
        return tx
    linear, bspline = tx.GetNthTransform(0), tx.GetNthTransform(1)
    if bspline.GetName() == "DisplacementFieldTransform":
        return tx
    size = [max(2, int(np.ceil(n * sp / spacing_mm)) + 1) for n, sp in zip(grid.GetSize(), grid.GetSpacing())]
    field = sitk.TransformToDisplacementField(bspline, sitk.sitkVectorFloat64, size, grid.GetOrigin(),
                                              [spacing_mm] * 3, grid.GetDirection())
    return sitk.CompositeTransform([linear, sitk.DisplacementFieldTransform(field)])


def _oriented(frame_img: sitk.Image, physical: sitk.Image) -> sitk.Image:
    """*frame_img* with *physical*'s direction (the body mask orients itself by it; the origin does not matter)."""
    out = sitk.Image(frame_img)
    out.SetDirection(physical.GetDirection())
    return out


def _in_physical_mm(result: PhaseRegistration, frame: VoxelFrame, grid: sitk.Image, spacing_mm: float) -> PhaseRegistration:
    """*result* estimated in *frame*, its transform (and the QA's description of it) in physical mm."""
    tx = frame.transform(result.transform, grid, spacing_mm)
    qa = dict(result.qa)
    if qa.get("transform") is not None:
        qa["transform"] = _describe(tx.GetNthTransform(0) if isinstance(tx, sitk.CompositeTransform) else tx)
    return PhaseRegistration(tx, qa)


def register_exam_detailed(exam: DCEExam, reference_index: int = 0,
                           settings: RegistrationSettings | None = None,
                           reporter: Reporter | None = None) -> tuple[DCEExam, list[dict], list]:
    """:func:`register_exam`, also returning each phase's transform (reference point -> phase point; None)."""
    s = settings or RegistrationSettings()
    reporter = reporter or Reporter()
    if s.method == "none":
        return exam, [], [None] * exam.n_phases
    ref_full = exam.phases[reference_index]
    # Estimated in the grid's own frame: the geometry's rounding noise cannot steer it (index_frame.py).
    frame = VoxelFrame(ref_full)
    ref = _shrink_to(frame.image(ref_full), s.work_spacing_mm)
    mask = body_mask(_oriented(ref, ref_full))  # metric sampling and QA inside the body
    mask.CopyInformation(ref)
    deform = None
    if s.motion == "deformable":
        ref_d = _shrink_to(frame.image(ref_full), s.deform_spacing_mm)
        deform = (ref_d, sitk.Resample(mask, ref_d, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    out = list(exam.phases)
    qa, transforms = {}, [None] * exam.n_phases
    others = [i for i in range(exam.n_phases) if i != reference_index]

    def one(i: int):
        moving = _shrink_to(frame.image(exam.phases[i]), s.work_spacing_mm)
        grid = None if deform is None else (deform[0], _shrink_to(frame.image(exam.phases[i]), s.deform_spacing_mm),
                                            deform[1])
        result = _in_physical_mm(register_phase(ref, moving, mask, s, seed=1234 + i, deform_grid=grid), frame,
                                 frame.image(ref_full), s.deform_spacing_mm)
        image = exam.phases[i]
        if result.transform is not None:
            # One resampling, from the phase as acquired (its own grid when it was loaded on another one).
            source = exam.native.get(i, exam.phases[i])
            image = sitk.Resample(source, ref_full, _for_resampling(result.transform, ref_full, s.deform_spacing_mm),
                                  sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        return i, result, image

    # Two phases at a time: SimpleITK releases the GIL, and one registration (15,000 samples per
    # step) keeps two cores only partly busy. Each phase's result does not depend on the order.
    workers = max(1, min(PHASE_WORKERS, len(others), os.cpu_count() or 1))
    reporter.update(0.0, f"registering {len(others)} phases to phase {reference_index}")
    with joined_pool(workers, "registration") as pool:  # both threads joined on every exit path (signals too)
        futures = [pool.submit(one, i) for i in others]
        try:
            for n, fut in enumerate(as_completed(futures), 1):
                i, result, image = fut.result()
                out[i] = image
                transforms[i] = result.transform
                qa[i] = {"phase": i, "reference": reference_index, **result.qa,
                         "resampled_from": "native grid" if i in exam.native else "reference grid"}
                reporter.update(n / len(others), f"registered phase {i} to phase {reference_index} ({n}/{len(others)})")
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    qa = [qa[i] for i in others]
    reporter.update(1.0, "registration done")
    corrected = exam.with_phases(out, motion_corrected=True, registration_reference=reference_index)
    return corrected, qa, transforms


def register_exam(exam: DCEExam, reference_index: int = 0, affine: bool = True,
                  work_spacing_mm: float = 3.0, reporter: Reporter | None = None,
                  min_gain: float = 0.0, settings: RegistrationSettings | None = None) -> tuple[DCEExam, list[dict]]:
    """Register every phase of *exam* to ``exam.phases[reference_index]``.

    Returns the motion-corrected exam (same grid) and one QA dict per phase: MI and NCC
    before/after, ``motion_level`` kept, ``max_displacement_mm``, ``min_jacobian``, ``rejected``
    (level -> why) and ``levels`` (what each level gave); ``transform`` is the linear part.
    ``settings`` (:class:`RegistrationSettings`) choose the method and levels; without them,
    ``affine=False`` stops at rigid, and ``work_spacing_mm``/``min_gain`` are as named.
    """
    if settings is None:
        settings = RegistrationSettings(motion=RegistrationSettings.motion if affine else "rigid",
                                        work_spacing_mm=work_spacing_mm, min_gain=min_gain)
    corrected, qa, _ = register_exam_detailed(exam, reference_index, settings, reporter)
    return corrected, qa


def _describe(tx: sitk.Transform) -> dict:
    """Matrix, translation and centre (mm) of an Euler/affine transform, for the QA record."""
    if tx.GetName() not in ("Euler3DTransform", "AffineTransform"):
        return {"type": tx.GetName()}
    t = sitk.Euler3DTransform(tx) if tx.GetName() == "Euler3DTransform" else sitk.AffineTransform(tx)
    return {"type": tx.GetName(),
            "translation_mm": [round(v, 3) for v in t.GetTranslation()],
            "matrix": [round(v, 5) for v in t.GetMatrix()],
            "center_mm": [round(v, 3) for v in t.GetCenter()]}


def displacement_at(tx_record: dict, point_lps) -> np.ndarray:
    """Displacement (mm) that a QA transform record applies at *point_lps* (fixed space → moving space)."""
    m = np.asarray(tx_record["matrix"]).reshape(3, 3)
    c = np.asarray(tx_record["center_mm"])
    t = np.asarray(tx_record["translation_mm"])
    p = np.asarray(point_lps, float)
    return m @ (p - c) + c + t - p
