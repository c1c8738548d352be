"""Motion correction: every phase is registered to a reference phase (rigid, then affine).

The reference is the pre-contrast phase by default, so that the corrected exam, the label
map and the probability map all sit in the pre-contrast frame and grid (where the outputs are
written). Pass ``reference_index=1`` to align to the first post-contrast phase instead.

Registration runs on copies of the phases shrunk to about ``work_spacing_mm`` (for speed;
motion in DCE is a few millimetres), with Mattes mutual information because contrast uptake
changes intensities between phases. The resulting transform is applied to the full-resolution
phase. Each phase gets a QA record: mutual information (MI) and normalized cross-correlation
(NCC) with the reference inside the body before and after, the transform parameters, and
whether the result was accepted. Of the candidates (no motion, rigid, affine) the one with the
highest MI is kept, so a registration that makes the alignment worse is rejected and the phase
left as it was. MI decides because contrast uptake lowers the NCC between pre- and
post-contrast phases whatever the alignment.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..core.exam import DCEExam
from ..core.progress import Reporter
from .breast_region import body_mask


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


# Metric samples per evaluation: enough for a stable mutual information, independent of the size.
METRIC_SAMPLES = 40_000


def _run(fixed, moving, fixed_mask, transform, iterations, shrink, seed) -> sitk.Transform:
    n_mask = int(sitk.GetArrayViewFromImage(fixed_mask).sum()) or 1
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(min(1.0, METRIC_SAMPLES / n_mask), seed)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-3, numberOfIterations=iterations,
        gradientMagnitudeTolerance=1e-6, relaxationFactor=0.5)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel([max(0.0, f - 1.0) for f in shrink])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(transform, inPlace=False)
    return reg.Execute(fixed, moving)


def mutual_information(fixed, moving, fixed_mask, transform: sitk.Transform | None = None) -> float:
    """Mattes mutual information of *moving* (through *transform*) with *fixed*; higher is better.

    Evaluated on every voxel of the mask (no random sampling), so it is deterministic.
    """
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetInitialTransform(transform or sitk.Euler3DTransform(), inPlace=False)
    return -float(reg.MetricEvaluate(fixed, moving))  # SimpleITK minimises the negative MI


def _register_pair(fixed: sitk.Image, moving: sitk.Image, fixed_mask: sitk.Image, affine: bool,
                   seed: int) -> list[sitk.Transform]:
    """Rigid (two levels), then optionally affine (one level) started from the rigid result.

    Returns the candidates in order (rigid, affine); the caller keeps the best by NCC.
    """
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY)
    rigid = sitk.Euler3DTransform(_flatten(_run(fixed, moving, fixed_mask, initial, 60, (2, 1), seed)))
    if not affine:
        return [rigid]
    aff = sitk.AffineTransform(3)
    aff.SetCenter(rigid.GetCenter())
    aff.SetMatrix(rigid.GetMatrix())
    aff.SetTranslation(rigid.GetTranslation())
    return [rigid, sitk.AffineTransform(_flatten(_run(fixed, moving, fixed_mask, aff, 30, (1,), seed)))]


def _flatten(tx: sitk.Transform) -> sitk.Transform:
    """The single transform inside the (composite) result of a registration."""
    while isinstance(tx, sitk.CompositeTransform) and tx.GetNumberOfTransforms() == 1:
        tx = tx.GetNthTransform(0)
    return tx


def register_exam(exam: DCEExam, reference_index: int = 0, affine: bool = True,
                  work_spacing_mm: float = 3.0, reporter: Reporter | None = None,
                  min_gain: float = 0.0) -> tuple[DCEExam, list[dict]]:
    """Register every phase of *exam* to ``exam.phases[reference_index]``.

    Returns the motion-corrected exam (same grid) and one QA dict per phase.
    ``min_gain``: a transform is kept only if it raises the MI by at least this much.
    """
    reporter = reporter or Reporter()
    ref_full = exam.phases[reference_index]
    ref = _shrink_to(ref_full, work_spacing_mm)
    mask = body_mask(ref)  # metric sampling and QA inside the body
    out = list(exam.phases)
    qa = []
    others = [i for i in range(exam.n_phases) if i != reference_index]
    for n, i in enumerate(others):
        reporter.update(n / max(len(others), 1), f"registering phase {i} to phase {reference_index}")
        moving = _shrink_to(exam.phases[i], work_spacing_mm)
        mi_before = mutual_information(ref, moving, mask)
        tx, mi_after, error = None, mi_before, None
        try:
            for cand in _register_pair(ref, moving, mask, affine, seed=1234 + i):
                score = mutual_information(ref, moving, mask, cand)
                if score > mi_after:
                    tx, mi_after = cand, score
        except RuntimeError as exc:  # optimiser failure: keep the phase unregistered, say so
            error = str(exc).strip().splitlines()[-1][:200]
        accepted = tx is not None and mi_after >= mi_before + min_gain
        before = ncc(ref, moving, mask)
        after = ncc(ref, sitk.Resample(moving, ref, tx, sitk.sitkLinear, 0.0), mask) if accepted else before
        if accepted:
            out[i] = sitk.Resample(exam.phases[i], ref_full, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        qa.append({
            "phase": i,
            "reference": reference_index,
            "mi_before": round(mi_before, 4),
            "mi_after": round(mi_after if accepted else mi_before, 4),
            "ncc_before": round(before, 4),
            "ncc_after": round(after, 4),
            "accepted": accepted,
            "transform": _describe(tx) if accepted else None,
            "error": error,
        })
    reporter.update(1.0, "registration done")
    corrected = exam.with_phases(out, motion_corrected=True, registration_reference=reference_index)
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
