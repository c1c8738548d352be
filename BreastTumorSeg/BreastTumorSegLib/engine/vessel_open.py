"""What FTV's 2 mm vessel opening took from small tumors, split from the vessels it was joined to (issue 25,
``VESSEL_OPEN``, off: it failed its held-out rule on 5152-5159, found +1 where +2 was asked, phantom median Dice
-0.029, 7 false lesions more from vessel segments cut into compact pieces; docs/decisions/vessel-open-issue25.md).

``ftv-outline`` opens FTV's core (PE >= 70 %, neighbour rule) with a ball of ``vessel_radius_mm`` (2 mm) and grows the
outline only from what survives. The development census of small heterogeneous tumors
(docs/decisions/missed-small-issue25.md) found every missed tumor of the ``hybrid-axial-irregular`` row lost first
there: a strong wall in one long core component with a vessel (the whole component is thin, the opening removes
both), a compact strong island under the outline's 0.1 mL minimum core, and on coarse grids (2.5 x 2.5 x 2 mm) a ball
that is three voxels in a line along z and cuts a compact core into pieces the false-positive classifier calls vessels.

This step works on the first run's core *before* the opening (:func:`..kinetics.outline_shells.first_run_cores`):

1. **Lost components**: the 26-connected components of that core of which the opening (and the skin rule) kept less
   than :data:`KEPT_SHARE` (the opened core, ``FTVResult.mask``).
2. **Split at the narrowest neck** (:func:`split_at_necks`): each is opened once by the smallest cross the grid
   allows (the six face neighbours; on a grid whose slices are more than :data:`THIN_AXIS_FACTOR` times the finest
   spacing, the in-plane four only: never a line along one axis, as the 2 mm ball is on a 2.5 x 2.5 x 2 mm grid); each
   26-connected part of the opened component is a piece, the thin rest (necks, vessels one or two voxels across)
   belongs to none, except what lies within :data:`REGROW_MM` of a piece inside the component. A wall joined to a vessel becomes a wall piece (and a vessel piece where the vessel is three voxels
   across); a component the erosion empties stays whole (a thin island).
3. **Each piece is judged as a tumor seed**: at least :data:`MIN_SEED_ML` and :data:`MIN_SEED_VOXELS`, marked (PE p90
   >= :data:`MIN_P90_PE`, the islands step's bar), compact (elongation <= :data:`MAX_ELONGATION`, length <=
   :data:`MAX_LENGTH_MM`: a vessel piece is a tube), deeper than the skin margin, and touching no component of the
   first outline larger than itself (on development vessels 7008 the pieces of a vessel beside a found tumor were
   compact; a coarse grid's own fragments of the piece are smaller than it).
4. The accepted seeds are grown with the first run's level, tissue and margin into outlines
   (:func:`..kinetics.outline_shells.grown_from`, minimum core = :data:`MIN_SEED_ML`); the voxels outside the first
   outline enter the probability map by the first run's rule (:func:`.near_level.first_run_step`).

The breast gate, the minimum lesion size and the false-positive reduction then judge every component as before.
Only with an FTV outline (``ftv-outline``), never for a reader's ROI or seed. It runs last in ``predict`` and changes
nothing found before it: the probability map only rises where it adds.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import padded_components
from ..kinetics.ftv import drop_skin_components
from ..kinetics.outline import FULL26
from ..kinetics.outline_shells import body_of, first_run_cores, grown_from
from ..kinetics.significance import principal_shapes
from .near_level import first_run_step

# Off: failed the held-out rule of docs/decisions/vessel-open-issue25.md (5152-5159, measured once).
VESSEL_OPEN = False
KEPT_SHARE = 0.5  # a core component of which the opening kept less than this share is "lost"
THIN_AXIS_FACTOR = 2.0  # an axis whose spacing is over this times the finest one is not eroded along
REGROW_MM = 2.0  # each piece grows back this far inside its component (the segmenter's vessel radius)
MIN_SEED_ML = 0.04  # a piece seeds an outline from this volume (0.2 mL tumor x 0.2 strong share)
MIN_SEED_VOXELS = 4  # ... and never from fewer voxels
MIN_P90_PE = 125.0  # marked: the piece's PE p90 at least this (the islands step's bar)
MAX_ELONGATION = 2.0  # compact: sqrt(largest / second principal moment) at most this
MAX_LENGTH_MM = 25.0  # ... and the equivalent ellipsoid's longest axis at most this (a 0.6 mL ball: 13 mm)


def neck_cross(spacing_zyx) -> np.ndarray:
    """The 3 x 3 x 3 cross of the face neighbours along the axes whose spacing is at most
    :data:`THIN_AXIS_FACTOR` times the finest one."""
    sp = np.asarray(spacing_zyx, float)
    st = np.zeros((3, 3, 3), bool)
    st[1, 1, 1] = True
    for ax in range(3):
        if sp[ax] <= THIN_AXIS_FACTOR * sp.min() + 1e-9:
            idx = [1, 1, 1]
            for k in (0, 2):
                idx[ax] = k
                st[tuple(idx)] = True
    return st


def split_at_necks(comp: np.ndarray, spacing_zyx) -> list[np.ndarray]:
    """The pieces of *comp* (boolean, padded by at least one voxel) cut at its narrowest necks (module docstring,
    step 2): the opening of *comp* by :func:`neck_cross` (one erosion, one dilation, inside *comp*), one piece per
    26-connected part, each grown back inside *comp* by :data:`REGROW_MM` (the thin wall of a rim around it, a stub of
    the vessel); the thin rest farther away (vessels) is no piece. *comp* whole when the erosion empties it (a
    thin island: the shape rule judges it)."""
    cross = neck_cross(spacing_zyx)
    eroded = ndimage.binary_erosion(comp, cross)
    if not eroded.any():
        return [comp]
    labels, n = ndimage.label(ndimage.binary_dilation(eroded, cross) & comp, structure=FULL26)
    steps = max(1, int(round(REGROW_MM / float(np.min(spacing_zyx)))))
    return [ndimage.binary_dilation(labels == k, cross, iterations=steps, mask=comp) for k in range(1, n + 1)]


def _is_seed(piece: np.ndarray, pe_box: np.ndarray, body_box: np.ndarray, sp: np.ndarray, skin_margin_mm: float,
             min_vox: float) -> bool:
    n = int(np.count_nonzero(piece))
    if n < min_vox or float(np.percentile(pe_box[piece], 90)) < MIN_P90_PE:
        return False
    shapes = list(principal_shapes(piece.astype(np.uint8), sp))
    if not shapes or not all(e <= MAX_ELONGATION and length <= MAX_LENGTH_MM for _, _, e, length in shapes):
        return False  # tube-like: a vessel piece
    return not (skin_margin_mm > 0 and drop_skin_components(piece.copy(), body_box, sp, skin_margin_mm))


def opening_seeds(core0: np.ndarray, opened: np.ndarray, pe: np.ndarray, body: np.ndarray, spacing_zyx,
                  skin_margin_mm: float, outline: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """(seed mask, counts): steps 1-3 of the module docstring on FTV's core before the opening *core0*, the opened
    core *opened*, PE *pe*, the body *body* (skin margin) and the first *outline* (a piece touching an outline
    component larger than itself is a vessel's piece beside a found lesion, not a lost tumor)."""
    sp = np.asarray(spacing_zyx, float)
    vox_ml = float(np.prod(sp)) / 1000.0
    min_vox = max(MIN_SEED_ML / vox_ml, MIN_SEED_VOXELS)
    labels, n = ndimage.label(core0, structure=FULL26)
    seeds = np.zeros(core0.shape, bool)
    counts = {"lost components": 0, "pieces": 0, "seeds": 0}
    if n == 0:
        return seeds, counts
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    held = np.bincount(labels[opened & core0], minlength=n + 1)
    if outline is None:
        outline = np.zeros(core0.shape, bool)
    out_labels, n_out = ndimage.label(outline, structure=FULL26)
    out_sizes = np.bincount(out_labels.ravel(), minlength=n_out + 1)
    out_sizes[0] = 0
    pad = np.ceil(skin_margin_mm / sp).astype(int) + 2
    for lab, box, comp in padded_components(labels, pad):
        if sizes[lab] < min_vox or held[lab] >= KEPT_SHARE * sizes[lab]:
            continue
        counts["lost components"] += 1
        for piece in split_at_necks(comp, sp):
            counts["pieces"] += 1
            beside = np.unique(out_labels[box][ndimage.binary_dilation(piece, FULL26)])
            if out_sizes[beside].max(initial=0) > np.count_nonzero(piece):
                counts["beside a larger outline"] = counts.get("beside a larger outline", 0) + 1
                continue
            if _is_seed(piece, pe[box], body[box], sp, skin_margin_mm, min_vox):
                seeds[box] |= piece
                counts["seeds"] += 1
    return seeds, counts


def opening_lesions(exam, first, settings, maps, roi: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(voxels to add, notes) for the first FTV run *first* (with an outline) of *exam* in *roi*."""
    s = settings
    if s.vessel_radius_mm <= 0:
        return np.zeros(roi.shape, bool), []
    sp, pe, valid, ser, tissue, core0 = first_run_cores(exam, roi, first, s, maps)
    opened = sitk.GetArrayViewFromImage(first.mask) > 0
    outline = sitk.GetArrayViewFromImage(first.outline) > 0
    seeds, counts = opening_seeds(core0, opened, pe, body_of(valid), sp, s.skin_margin_mm, outline)
    if not counts["seeds"]:
        return seeds, [f"vessel opening's lost parts: {counts}"]
    added = (grown_from(seeds, tissue, pe, ser, sp, first, s, MIN_SEED_ML) | seeds) & ~outline
    return added, [f"vessel opening's lost parts: {counts}, {int(np.count_nonzero(added))} voxels added "
                   "(engine/vessel_open.py)"]


def add_vessel_open(segmenter, exam, prob: sitk.Image, breast_mask: sitk.Image | None, options: dict,
                    enabled: bool | None = None) -> sitk.Image:
    """The pipeline's last step in ``predict``: *prob* with the seeds of the module docstring's steps 1-4 given the
    first run's probability rule; the very object given when off (*enabled*, default :data:`VESSEL_OPEN`), for a
    reader's ROI or seed, without an FTV outline or breast region, or when nothing is added."""
    return first_run_step(segmenter, exam, prob, breast_mask, options, VESSEL_OPEN if enabled is None else enabled,
                          lambda first, maps, roi: opening_lesions(exam, first, segmenter.settings, maps, roi))
