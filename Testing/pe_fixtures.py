"""DCE phases drawn from a percent-enhancement map, for the small outline tests
(test_outline_beyond, test_beside_region): the pre-contrast signal, then every post-contrast phase
at ``pre * (1 + pe)`` (a plateau), each with its own Gaussian noise."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def plateau_phases(pe: np.ndarray, n_phases: int, rng, spacing, pre: float = 100.0, sigma: float = 2.0):
    """*n_phases* float32 images (z, y, x arrays of *pe*'s shape, *spacing* x y z mm); the noise of
    phase k is drawn from *rng* in phase order."""
    phases = []
    for k in range(n_phases):
        a = pre * (1 + pe * (0.0 if k == 0 else 1.0)) + rng.normal(0, sigma, pe.shape)
        im = sitk.GetImageFromArray(a.astype(np.float32))
        im.SetSpacing(spacing)
        phases.append(im)
    return phases
