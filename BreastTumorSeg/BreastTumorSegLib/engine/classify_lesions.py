"""The segmenter's lesions as classifier candidates (issue 29, ``docs/decisions/classify-v10.md``).

The classifier's own candidate finder (:func:`.classify.find_candidates`: the early enhancement
above ``max(50 %, background + 30 %)`` inside its breast region) never sees some malignant lesions:
below the 50 % floor, outside the body mask, behind the region on sagittal grids. The shipped
segmenter (``ftv-outline`` with its post-processing: dark-before-contrast step, outline growth)
reaches some of them. With :data:`SEGMENTER_CANDIDATES` on, every connected lesion of the
segmenter's label map becomes one *more* candidate of its breast, its features read exactly as a
finder candidate's (the breast's background level, MIP level and kinetic maps of the finder;
version 3's trees unchanged); the finder's candidates stay. A lesion's breast is the side map's
where the lesion overlaps it, else the patient's side of its centroid against the body midline (the
lesion table's rule), and the one breast of a one-breast field of view.

``classify_exam(..., lesion_mask=...)`` (``segment --classify``, the Slicer panel) uses the label
map it is given; without one (``classify``) the segmenter runs on the aligned exam first.
"""
from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import resample_to, voxel_volume_ml

SEGMENTER_CANDIDATES = False  # off: see docs/decisions/classify-v10.md
MIN_LESION_VOXELS = 2  # a one-voxel lesion has no shape to measure


def segmenter_label(exam) -> sitk.Image:
    """The shipped segmenter's label map of the (already aligned) *exam*."""
    from .pipeline import segment_exam
    from .settings import SegmentSettings

    return segment_exam(exam, device="cpu", settings=SegmentSettings(registration="none")).label


def _side_codes(pre: sitk.Image, context: dict, sides: np.ndarray, centroid_lps) -> int:
    present = [code for code in (1, 2) if (sides == code).any()]
    if len(present) == 1:
        return present[0]
    mid = (context.get("classification_region") or {}).get("midline_x")
    if mid is None:
        mid = (context.get("layout") or {}).get("midline_x")
    return 1 if centroid_lps[0] > float(mid if mid is not None else 0.0) else 2


def lesion_candidates(exam, maps, sides: np.ndarray, hint: np.ndarray, context: dict, lesion_mask: sitk.Image) -> list:
    """One :class:`.classify.Candidate` per connected lesion (26-connected) of *lesion_mask*, with
    the features of :func:`.classify.find_candidates` (module docstring)."""
    from . import classify as C

    pre = exam.pre
    label = sitk.GetArrayFromImage(resample_to(sitk.Cast(lesion_mask > 0, sitk.sitkUInt8), pre,
                                               sitk.sitkNearestNeighbor)) > 0
    comp, n = ndimage.label(label, structure=np.ones((3, 3, 3)))
    present = [code for code in (1, 2) if (sides == code).any()]
    if n == 0 or not present:
        return []
    spacing_zyx = np.asarray(pre.GetSpacing())[::-1]
    vox_ml = voxel_volume_ml(pre)
    pe = ndimage.gaussian_filter(np.asarray(maps.array("pe_early"), np.float32),
                                 0.6 / np.maximum(spacing_zyx / spacing_zyx.min(), 1))
    valid = maps.array("valid") > 0
    acquisition = C.acquisition_features(maps)
    stats_of = {}
    for code in present:
        breast = (sides == code) & valid
        background = max(float(np.percentile(pe[breast], C.BACKGROUND_PERCENTILE)), 0.0) if breast.any() else 0.0
        stats_of[code] = (background, C.breast_mip_p95(pe, breast))
    img = sitk.GetImageFromArray(comp.astype(np.uint32))
    img.CopyInformation(pre)
    st = sitk.LabelShapeStatisticsImageFilter()
    st.ComputePerimeterOn()  # roundness needs it
    st.Execute(img)
    out = []
    for v, obj in enumerate(ndimage.find_objects(comp), start=1):
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in obj)
        m = comp[box] == v
        if m.sum() < MIN_LESION_VOXELS:
            continue
        codes = sides[box][m]
        codes = codes[codes > 0]
        code = int(np.bincount(codes).argmax()) if codes.size else _side_codes(pre, context, sides, st.GetCentroid(v))
        if code not in stats_of:
            code = present[0]
        background, mip = stats_of[code]
        shape_stats = {"elongation": C._finite(st.GetElongation(v), 1.0), "roundness": C._finite(st.GetRoundness(v), 1.0),
                       "major_axis_mm": C._finite(max(st.GetEquivalentEllipsoidDiameter(v)), 1.0)}
        feats = np.nan_to_num(C._features(m, box, maps, pe, background, spacing_zyx, vox_ml, shape_stats, mip),
                              nan=0.0, posinf=0.0, neginf=0.0)
        feats = np.append(feats, [float(hint[box][m].mean()), math.log(float(m.sum())), *acquisition])
        out.append(C.Candidate("left" if code == 1 else "right", box, m, feats, tuple(st.GetCentroid(v)),
                               float(m.sum() * vox_ml)))
    return out
