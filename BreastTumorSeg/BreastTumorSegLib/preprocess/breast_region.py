"""Classical whole-breast mask: body foreground in front of the chest wall.

Breast MRI is acquired prone, with both breasts hanging anteriorly. The method works in the
patient's LPS frame whatever the acquisition orientation:

1. Body: smoothed image above a fraction of its Otsu threshold, holes filled slice by slice,
   largest 3D component.
2. Chest-wall level per axial slice: the deepest anterior skin position within ±``midline_band_mm``
   of the body's left-right centre (the skin over the sternum, between the breasts), plus
   ``chest_margin_mm`` to keep the pre-sternal fat and the breast base; smoothed along z.
3. Breast = body voxels anterior to that level.

It runs at about ``work_spacing_mm`` and the mask is resampled (nearest neighbour) onto the
input grid. It is meant to remove false positives in the heart, mediastinum and arms, not to
be an exact anatomical delineation.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import resample_to, resample_to_spacing


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


def breast_mask(img: sitk.Image, work_spacing_mm: float = 2.0, chest_margin_mm: float = 12.0,
                midline_band_mm: float = 15.0) -> sitk.Image:
    """Whole-breast mask (uint8) of a pre-contrast image, on the image's own grid."""
    lps = sitk.DICOMOrient(img, "LPS")
    work = resample_to_spacing(sitk.Cast(lps, sitk.sitkFloat32), work_spacing_mm)
    body = body_mask_lps(work)
    sz, sy, sx = work.GetSpacing()[2], work.GetSpacing()[1], work.GetSpacing()[0]
    mask = np.zeros_like(body)
    if body.any():
        xs = np.nonzero(body.any(axis=(0, 1)))[0]
        x_mid = 0.5 * (xs.min() + xs.max())
        band = max(1, int(round(midline_band_mm / sx)))
        x_lo, x_hi = int(max(0, x_mid - band)), int(min(body.shape[2], x_mid + band + 1))
        n_y = body.shape[1]
        # First body row (anterior skin) for every (z, x) column; n_y where the column is empty.
        has = body.any(axis=1)
        first = np.where(has, np.argmax(body, axis=1), n_y)
        level = np.full(body.shape[0], np.nan)
        for z in range(body.shape[0]):
            cols = first[z, x_lo:x_hi]
            cols = cols[cols < n_y]
            if cols.size:
                level[z] = cols.max()
        valid = np.isfinite(level)
        if valid.any():
            # Fill slices without a midline estimate from their neighbours, then smooth along z.
            zi = np.arange(body.shape[0])
            level = np.interp(zi, zi[valid], level[valid])
            level = ndimage.median_filter(level, size=max(3, int(round(20.0 / sz)) | 1), mode="nearest")
            limit = level + chest_margin_mm / sy
            rows = np.arange(n_y)[None, :, None]
            mask = body & (rows <= limit[:, None, None])
            mask = ndimage.binary_opening(mask, structure=np.ones((3, 3, 3)))
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(work)
    return resample_to(out, img, sitk.sitkNearestNeighbor)
