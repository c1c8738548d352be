"""Small synthetic exams of a lesion and an enhancing vessel, shared by the false-positive-reduction
tests (test_fpreduce, test_fpreduce_small_split, test_fprescue): millimetre coordinates, a straight
tube, and DCE phases in which the vessel enhances more than the lesion."""
from __future__ import annotations

import numpy as np

# relative enhancement per phase (times 0, 1.5, 3, 6 min): the lesion washes out, the vessel more so
CURVES = {"lesion": [0, 1.3, 1.2, 1.0], "vessel": [0, 2.5, 2.0, 1.6]}


def coords(size, spacing):
    """x, y, z (mm) of every voxel of a (z, y, x) array of *size* (x, y, z) and *spacing* (x, y, z)."""
    z, y, x = np.meshgrid(*[np.arange(n) * s for n, s in zip(size[::-1], spacing[::-1])], indexing="ij")
    return x, y, z


def tube(x, y, z, a, b, r):
    """Bool: the voxels within *r* mm of the segment from *a* to *b* (mm, x y z)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ab = b - a
    t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / (ab @ ab), 0, 1)
    return (x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (z - a[2] - t * ab[2]) ** 2 <= r * r


def enhancing_phases(lesion, vessel, n_phases: int, rng, image):
    """The *n_phases* DCE phases (``image(array)`` each): pre-contrast 200 with a slight drift, the
    lesion and the vessel enhancing by :data:`CURVES`, Gaussian noise of SD 6 drawn from *rng*."""
    pre = np.full(lesion.shape, 200.0)
    return [image(pre * (1 + 0.05 * k / 3) + pre * (CURVES["lesion"][k] * lesion + CURVES["vessel"][k] * vessel)
                  + rng.normal(0, 6.0, pre.shape)) for k in range(n_phases)]
