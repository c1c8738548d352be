"""Segmentation metrics (spacing-aware, in mm and mL).

Empty masks: Dice of two empty masks is 1.0 (perfect agreement that there is nothing);
surface distances involving an empty mask are ``nan``.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def _bool(mask) -> np.ndarray:
    if isinstance(mask, sitk.Image):
        mask = sitk.GetArrayViewFromImage(mask)
    return np.asarray(mask) > 0


def dice(a, b) -> float:
    """Dice coefficient of two binary masks (images or arrays of the same shape)."""
    a, b = _bool(a), _bool(b)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    s = int(a.sum()) + int(b.sum())
    if s == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / s
