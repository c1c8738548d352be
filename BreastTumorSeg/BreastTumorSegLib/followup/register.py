"""A later visit registered to the baseline: rigid, then a bounded affine, on the pre-contrast images.

Different days mean different positioning: the visit's breasts lie elsewhere on the table, turned,
a little compressed. The transform is estimated with the motion correction's own levels
(:func:`~..preprocess.registration.register_phase`: Mattes mutual information on about 4 mm,
rigid, then an affine refused beyond 10 % scale/shear or volume change), with the metric sampled
in the baseline's breast region (dilated by ``margin_mm``, so that the skin and chest wall that
place the breast count) and started from the shift between the two breast regions' centroids.

When the registration from that start ends below ``min_ncc`` (a local minimum: a valid visit
would be refused as another body), it is run again from the other starts (no shift; the shift
between the two bodies' centroids) and the most similar result is kept (``retry_starts``; the
record says how many starts were tried). A visit accepted from the first start is registered as
before.

The result is refused (:class:`InputError` naming the visit) when the visit does not look like the
baseline's anatomy once registered: normalized cross-correlation of the two pre-contrast images in
the breast region below ``min_ncc``, or a rotation beyond ``max_rotation_deg`` (a wrong exam, a
different patient, another body part).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..preprocess.registration import RegistrationSettings, _shrink_to, ncc, register_phase

WORK_SPACING_MM = 4.0


@dataclass
class VisitRegistration:
    """``transform`` maps baseline points to visit points (``sitk.Resample(visit, baseline, transform)``
    puts the visit into the baseline frame); ``qa`` says what was kept and how similar the images are."""

    transform: sitk.AffineTransform
    qa: dict


@dataclass(frozen=True)
class VisitRegistrationSettings:
    margin_mm: float = 10.0
    min_ncc: float = 0.6
    max_rotation_deg: float = 30.0
    motion: str = "affine"
    # below min_ncc, register again from the other starts (:func:`other_starts`) and keep the most similar
    retry_starts: bool = True


def _centroid(mask: sitk.Image) -> np.ndarray:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(mask > 0, sitk.sitkUInt8))
    return np.asarray(stats.GetCentroid(1)) if stats.HasLabel(1) else None


def _as_affine(tx: sitk.Transform | None, shift: np.ndarray) -> sitk.AffineTransform:
    """``p -> tx(p) + shift`` as one affine transform (tx None: the shift alone)."""
    out = sitk.AffineTransform(3)
    if tx is not None:
        lin = sitk.AffineTransform(3)
        if tx.GetName() == "Euler3DTransform":
            e = sitk.Euler3DTransform(tx)
            lin.SetCenter(e.GetCenter())
            lin.SetMatrix(e.GetMatrix())
            lin.SetTranslation(e.GetTranslation())
        else:
            lin = sitk.AffineTransform(tx)
        out.SetCenter(lin.GetCenter())
        out.SetMatrix(lin.GetMatrix())
        out.SetTranslation(tuple(np.asarray(lin.GetTranslation()) + shift))
    else:
        out.SetTranslation(tuple(float(v) for v in shift))
    return out


def rotation_deg(tx: sitk.AffineTransform) -> float:
    """The rotation angle (degrees) of the closest rotation to *tx*'s matrix."""
    m = np.asarray(tx.GetMatrix()).reshape(3, 3)
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))


def _attempt(ref: sitk.Image, small: sitk.Image, mask: sitk.Image, shift: np.ndarray, motion: str):
    """One registration of the visit (*small*: on the work spacing) started from *shift*: (NCC in
    *mask* once registered, the transform, the registration's record)."""
    start = sitk.TranslationTransform(3, tuple(float(v) for v in shift))
    moving = sitk.Resample(small, ref, start, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    reg = register_phase(ref, moving, sitk.Cast(mask, sitk.sitkUInt8), RegistrationSettings(method="sitk", motion=motion))
    tx = _as_affine(reg.transform, shift)
    warped = sitk.Resample(small, ref, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return ncc(ref, warped, mask), tx, reg


def _body_centroid(image: sitk.Image) -> np.ndarray | None:
    return _centroid(sitk.OtsuThreshold(image, 0, 1))


def other_starts(ref: sitk.Image, small: sitk.Image, shift: np.ndarray) -> list[np.ndarray]:
    """The starts tried when the one from the breast regions' centroids ends below ``min_ncc``: no
    shift (the scanner's frame: a patient lies about where she lay before) and the shift between
    the two bodies' centroids (Otsu above the background), each unless within 4 mm of one tried."""
    out, seen = [], [np.asarray(shift, float)]
    c_ref, c_vis = _body_centroid(ref), _body_centroid(small)
    cands = [np.zeros(3)] + ([] if c_ref is None or c_vis is None else [c_vis - c_ref])
    for c in cands:
        if all(np.linalg.norm(c - t) > WORK_SPACING_MM for t in seen):
            out.append(c)
            seen.append(c)
    return out


def register_visit(baseline_pre: sitk.Image, baseline_region: sitk.Image, visit_pre: sitk.Image,
                   visit_region: sitk.Image | None, name: str,
                   settings: VisitRegistrationSettings | None = None) -> VisitRegistration:
    """Register *visit_pre* to *baseline_pre* (see the module docstring); *name* names the visit in errors."""
    s = settings or VisitRegistrationSettings()
    ref = _shrink_to(baseline_pre, WORK_SPACING_MM)
    region = sitk.Resample(baseline_region, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    radius = [max(1, int(round(s.margin_mm / sp))) for sp in ref.GetSpacing()]
    mask = sitk.BinaryDilate(region > 0, radius)
    if int(sitk.GetArrayViewFromImage(mask).sum()) < 100:
        raise InputError("the baseline's breast region is (nearly) empty: nothing to register the visits on",
                         name, "check the baseline exam (pre-contrast phase first)")
    c_base, c_visit = _centroid(baseline_region), None if visit_region is None else _centroid(visit_region)
    shift = np.zeros(3) if c_base is None or c_visit is None else c_visit - c_base
    small = _shrink_to(visit_pre, WORK_SPACING_MM)
    similarity, tx, reg = _attempt(ref, small, mask, shift, s.motion)
    tried = 1
    if similarity < s.min_ncc and s.retry_starts:  # before refusing: the other starts (module docstring)
        for other in other_starts(ref, small, shift):
            tried += 1
            got = _attempt(ref, small, mask, other, s.motion)
            if got[0] > similarity:
                (similarity, tx, reg), shift = got, other
            if similarity >= s.min_ncc:
                break
    angle = rotation_deg(tx)
    qa = {"ncc_before": round(ncc(ref, sitk.Resample(visit_pre, ref, sitk.Transform(), sitk.sitkLinear, 0.0,
                                                      sitk.sitkFloat32), mask), 4),
          "ncc_after": round(similarity, 4), "mi_before": reg.qa["mi_before"], "mi_after": reg.qa["mi_after"],
          "level": reg.qa["motion_level"], "rejected": reg.qa["rejected"], "error": reg.qa["error"],
          "initial_shift_mm": [round(float(v), 2) for v in shift], "starts_tried": tried,
          "rotation_deg": round(angle, 2),
          "translation_mm": [round(float(v), 2) for v in tx.GetTranslation()],
          "matrix": [round(float(v), 5) for v in tx.GetMatrix()], "center_mm": [round(float(v), 3) for v in tx.GetCenter()]}
    if similarity < s.min_ncc or angle > s.max_rotation_deg:
        why = (f"normalized cross-correlation {similarity:.2f} < {s.min_ncc}" if similarity < s.min_ncc
               else f"rotation {angle:.0f} degrees > {s.max_rotation_deg:g}")
        raise InputError(f"does not match the baseline's anatomy once registered ({why} in the breast region)",
                         name, "give exams of the same patient and body part, baseline first; check that this "
                               "visit's folder holds the breast DCE-MRI")
    return VisitRegistration(tx, qa)


def registration_error_mm(estimated: sitk.Transform, truth: sitk.Transform, points) -> float:
    """Mean distance (mm) between where *estimated* and *truth* send each of *points* (baseline frame)."""
    return float(np.mean([np.linalg.norm(np.subtract(estimated.TransformPoint(tuple(map(float, p))),
                                                     truth.TransformPoint(tuple(map(float, p)))))
                          for p in points]))
