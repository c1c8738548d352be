"""Lateral breast tissue in front of the chest-wall muscle, from the pre-contrast image.

The classical breast region (:mod:`.breast_region`) ends at one flat chest-wall level per axial
slice, taken at the skin over the sternum. The chest wall curves back with the side of the chest,
so lateral breast tissue (towards the axilla) lies behind that level and is never searched. A wrap
of fixed depth under the skin reaches it, but also the pectoral muscle and, where the chest wall is
thin, the heart (issue 25). This module bounds the wrap by tissue instead of by depth:

1. Skin depth (:func:`skin_depth`): per axial slice, the distance of every body voxel from the air
   outside the skin (what of the background connects to the air in front of the body; a lung that
   a cut field of view leaves open is not air).
2. Fat level (:func:`fat_level`): the most frequent (log) intensity of the smoothed pre-contrast
   image under the skin of the side of the chest (``FAT_DEPTH_MM`` below the skin): subcutaneous
   fat, bright without fat suppression and dark with it.
3. Fat-like tissue: smoothed intensity within a factor ``1 + tolerance`` of the fat level (either
   way). Muscle is darker than fat without fat suppression (0.25-0.6 of it) and brighter than the
   suppressed fat with it; glandular tissue may be either, which does not matter below.
4. In front of the muscle (:func:`in_front_of_muscle`): per axial slice, the fat-like voxels of the
   wrap zone connected to the skin, with the cavities they
   enclose with the region found so far (glandular tissue, a tumor; up to ``MAX_HOLE_MM2`` per
   slice) and concavities up to ``close_mm`` filled; only what touches that region (in 3D) is kept.
   The muscle sheet is
   not fat-like and is continuous, so nothing behind it (ribs, lungs, heart, mediastinal fat) is
   reached.

The breast region (:func:`.breast_region.breast_region` ``tissue_wrap_mm``) takes the wrap zone behind
its sternum-level limit and lateral of the breasts' bulges, measures the fat level beside the breasts
(the fat nearest the breast coil: the dim side of the chest of a real exam is not taken for fat) and
keeps only what touches the breast region in 3D.

Everything here works on the LPS work grid of :func:`.body.work_image` ((z, y, x) arrays: superior,
posterior, left) and on axial slices only: a sagittal or coronal slab has no wrap.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

WRAP_DEPTH_MM = 30.0  # the wrap zone: body within this depth of the skin (when the wrap is on)
FAT_DEPTH_MM = (3.0, 12.0)  # under the skin: where the fat level is measured
FAT_TOLERANCE = 0.25  # fat-like: within a factor 1.25 of the fat level, either way
CLOSE_MM = 4.0  # concavities of the fat-like region filled (a tumor against the muscle)
# Cavities filled up to this area per axial slice (a tumor or a glandular island, not the heart
# that fat-like mediastinal fat may enclose where the muscle looks like fat).
MAX_HOLE_MM2 = 1500.0


def _fill_small_holes(mask: np.ndarray, max_voxels: int) -> np.ndarray:
    """*mask* (2D) with its enclosed holes of at most *max_voxels* voxels filled."""
    holes = ndimage.binary_fill_holes(mask) & ~mask
    lab, n = ndimage.label(holes)
    if n == 0:
        return mask
    small = np.flatnonzero(np.bincount(lab.ravel())[1:] <= max_voxels) + 1
    return mask | np.isin(lab, small)


def skin_depth(body: np.ndarray, fov: np.ndarray, spacing_yx: tuple[float, float]) -> np.ndarray:
    """Float (y, x) of one axial slice: mm from the air outside the skin for every voxel (0 in that
    air). The air is what of the background *fov* covers and connects to the air in front of the
    body (never a lung that a cut field of view leaves open); the array border is no air."""
    air, _ = ndimage.label(~body & fov)
    outside = np.isin(air, np.setdiff1d(air[~np.maximum.accumulate(body, axis=0)], [0]))
    if not outside.any():
        return np.full(body.shape, np.inf)
    return ndimage.distance_transform_edt(~outside, sampling=spacing_yx)


def fat_level(smooth: np.ndarray, near_skin: np.ndarray) -> float | None:
    """The subcutaneous fat's intensity: the mode of the log intensity of *smooth* over the voxels
    *near_skin* (None when fewer than 50 or not positive)."""
    vals = smooth[near_skin]
    vals = vals[vals > 0]
    if vals.size < 50:
        return None
    logs = np.log(vals)
    hist, edges = np.histogram(logs, bins=64)
    hist = ndimage.uniform_filter1d(hist.astype(float), 3)
    k = int(np.argmax(hist))
    return float(np.exp(0.5 * (edges[k] + edges[k + 1])))


def _grow(passable: np.ndarray, start: np.ndarray, seed: np.ndarray, zone: np.ndarray, disk: np.ndarray,
          max_hole: int) -> np.ndarray:
    """2D: the components of *passable* | *start* that touch *start*, with the small cavities they
    enclose with *seed* and concavities of *disk*'s size filled, within *zone*."""
    lab, n = ndimage.label(passable | start)
    if n == 0:
        return np.zeros_like(zone)
    anchors = np.unique(lab[start])
    reached = np.isin(lab, anchors[anchors > 0])
    grown = _fill_small_holes(reached | seed, max_hole)
    r = disk.shape[0] // 2
    grown = ndimage.binary_closing(np.pad(grown, r), structure=disk)[r:-r, r:-r]
    return _fill_small_holes(grown, max_hole) & zone


def in_front_of_muscle(work: sitk.Image, zone: np.ndarray, seed: np.ndarray, depth: np.ndarray,
                       tolerance: float = FAT_TOLERANCE, close_mm: float = CLOSE_MM,
                       fat_zone: np.ndarray | None = None) -> np.ndarray:
    """Bool (z, y, x): the voxels of the wrap *zone* in front of the chest-wall muscle (module
    docstring, step 4). *seed*: the breast region found so far (the sternum rule); *depth*: mm
    under the skin (:func:`skin_depth`, per slice); *fat_zone*: where the fat level is measured
    (default *zone*; the breast region uses the whole zone beside the breasts, where the fat lies
    nearest the coil, so that dim tissue of the side of the chest is not taken for fat). Empty when
    no fat level can be measured."""
    sx, sy = work.GetSpacing()[:2]
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(work, 1.5))
    lo, hi = FAT_DEPTH_MM
    level = fat_level(smooth, (zone if fat_zone is None else fat_zone) & (depth >= lo) & (depth <= hi))
    out = np.zeros_like(zone)
    if level is None:
        return out
    fat = (smooth >= level / (1.0 + tolerance)) & (smooth <= level * (1.0 + tolerance))
    skin = zone & (depth <= lo + 1.0)
    r = max(1, int(round(close_mm / min(sx, sy))))
    yy, xx = np.ogrid[-r:r + 1, -r:r + 1]
    disk = (yy * sy / close_mm) ** 2 + (xx * sx / close_mm) ** 2 <= 1.0
    max_hole = int(MAX_HOLE_MM2 / (sx * sy))
    for z in np.nonzero(zone.any(axis=(1, 2)))[0]:
        # Grown from the skin only: the sternum rule's region may hold muscle (its margin), through
        # which the growth would reach the fat behind the chest wall. It closes cavities, though.
        out[z] = _grow(fat[z] & zone[z], skin[z], seed[z], zone[z], disk, max_hole)
    # Lateral breast tissue continues the breast: islands that do not touch the region found so far
    # (e.g. where the dark chest of a real exam lets "skin" reach deep inside) are not kept.
    lab, n = ndimage.label(out | seed)
    if n:
        touching = np.unique(lab[seed])
        out &= np.isin(lab, touching[touching > 0])
    return out
