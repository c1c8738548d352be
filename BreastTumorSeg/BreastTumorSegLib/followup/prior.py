"""The earlier visits as a prior, as a follow-up reader reads: each known lesion is looked for where it was.

A reader does not read a later exam blind: for every lesion already known, they look at the place it
was (brought into the later exam by the registration) and call it *gone* only when nothing enhancing
is left there; a lesion that shrank is still there, smaller, and the pieces of a lesion that broke up
are that lesion's fragments.

* :func:`neighbourhoods` - the *extent* of every known lesion: its mask(s) in the baseline frame
  grown by ``margin_mm``; a voxel near two lesions belongs to the nearer one (label map, baseline grid).
* :func:`find_remnants` - in a later visit, the enhancing tissue (the visit's I-SPY FTV mask: the same
  PE/SER thresholds and fat-suppression decision at every visit) inside a known lesion's extent that
  the segmentation left out (too small for its minimum lesion size, or opened away as a thin
  structure): every such piece of at least ``min_remnant_ml`` and more than one voxel thick (it
  survives an erosion by one voxel: a one-voxel rim where the lesion's edge was, or a thin vessel, is
  not tumor left), not touching a segmented lesion, is added to the visit's lesions. Nothing outside the extents is added, so a new lesion still has to
  be found by the segmentation.
* :mod:`.match` then gives every lesion lying in a known lesion's extent to that lesion's track
  (``extents``), so a lesion is paired by where it is, and only a lesion outside every extent starts
  a new track.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import from_array


@dataclass(frozen=True)
class PriorSettings:
    enabled: bool = True
    margin_mm: float = 5.0  # a known lesion's extent: its mask grown by this much
    min_remnant_ml: float = 0.01  # smaller enhancing pieces in an extent are noise, not tumor left
    look_back: bool = True  # a lesion first seen later is looked for in the baseline (:mod:`.lookback`)
    lookback_grow_mm: float = 10.0  # ... the enhancing tissue found grows at most this far from it
    # ... only when at least this share of the later lesion's own place enhances at the baseline: enhancing
    # tissue merely near a new lesion (background enhancement) does not make it old. 0.3 chosen on 27
    # development series (seeds 6000-6014): matching 52/64 -> 53/64, RECIST 32/41 -> 33/41.
    lookback_min_cover: float = 0.3


def neighbourhoods(labels: np.ndarray, spacing_zyx, margin_mm: float) -> np.ndarray:
    """*labels* (z, y, x ints, 0 = background) grown by *margin_mm*, each voxel to its nearest label."""
    out = np.zeros_like(labels)
    if not labels.any() or margin_mm < 0:
        return out
    pad = [int(np.ceil(margin_mm / s)) + 1 for s in spacing_zyx]
    lo = np.maximum(np.argwhere(labels).min(0) - pad, 0)
    hi = np.minimum(np.argwhere(labels).max(0) + 1 + pad, labels.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    sub = labels[box]
    dist, idx = ndimage.distance_transform_edt(sub == 0, sampling=spacing_zyx, return_indices=True)
    grown = sub[tuple(idx)]
    grown[dist > margin_mm] = 0
    out[box] = grown
    return out


def to_visit_grid(extent: np.ndarray, baseline: sitk.Image, visit: sitk.Image,
                  to_visit: sitk.Transform | None) -> np.ndarray:
    """A baseline-grid label map (z, y, x) on *visit*'s grid (*to_visit*: baseline point -> visit point)."""
    img = sitk.GetImageFromArray(extent.astype(np.uint16))
    img.CopyInformation(baseline)
    tx = to_visit.GetInverse() if to_visit is not None else sitk.Transform()
    return sitk.GetArrayFromImage(sitk.Resample(img, visit, tx, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16))


def labels_like(labels: np.ndarray, like: sitk.Image) -> sitk.Image:
    """Label image of *labels* (z, y, x ints) with the geometry and pixel type of label image *like*."""
    return sitk.Cast(from_array(labels.astype(np.uint32), like), like.GetPixelID())


def is_tissue(piece: np.ndarray, vox_ml: float, settings: PriorSettings, n_voxels: int | None = None) -> bool:
    """Is an enhancing *piece* (bool mask) tissue worth adding: at least ``min_remnant_ml`` and more
    than one voxel thick (it survives an erosion by one voxel: not a rim or a thread)?"""
    n = int(np.count_nonzero(piece)) if n_voxels is None else int(n_voxels)
    return n * vox_ml >= settings.min_remnant_ml and bool(
        ndimage.binary_erosion(piece, ndimage.generate_binary_structure(3, 1)).any())


def find_remnants(components: sitk.Image, enhancing: sitk.Image, extent_visit: np.ndarray,
                  settings: PriorSettings) -> tuple[sitk.Image, int]:
    """*components* (labels 1..N, the visit's grid) with the enhancing pieces the segmentation left out
    inside the known lesions' extents added as labels N+1...; returns it and the number added."""
    comp = sitk.GetArrayFromImage(components).astype(np.int32)
    enh = sitk.GetArrayViewFromImage(enhancing) > 0
    candidate = enh & (extent_visit > 0) & (comp == 0)
    if not candidate.any():
        return components, 0
    pieces, n = ndimage.label(candidate, structure=np.ones((3, 3, 3), bool))
    touching = set(np.unique(pieces[ndimage.binary_dilation(comp > 0, np.ones((3, 3, 3), bool)) & candidate]))
    vox_ml = float(np.prod(components.GetSpacing())) / 1000.0
    sizes = np.bincount(pieces.ravel(), minlength=n + 1)
    label, added = int(comp.max()), 0
    for p in range(1, n + 1):
        if p in touching or not is_tissue(pieces == p, vox_ml, settings, sizes[p]):
            continue
        label += 1
        added += 1
        comp[pieces == p] = label
    if not added:
        return components, 0
    return labels_like(comp, components), added
