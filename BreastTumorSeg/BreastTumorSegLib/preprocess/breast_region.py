"""Classical whole-breast mask: body foreground in front of the chest wall.

Breast MRI is acquired prone, with both breasts hanging anteriorly. The method works in the
patient's LPS frame whatever the acquisition orientation:

1. Body: smoothed image above a fraction of its Otsu threshold, holes filled slice by slice,
   largest 3D component.
2. Layout (:func:`breast_layout`): the breasts are the anterior bulges of the body's anterior
   skin profile along patient x; two bulges = bilateral field of view with the midline at the
   skin over the sternum between them; one bulge = unilateral (single-breast) field of view, the
   midline lying beyond its medial border.
3. Chest-wall level per axial slice: the deepest anterior skin position within ±``midline_band_mm``
   of the midline (the skin over the sternum, between the breasts; for a single breast the
   medial border of the field of view), plus ``chest_margin_mm`` to keep the pre-sternal fat and
   the breast base; smoothed along z.
4. Breast = body voxels anterior to that level.

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

from ..core.imageutil import resample_to, resample_to_spacing, voxel_volume_ml


def body_mask_lps(img_lps: sitk.Image, otsu_fraction: float = 0.5) -> np.ndarray:
    """Boolean (z, y, x) body mask of an image already in LPS orientation."""
    smooth = sitk.SmoothingRecursiveGaussian(img_lps, 2.0)
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.SetInsideValue(0)
    otsu.SetOutsideValue(1)
    otsu.Execute(smooth)
    thr = otsu.GetThreshold() * otsu_fraction
    fg = sitk.GetArrayViewFromImage(smooth) > thr
    fg = ndimage.binary_closing(fg, structure=np.ones((3, 3, 3)), iterations=2)
    fg = np.stack([ndimage.binary_fill_holes(s) for s in fg])
    lab, n = ndimage.label(fg)
    if n == 0:
        return fg
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def body_mask(img: sitk.Image, work_spacing_mm: float | None = None, otsu_fraction: float = 0.5) -> sitk.Image:
    """Body foreground (uint8, 1 = body) on *img*'s grid, whatever its orientation.

    The one body/foreground mask of the package (harmonization scale, registration metric
    sampling, the breast region): :func:`body_mask_lps` on the image re-oriented to LPS, at
    *work_spacing_mm* when given (faster; the mask is resampled back, nearest neighbour).
    """
    lps = sitk.DICOMOrient(sitk.Cast(img, sitk.sitkFloat32), "LPS")
    if work_spacing_mm:
        lps = resample_to_spacing(lps, work_spacing_mm)
    out = sitk.GetImageFromArray(body_mask_lps(lps, otsu_fraction).astype(np.uint8))
    out.CopyInformation(lps)
    return resample_to(out, img, sitk.sitkNearestNeighbor)


# ----------------------------------------------------------------------------- layout: where the breasts are
def _skin_rows(body: np.ndarray) -> np.ndarray:
    """Per (z, x) column of a (z, y, x) body mask: the first (most anterior) body row, n_y where empty."""
    return np.where(body.any(axis=1), np.argmax(body, axis=1), body.shape[1])


def anterior_profile(body: np.ndarray) -> np.ndarray:
    """Per LPS x column of a (z, y, x) body mask: the most anterior body row (n_y where empty)."""
    return _skin_rows(body).min(axis=0)


def breast_layout(body: np.ndarray, img_lps: sitk.Image, laterality: str | None = None,
                  min_prominence_mm: float = 20.0, min_separation_mm: float = 70.0) -> dict:
    """Where the breasts and the body midline are, from a (z, y, x) body mask on *img_lps*'s grid.

    Prone breasts are the two anterior bulges of the body's anterior skin profile (most anterior
    body row per patient x). Two bulges: bilateral, midline = middle of the deepest part of the
    profile between them (the skin over the sternum). One bulge: unilateral; its side comes from
    *laterality* (the series' laterality, "L"/"R"), else from the body being cut by the field of
    view on one x border only (the rest of the body, hence the midline, lies beyond it), else from
    the sign of the bulge's patient x (scanner isocentre ~ patient midline; LPS +x = left).
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
    if lat in ("L", "R"):
        out.update(unilateral_side="left" if lat == "L" else "right", decided_by="series laterality")
    elif len(peaks) == 1:
        lo_cut, hi_cut = bool(body[..., 0].any()), bool(body[..., -1].any())
        if lo_cut != hi_cut:
            # Body cut at the low-x border: the midline lies at lower x, the breast is on the +x (left) side.
            out.update(unilateral_side="left" if lo_cut else "right", decided_by="body cut by the field of view")
        else:
            out.update(unilateral_side="left" if x_of[peaks[0]] > 0 else "right",
                       decided_by="breast position relative to the scanner isocentre")
    else:
        out.update(midline_x=float(0.5 * (x_of[cols.min()] + x_of[cols.max()])), decided_by="body centre")
        return out
    if out["unilateral_side"] is not None:
        out["n_breasts"] = 1
        # The midline lies medial to the breast: beyond the field of view's medial border at the latest.
        out["midline_x"] = float(x_of[0] if out["unilateral_side"] == "left" else x_of[-1])
    return out


def _chest_level(body: np.ndarray, x_lo: int, x_hi: int, sz: float) -> np.ndarray | None:
    """Per z slice: the deepest anterior skin row in columns [x_lo, x_hi), smoothed along z (None: no body)."""
    first = _skin_rows(body)[:, x_lo:x_hi]
    level = np.where(first < body.shape[1], first, -1).max(axis=1).astype(float)
    valid = level >= 0
    if not valid.any():
        return None
    zi = np.arange(body.shape[0])
    level = np.interp(zi, zi[valid], level[valid])
    return ndimage.median_filter(level, size=max(3, int(round(20.0 / sz)) | 1), mode="nearest")


def breast_region(img: sitk.Image, work_spacing_mm: float = 2.0, chest_margin_mm: float = 12.0,
                  midline_band_mm: float = 15.0, laterality: str | None = None) -> tuple[sitk.Image, dict]:
    """Whole-breast mask (uint8, on *img*'s grid) and its context: ``{"work", "body", "layout",
    "level"}`` (the LPS work image, its body mask, :func:`breast_layout` and the chest-wall row
    per slice before the margin), which :func:`breast_mask_qa` reuses."""
    lps = sitk.DICOMOrient(img, "LPS")
    work = resample_to_spacing(sitk.Cast(lps, sitk.sitkFloat32), work_spacing_mm)
    body = body_mask_lps(work)
    sx, sy, sz = work.GetSpacing()
    layout = breast_layout(body, work, laterality)
    mask = np.zeros_like(body)
    level = None
    if body.any():
        if layout["midline_x"] is not None:
            x_mid = (layout["midline_x"] - work.GetOrigin()[0]) / sx
        else:
            xs = np.nonzero(body.any(axis=(0, 1)))[0]
            x_mid = 0.5 * (xs.min() + xs.max())
        band = max(1, int(round(midline_band_mm / sx)))
        x_mid = float(np.clip(x_mid, 0, body.shape[2] - 1))
        x_lo, x_hi = int(max(0, x_mid - band)), int(min(body.shape[2], x_mid + band + 1))
        level = _chest_level(body, x_lo, x_hi, sz)
        if level is not None:
            limit = level + chest_margin_mm / sy
            rows = np.arange(body.shape[1])[None, :, None]
            mask = body & (rows <= limit[:, None, None])
            mask = ndimage.binary_opening(mask, structure=np.ones((3, 3, 3)))
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(work)
    context = {"work": work, "body": body, "layout": layout, "level": level, "chest_margin_mm": chest_margin_mm}
    return resample_to(out, img, sitk.sitkNearestNeighbor), context


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
    w = sitk.GetArrayFromImage(resample_to(sitk.Cast(mask > 0, sitk.sitkUInt8), work,
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
        deep = float(np.count_nonzero(w & (rows > limit[:, None, None]) & central[None, None, :])) / n_w
    per_x = np.count_nonzero(w, axis=(0, 1)) * vox_ml
    if layout["unilateral_side"]:
        per_side = {layout["unilateral_side"]: float(per_x.sum())}
    else:
        mid = layout["midline_x"] if layout["midline_x"] is not None else float(x_of.mean())
        per_side = {"right": float(per_x[x_of <= mid].sum()), "left": float(per_x[x_of > mid].sum())}
    reasons = []
    if volume_ml < lim.min_breast_ml:
        reasons.append(f"mask volume {volume_ml:.0f} mL is below {lim.min_breast_ml:g} mL")
    for side, ml in per_side.items():
        if ml > lim.max_breast_ml:
            reasons.append(f"{side} breast {ml:.0f} mL is above {lim.max_breast_ml:g} mL")
        elif layout["n_breasts"] == 2 and ml < lim.min_breast_ml:
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
    is plausible: the classical mask cannot reach deeper than the chest wall). The record holds
    ``used``, ``fallback`` (True when a learned mask was given but not used), ``note`` and the QA
    of each mask (:func:`breast_mask_qa`).
    """
    qa = {"classical": breast_mask_qa(classical, context, limits), "learned": None, "fallback": False,
          "layout": {k: v for k, v in context["layout"].items()}}
    if learned is None:
        qa.update(used="classical", note="classical mask (no learned breast model)")
        return classical, "classical", qa
    qa["learned"] = breast_mask_qa(learned, context, limits)
    if qa["learned"]["plausible"]:
        qa.update(used="learned", note="learned mask is plausible")
        return learned, "learned", qa
    why = "; ".join(qa["learned"]["reasons"])
    state = "plausible" if qa["classical"]["plausible"] else "not plausible either, but bounded by the chest wall"
    qa.update(used="classical", fallback=True,
              note=f"learned mask rejected ({why}); fell back to the classical mask ({state})")
    return classical, "classical", qa
