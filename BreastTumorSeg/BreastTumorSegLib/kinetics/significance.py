"""Outline seeds that survive low SNR and the vessel opening (used by :mod:`.ftv` for "ftv-outline").

Two options of :class:`~.ftv.FTVSettings`, both for the whole-tumor outline only (the I-SPY FTV
mask and ``ftv_ml`` never change):

1. **Significance instead of the noise floor** (``outline_significance``). Without fat suppression
   FTV drops every voxel whose pre-contrast signal is below the noise floor
   ``noise_z * 100 * sd / pe_threshold`` (``sd``: robust SD of ``S_early - S_pre``), because a
   single voxel's PE is noise there. In a low-SNR exam that floor can sit above a whole tumor's
   signal (a tumor at 4 sd of the difference noise loses half its voxels and, with them, its
   core). A tumor is many voxels: averaged over a small neighbourhood (:func:`neighbourhood`, 3
   voxels along every axis of at most ``NEIGHBOURHOOD_MAX_MM``, else 1) PE is far less noisy.
   The same floor is applied to the local means, with the SD of the *local-mean* difference
   measured on the exam itself (a median absolute deviation over the ROI, so spatially correlated
   noise and texture make it larger, never smaller): ``mean(S_pre) >= noise_z * 100 * sd_local /
   pe_threshold``. A voxel below the FTV floor then counts as tissue when its neighbourhood
   passes; it is strongly enhancing (an outline seed) when its local-mean PE also reaches
   ``pe_threshold`` (and the usual neighbour, SER, vessel and skin rules follow; a new core
   component of less than ``OUTLINE_MIN_CORE_ML`` that touches no FTV core is left out), and it may be
   grown into when its own and its local-mean PE reach the outline's level. A lone noisy voxel
   among dark ones does not pass: its neighbours' mean is not significant.
2. **Compact islands** (``outline_compact_islands``). The 2 mm vessel opening of the core removes
   every strongly enhancing structure thinner than 4 mm: vessels, but also the small strong
   islands of a heterogeneous tumor, and with them the tumor. Whether a structure is a vessel is
   a matter of shape, not of size: a component of the unopened core that the opening removed
   entirely is kept as an outline seed when it holds at least ``ISLAND_MIN_VOXELS`` voxels and is
   not tube-like (:func:`compact_islands`: elongation of its principal axes at most
   ``ISLAND_MAX_ELONGATION`` and its equivalent ellipsoid's longest axis at most
   ``ISLAND_MAX_LENGTH_MM``). Off by default: on development seeds 7000-7009 of the ``phantom``
   family the background enhancement is full of such islands (seed 7002: 47 -> 96 false-positive
   lesions). With option 1 it rescued one more tumor there (``vessels`` seed 7009, Dice 0 -> 0.54);
   ``heterogeneous`` seed 7001, whose strong islands it keeps, lies within 6 mm of the skin and goes
   with the segmenter's skin rule anyway.

Both are measured in the README ("Where ftv-outline still loses the tumor").
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .outline import OUTLINE_MIN_CORE_ML, bbox
from .seeded import open_and_regrow

NEIGHBOURHOOD_MAX_MM = 2.5  # axes with finer spacing are averaged over 3 voxels
ISLAND_MIN_VOXELS = 4
ISLAND_MAX_ELONGATION = 2.0
ISLAND_MAX_LENGTH_MM = 12.0


def neighbourhood(spacing_zyx) -> tuple[int, ...]:
    """Box size per axis (z, y, x) of the local mean: 3 where the spacing is at most
    ``NEIGHBOURHOOD_MAX_MM``, else 1 (thick slices are not averaged across)."""
    return tuple(3 if float(s) <= NEIGHBOURHOOD_MAX_MM else 1 for s in spacing_zyx)


def difference_noise(pre: np.ndarray, post: np.ndarray, region: np.ndarray) -> float | None:
    """Robust SD of (post - pre) in *region*, ignoring exact zeros (zero-filled air) in either phase.

    The median absolute deviation is insensitive to the few enhancing voxels, and zero-filled
    background cannot pull it to 0 or the scale of the signal.
    """
    sel = region & (pre > 0)
    sel &= post > 0
    if np.count_nonzero(sel) < 50:
        return None
    # In place, the same values as ``np.median(np.abs(d - np.median(d)))`` of ``post[sel].astype(float64) - pre[sel]``:
    # the same float64 subtraction and absolute value elementwise, and a median read from the same order statistics
    # whether it sorts a copy or the array itself (the deviations are not needed after it).
    d = post[sel].astype(np.float64)
    d -= pre[sel]
    d -= np.median(d)
    np.abs(d, out=d)
    return 1.4826 * float(np.median(d, overwrite_input=True))


def significant_tissue(pre: np.ndarray, early: np.ndarray, region: np.ndarray, spacing_zyx, base: float,
                       noise_z: float, pe_threshold: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """(tissue, local-mean PE, info): the voxels of *region* whose local-mean pre-contrast signal
    reaches the larger of *base* (the exam's other background condition, e.g. 0.2 x p95) and the
    noise floor of the local means (option 1 of the module docstring). *info* holds the SD of the
    local-mean difference and that floor (JSON ready)."""
    size = neighbourhood(spacing_zyx)
    pre_m = ndimage.uniform_filter(pre.astype(np.float32, copy=False), size=size, mode="nearest")
    early_m = ndimage.uniform_filter(early.astype(np.float32, copy=False), size=size, mode="nearest")
    sd = difference_noise(pre_m, early_m, region)
    pe_m = np.float32(100.0) * (early_m - pre_m) / np.maximum(pre_m, np.float32(1e-6))
    if sd is None:
        return np.zeros(region.shape, bool), pe_m, {"neighbourhood": list(size), "sd_local": None}
    floor = noise_z * 100.0 * sd / max(pe_threshold, 1e-6)
    tissue = region & (pre_m >= np.float32(max(floor, base)))
    return tissue, pe_m, {"neighbourhood": list(size), "sd_local": float(f"{sd:.6g}"),
                          "noise_floor_local": float(f"{floor:.6g}")}


def compact_islands(strong: np.ndarray, opened: np.ndarray, spacing_zyx) -> np.ndarray:
    """The 26-connected components of *strong* without a voxel in *opened* that are compact
    (option 2 of the module docstring): at least ``ISLAND_MIN_VOXELS`` voxels, elongation at most
    ``ISLAND_MAX_ELONGATION`` and equivalent-ellipsoid length at most ``ISLAND_MAX_LENGTH_MM``."""
    gone = strong & ~opened
    labels, n = ndimage.label(strong, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return np.zeros(strong.shape, bool)
    touched = np.bincount(labels[opened & strong], minlength=n + 1) > 0
    cand = np.zeros(n + 1, bool)
    cand[np.unique(labels[gone])] = True
    cand &= ~touched
    cand[0] = False
    if not cand.any():
        return np.zeros(strong.shape, bool)
    ok = np.zeros(n + 1, bool)
    for lab, voxels, elong, length in principal_shapes(np.where(cand[labels], labels, 0), spacing_zyx):
        if voxels >= ISLAND_MIN_VOXELS and elong <= ISLAND_MAX_ELONGATION and length <= ISLAND_MAX_LENGTH_MM:
            ok[lab] = True
    return ok[labels]


def principal_shapes(labels: np.ndarray, spacing_zyx):
    """(label, voxels, elongation, length mm) of every label > 0 of *labels*: elongation from the
    principal variances (mm^2) plus a voxel's own (s^2 / 12; a one-voxel-thin line is not round), length
    the equivalent ellipsoid's longest axis."""
    img = sitk.GetImageFromArray(labels.astype(np.uint32))
    img.SetSpacing([float(v) for v in np.asarray(spacing_zyx, float)[::-1]])
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.SetNumberOfThreads(1)
    stats.Execute(img)
    voxel_var = float(np.mean(np.asarray(spacing_zyx, float) ** 2)) / 12.0
    for lab in stats.GetLabels():
        lam = np.sort(np.asarray(stats.GetPrincipalMoments(lab), float)) + voxel_var
        yield lab, stats.GetNumberOfPixels(lab), float(np.sqrt(lam[-1] / lam[-2])), 2.0 * float(np.sqrt(5.0 * lam[-1]))


def significant_seeds(pre, early, pe, cand, region, tissue, seeds, grow, level: float, base: float, ser, spacing_zyx,
                      s, info: dict, notes: list, core_rules) -> tuple[np.ndarray, np.ndarray]:
    """(outline seeds, growth mask) with option 1 of the module docstring. *cand*: FTV's
    candidates (rules 1-2), *tissue*: FTV's tissue (rule 1), *seeds* and *grow*: the outline's
    seeds and growth mask so far, *level*: the outline's PE level, *base*: the exam's background
    condition without the noise floor, *s*: :class:`~.ftv.FTVSettings`, *core_rules*: FTV's
    rules 3-4, vessel opening and skin rule as a function of candidates. *info* gets the noise
    figures under ``"significance"``, *notes* a line."""
    sig, pe_m, figures = significant_tissue(pre, early, region, spacing_zyx, base, s.noise_z, s.pe_threshold)
    info["significance"] = figures
    extra = sig & ~tissue
    if not extra.any():
        return seeds, grow
    core = core_rules(cand | (extra & (pe_m >= np.float32(s.pe_threshold))))
    core = _large_or_touching(core, seeds, spacing_zyx)
    if s.outline_seed_max_elongation > 0:
        core = _not_tubes(core, seeds, spacing_zyx, s.outline_seed_max_elongation)
    more_grow = extra & (pe >= np.float32(level)) & (pe_m >= np.float32(level))
    if ser is not None:
        more_grow &= ser >= np.float32(s.ser_min)
    added = int(np.count_nonzero(core & ~seeds))
    notes.append(f"outline seeds below the noise floor: {int(np.count_nonzero(extra))} voxels whose "
                 f"{'x'.join(map(str, figures['neighbourhood']))} neighbourhood mean passes the noise floor of the "
                 f"local means ({figures.get('noise_floor_local')}) count as tissue; {added} more strongly "
                 "enhancing voxels seed the outline (outline_significance)")
    return seeds | core, grow | more_grow


def island_seeds(strong: np.ndarray, seeds: np.ndarray, spacing_zyx, radius_mm: float, notes: list) -> np.ndarray:
    """The compact islands of *strong* (FTV's core before its vessel opening) that the opening by
    *radius_mm* removed (option 2 of the module docstring; :func:`compact_islands`)."""
    out = np.zeros(strong.shape, bool)
    box = bbox(strong)
    if box is None:
        return out
    opened = open_and_regrow(strong[box], np.asarray(spacing_zyx, float), radius_mm)
    out[box] = compact_islands(strong[box], opened, spacing_zyx)
    n = int(np.count_nonzero(out & ~seeds))
    if n:
        notes.append(f"{n} voxels of compact strongly enhancing islands thinner than the vessel ball kept as "
                     "outline seeds (outline_compact_islands)")
    return out


def _large_or_touching(core: np.ndarray, seeds: np.ndarray, spacing_zyx) -> np.ndarray:
    """The 26-connected components of *core* holding a voxel of *seeds* or at least
    ``OUTLINE_MIN_CORE_ML`` (an outline grows from no smaller core: a smaller new one is a speck)."""
    labels, n = ndimage.label(core, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return core
    ml = np.bincount(labels.ravel(), minlength=n + 1) * float(np.prod(spacing_zyx)) / 1000.0
    ok = (ml >= OUTLINE_MIN_CORE_ML) | (np.bincount(labels[seeds], minlength=n + 1) > 0)
    ok[0] = False
    return ok[labels]


def _not_tubes(core: np.ndarray, seeds: np.ndarray, spacing_zyx, max_elongation: float) -> np.ndarray:
    """*core* without its new 26-connected components (holding no voxel of *seeds*) whose
    principal-axis elongation (variances plus a voxel's own, s^2 / 12) exceeds *max_elongation*:
    a tube below FTV's noise floor is a vessel, not a tumor's core (``outline_seed_max_elongation``)."""
    labels, n = ndimage.label(core, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return core
    new = np.bincount(labels[seeds & core], minlength=n + 1) == 0
    new[0] = False
    if not new.any():
        return core
    drop = np.zeros(n + 1, bool)
    for lab, _, elong, _ in principal_shapes(np.where(new[labels], labels, 0), spacing_zyx):
        drop[lab] = elong > max_elongation
    return core & ~drop[labels]
