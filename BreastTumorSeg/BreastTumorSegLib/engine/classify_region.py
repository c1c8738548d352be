"""Where the per-breast classifier looks: each breast's region from the body and patient coordinates.

The classical breast mask (:func:`~..preprocess.breast_region.breast_region`) can miss part of a
breast (a chest-wall level found too far anterior, a coronal exam, an unusual body outline). The
classifier must not go blind where it does, so its region does not *depend* on that mask:

* **body**: the body mask of the breast-region context (the body foreground, found independently
  of the breast delineation), dilated by one voxel so the skin itself counts; with
  :data:`.classify_body.BODY_TO_SKIN` (version 7's trial, off) out to the skin line where that body
  lost the breast to bright inner organs (:func:`.classify_body.skin_body`);
* **anterior of the chest wall**: body voxels no deeper than the chest-wall level of the context
  (the skin over the sternum) plus its margin plus :data:`POSTERIOR_MARGIN_MM` within
  :data:`CENTRAL_HALF_WIDTH_MM` of the midline (the heart and mediastinum lie behind the sternum;
  the same depth rule as the lesion gate of :mod:`.postprocess`), plus :data:`LATERAL_MARGIN_MM`
  further out, where breast tissue wraps around the curved chest wall (the lateral breast and
  its axillary tail lie well behind the level of the sternum); where the chest wall is not in
  the field of view (coronal slab) the whole body; with :data:`LUNG_REGION` (version 6's trial,
  ``docs/decisions/classify-v6-region.md``), lateral of the central band (every column of a
  one-breast exam), back to the chest wall found from the lungs
  (:func:`~..preprocess.lung_level.lung_limit`) where that is deeper;
* the breast mask only as a **hint**: its voxels are always in the region (a mask that reaches
  further is believed there), never the only source of it;
* a **lesion mask** (e.g. ``segment``'s result) inside the body is always in the region, unless
  it lies deeper than the chest-wall level + margins (:func:`lesions_in_body`).

The breast mask stays a soft hint to the model too: the share of a candidate inside it is one of
its features (:mod:`.classify`), where a segmented lesion counts as inside.

Sides come from patient coordinates as in the lesion table: LPS x beyond the body midline is the
patient's left (midline from the layout's valley between the breasts; else the middle of the
breast mask, else of the body, else x = 0, the scanner isocentre); every voxel of a unilateral
exam is that breast's.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import resample_to
from ..preprocess.lung_level import lung_limit
from . import classify_body

# Version 6's trial (issue 29, docs/decisions/classify-v6-region.md): lateral of the central band the
# region reaches back to the chest wall found from the lungs (:func:`..preprocess.lung_level.lung_limit`:
# the lung front less its WALL_MM) where that is deeper than the breast mask's level + margins.
LUNG_REGION = False
# With LUNG_REGION: each breast's statistics (background percentile, candidate threshold, MIP level)
# still come from main's region; the lungs only widen where candidates are found (a second trial).
LUNG_KEEPS_STATISTICS = False
# With LUNG_REGION: the lungs' limit found on the work grid shrunk by classify_body.COARSE_SHRINK (4 mm
# instead of 2 mm: an eighth of the voxels; classify-v7-body.md), mapped back to the work grid's rows.
LUNG_COARSE = False
POSTERIOR_MARGIN_MM = 10.0  # beyond the chest-wall level + the breast mask's own margin, near the midline
LATERAL_MARGIN_MM = 30.0  # the same, lateral of the central band: the breast wraps around the chest wall
CENTRAL_HALF_WIDTH_MM = 40.0  # the band behind the sternum (heart, mediastinum); as BreastMaskLimits
LEFT, RIGHT = 1, 2


def _on_grid(arr: np.ndarray, work: sitk.Image, like: sitk.Image) -> np.ndarray:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.CopyInformation(work)
    return sitk.GetArrayFromImage(resample_to(img, like, sitk.sitkNearestNeighbor)) > 0


def _lung_columns(work: sitk.Image, body: np.ndarray, context: dict, lateral: np.ndarray) -> np.ndarray | None:
    """Float (z, x): the deepest row the lungs allow (:func:`lung_limit`) in the columns *lateral* of
    the central band, NaN elsewhere; None without lungs. Without a midline (one breast in the field of
    view) the medial side is the grid's border beyond the other breast: the lung front is followed
    from the lateral side inwards (:func:`lung_limit`)."""
    layout = context.get("layout") or {}
    mid = layout.get("midline_x")
    if mid is not None:
        x_mid = (mid - work.GetOrigin()[0]) / work.GetSpacing()[0]
    elif layout.get("unilateral_side") in ("left", "right"):  # LPS: the patient's left is +x
        x_mid = 0.0 if layout["unilateral_side"] == "left" else float(body.shape[2])
    else:
        xs = np.nonzero(body.any(axis=(0, 1)))[0]
        x_mid = 0.5 * float(xs.min() + xs.max())
    if LUNG_COARSE:
        small, body_small, (fx, fy, fz) = classify_body.coarse(context)
        limit = lung_limit(small, body_small, (x_mid - (fx - 1) / 2) / fx)
        if limit is None:
            return None
        zi = np.minimum(np.arange(body.shape[0]) // fz, limit.shape[0] - 1)
        xi = np.minimum(np.arange(body.shape[2]) // fx, limit.shape[1] - 1)
        limit = limit[zi][:, xi] * fy + (fy - 1) / 2  # a shrunk row's centre in the work grid's rows
    else:
        limit = lung_limit(work, body, x_mid)
    if limit is None:
        return None
    limit[:, ~lateral] = np.nan
    return limit


def anterior_body(pre: sitk.Image, context: dict, lateral_mm: float = LATERAL_MARGIN_MM,
                  lungs: bool | None = None, skin: bool | None = None) -> np.ndarray | None:
    """Bool (z, y, x) on *pre*'s grid: body voxels in front of the chest wall + margins (the whole
    body where the chest wall is unknown); None when the context has no body. *lateral_mm*: the
    margin lateral of the central band. *lungs* (None: :data:`LUNG_REGION`): lateral of the central
    band, down to the lungs' limit where that is deeper (:func:`_lung_columns`). *skin* (None:
    :data:`.classify_body.BODY_TO_SKIN`): the body out to the skin line (:func:`.classify_body.skin_body`)."""
    body, work = context.get("body"), context.get("work")
    if classify_body.BODY_TO_SKIN if skin is None else skin:
        body = classify_body.skin_body(context)
    if body is None or work is None or not np.any(body):
        return None
    body = ndimage.binary_dilation(body, iterations=1)
    level = context.get("level")
    if level is not None:
        margin = np.full(body.shape[2], POSTERIOR_MARGIN_MM)
        layout = context.get("layout") or {}
        mid = layout.get("midline_x")
        lateral = np.zeros(body.shape[2], bool)
        if mid is not None:
            x_of = work.GetOrigin()[0] + work.GetSpacing()[0] * np.arange(body.shape[2])
            lateral = np.abs(x_of - mid) > CENTRAL_HALF_WIDTH_MM
            margin[lateral] = lateral_mm
        elif layout.get("unilateral_side") in ("left", "right"):  # one breast: no sternum in view
            lateral[:] = True
        limit = level + (context.get("chest_margin_mm", 0.0) + margin[None, :]) / work.GetSpacing()[1]
        if (LUNG_REGION if lungs is None else lungs) and lateral.any():
            deep = _lung_columns(work, body, context, lateral)
            if deep is not None:
                limit = np.where(np.isfinite(deep) & (deep > limit), deep, limit)
        rows = np.arange(body.shape[1])[None, :, None]
        body = body & (rows <= limit[:, None, :])
    return _on_grid(body, work, pre)


def _x_mm(pre: sitk.Image, shape) -> np.ndarray:
    """LPS x (mm) of every voxel of *pre* (broadcastable (z, y, x) array)."""
    m = np.asarray(pre.GetDirection()).reshape(3, 3) * np.asarray(pre.GetSpacing())
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij", sparse=True)
    return np.float32(pre.GetOrigin()[0]) + np.float32(m[0, 0]) * i + np.float32(m[0, 1]) * j + np.float32(m[0, 2]) * k


def midline(layout: dict, region: np.ndarray, x: np.ndarray, breast: np.ndarray) -> tuple[float, str]:
    """(LPS x of the body midline, how it was decided)."""
    if layout.get("midline_x") is not None:
        return float(layout["midline_x"]), "layout"
    for what, m in (("breast mask", breast), ("body", region)):
        if m.any():
            xs = np.broadcast_to(x, m.shape)[m]
            return 0.5 * float(xs.min() + xs.max()), f"middle of the {what}"
    return 0.0, "scanner isocentre"


def lesions_in_body(pre: sitk.Image, context: dict, lesion_mask: sitk.Image) -> np.ndarray:
    """Bool (z, y, x) on *pre*'s grid: the voxels of *lesion_mask* inside the body and no deeper than
    the chest-wall level + margins near the midline (:data:`POSTERIOR_MARGIN_MM` everywhere: the
    depth rule of ``segment``'s lesion gate, so a segmented heart or mediastinum never counts)."""
    les = sitk.GetArrayFromImage(resample_to(sitk.Cast(lesion_mask > 0, sitk.sitkUInt8), pre,
                                             sitk.sitkNearestNeighbor)) > 0
    allowed = anterior_body(pre, context, lateral_mm=POSTERIOR_MARGIN_MM, lungs=False)
    return les if allowed is None else les & allowed


def classification_sides(pre: sitk.Image, breast: np.ndarray, context: dict,
                         lesion_mask: sitk.Image | None = None, lungs: bool | None = None,
                         skin: bool | None = None) -> tuple[np.ndarray, dict]:
    """uint8 (z, y, x) on *pre*'s grid: 1 = left breast, 2 = right breast, 0 = not looked at; and
    what decided it (module docstring). *breast*: the breast mask (bool, the hint); *lungs*, *skin*: as
    :func:`anterior_body`."""
    anterior = anterior_body(pre, context, lungs=lungs, skin=skin)
    region = breast.copy() if anterior is None else (anterior | breast)
    n_lesion = 0
    if lesion_mask is not None:
        les = lesions_in_body(pre, context, lesion_mask)
        n_lesion = int((les & ~region).sum())
        region |= les
    layout = context.get("layout") or {}
    out = np.zeros(breast.shape, np.uint8)
    info = {"region": "breast mask" if anterior is None else "body in front of the chest wall + breast mask",
            "posterior_margin_mm": POSTERIOR_MARGIN_MM, "lesion_voxels_added": n_lesion,
            "breast_mask_fraction": round(float(breast.sum() / max(region.sum(), 1)), 3)}
    uni = layout.get("unilateral_side")
    if uni in ("left", "right"):
        out[region] = LEFT if uni == "left" else RIGHT
        return out, dict(info, sides=f"unilateral ({uni})")
    x = _x_mm(pre, breast.shape)
    mid, how = midline(layout, region, x, breast)
    left = x > np.float32(mid)
    out[region & left] = LEFT
    out[region & ~left] = RIGHT
    return out, dict(info, sides=f"patient x against the midline ({how})", midline_x=round(mid, 2))
