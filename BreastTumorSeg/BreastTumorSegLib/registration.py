"""Motion correction: every phase is registered to a reference phase (rigid, then affine).

Registration runs on copies of the phases shrunk to about ``work_spacing_mm`` (for speed;
motion in DCE is a few millimetres), with Mattes mutual information because contrast uptake
changes intensities between phases. The resulting transform is applied to the full-resolution
phase. Each phase gets a QA record: normalized cross-correlation (NCC) with the reference
inside the body before and after, the transform parameters, and whether the result was
accepted (a registration that lowers NCC is rejected and the phase left as it was).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .exam import DCEExam
from .progress import Reporter


def _shrink_to(img: sitk.Image, spacing_mm: float) -> sitk.Image:
    factors = [max(1, int(round(spacing_mm / s))) for s in img.GetSpacing()]
    if all(f == 1 for f in factors):
        return img
    return sitk.BinShrink(img, factors)


def _foreground(img: sitk.Image) -> sitk.Image:
    """Rough body mask for QA and metric sampling (Otsu on the smoothed image)."""
    smooth = sitk.SmoothingRecursiveGaussian(img, 2.0)
    return sitk.OtsuThreshold(smooth, 0, 1)


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


def _register_pair(fixed: sitk.Image, moving: sitk.Image, fixed_mask: sitk.Image, affine: bool,
                   seed: int) -> sitk.Transform:
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY)

    def method(transform, iterations):
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(0.2, seed)
        reg.SetMetricFixedMask(fixed_mask)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=1.0, minStep=1e-3, numberOfIterations=iterations,
            gradientMagnitudeTolerance=1e-6, relaxationFactor=0.5)
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetShrinkFactorsPerLevel([2, 1])
        reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        reg.SetInitialTransform(transform, inPlace=False)
        return reg.Execute(fixed, moving)

    rigid = method(initial, 80)
    if not affine:
        return rigid
    rigid = sitk.CompositeTransform(rigid).GetNthTransform(0) if isinstance(rigid, sitk.CompositeTransform) else rigid
    aff = sitk.AffineTransform(3)
    euler = sitk.Euler3DTransform(rigid)
    aff.SetMatrix(euler.GetMatrix())
    aff.SetTranslation(euler.GetTranslation())
    aff.SetCenter(euler.GetCenter())
    return method(aff, 40)


def register_exam(exam: DCEExam, reference_index: int = 1, affine: bool = True,
                  work_spacing_mm: float = 3.0, reporter: Reporter | None = None,
                  min_gain: float = 0.0) -> tuple[DCEExam, list[dict]]:
    """Register every phase of *exam* to ``exam.phases[reference_index]``.

    Returns the motion-corrected exam (same grid) and one QA dict per phase.
    ``min_gain``: a transform is kept only if NCC after ≥ NCC before + min_gain.
    """
    reporter = reporter or Reporter()
    ref_full = exam.phases[reference_index]
    ref = _shrink_to(ref_full, work_spacing_mm)
    mask = _foreground(ref)
    out = list(exam.phases)
    qa = []
    others = [i for i in range(exam.n_phases) if i != reference_index]
    for n, i in enumerate(others):
        reporter.update(n / max(len(others), 1), f"registering phase {i} to phase {reference_index}")
        moving = _shrink_to(exam.phases[i], work_spacing_mm)
        before = ncc(ref, moving, mask)
        try:
            tx = _register_pair(ref, moving, mask, affine, seed=1234 + i)
            warped_small = sitk.Resample(moving, ref, tx, sitk.sitkLinear, 0.0)
            after = ncc(ref, warped_small, mask)
            error = None
        except RuntimeError as exc:  # optimiser failure: keep the phase unregistered, say so
            tx, after, error = sitk.Transform(), before, str(exc).strip().splitlines()[-1][:200]
        accepted = error is None and after >= before + min_gain
        if accepted:
            out[i] = sitk.Resample(exam.phases[i], ref_full, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        qa.append({
            "phase": i,
            "reference": reference_index,
            "ncc_before": round(before, 4),
            "ncc_after": round(after if accepted else before, 4),
            "accepted": accepted,
            "transform": _describe(tx) if accepted else None,
            "error": error,
        })
    reporter.update(1.0, "registration done")
    corrected = exam.with_phases(out, motion_corrected=True, registration_reference=reference_index)
    return corrected, qa


def _describe(tx: sitk.Transform) -> dict:
    """Translation (mm) and matrix of an affine-like transform, for the QA record."""
    try:
        t = tx
        while isinstance(t, sitk.CompositeTransform):
            t = t.GetNthTransform(t.GetNumberOfTransforms() - 1)
        aff = sitk.AffineTransform(3)
        aff.SetParameters(t.GetParameters()) if t.GetName() == "AffineTransform" else None
        if t.GetName() == "AffineTransform":
            aff = sitk.AffineTransform(t)
        elif t.GetName() == "Euler3DTransform":
            e = sitk.Euler3DTransform(t)
            aff.SetMatrix(e.GetMatrix()); aff.SetTranslation(e.GetTranslation()); aff.SetCenter(e.GetCenter())
        else:
            return {"type": t.GetName()}
        return {"type": t.GetName(),
                "translation_mm": [round(v, 3) for v in aff.GetTranslation()],
                "matrix": [round(v, 5) for v in aff.GetMatrix()],
                "center_mm": [round(v, 3) for v in aff.GetCenter()]}
    except RuntimeError:
        return {"type": tx.GetName()}


def displacement_at(tx_record: dict, point_lps) -> np.ndarray:
    """Displacement (mm) that a QA transform record applies at *point_lps* (fixed space → moving space)."""
    m = np.asarray(tx_record["matrix"]).reshape(3, 3)
    c = np.asarray(tx_record["center_mm"])
    t = np.asarray(tx_record["translation_mm"])
    p = np.asarray(point_lps, float)
    return m @ (p - c) + c + t - p
