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


# A principal moment below this fraction of the largest is zero: a component one voxel thick
# (all in one slice, or one row) has a zero moment, which rounding in the grid's origin and
# direction turns into +-1e-13 mm^2; ITK's flatness sqrt(m1/m0) then jumps from 0 (its value for
# an exact zero) to ~1e7, and the component's classification with it (development phantom 7000
# read back from NIfTI). A real component two voxels thick has a moment >= 1e-4 of the largest.
DEGENERATE_MOMENT = 1e-8


def elongation_flatness(stats: sitk.LabelShapeStatisticsImageFilter, label: int) -> tuple[float, float]:
    """ITK's elongation sqrt(m2/m1) and flatness sqrt(m1/m0) of *label* (principal moments
    ascending), 0 where the moment below is zero, as ITK has it -- zero up to rounding here."""
    m = np.asarray(stats.GetPrincipalMoments(label), dtype=float)
    zero = DEGENERATE_MOMENT * max(float(m.max()), 0.0)
    elongation = float(np.sqrt(m[2] / m[1])) if m[1] > zero else 0.0
    flatness = float(np.sqrt(m[1] / m[0])) if m[0] > zero else 0.0
    return elongation, flatness
