"""Small tumors whose whole strong part the vessel opening removed, under the outline's minimum core
(issue 25, ``SMALL_ISLANDS``, off: it failed its development rule, docs/decisions/missed-small-issue25.md).

``ftv-outline`` opens FTV's core with a 2 mm ball (``vessel_radius_mm``) and grows an outline only from a
core of ``OUTLINE_MIN_CORE_ML`` (0.1 mL); the compact islands the opening removed seed the outline
(:mod:`.outline_islands`) only from that size too. A small heterogeneous tumor has too little strong
tissue for that: a tumor of 0.2 mL with 40 % of its voxels at PE >= 70 % (the heterogeneous generators'
share) holds 0.08 mL of strong tissue before FTV's neighbour rule, 0.05 mL after it (development census,
hybrid-axial-irregular 7008: a 0.24 mL tumor, its strong part one compact island of 32 voxels = 0.05 mL,
PE p90 179 %, elongation 1.7, 9.8 mm long, removed whole by the opening: missed).

The minimum is therefore set by the smallest tumor that must be found, not by voxels:
``SMALL_LESION_ML`` (0.2 mL, the acceptance's size) times ``SMALL_CORE_SHARE`` (0.2: the strong share after
the neighbour rule, with margin), so 0.04 mL on every grid (26 voxels at 1.25 x 1.25 x 1 mm, 3 at
2.5 x 2.5 x 2 mm; never under ``ISLAND_MIN_VOXELS``). :func:`small_island_lesions` takes, in the first run's
FTV core *before* its vessel opening, the 26-connected components that

* hold at least that minimum and less than ``OUTLINE_MIN_CORE_ML`` (larger ones are :mod:`.outline_islands`'
  and :mod:`.outline_shells`' work) and touch neither the opened core nor the first outline,
* are marked (PE p90 >= the segmenter's ``outline_island_min_pe``, 125 %: the islands step's own bar),
* are removed entirely by the opening and compact (:func:`~.significance.principal_shapes`: elongation
  <= ``ISLAND_MAX_ELONGATION``, length <= ``ISLAND_MAX_LENGTH_MM``; a vessel is a tube),
* lie deeper than the skin margin (measured from the air, :func:`~.outline_shells.body_of`),

and grows each, with the first run's level, tissue and margin, into an outline from that smaller
minimum (:func:`~.outline.whole_tumor_outline`); the result is added to the first outline. The breast
gate, the minimum lesion size and the false-positive reduction judge it like any other component.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import padded_components
from .ftv import drop_skin_components
from .outline import FULL26, OUTLINE_MIN_CORE_ML
from .outline_shells import body_of, first_run_cores, grown_from
from .seeded import open_and_regrow
from .significance import ISLAND_MAX_ELONGATION, ISLAND_MAX_LENGTH_MM, ISLAND_MIN_VOXELS, principal_shapes

SMALL_ISLANDS = False  # off: failed its development rule (7000-7003: no lesion gained, phantom 7002 +7 FP), missed-small-issue25.md
SMALL_LESION_ML = 0.2  # the smallest tumor that must be found (issue 25's acceptance)
SMALL_CORE_SHARE = 0.2  # ... and the share of it left strong after FTV's neighbour rule


def small_min_ml() -> float:
    """The smallest island (mL) that seeds an outline here: ``SMALL_LESION_ML * SMALL_CORE_SHARE``."""
    return SMALL_LESION_ML * SMALL_CORE_SHARE


def small_seeds(core0: np.ndarray, taken: np.ndarray, pe: np.ndarray, body: np.ndarray, spacing_zyx,
                radius_mm: float, min_pe: float, skin_margin_mm: float) -> tuple[np.ndarray, int]:
    """(seed mask, count): the components of *core0* the module docstring accepts; *taken*: the opened core
    and the first outline (a component touching them is not small-and-lost)."""
    sp = np.asarray(spacing_zyx, float)
    vox_ml = float(np.prod(sp)) / 1000.0
    lo, hi = max(small_min_ml() / vox_ml, ISLAND_MIN_VOXELS), OUTLINE_MIN_CORE_ML / vox_ml
    labels, n = ndimage.label(core0, structure=FULL26)
    seeds = np.zeros(core0.shape, bool)
    if n == 0:
        return seeds, 0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    touched = np.bincount(labels[taken & core0], minlength=n + 1)
    pad = np.ceil(max(radius_mm, skin_margin_mm) / sp).astype(int) + 2
    found = 0
    for lab, box, comp in padded_components(labels, pad):
        if not lo <= sizes[lab] < hi or touched[lab] or float(np.percentile(pe[box][comp], 90)) < min_pe:
            continue
        if open_and_regrow(comp, sp, radius_mm).any():
            continue  # a thick part survives the opening: the first outline's business
        if not all(e <= ISLAND_MAX_ELONGATION and length <= ISLAND_MAX_LENGTH_MM
                   for _, _, e, length in principal_shapes(comp.astype(np.uint8), sp)):
            continue  # tube-like: a vessel
        if skin_margin_mm > 0 and drop_skin_components(comp.copy(), body[box], sp, skin_margin_mm):
            continue  # within the skin margin (nipple, skin)
        seeds[box] |= comp
        found += 1
    return seeds, found


def small_island_lesions(exam, roi_mask: np.ndarray, res, settings, maps,
                         enabled: bool | None = None) -> tuple[np.ndarray, list[str]]:
    """(voxels to add to ``res.outline``, notes) for the first FTV run *res* (with an outline) of *exam* inside
    *roi_mask*; *settings* its :class:`~.ftv.FTVSettings`, *maps* its kinetic maps. Nothing when off
    (*enabled*, default :data:`SMALL_ISLANDS`) or without the vessel opening."""
    s = settings
    if not (SMALL_ISLANDS if enabled is None else enabled) or s.vessel_radius_mm <= 0 or res.outline is None:
        return np.zeros(roi_mask.shape, bool), []
    sp, pe, valid, ser, tissue, core0 = first_run_cores(exam, roi_mask, res, s, maps)
    outline = sitk.GetArrayViewFromImage(res.outline) > 0
    taken = (sitk.GetArrayViewFromImage(res.mask) > 0) | outline
    seeds, found = small_seeds(core0, taken, pe, body_of(valid), sp, s.vessel_radius_mm,
                               s.outline_island_min_pe or 125.0, s.skin_margin_mm)
    if not found:
        return np.zeros(core0.shape, bool), []
    added = grown_from(seeds, tissue, pe, ser, sp, res, s, small_min_ml()) & ~outline
    return added, [f"{found} small compact strong island(s) of >= {small_min_ml():g} mL that the vessel opening removed "
                   f"outlined: {int(np.count_nonzero(added))} voxels added (kinetics/small_islands.py)"]
