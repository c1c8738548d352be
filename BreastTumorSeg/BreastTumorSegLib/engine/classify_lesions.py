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

Only the *shipped* segmenter's lesions were measured (classify-v10), so only they become candidates:
``classify_exam(..., segmenter_lesions=...)`` takes a label map the caller already has from it
(``segment --classify`` and the Slicer panel pass theirs when the model was the default one,
:func:`shipped_label`); otherwise (``classify``; a segmentation by another model, whose lesion mask
still only widens the region) the shipped segmenter runs on the aligned exam first.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import resample_to

SEGMENTER_CANDIDATES = True  # on since classify-v10 (docs/decisions/classify-v10.md: held out 5500-5529 once)
MIN_LESION_VOXELS = 2  # a one-voxel lesion has no shape to measure


def segmenter_label(exam) -> sitk.Image:
    """The shipped segmenter's label map of the (already aligned) *exam*."""
    from .pipeline import segment_exam
    from .settings import SegmentSettings

    return segment_exam(exam, device="cpu", settings=SegmentSettings(registration="none")).label


def shipped_label(result) -> sitk.Image | None:
    """*result*'s label map when it comes from the shipped segmenter (the default model), else None."""
    from ..models.registry import DEFAULT_MODEL

    model_id = str(getattr(result, "model_id", ""))
    return result.label if model_id == DEFAULT_MODEL or model_id.startswith(DEFAULT_MODEL + "-") else None


def _side_code(context: dict, centroid_lps) -> int:
    """1 (left) when the LPS x of *centroid_lps* is beyond the body midline, else 2 (right)."""
    mid = (context.get("classification_region") or {}).get("midline_x")
    if mid is None:
        mid = (context.get("layout") or {}).get("midline_x")
    return 1 if centroid_lps[0] > float(mid if mid is not None else 0.0) else 2


def lesion_components(pre: sitk.Image, sides: np.ndarray, context: dict,
                      lesion_mask: sitk.Image) -> tuple[np.ndarray, dict[int, int]]:
    """(uint32 (z, y, x) labels of the connected lesions (26-connected) of *lesion_mask* on *pre*'s
    grid, {label: breast code (1 left, 2 right)} of those with at least :data:`MIN_LESION_VOXELS`
    voxels; module docstring for the side). Nothing when no breast is in the side map."""
    label = sitk.GetArrayFromImage(resample_to(sitk.Cast(lesion_mask > 0, sitk.sitkUInt8), pre,
                                               sitk.sitkNearestNeighbor)) > 0
    comp, n = ndimage.label(label, structure=np.ones((3, 3, 3)))
    present = [code for code in (1, 2) if (sides == code).any()]
    codes: dict[int, int] = {}
    if n == 0 or not present:
        return comp.astype(np.uint32), codes
    for v, obj in enumerate(ndimage.find_objects(comp), start=1):
        m = comp[obj] == v
        if m.sum() < MIN_LESION_VOXELS:
            continue
        inside = sides[obj][m]
        inside = inside[inside > 0]
        if inside.size:
            code = int(np.bincount(inside).argmax())
        else:
            centroid = pre.TransformContinuousIndexToPhysicalPoint(
                [float(c) for c in (np.argwhere(m).mean(0) + [o.start for o in obj])[::-1]])
            code = _side_code(context, centroid)
        codes[v] = code if code in present else present[0]
    return comp.astype(np.uint32), codes
