"""Mask preparation shared by every evaluation metric: binary masks, grids, crops, components, surfaces.

A mask is a SimpleITK image (any pixel type) whose voxels ``> 0`` are foreground. This module
turns masks into what the metrics measure (0/1 images, boolean arrays, connected components with
their Feret diameters, one-voxel-thin surfaces and the distance to them) and refuses pairs of
masks that do not share one voxel grid. :class:`PreparedMask` keeps those derived images so that
one mask compared with many others is prepared once. The metrics themselves are in
:mod:`.metrics` (overlap, size, all at once), :mod:`.surface` (surface distances) and
:mod:`.lesions` (lesion-wise detection, FROC).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..core.imageutil import describe_grid, same_grid


def foreground(mask) -> np.ndarray:
    """Boolean array of the foreground (voxels > 0) of a mask given as an image or an array."""
    if isinstance(mask, sitk.Image):
        mask = sitk.GetArrayViewFromImage(mask)
    return np.asarray(mask) > 0


def binary_mask(mask: sitk.Image) -> sitk.Image:
    """The mask as a uint8 0/1 image (voxels > 0 are foreground) with the same geometry."""
    if not isinstance(mask, sitk.Image):
        raise TypeError(f"expected a SimpleITK image (geometry is needed), got {type(mask).__name__}")
    out = sitk.GetImageFromArray((sitk.GetArrayViewFromImage(mask) > 0).astype(np.uint8))
    out.CopyInformation(mask)
    return out


# Below this many voxels a SimpleITK filter runs faster on one thread than on a thread pool.
SINGLE_THREAD_VOXELS = 1 << 20


def threads_for(f, img: sitk.Image):
    """Run filter *f* single-threaded when *img* is small (lesion-sized crops), else as configured."""
    if img.GetNumberOfPixels() < SINGLE_THREAD_VOXELS:
        f.SetNumberOfThreads(1)
    return f


def crop_to_foreground(*masks: sitk.Image, pad: int = 2) -> list[sitk.Image]:
    """The masks cropped to the bounding box of their union, grown by *pad* voxels.

    Cropping keeps the physical geometry (origin moves with the box), so every metric here gives
    the same value on the crops; it only makes distance maps on large volumes fast. All-empty
    masks are returned unchanged.
    """
    union = np.zeros(sitk.GetArrayViewFromImage(masks[0]).shape, bool)
    for m in masks:
        union |= foreground(m)
    if not union.any():
        return list(masks)
    lo, hi = [], []
    for ax in range(union.ndim):
        other = tuple(i for i in range(union.ndim) if i != ax)
        idx = np.flatnonzero(union.any(axis=other))
        lo.append(max(int(idx[0]) - pad, 0))
        hi.append(min(int(idx[-1]) + pad + 1, union.shape[ax]))
    # numpy (z, y, x) -> SimpleITK (x, y, z) slicing
    box = tuple(slice(lo[ax], hi[ax]) for ax in reversed(range(union.ndim)))
    return [m[box] for m in masks]


def check_same_grid(pred: sitk.Image, ref: sitk.Image, pred_name: str = "prediction",
                    ref_name: str = "reference") -> None:
    """Refuse to compare masks that do not share one voxel grid.

    Resampling one mask onto the other's grid changes the very boundaries being measured, so the
    metrics are only defined on a common grid; the caller must decide how to get there.
    """
    if pred.GetDimension() != ref.GetDimension() or not same_grid(pred, ref):
        raise InputError(
            f"the masks are on different voxel grids: {pred_name} has {describe_grid(pred)}, "
            f"{ref_name} has {describe_grid(ref)}", ref_name,
            f"resample {ref_name} onto the grid of {pred_name} (nearest neighbour, e.g. Slicer's "
            "'Resample Scalar/Vector/DWI Volume' or sitk.Resample) and compare again")


def components(binary: sitk.Image,
               fully_connected: bool = True) -> tuple[np.ndarray, sitk.LabelShapeStatisticsImageFilter]:
    """Connected-component labels (array) and their shape statistics, Feret diameter included."""
    cc = threads_for(sitk.ConnectedComponentImageFilter(), binary)
    cc.SetFullyConnected(fully_connected)
    labels = cc.Execute(binary)
    stats = threads_for(sitk.LabelShapeStatisticsImageFilter(), binary)
    stats.SetComputeFeretDiameter(True)
    stats.Execute(labels)
    return sitk.GetArrayFromImage(labels), stats


def feret_diameters(stats: sitk.LabelShapeStatisticsImageFilter) -> list[float]:
    """Feret diameters (mm) of every labelled component, largest first."""
    return sorted((float(stats.GetFeretDiameter(lab)) for lab in stats.GetLabels()), reverse=True)


def surface_voxels(mask: sitk.Image) -> sitk.Image:
    """Voxels of *mask* with at least one of their 6 face neighbours outside it (uint8 0/1)."""
    return contour(binary_mask(mask))


def contour(binary: sitk.Image) -> sitk.Image:
    """Face-connected inner contour (uint8 0/1) of a 0/1 mask: see :func:`surface_voxels`."""
    f = threads_for(sitk.BinaryContourImageFilter(), binary)
    f.SetFullyConnected(False)
    f.SetBackgroundValue(0)
    f.SetForegroundValue(1)
    return f.Execute(binary)


def distance_to(surface: sitk.Image) -> np.ndarray:
    """Distance (mm) from every voxel to the nearest voxel of a (one voxel thin) surface.

    The Maurer map of the surface image is exact Euclidean distance and zero on the surface
    itself, so its absolute value is the wanted distance inside and outside the mask alike.
    """
    f = threads_for(sitk.SignedMaurerDistanceMapImageFilter(), surface)
    f.SetInsideIsPositive(False)
    f.SetSquaredDistance(False)
    f.SetUseImageSpacing(True)
    f.SetBackgroundValue(0)
    return np.abs(sitk.GetArrayFromImage(f.Execute(surface)))


class PreparedMask:
    """A binary mask plus what every metric derives from it, each computed once on first use.

    Comparing one mask with many others (a reference against every reader and the model) then
    costs one contour, one distance map and one component labelling per mask instead of per
    pair. All masks compared with each other must share one grid (crop them together first with
    :func:`crop_to_foreground` to keep the work proportional to the lesions).
    """

    def __init__(self, mask: sitk.Image, name: str = "mask"):
        self.image = binary_mask(mask)
        self.name = name
        self.array = sitk.GetArrayFromImage(self.image) > 0
        self.count = int(self.array.sum())
        self._surface: np.ndarray | None = None
        self._distance: np.ndarray | None = None
        self._cc = None

    @property
    def surface(self) -> np.ndarray:
        if self._surface is None:
            self._surface = sitk.GetArrayFromImage(contour(self.image)) > 0
        return self._surface

    @property
    def distance(self) -> np.ndarray:
        """Distance (mm) from every voxel to this mask's surface."""
        if self._distance is None:
            surf = sitk.GetImageFromArray(self.surface.astype(np.uint8))
            surf.CopyInformation(self.image)
            self._distance = distance_to(surf)
        return self._distance

    @property
    def components(self):
        if self._cc is None:
            self._cc = components(self.image)
        return self._cc

    @property
    def diameter_mm(self) -> float:
        return (feret_diameters(self.components[1]) or [0.0])[0]
