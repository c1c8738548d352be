"""Small helpers around SimpleITK images: geometry comparison, resampling, array round trips.

Arrays cross module borders only together with the image that gives them a geometry;
``like`` arguments below say which image that is.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.sparse.csgraph import connected_components

# Two grids that differ by less than this (mm, or unitless for direction cosines) are the same grid.
GEOMETRY_TOLERANCE = 1e-3


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = GEOMETRY_TOLERANCE) -> bool:
    """True when *a* and *b* share size, spacing, origin and direction."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def describe_grid(img: sitk.Image) -> str:
    sp = ", ".join(f"{s:.3g}" for s in img.GetSpacing())
    og = ", ".join(f"{o:.1f}" for o in img.GetOrigin())
    return f"size {img.GetSize()}, spacing ({sp}) mm, origin ({og})"


def from_array(arr: np.ndarray, like: sitk.Image) -> sitk.Image:
    """Image from a (z, y, x) array with the geometry of *like*."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    if img.GetSize() != like.GetSize():
        raise ValueError(f"array of shape {arr.shape} does not match image size {like.GetSize()}")
    img.CopyInformation(like)
    return img


def cast_once(img: sitk.Image, pixel_id: int) -> sitk.Image:
    """*img* as pixel type *pixel_id*: ``sitk.Cast`` when the type differs, *img* itself when it is that type already
    (a cast to its own type is a copy of the same voxels and geometry)."""
    return img if img.GetPixelID() == pixel_id else sitk.Cast(img, pixel_id)


def resample_to(img: sitk.Image, reference: sitk.Image, interpolator=sitk.sitkLinear,
                default: float = 0.0, transform: sitk.Transform | None = None) -> sitk.Image:
    """Resample *img* onto the grid of *reference* (optionally through *transform*)."""
    return sitk.Resample(img, reference, transform or sitk.Transform(), interpolator, default,
                         img.GetPixelID())


def isotropic_grid(img: sitk.Image, spacing: float | tuple[float, float, float]) -> sitk.Image:
    """An empty image covering the same physical box as *img* at the given spacing.

    The direction matrix is kept, so the new grid is aligned with the acquisition axes
    (no rotation of the data, only a change of voxel size).
    """
    new_spacing = np.broadcast_to(np.asarray(spacing, dtype=float), (3,))
    old_size = np.asarray(img.GetSize(), dtype=float)
    old_spacing = np.asarray(img.GetSpacing(), dtype=float)
    extent = old_size * old_spacing
    new_size = np.maximum(1, np.round(extent / new_spacing)).astype(int)
    # Keep the physical centre of the box: origin is the centre of the first voxel.
    direction = np.asarray(img.GetDirection()).reshape(3, 3)
    first_corner = np.asarray(img.GetOrigin()) - direction @ (old_spacing / 2)
    new_origin = first_corner + direction @ (new_spacing / 2)
    grid = sitk.Image([int(s) for s in new_size], sitk.sitkUInt8)
    grid.SetSpacing(tuple(float(s) for s in new_spacing))
    grid.SetDirection(img.GetDirection())
    grid.SetOrigin(tuple(float(o) for o in new_origin))
    return grid


def resample_to_spacing(img: sitk.Image, spacing, interpolator=sitk.sitkLinear) -> sitk.Image:
    return resample_to(img, isotropic_grid(img, spacing), interpolator)


def voxel_volume_ml(img: sitk.Image) -> float:
    return float(np.prod(img.GetSpacing())) / 1000.0


def padded_components(labels: np.ndarray, pad=0):
    """Each labelled component of *labels* as ``(label, box, mask)``: its bounding box grown by
    *pad* voxels on every side (an int, or one per axis; clipped to the array) and the component's
    mask inside that box. With ``pad=0`` the box is the component's own bounding box."""
    pads = np.broadcast_to(np.asarray(pad, dtype=int), (labels.ndim,))
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        box = tuple(slice(max(b.start - int(p), 0), min(b.stop + int(p), n)) for b, p, n in zip(sl, pads, labels.shape))
        yield lab, box, labels[box] == lab


def labels_in_box(mask: np.ndarray, structure=None) -> tuple[np.ndarray, int]:
    """``ndimage.label(mask, structure)``, labelled only in the bounding box of *mask*'s nonzero voxels: the same
    labels and count (every component lies in the box, and a raster scan of the box meets them in the same order as
    one of the whole array, so each keeps its number; outside the box all is 0), the same dtype. A sparse mask on
    the whole exam grid (the first run's seeds or cores) is labelled in a small part of it."""
    box = []
    for axis in range(mask.ndim):
        nz = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if nz.size == 0:
            return ndimage.label(mask, structure=structure)
        box.append(slice(int(nz[0]), int(nz[-1]) + 1))
    part, n = ndimage.label(mask[tuple(box)], structure=structure)
    labels = np.zeros(mask.shape, part.dtype)
    labels[tuple(box)] = part
    return labels, n


def component_parts(core: np.ndarray, spacing_zyx, pad_mm: float) -> list[tuple[slice, ...]]:
    """Boxes (in *core*'s array) that hold every 26-connected component of *core* grown by *pad_mm* as
    :func:`..kinetics.beside_region.band_box` grows a box (clipped to the array), boxes that overlap or touch merged
    until any two are at least one voxel apart. Empty when *core* is."""
    labels, n = ndimage.label(core, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return []
    pad = np.ceil(pad_mm / np.asarray(spacing_zyx, float)).astype(int) + 1
    sl = [s for s in ndimage.find_objects(labels) if s is not None]
    lo = np.maximum(np.array([[a.start for a in s] for s in sl]) - pad, 0)
    hi = np.minimum(np.array([[a.stop for a in s] for s in sl]) + pad, core.shape)
    while True:  # join the boxes that overlap or touch, then their joins, until none do
        meet = np.all((lo[:, None, :] <= hi[None, :, :]) & (lo[None, :, :] <= hi[:, None, :]), axis=2)
        k, group = connected_components(meet, directed=False)
        if k == len(lo):
            break
        lo = np.array([lo[group == g].min(axis=0) for g in range(k)])
        hi = np.array([hi[group == g].max(axis=0) for g in range(k)])
    return [tuple(slice(int(a), int(b)) for a, b in zip(l, h)) for l, h in zip(lo, hi)]
