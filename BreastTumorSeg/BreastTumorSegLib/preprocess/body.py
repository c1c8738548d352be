"""Body (foreground) mask of an MR image, in the patient's LPS frame.

The one body mask of the package: harmonization scale, registration metric sampling and the
breast region (:mod:`.breast_region`) all use :func:`body_mask`. The image is re-oriented to LPS
(:func:`lps_image`) so that anterior, left and superior are array axes whatever the acquisition
orientation; thin slabs (:func:`slab_axis`) are processed slice by slice. The skin-line variant
(:func:`body_mask_lps` ``skin_line``) also keeps the dark subcutaneous fat of a fat-suppressed exam.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import isotropic_grid, resample_to, resample_to_spacing

def lps_image(img: sitk.Image) -> sitk.Image:
    """*img* (float32) on a grid whose array axes are the patient's LPS axes (z, y, x = superior,
    posterior, left): re-oriented without interpolation when its direction is a permutation with
    flips (axial, sagittal, coronal), resampled (linear) onto an axis-aligned box covering it when
    it is oblique. Everything below reads anterior, left-right and superior from array axes of
    this image, so the whole-breast mask does not depend on the acquisition orientation."""
    lps = sitk.Cast(sitk.DICOMOrient(img, "LPS"), sitk.sitkFloat32)
    if np.allclose(np.asarray(lps.GetDirection()).reshape(3, 3), np.eye(3), atol=1e-4):
        return lps
    d = np.asarray(lps.GetDirection()).reshape(3, 3)
    size, spacing = np.asarray(lps.GetSize(), float), np.asarray(lps.GetSpacing(), float)
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)]) * size - 0.5
    phys = np.asarray(lps.GetOrigin()) + (corners * spacing) @ d.T
    lo, hi = phys.min(axis=0), phys.max(axis=0)
    grid = sitk.Image([int(v) for v in np.maximum(1, np.ceil((hi - lo) / spacing))], sitk.sitkFloat32)
    grid.SetSpacing(tuple(float(v) for v in spacing))
    grid.SetOrigin(tuple(float(v) for v in lo + spacing / 2))
    return resample_to(lps, grid)


def body_mask_lps(img_lps: sitk.Image, otsu_fraction: float = 0.5, slab: int | None = None,
                  skin_line: bool = False, threshold=None) -> np.ndarray:
    """Boolean (z, y, x) body mask of an image already in LPS orientation.

    *slab* (numpy axis of a thin slab, :func:`slab_axis`): smoothing, closing and hole filling
    stay within each slice of the slab (in 2D), never across its few thick slices.
    *skin_line* (the breast region's body where the lateral wrap is made): the skin is where air
    meets tissue, whatever the fat looks like: the threshold is the lower of *otsu_fraction* x Otsu
    and the air/tissue threshold (:func:`air_tissue_threshold`), but not below
    :data:`SKIN_LINE_FLOOR` x Otsu (real air is noisy), so the dark subcutaneous fat of a
    fat-suppressed exam is body; and the closing does not peel the voxels off a body that the field
    of view cuts. Off, the mask is the one harmonization and registration have always used.
    *threshold* (a caller's own rule, e.g. :mod:`..engine.classify_body`): ``threshold(smoothed image,
    its array)`` gives the intensity above which a voxel is body, instead of the rules above.
    """
    if slab is None:
        smooth = sitk.SmoothingRecursiveGaussian(img_lps, 2.0)
        arr = sitk.GetArrayViewFromImage(smooth)
        structure = np.ones((3, 3, 3))
    else:
        spacing_zyx = np.asarray(img_lps.GetSpacing())[::-1]
        sigma = [0.0 if a == slab else 2.0 / spacing_zyx[a] for a in range(3)]
        arr = ndimage.gaussian_filter(sitk.GetArrayFromImage(img_lps).astype(np.float32), sigma)
        smooth = sitk.GetImageFromArray(arr)
        structure = np.ones([1 if a == slab else 3 for a in range(3)])
    thr = _otsu(smooth) * otsu_fraction if threshold is None else float(threshold(smooth, np.asarray(arr)))
    if skin_line and threshold is None:
        thr = min(thr, max(air_tissue_threshold(np.asarray(arr)), SKIN_LINE_FLOOR * thr / otsu_fraction))
    fg = arr > thr
    if skin_line:
        # Closing on an edge-padded copy: scipy's erosion takes beyond the array for background and
        # would peel two voxels off a body that the field of view cuts (the lateral wrap took that
        # strip for air outside the skin and followed it to the heart).
        pad = [(0, 0) if a == slab else (2, 2) for a in range(3)]
        inner = tuple(slice(None) if a == slab else slice(2, -2) for a in range(3))
        fg = ndimage.binary_closing(np.pad(fg, pad, mode="edge"), structure=structure, iterations=2)[inner]
    else:
        fg = ndimage.binary_closing(fg, structure=structure, iterations=2)
    along = 0 if slab is None else slab
    fg = np.moveaxis(np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(fg, along, 0)]), 0, along)
    lab, n = ndimage.label(fg)
    if n == 0:
        return fg
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _otsu(img: sitk.Image) -> float:
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.SetInsideValue(0)
    otsu.SetOutsideValue(1)
    otsu.Execute(img)
    return float(otsu.GetThreshold())


# The skin line's threshold never goes below this fraction of Otsu's: on real exams the air holds
# noise and ghosting well above zero (real axial volume: air/tissue Otsu on log intensity 8, the air's
# noise up to ~60, tissue 100-700, Otsu 258), which a log-scale Otsu alone would take for body.
SKIN_LINE_FLOOR = 0.3


def air_tissue_threshold(arr: np.ndarray) -> float:
    """The intensity that separates air from tissue in a (smoothed) image: Otsu's threshold on the
    histogram of log intensity. On a linear histogram Otsu splits bright from dark tissue, and half
    of it lies above the subcutaneous fat of a fat-suppressed exam (fat 0.1-0.3 of the brightest
    tissue); on a log scale air (noise) and tissue are the two modes whatever the contrast.
    Intensities below 1e-3 of the 99.5th percentile (zero-filled or negative noise) count as that floor."""
    top = float(np.percentile(arr, 99.5))
    if not np.isfinite(top) or top <= 0:
        return 0.0
    logs = np.log(np.maximum(arr, 1e-3 * top)).astype(np.float32)
    return float(np.exp(_otsu(sitk.GetImageFromArray(logs))))


# A field of view thinner than this along one axis is a slab: processed slice by slice in 2D.
SLAB_MAX_MM = 64.0


def slab_axis(img_lps: sitk.Image, max_extent_mm: float = SLAB_MAX_MM) -> int | None:
    """Numpy axis (0 = z: axial slab, 1 = y: coronal slab, 2 = x: sagittal slab) along which the
    field of view of an LPS image is thinner than *max_extent_mm* (e.g. 12 sagittal slices of 3 mm,
    or one slice), None for a volume."""
    extent = np.asarray(img_lps.GetSize()) * np.asarray(img_lps.GetSpacing())  # x, y, z
    k = int(np.argmin(extent))
    return 2 - k if extent[k] < max_extent_mm else None


def body_mask(img: sitk.Image, work_spacing_mm: float | None = None, otsu_fraction: float = 0.5) -> sitk.Image:
    """Body foreground (uint8, 1 = body) on *img*'s grid, whatever its orientation.

    The one body/foreground mask of the package (harmonization scale, registration metric
    sampling, the breast region): :func:`body_mask_lps` on the image re-oriented to LPS, at
    *work_spacing_mm* when given (faster; the mask is resampled back, nearest neighbour; a thin
    slab keeps its slice spacing and is processed slice by slice, see :func:`slab_axis`).
    """
    if work_spacing_mm:
        lps, slab = work_image(img, work_spacing_mm)
    else:
        lps = lps_image(img)
        slab = slab_axis(lps)
    out = sitk.GetImageFromArray(body_mask_lps(lps, otsu_fraction, slab=slab).astype(np.uint8))
    out.CopyInformation(lps)
    return resample_to(out, img, sitk.sitkNearestNeighbor)


def work_image(img: sitk.Image, work_spacing_mm: float) -> tuple[sitk.Image, int | None]:
    """The LPS work image and its slab axis: *work_spacing_mm* everywhere, except along a thin
    slab's slice axis, which keeps its own spacing (3 mm slices are not interpolated to 2 mm)."""
    lps = lps_image(img)
    slab = slab_axis(lps)
    if slab is None:
        return resample_to_spacing(lps, work_spacing_mm), None
    spacing = [float(work_spacing_mm)] * 3
    spacing[2 - slab] = float(lps.GetSpacing()[2 - slab])
    return resample_to(lps, isotropic_grid(lps, tuple(spacing))), slab
