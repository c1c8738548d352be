"""Two touching tumors without a neck, told apart by their own enhancement (:mod:`.evidence`, split).

The split of :mod:`.evidence` divides a baseline lesion between the two lesions of its track at a later
visit only where the lesion has a neck between them: a tumor that was whole and broke up under treatment
has none and must stay one lesion. A small tumor embedded in a larger one has no neck either, yet it is a
second tumor: a tumor takes up contrast at its own rate, so the early percent enhancement (PE) of the
baseline changes at the border between the two, and is alike on both sides of a slab cut through one tumor.

:func:`kinetic_parts` divides the lesion by a watershed of the gradient of the baseline's early-PE map
(smoothed), seeded by the two later lesions brought into the baseline frame, and keeps the division only
when the baseline's PE where the two later lesions lie (inside each tumor: a shrinking tumor keeps its centre,
away from the border between the two and from the lesion's edge, so without partial volume) has medians that
differ by at least ``kinetic_pe_diff`` of the larger one **and** by at least ``kinetic_spread`` times their own
spread (the mean of the two median absolute deviations): two populations, not one heterogeneous tumor's
texture.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

MIN_SEED_VOXELS = 8  # a later lesion covering fewer baseline voxels: no reliable median, no split


def _padded(mask: np.ndarray, pad: int = 2) -> tuple[slice, ...]:
    """The bounding box of *mask* grown by *pad* voxels (inside the grid)."""
    found = ndimage.find_objects(mask.astype(np.uint8))[0]
    return tuple(slice(max(sl.start - pad, 0), min(sl.stop + pad, n)) for sl, n in zip(found, mask.shape))


def two_seeds(lesion: np.ndarray, seeds: list[np.ndarray]) -> list[np.ndarray] | None:
    """The two largest of *seeds* (bool masks) inside *lesion*, or None when there are not two that reach it."""
    seeds = sorted((s & lesion for s in seeds), key=lambda s: -int(np.count_nonzero(s)))[:2]
    return seeds if len(seeds) == 2 and all(s.any() for s in seeds) else None


def _mad(x: np.ndarray) -> float:
    return float(np.median(np.abs(x - np.median(x))))


def kinetic_parts(lesion: np.ndarray, seeds: list[np.ndarray], pe: np.ndarray, spacing_zyx, pe_diff: float,
                  spread: float) -> tuple[np.ndarray | None, dict]:
    """(labels 1..2 over *lesion* (bool, z, y, x) or None, the measurements that decided). *seeds*: the later
    lesions in the baseline frame (the two largest inside the lesion are used), *pe*: the baseline's early-PE
    map (%), same grid."""
    seeds = two_seeds(lesion, seeds)
    info: dict = {}
    if seeds is None:
        return None, info
    box = _padded(lesion)
    sub = lesion[box]
    img = sitk.GetImageFromArray(np.where(sub, pe[box], 0.0).astype(np.float32))
    img.SetSpacing([float(v) for v in np.asarray(spacing_zyx, float)[::-1]])
    sigma = float(np.max(spacing_zyx))
    grad = sitk.GradientMagnitudeRecursiveGaussian(img, sigma)
    markers = np.zeros(sub.shape, np.uint32)
    markers[seeds[1][box]] = 2
    markers[seeds[0][box]] = 1
    mk = sitk.GetImageFromArray(markers)
    mk.CopyInformation(grad)
    ws = sitk.MorphologicalWatershedFromMarkers(grad, mk, markWatershedLine=False, fullyConnected=True)
    parts = sitk.GetArrayFromImage(ws).astype(np.int32)
    parts[~sub] = 0
    a, b = parts == 1, parts == 2
    if not a.any() or not b.any():
        return None, info
    # each tumor's uptake where the later visit still shows it: the later lesions (shrunk towards each tumor's
    # centre) lie inside it, away from the border between the two and from the lesion's edge (partial volume)
    pa, pb = pe[seeds[0]], pe[seeds[1]]
    if min(pa.size, pb.size) < MIN_SEED_VOXELS:
        return None, info
    ma, mb = float(np.median(pa)), float(np.median(pb))
    diff = abs(ma - mb)
    rel = diff / max(abs(ma), abs(mb), 1e-6)
    mad = 0.5 * (_mad(pa) + _mad(pb))
    info = {"pe_medians": (round(ma, 1), round(mb, 1)), "relative_difference": round(rel, 3),
            "difference_over_spread": round(diff / max(mad, 1e-6), 2)}
    if rel < pe_diff or diff < spread * mad:
        return None, info
    out = np.zeros(lesion.shape, np.int32)
    out[box] = parts
    return out, info
