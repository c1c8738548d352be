"""Where the click tests click: the point of a mask farthest from its boundary (the standard
interactive protocol's click), in patient space (LPS, or RAS for Slicer's markups)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def deepest_lps(ph, mask: np.ndarray) -> tuple[float, float, float]:
    """LPS point of *mask* (z, y, x on the phantom's pre-contrast grid) farthest from its boundary."""
    edt = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=ph.exam.pre.GetSpacing()[::-1])[1:-1, 1:-1, 1:-1]
    zyx = np.unravel_index(int(np.argmax(edt)), mask.shape)
    return ph.exam.pre.TransformIndexToPhysicalPoint(tuple(int(v) for v in zyx[::-1]))


def deepest_ras(ph, mask: np.ndarray) -> tuple[float, float, float]:
    """The same point in RAS."""
    x, y, z = deepest_lps(ph, mask)
    return (-x, -y, z)
