"""Classical whole-breast mask: body foreground in front of the chest wall.

Breast MRI is acquired prone, with both breasts hanging anteriorly. The method works in the
patient's LPS frame whatever the acquisition orientation (:func:`.body.lps_image`: axial, sagittal and
coronal exams are re-oriented, oblique ones resampled onto an axis-aligned box, so that "anterior",
"left" and "superior" are array axes):

1. Body (:mod:`.body`): smoothed image above half of its Otsu threshold, closed, holes filled slice by slice,
   largest 3D component. Where the lateral wrap is made, the body reaches the skin line instead
   (:func:`.body.body_mask_lps` ``skin_line``: an air/tissue threshold from Otsu on log intensity, so
   the dark fat of a fat-suppressed exam is body).
2. Layout (:func:`breast_layout`): the breasts are the anterior bulges of the body's anterior
   skin profile along patient x; two bulges = bilateral field of view with the midline at the
   skin over the sternum between them; one bulge = unilateral (single-breast) field of view, the
   midline lying beyond its medial border.
3. Chest-wall level per axial slice: the deepest anterior skin position within ±``midline_band_mm``
   of the midline (the skin over the sternum, between the breasts; for a single breast the
   medial border of the field of view), plus ``chest_margin_mm`` to keep the pre-sternal fat and
   the breast base; smoothed along z.
4. Breast = body voxels anterior to that level.
5. Lateral wrap (volumes and axial slabs; ``lateral_wrap_mm``, :data:`LATERAL_WRAP_MM` by
   default): breast tissue wraps around the curved chest wall towards
   the axilla, under the skin and deeper than the sternum level. Added: body voxels within
   ``lateral_wrap_mm`` of the air outside the skin (per axial slice; a lung that a cut field of view
   leaves open is not air), lateral of the midline band, in front of the row where that side of the
   body reaches furthest laterally (the mid-axillary line), beside the breasts' anterior bulges
   (:func:`_breast_footprint`). The chest-wall level of those columns moves behind the wrap, so the
   lesion gate's "behind the chest wall" follows the side of the chest.
6. Tissue wrap (``tissue_wrap_mm``; off by default, in the pipeline through a model card's
   ``postprocess["tissue_wrap_mm"]`` or :class:`~..engine.settings.SegmentSettings` ``tissue_wrap``,
   ``segment --tissue-wrap``): the lateral wrap bounded by
   tissue instead of depth (:mod:`.chestwall`): behind the sternum rule's limit, lateral of the
   breasts' bulges, the fat of the side of the chest grown from the skin up to the chest-wall muscle,
   with the small cavities it encloses. ``body``, ``level`` and ``layout`` of the context do not
   change (the lesion gate and the classifier read them); ``chest_wall_row`` is the region's floor.

Thin slabs (a field of view under ``SLAB_MAX_MM`` along one axis: a handful of slices, or one;
:func:`.body.slab_axis`) keep their slice spacing on the work grid and are processed slice by slice:
the body is smoothed, closed and hole-filled in 2D within each slice; an axial slab keeps the
sternum rule per slice (no smoothing along z); a sagittal slab (one breast, no midline in view)
takes the chest-wall level of each sagittal slice from its anterior skin profile along z: the
deepest skin row, i.e. the skin over the chest above and below the breast, which bulges in front
of it; a coronal slab shows no chest wall and its mask is the body (which the plausibility check
then calls untrustworthy: the lesion gate keeps what lies in the body).

:func:`breast_mask_qa` checks that any whole-breast mask (classical or learned) is plausible
(volume per breast, inside the body, not deeper than the chest wall, both breasts covered in a
bilateral field of view) and :func:`choose_breast_mask` picks between a learned and the
classical mask with it.

It runs at about ``work_spacing_mm`` and the mask is resampled (nearest neighbour) onto the
input grid. It is meant to remove false positives in the heart, mediastinum and arms, not to
be an exact anatomical delineation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import resample_to, voxel_volume_ml
from .body import body_mask_lps, work_image
from .chestwall import in_front_of_muscle, skin_depth
from .lung_level import deeper_to_lungs


# ----------------------------------------------------------------------------- layout: where the breasts are
def _skin_rows(body: np.ndarray) -> np.ndarray:
    """Per (z, x) column of a (z, y, x) body mask: the first (most anterior) body row, n_y where empty."""
    return np.where(body.any(axis=1), np.argmax(body, axis=1), body.shape[1])


def anterior_profile(body: np.ndarray) -> np.ndarray:
    """Per LPS x column of a (z, y, x) body mask: the most anterior body row (n_y where empty)."""
    return _skin_rows(body).min(axis=0)


def breast_layout(body: np.ndarray, img_lps: sitk.Image, laterality: str | None = None,
                  min_prominence_mm: float = 20.0, min_separation_mm: float = 70.0,
                  max_cross_mm: float = 60.0) -> dict:
    """Where the breasts and the body midline are, from a (z, y, x) body mask on *img_lps*'s grid.

    Prone breasts are the two anterior bulges of the body's anterior skin profile (most anterior
    body row per patient x). Two bulges: bilateral, midline = middle of the deepest part of the
    profile between them (the skin over the sternum). One bulge: unilateral; its side comes from
    *laterality* (the series' laterality, "L"/"R"), else from the body being cut by the field of
    view on one x border only (the rest of the body, hence the midline, lies beyond it), else from
    the sign of the bulge's patient x (scanner isocentre ~ patient midline; LPS +x = left). One
    bulge in a body that the field of view does not cut on exactly one side, and that reaches more
    than *max_cross_mm* across the isocentre away from the bulge, is a bilateral view whose other
    breast is too flat to bulge (a single-breast view stops near the midline): midline at the
    body centre.
    Returns ``{"n_breasts", "midline_x" (LPS mm or None), "unilateral_side" (None, "left" or
    "right"), "decided_by", "breast_x" (LPS mm of each bulge)}``.
    """
    from scipy.signal import find_peaks

    sx = img_lps.GetSpacing()[0]
    x_of = img_lps.GetOrigin()[0] + sx * np.arange(body.shape[2])
    out = {"n_breasts": 0, "midline_x": None, "unilateral_side": None, "decided_by": "no body", "breast_x": []}
    if not body.any():
        return out
    prof = anterior_profile(body).astype(float)
    n_y = body.shape[1]
    cols = np.nonzero(prof < n_y)[0]
    sy = img_lps.GetSpacing()[1]
    depth = -prof * sy  # larger = more anterior
    depth[prof >= n_y] = -n_y * sy
    depth = ndimage.uniform_filter1d(ndimage.median_filter(depth, 3, mode="nearest"), 3, mode="nearest")
    # One bulge per breast: peaks closer than a breast's width are lobes of one breast.
    peaks, _ = find_peaks(depth, prominence=min_prominence_mm, distance=max(1, int(min_separation_mm / sx)))
    out["breast_x"] = [round(float(x_of[p]), 2) for p in peaks]
    out["n_breasts"] = int(min(len(peaks), 2))
    lat = (laterality or "").strip().upper()[:1]
    if len(peaks) >= 2:
        order = peaks[np.argsort(depth[peaks])[::-1][:2]]
        a, b = sorted(order.tolist())
        seg = prof[a:b + 1]
        deep = np.nonzero(seg >= seg.max() - 1)[0] + a
        out.update(midline_x=float(x_of[int(round(deep.mean()))]), decided_by="valley between two breasts")
        return out
    body_lo, body_hi = float(x_of[cols.min()]), float(x_of[cols.max()])
    if lat in ("L", "R"):
        out.update(unilateral_side="left" if lat == "L" else "right", decided_by="series laterality")
    elif len(peaks) == 1:
        lo_cut, hi_cut = bool(body[..., 0].any()), bool(body[..., -1].any())
        beyond = -body_lo if x_of[peaks[0]] > 0 else body_hi  # body past the isocentre, opposite the bulge
        if lo_cut == hi_cut and beyond > max_cross_mm:
            # A single-breast field of view stops near the midline (~ the isocentre); a body reaching
            # far across it is a bilateral view whose other breast is too flat to bulge.
            out.update(n_breasts=2, midline_x=0.5 * (body_lo + body_hi),
                       decided_by=f"one bulge, but the body reaches {beyond:.0f} mm across the isocentre: "
                                  "bilateral, midline at the body centre")
            return out
        if lo_cut != hi_cut:
            # Body cut at the low-x border: the midline lies at lower x, the breast is on the +x (left) side.
            out.update(unilateral_side="left" if lo_cut else "right", decided_by="body cut by the field of view")
        else:
            out.update(unilateral_side="left" if x_of[peaks[0]] > 0 else "right",
                       decided_by="breast position relative to the scanner isocentre")
    else:
        out.update(midline_x=0.5 * (body_lo + body_hi), decided_by="body centre")
        return out
    if out["unilateral_side"] is not None:
        out["n_breasts"] = 1
        # The midline lies medial to the breast: beyond the field of view's medial border at the latest.
        out["midline_x"] = float(x_of[0] if out["unilateral_side"] == "left" else x_of[-1])
    return out


def _deepest_skin(first: np.ndarray, n_y: int, axis: int) -> np.ndarray | None:
    """The deepest of the anterior skin rows *first* (n_y where no body) along *axis*, gaps
    filled by linear interpolation (None: no body at all)."""
    level = np.where(first < n_y, first, -1).max(axis=axis).astype(float)
    valid = level >= 0
    if not valid.any():
        return None
    i = np.arange(level.size)
    return np.interp(i, i[valid], level[valid])


def _chest_level(body: np.ndarray, x_lo: int, x_hi: int, sz: float, smooth_z: bool = True) -> np.ndarray | None:
    """Per z slice: the deepest anterior skin row in columns [x_lo, x_hi), smoothed along z (None: no body)."""
    level = _deepest_skin(_skin_rows(body)[:, x_lo:x_hi], body.shape[1], axis=1)
    if level is None or not smooth_z:
        return level
    return ndimage.median_filter(level, size=max(3, int(round(20.0 / sz)) | 1), mode="nearest")


def _sagittal_chest_level(body: np.ndarray) -> np.ndarray | None:
    """Per sagittal slice (x column) of a thin sagittal slab: the deepest anterior skin row along
    z, i.e. the skin over the chest above and below the breast (the breast is the anterior bulge
    of that profile), for every z (None: no body)."""
    level = _deepest_skin(_skin_rows(body), body.shape[1], axis=0)
    if level is None:
        return None
    return np.broadcast_to(level[None, :], (body.shape[0], body.shape[2])).copy()


def _slab_layout(layout: dict, work: sitk.Image, laterality: str | None) -> dict:
    """A thin sagittal slab shows no midline: one breast, its side from the series' laterality or
    from the slab's patient x (scanner isocentre ~ patient midline; LPS +x = left)."""
    if layout["n_breasts"] == 2 or layout["unilateral_side"]:
        return layout
    x_of = work.GetOrigin()[0] + work.GetSpacing()[0] * np.arange(work.GetSize()[0])
    lat = (laterality or "").strip().upper()[:1]
    if lat in ("L", "R"):
        side, how = ("left" if lat == "L" else "right"), "series laterality (thin sagittal slab)"
    else:
        side, how = ("left" if x_of.mean() > 0 else "right"), "thin sagittal slab relative to the scanner isocentre"
    return dict(layout, n_breasts=1, unilateral_side=side, decided_by=how,
                midline_x=float(x_of[0] if side == "left" else x_of[-1]))


# Breast tissue wraps around the curved chest wall laterally (towards the axilla): in front of the
# mid-axillary line it lies under the skin, deeper than the sternum level. The lateral wrap adds the
# body within ``lateral_wrap_mm`` of the skin, lateral of the central band, in front of the widest
# body row. Off by default (0). It first failed because the wrap reached the heart (randomised
# tumor-free exams 6003, 6007, 6018: 6-135 mL of false positives with ftv-outline): (1) the body of a
# fat-suppressed exam lost its dark subcutaneous fat, so "30 mm under the skin" began at the muscle;
# (2) the closing peeled two voxels off a body cut by the field of view, which the wrap took for air
# and followed along the cut to the heart. The skin-line body (:func:`.body.body_mask_lps` ``skin_line``,
# used wherever the wrap is made) mostly fixes both: on randomised seeds 6004-6039 a 20 mm wrap
# reached the heart on 22 of 36 exams (1.4-158 mL) with the old body; a 30 mm wrap with the skin-line
# body on 3 of the 15 worst (6024, 6019, 6027: 13, 6 and 5 mL against 158, 119 and 90), covering
# lateral tumors (6024: 4 -> 100 %, 6012: 0 -> 99 % of the tumor inside the mask). It stays off:
# st-demo gains with it (randomised 6000-6009 median Dice 0.157 -> 0.333, held-out 5000-5009 0.646
# -> 0.655), but ftv-outline, whose FTV region is the mask, gains false positives (development:
# tumor-free 6003 0 -> 1 lesion, 6019 0 -> 4, 6024 1 -> 2): a tumor-free exam gaining a finding fails
# the no-loss rule (README, issue 25).
LATERAL_WRAP_MM = 0.0

# The tissue wrap (:mod:`.chestwall`, module docstring step 6): the subcutaneous and breast fat of the
# side of the chest, grown from the skin up to the chest-wall muscle, within ``tissue_wrap_mm`` of the
# skin, behind the sternum rule's limit, lateral of the breasts' bulges (medially, behind that limit,
# lie the sternum, the mediastinum and the heart; on the real axial volume a wrap without this rule
# took 300 mL of pectoral muscle and chest beside the midline). 0 = off (the default of this
# function: the classifier, the follow-up's registration masks and the generators' truths keep the
# sternum rule). Development, randomized 6000-6038 (56 lesions), 30 mm: mean share of a lesion inside
# the region 0.649 -> 0.686, lesions under half inside 19 -> 16, muscle inside the region 2161 -> 2689
# mL summed, heart unchanged (31 mL on 4 exams, all from the sternum rule).
# Tried and left out: a second growth from the fat past everything not muscle-like (or brighter than
# the muscle) reached more lesions (6024: 0/8/0 % -> 69/100/35 % inside) but took the pectoral muscle
# of the real axial volume (27 -> 233-548 mL added).
TISSUE_WRAP_MM = 0.0
LATERAL_OF_BULGE = True  # the tissue wrap only lateral of the breasts' bulges

# One-breast reach (issue 25, docs/decisions/breast-region-reach-issue25.md): in a single-breast field of
# view the sternum is not in view and the "midline band" is the field of view's medial border, which cuts
# through the breast: its deepest skin row is the breast's own skin, and the region is a 10-30 mm shell
# under it (development census: the coronal one-breast phantoms). With this switch the tissue wrap
# (:mod:`.chestwall`: fat-like tissue grown from the skin up to the chest-wall muscle, with the cavities it
# encloses) is made on such a view over the whole breast, medial columns included (no mediastinum lies
# medial of the bulge in a one-breast view), within ONE_BREAST_WRAP_MM of the skin. (Tried on development
# and dropped: leaving out the midline band too, i.e. the field of view's medial border: 6032's mask became
# implausible.) The pipeline passes the
# switch (``breast_region(one_breast_wrap=...)``); the function's default, hence the classifier, the
# follow-up and the generators' truths, is off. Off until its rule passes.
ONE_BREAST_WRAP = False
ONE_BREAST_WRAP_MM = 60.0


def _field_of_view(img: sitk.Image, work: sitk.Image) -> np.ndarray:
    """Bool (z, y, x) on *work*: voxels that *img* covers (sampled like the work image, linear)."""
    ones = sitk.Image(img.GetSize(), sitk.sitkFloat32) + 1.0
    ones.CopyInformation(img)
    return sitk.GetArrayFromImage(resample_to(ones, work)) > 0.5


def _lateral_wrap(body: np.ndarray, work: sitk.Image, x_mid: float, band: int, depth_mm: float,
                  fov: np.ndarray) -> np.ndarray:
    """Bool (z, y, x): body voxels within *depth_mm* of the air outside the skin (2D, per axial
    slice; beyond the field of view *fov* is not air), more than *band* columns lateral of *x_mid*
    (work column), and per slice and side no deeper than the row where that side of the body
    reaches furthest laterally (the mid-axillary line; the breast never wraps onto the back)."""
    sx, sy = work.GetSpacing()[:2]
    out = np.zeros_like(body)
    cols = np.arange(body.shape[2])
    sides = [side for side in (cols < x_mid - band, cols > x_mid + band) if side.any()]
    reach = np.abs(cols - x_mid)  # columns from the midline
    for z in range(body.shape[0]):
        b = body[z]
        if not b.any():
            continue
        # Depth under the skin (:func:`.chestwall.skin_depth`): from the air in front of the body,
        # never a lung that a cut field of view left open. The array border is no air.
        shallow = b & (skin_depth(b, fov[z], (sy, sx)) <= depth_mm)
        for side in sides:
            sl = b[:, side]
            if not sl.any():
                continue
            ext = np.where(sl, reach[side][None, :], 0).max(axis=1)  # per row: lateral reach
            limit = int(round(np.nonzero(ext >= ext.max() - 1)[0].mean()))
            out[z][:limit + 1, side] = shallow[:limit + 1, side]
    return out


# Where the breasts hang: the anterior skin more than BULGE_MM in front of the sternum level,
# widened by WRAP_REACH_MM (z, x): the lateral wrap stays beside the breasts, not along the torso.
BULGE_MM = 10.0
WRAP_REACH_MM = (15.0, 30.0)


def _breast_footprint(body: np.ndarray, level: np.ndarray, work: sitk.Image) -> np.ndarray:
    """Bool (z, x): the columns of the breasts' anterior bulges (skin at least :data:`BULGE_MM` in
    front of the chest-wall *level*), widened by :data:`WRAP_REACH_MM` along z and x."""
    sx, sy, sz = work.GetSpacing()
    bulge = (level - _skin_rows(body)) * sy >= BULGE_MM
    rz, rx = (max(1, int(round(r / s))) for r, s in zip(WRAP_REACH_MM, (sz, sx)))
    dz, dx = np.ogrid[-rz:rz + 1, -rx:rx + 1]
    return ndimage.binary_dilation(bulge, structure=(dz / rz) ** 2 + (dx / rx) ** 2 <= 1) if bulge.any() else bulge


def _midline_column(body: np.ndarray, layout: dict, work: sitk.Image) -> float:
    """The work-grid column of the body midline (the layout's, else the body's centre)."""
    if layout["midline_x"] is not None:
        x_mid = (layout["midline_x"] - work.GetOrigin()[0]) / work.GetSpacing()[0]
    else:
        xs = np.nonzero(body.any(axis=(0, 1)))[0]
        x_mid = 0.5 * (xs.min() + xs.max())
    return float(np.clip(x_mid, 0, body.shape[2] - 1))


def chest_side(context: dict, skin_mm: float, mediastinum_half_width_mm: float) -> np.ndarray | None:
    """Bool (z, y, x) on the work grid of a :func:`breast_region` *context*: the side of the chest,
    where breast tissue wraps around the chest wall under the skin, deeper than the sternum level.
    Body voxels within *skin_mm* of the air outside the skin (per axial slice), more than
    *mediastinum_half_width_mm* lateral of the body midline (the mediastinum and heart lie in that
    band) and in front of the mid-axillary line (:func:`_lateral_wrap`, without the breasts'
    footprint). The lesion gate does not call a confident component there "behind the chest wall".
    None where it is not defined: no body, or a sagittal / coronal slab (no left-right extent).
    The field of view is taken as the whole work grid (an oblique exam's padded corners count as air)."""
    body, work = context.get("body"), context["work"]
    if body is None or not body.any() or context.get("slab") in (1, 2):
        return None
    x_mid = _midline_column(body, context["layout"], work)
    band = max(1, int(round(mediastinum_half_width_mm / work.GetSpacing()[0])))
    return _lateral_wrap(body, work, x_mid, band, skin_mm, np.ones_like(body))


def breast_region(img: sitk.Image, work_spacing_mm: float = 2.0, chest_margin_mm: float = 12.0,
                  midline_band_mm: float = 15.0, laterality: str | None = None,
                  lateral_wrap_mm: float = LATERAL_WRAP_MM, skin_line: bool | None = None,
                  tissue_wrap_mm: float = TISSUE_WRAP_MM, lung_level: bool = False,
                  one_breast_wrap: bool = False) -> tuple[sitk.Image, dict]:
    """Whole-breast mask (uint8, on *img*'s grid) and its context: ``{"work", "body", "layout",
    "level", "chest_margin_mm", "slab", "method"}`` (the LPS work image, its body mask,
    :func:`breast_layout`, the chest-wall row per (z, x) column of the work grid before the margin
    or None where the chest wall is not in the field of view, the slab axis from :func:`.body.slab_axis`
    and how the chest wall was found), which :func:`breast_mask_qa` and the lesion gate
    (:mod:`~BreastTumorSegLib.engine.postprocess`) reuse.

    *skin_line*: the body up to the skin line (:func:`.body.body_mask_lps`); None: where the lateral
    wrap is made (*lateral_wrap_mm* > 0, a volume or an axial slab).

    Volumes: chest-wall level per axial slice from the skin over the sternum (module docstring).
    Thin slabs are processed slice by slice: an axial slab per slice as a volume (no smoothing
    along z); a sagittal slab (one breast, a handful of sagittal slices) per sagittal slice from
    the anterior skin profile along z (the skin over the chest above and below the breast); a
    coronal slab shows no chest wall: its mask is the body.
    """
    work, slab = work_image(img, work_spacing_mm)
    # The body up to the skin line (air against tissue, :func:`.body.body_mask_lps`): it holds the dark
    # subcutaneous and breast fat of a fat-suppressed exam, which half of Otsu's threshold loses.
    # The wrap needs it (it measures depth from the skin); without the wrap (off, or a sagittal or
    # coronal slab) the body is as it was unless *skin_line* says otherwise.
    if skin_line is None:
        skin_line = bool(lateral_wrap_mm) and slab in (None, 0)
    body = body_mask_lps(work, slab=slab, skin_line=skin_line)
    sx, sy, sz = work.GetSpacing()
    layout = breast_layout(body, work, laterality)
    if slab == 2:
        layout = _slab_layout(layout, work, laterality)
    mask = np.zeros_like(body)
    level = None
    method = "no body"
    if body.any() and slab == 2:
        level, method = _sagittal_chest_level(body), "per sagittal slice: skin over the chest above and below the breast"
    elif body.any() and slab == 1:
        method = "coronal slab: chest wall not in the field of view, mask = body"
    elif body.any():
        x_mid = _midline_column(body, layout, work)
        band = max(1, int(round(midline_band_mm / sx)))
        x_lo, x_hi = int(max(0, x_mid - band)), int(min(body.shape[2], x_mid + band + 1))
        per_z = _chest_level(body, x_lo, x_hi, sz, smooth_z=slab is None)
        if per_z is not None:
            level = np.repeat(per_z[:, None], body.shape[2], axis=1)
            method = "per axial slice: skin over the sternum" + (" (axial slab, no smoothing along z)" if slab == 0 else "")
    if level is not None:
        limit = level + chest_margin_mm / sy
        if lung_level and slab is None:  # the chest wall from the lungs behind it (:mod:`.lung_level`)
            level, limit, method = deeper_to_lungs(work, body, _midline_column(body, layout, work), level, limit, chest_margin_mm / sy, method)
        rows = np.arange(body.shape[1])[None, :, None]
        mask = body & (rows <= limit[:, None, :])
        if lateral_wrap_mm and slab in (None, 0):
            wrap = _lateral_wrap(body, work, x_mid, band, lateral_wrap_mm, _field_of_view(img, work))
            wrap &= _breast_footprint(body, level, work)[:, None, :]
            mask |= wrap
            # The chest wall lies deeper at the side: behind the wrap, not at the sternum's level.
            deepest = np.where(wrap.any(axis=1), wrap.shape[1] - 1 - np.argmax(wrap[:, ::-1, :], axis=1), -1)
            level = np.where(deepest >= 0, np.maximum(level, deepest - chest_margin_mm / sy), level)
            method += f"; lateral wrap: body within {lateral_wrap_mm:g} mm of the skin in front of the mid-axillary line"
        elif tissue_wrap_mm and slab in (None, 0):
            wrap = _tissue_wrap(img, work, slab, body, mask, level, x_mid, band, tissue_wrap_mm,
                                limit, layout["breast_x"])
            mask |= wrap
            method += (f"; tissue wrap: fat of the side of the chest within {tissue_wrap_mm:g} mm of the skin, "
                       "in front of the chest-wall muscle")
        if one_breast_wrap and slab in (None, 0) and layout["unilateral_side"]:
            wrap = _tissue_wrap(img, work, slab, body, mask, level, x_mid, band, ONE_BREAST_WRAP_MM, limit, [])
            unwrapped = _finish(mask.copy(), img, work, body, layout, level, chest_margin_mm, slab, method)
            mask |= wrap
            method += (f"; one-breast wrap: breast fat within {ONE_BREAST_WRAP_MM:g} mm of the skin, "
                       "in front of the chest-wall muscle, medial columns included")
    elif slab == 1:
        mask = body.copy()
    result = _finish(mask, img, work, body, layout, level, chest_margin_mm, slab, method)
    if "one-breast wrap" in method and not breast_mask_qa(*result)["plausible"]:
        # The reach must leave a plausible region (development vessels 6032: "deep near the midline", the
        # region untrusted, the whole body searched and the heart kept): without it, the region is as before.
        unwrapped[1]["method"] += "; one-breast wrap left out (the region would not be plausible)"
        return unwrapped
    return result


def _finish(mask: np.ndarray, img: sitk.Image, work: sitk.Image, body: np.ndarray, layout: dict, level, chest_margin_mm: float,
            slab, method: str) -> tuple[sitk.Image, dict]:
    """The region (opened, on *img*'s grid) and its context from the work-grid *mask*."""
    if mask.any():
        structure = np.ones([1 if a == slab else 3 for a in range(3)])
        mask = ndimage.binary_opening(mask, structure=structure)
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(work)
    extent = None if slab is None else float(work.GetSize()[2 - slab] * work.GetSpacing()[2 - slab])
    sy = work.GetSpacing()[1]
    context = {"work": work, "body": body, "layout": layout, "level": level, "chest_margin_mm": chest_margin_mm,
               "slab": slab, "slab_extent_mm": extent, "method": method, "chest_wall_row": _region_floor(mask, level, chest_margin_mm / sy)}
    return resample_to(out, img, sitk.sitkNearestNeighbor), context


def _tissue_wrap(img: sitk.Image, work: sitk.Image, slab, body: np.ndarray, mask: np.ndarray, level: np.ndarray,
                 x_mid: float, band: int, depth_mm: float, limit: np.ndarray, breast_x: list) -> np.ndarray:
    """Bool (z, y, x): the tissue wrap (:data:`TISSUE_WRAP_MM`, :func:`.chestwall.in_front_of_muscle`) on
    the lateral wrap's zone (the body up to the skin line within *depth_mm* of the skin, lateral of the
    midline band, in front of the mid-axillary line, beside the breasts), grown from the skin. Only
    behind the sternum rule's *limit* (row per (z, x)) and lateral of the breasts' bulges (*breast_x*,
    LPS mm): the breast wraps around the side of the chest; medially behind the level lie the sternum,
    the mediastinum and the heart."""
    skin_body = body_mask_lps(work, slab=slab, skin_line=True)
    fov = _field_of_view(img, work)
    zone = _lateral_wrap(skin_body, work, x_mid, band, depth_mm, fov)
    zone &= _breast_footprint(body, level, work)[:, None, :]
    fat_zone = zone.copy()
    zone &= np.arange(body.shape[1])[None, :, None] > limit[:, None, :]
    cols = np.arange(body.shape[2])
    for bx in (breast_x if LATERAL_OF_BULGE else []):
        c = (bx - work.GetOrigin()[0]) / work.GetSpacing()[0]
        medial = (cols > c) & (cols < x_mid) if c < x_mid else (cols < c) & (cols > x_mid)
        zone[:, :, medial] = False
    if not zone.any():
        return zone
    sx, sy = work.GetSpacing()[:2]
    depth = np.full(zone.shape, np.inf)
    for z in np.nonzero(fat_zone.any(axis=(1, 2)))[0]:
        depth[z] = skin_depth(skin_body[z], fov[z], (sy, sx))
    return in_front_of_muscle(work, zone, mask, depth, fat_zone=fat_zone)


def _region_floor(mask: np.ndarray, level: np.ndarray | None, margin_rows: float) -> np.ndarray | None:
    """Per (z, x) column of the work grid: the deepest row of the region (the chest wall as the region
    sees it: the sternum level + *margin_rows* where nothing reaches deeper, the tissue wrap's floor at
    the side of the chest), None where the chest wall is not in the field of view. ``context["level"]`` stays the
    sternum level (the lesion gate and the classifier read it)."""
    if level is None:
        return None
    deepest = np.where(mask.any(axis=1), mask.shape[1] - 1 - np.argmax(mask[:, ::-1, :], axis=1), -1)
    return np.maximum(level + margin_rows, deepest).astype(float)


def body_on_grid(context: dict, img: sitk.Image) -> sitk.Image:
    """The body mask of a :func:`breast_region` context (uint8) on *img*'s grid."""
    body = sitk.GetImageFromArray(context["body"].astype(np.uint8))
    body.CopyInformation(context["work"])
    return resample_to(body, img, sitk.sitkNearestNeighbor)


def breast_mask(img: sitk.Image, work_spacing_mm: float = 2.0, chest_margin_mm: float = 12.0,
                midline_band_mm: float = 15.0, laterality: str | None = None) -> sitk.Image:
    """Whole-breast mask (uint8) of a pre-contrast image, on the image's own grid."""
    return breast_region(img, work_spacing_mm, chest_margin_mm, midline_band_mm, laterality)[0]


# ----------------------------------------------------------------------------- plausibility
@dataclass(frozen=True)
class BreastMaskLimits:
    """What a plausible whole-breast mask looks like."""

    min_breast_ml: float = 20.0  # per breast present
    max_breast_ml: float = 3000.0
    min_inside_body: float = 0.9  # fraction of the mask inside the body
    max_body_fraction: float = 0.95  # fraction of the body (in the field of view) covered
    deep_margin_mm: float = 25.0  # beyond the classical chest-wall limit: "posterior to the chest wall"
    # Breast tissue wraps around the curved chest wall laterally, so deep tissue is only suspect
    # near the midline, where the heart and mediastinum lie behind the sternum.
    central_half_width_mm: float = 40.0
    max_deep_fraction: float = 0.05  # of the mask: deep AND central (heart, mediastinum)


def breast_mask_qa(mask: sitk.Image, context: dict, limits: BreastMaskLimits | None = None) -> dict:
    """Is *mask* a plausible whole-breast mask of the exam described by *context* (from
    :func:`breast_region`)? ``{"plausible", "reasons", "volume_ml", "per_side_ml",
    "inside_body_fraction", "body_fraction", "deep_fraction", "n_breasts_in_fov"}``."""
    lim = limits or BreastMaskLimits()
    work, body, layout, level = context["work"], context["body"], context["layout"], context["level"]
    m = sitk.GetArrayViewFromImage(mask) > 0
    volume_ml = float(np.count_nonzero(m)) * voxel_volume_ml(mask)
    w = sitk.GetArrayFromImage(resample_to(mask > 0, work,  # a comparison gives uint8 already: no cast
                                               sitk.sitkNearestNeighbor)) > 0
    vox_ml = voxel_volume_ml(work)
    n_w = max(int(np.count_nonzero(w)), 1)
    grown = ndimage.binary_dilation(body, iterations=1)
    inside = float(np.count_nonzero(w & grown)) / n_w
    body_fraction = float(np.count_nonzero(w & body)) / max(int(np.count_nonzero(body)), 1)
    x_of = work.GetOrigin()[0] + work.GetSpacing()[0] * np.arange(w.shape[2])
    deep = 0.0
    if level is not None:
        sy = work.GetSpacing()[1]
        limit = level + (context["chest_margin_mm"] + lim.deep_margin_mm) / sy
        rows = np.arange(w.shape[1])[None, :, None]
        if layout["midline_x"] is not None:
            central = np.abs(x_of - layout["midline_x"]) <= lim.central_half_width_mm
        else:  # no midline: all of a bilateral view is suspect, none of a single-breast one
            central = np.full(x_of.shape, not layout["unilateral_side"])
        deep = float(np.count_nonzero(w & (rows > limit[:, None, :]) & central[None, None, :])) / n_w
    per_x = np.count_nonzero(w, axis=(0, 1)) * vox_ml
    if layout["unilateral_side"]:
        per_side = {layout["unilateral_side"]: float(per_x.sum())}
    else:
        mid = layout["midline_x"] if layout["midline_x"] is not None else float(x_of.mean())
        per_side = {"right": float(per_x[x_of <= mid].sum()), "left": float(per_x[x_of > mid].sum())}
    reasons = []
    # A thin slab holds a slice of the breast: the volume floor shrinks with the slab (a breast ~10 cm wide).
    min_ml = lim.min_breast_ml * min(1.0, (context.get("slab_extent_mm") or 100.0) / 100.0)
    if volume_ml < min_ml:
        reasons.append(f"mask volume {volume_ml:.1f} mL is below {min_ml:.3g} mL")
    for side, ml in per_side.items():
        if ml > lim.max_breast_ml:
            reasons.append(f"{side} breast {ml:.0f} mL is above {lim.max_breast_ml:g} mL")
        elif layout["n_breasts"] == 2 and ml < min_ml:
            reasons.append(f"bilateral field of view but the {side} breast holds only {ml:.0f} mL")
    if inside < lim.min_inside_body:
        reasons.append(f"only {100 * inside:.0f} % of the mask lies inside the body")
    if body_fraction > lim.max_body_fraction:
        reasons.append(f"the mask covers {100 * body_fraction:.0f} % of the body in the field of view")
    if deep > lim.max_deep_fraction:
        reasons.append(f"{100 * deep:.0f} % of the mask lies near the midline more than {lim.deep_margin_mm:g} mm "
                       "deeper than the chest wall (heart, mediastinum)")
    return {"plausible": not reasons, "reasons": reasons, "volume_ml": round(volume_ml, 2),
            "per_side_ml": {k: round(v, 2) for k, v in per_side.items()},
            "inside_body_fraction": round(inside, 4), "body_fraction": round(body_fraction, 4),
            "deep_fraction": round(deep, 4), "n_breasts_in_fov": layout["n_breasts"]}


def choose_breast_mask(classical: sitk.Image, context: dict, learned: sitk.Image | None = None,
                       limits: BreastMaskLimits | None = None) -> tuple[sitk.Image, str, dict]:
    """The breast mask to use, its name and the QA record.

    The learned mask is used when it is plausible; otherwise the classical one (also when neither
    is plausible: the classical mask cannot reach deeper than the chest wall). On a thin slab
    (:func:`.body.slab_axis`) a plausible classical mask is preferred: the learned model never saw one. The record holds
    ``used``, ``fallback`` (True when a learned mask was given but not used), ``trusted`` (the
    mask used is plausible; when False the lesion gate keeps and flags what lies outside it
    instead of removing it), ``note`` and the QA of each mask (:func:`breast_mask_qa`).
    """
    qa = {"classical": breast_mask_qa(classical, context, limits), "learned": None, "fallback": False,
          "layout": {k: v for k, v in context["layout"].items()}, "chest_wall": context.get("method")}
    if learned is None:
        trusted = qa["classical"]["plausible"]
        qa.update(used="classical", trusted=trusted, note="classical mask (no learned breast model)" + (
            "" if trusted else "; not plausible (" + "; ".join(qa["classical"]["reasons"]) + "): "
            "no mask is trustworthy, lesions outside it are kept and flagged"))
        return classical, "classical", qa
    qa["learned"] = breast_mask_qa(learned, context, limits)
    if context.get("slab") is not None and qa["classical"]["plausible"]:
        # Measured on 5-slice sagittal slabs: the learned mask passes the check yet misses the
        # breast interior (it was trained on whole volumes); the slab's own classical mask holds it.
        qa.update(used="classical", fallback=True, trusted=True,
                  note=f"thin slab ({context.get('slab_extent_mm', 0):.0f} mm): the learned whole-breast model "
                       "was trained on whole volumes; the classical slab mask (plausible) is used")
        return classical, "classical", qa
    if qa["learned"]["plausible"]:
        qa.update(used="learned", trusted=True, note="learned mask is plausible")
        return learned, "learned", qa
    why = "; ".join(qa["learned"]["reasons"])
    trusted = qa["classical"]["plausible"]
    state = "plausible" if trusted else ("not plausible either (" + "; ".join(qa["classical"]["reasons"]) + "): "
                                         "no mask is trustworthy, lesions outside it are kept and flagged")
    qa.update(used="classical", fallback=True, trusted=trusted,
              note=f"learned mask rejected ({why}); fell back to the classical mask ({state})")
    return classical, "classical", qa
