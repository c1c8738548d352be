"""Distances inside and around a lesion mask, in mm, for the lesion-level decisions
(:mod:`.fpreduce`'s component features and vessel split, :mod:`.fprescue`'s second look)."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import from_array


def depth_mm(mask: sitk.Image) -> np.ndarray:
    """Distance (mm) of every voxel of *mask* to the nearest voxel outside it (0 outside), holes
    filled first (a ring-enhancing lesion is as thick as its outline)."""
    filled = sitk.GetArrayFromImage(sitk.BinaryFillhole(mask, fullyConnected=True)) > 0
    return ndimage.distance_transform_edt(filled, sampling=list(mask.GetSpacing())[::-1]).astype(np.float32)


def distance_from_mm(mask: np.ndarray, like: sitk.Image) -> np.ndarray:
    """Distance (mm) of every voxel to the nearest voxel of *mask* (a boolean array on *like*'s grid);
    zero or negative inside it."""
    f = sitk.SignedMaurerDistanceMapImageFilter()
    f.SetInsideIsPositive(False)
    f.SetUseImageSpacing(True)
    f.SetSquaredDistance(False)
    f.SetNumberOfThreads(1)
    return sitk.GetArrayFromImage(f.Execute(from_array(mask.astype(np.uint8), like)))
