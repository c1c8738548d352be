"""The inside of a found tumor: what its outline encloses (``FTVSettings.outline_hull_mm``, used by
:mod:`..models.ftv_segmenter` after the outline and its shells; off by default).

A heterogeneous tumor (``training/phantom/heterogeneous.py``, the real irregular shapes) has strongly
enhancing parts (PE 100-200 %), moderately enhancing parts (PE 40-65 %), rims and necrotic centres, and
the reader's outline is the whole tumor. ``ftv-outline`` grows from the strong core into tissue above the
exam's level (often 47-59 %), so a found tumor is outlined too small: its moderate parts and the
necrotic centre they surround stay out. Growing *outward* at a lower level (:mod:`.outline_local`) let
background enhancement in (held-out FP lesions up). This step grows *inward* only:

For each 26-connected outline component of at least ``OUTLINE_MIN_CORE_ML``, alone (another component is
never part of its closing, so two separate lesions are not bridged and a vessel that does not touch the
tumor is never closed into it):

1. its **hull**: a morphological closing by a ball of ``outline_hull_mm`` of its **body**, what an opening by
   a ball of ``HULL_BODY_MM`` (the segmenter's vessel radius, 2 mm) leaves of it with one ball of regrowth, so that
   a vessel touching the tumor is not closed into it (a component with no body of ``OUTLINE_MIN_CORE_ML``, a thin
   rim around a necrotic centre, is closed whole);
2. the voxels of the hull that enhance at all (PE >= ``HULL_MIN_PE``) and are tissue (the kinetic maps'
   ``valid``) join it;
3. what the result then encloses joins it too (the necrotic centre inside a rim or a moderate ring):
   holes filled in 3D and, with ``HULL_PLANES``, in each acquisition (z) plane;
4. everything is bounded by the component's own bounding box: nothing beyond the tumor's extent is added.

A closing never reaches beyond the convex hull of the component, so background enhancement around a
convex tumor cannot join; a component that would grow by more than ``HULL_MAX_GROWTH`` of its volume is
left as it was (an outline of background parenchymal enhancement with wide gaps, not a tumor's inside).

Measured by the rule of ``docs/decisions/hull-fill-issue25.md`` (6 mm): development seeds 7000-7009 passed (median
voxel recall heterogeneous 0.676 -> 0.709, irregular 0.613 -> 0.648, vessels 0.696 -> 0.731; no family lower, no FP
up); held-out 5056-5063 (once) failed: recall heterogeneous 0.723 -> 0.792, irregular 0.414 -> 0.456, vessels 0.684 ->
0.739, but the randomized family's FP lesions per exam rose (median 0.5 -> 1, mean 2.75 -> 3.12). Off by default;
``FTVOutlineSegmenter(outline_hull_mm=6)`` turns it on.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.errors import InputError
from ..core.imageutil import padded_components
from .outline import FULL26, OUTLINE_MIN_CORE_ML
from .seeded import _ellipsoid, open_and_regrow

HULL_MIN_PE = 30.0  # "enhancing at all": the tumor's moderate parts and their partial-volume edge
HULL_PLANES = True  # also fill what the result encloses in each acquisition plane
HULL_BODY_MM = 2.0  # only the component's body (an opening by this ball: the segmenter's vessel radius) is closed
HULL_MAX_GROWTH = 1.0  # a component growing by more than this fraction of its volume is left as it was


def hull_fill(outline: np.ndarray, pe: np.ndarray, valid: np.ndarray, spacing_zyx, close_mm: float,
              min_pe: float | None = None) -> tuple[np.ndarray, int, int]:
    """(*outline* plus the inside of each of its components (module docstring), voxels added, components
    grown). *outline*, *pe* and *valid* are (z, y, x) arrays on one grid; *close_mm* the closing ball's
    radius in mm."""
    fill = HullFill(spacing_zyx, close_mm, min_pe)
    if fill.off or not outline.any():
        return outline, 0, 0
    labels, n = ndimage.label(outline, structure=FULL26)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    out = outline.copy()
    grown = 0
    for lab, box, comp in padded_components(labels, 0):
        add = fill.added(comp, pe[box], valid[box], ~outline[box], sizes[lab])
        if add is not None:
            out[box] |= add
            grown += 1
    return out, int(np.count_nonzero(out & ~outline)), grown


class HullFill:
    """Steps 1-4 of the module docstring for one component at a time, with a closing ball of *close_mm* on a
    grid of (z, y, x) *spacing_zyx*: used for every outline component here and for the lesions the pipeline keeps
    (:mod:`..engine.kept_hull`). ``off`` when *close_mm* is 0 or smaller than a voxel."""

    def __init__(self, spacing_zyx, close_mm: float, min_pe: float | None = None):
        if close_mm < 0:
            raise InputError(f"outline_hull_mm {close_mm} must be >= 0", fix="use 0 (off) or a few mm, e.g. 4")
        self.min_pe = HULL_MIN_PE if min_pe is None else float(min_pe)
        self.sp = np.asarray(spacing_zyx, float)
        self.ball = _ellipsoid(close_mm, self.sp)
        self.off = close_mm == 0 or self.ball.size == 1
        self.half = np.array(self.ball.shape) // 2 + 1
        self.min_vox = OUTLINE_MIN_CORE_ML / (float(np.prod(self.sp)) / 1000.0)

    def added(self, comp: np.ndarray, pe: np.ndarray, valid: np.ndarray, free: np.ndarray, size: int) -> np.ndarray | None:
        """The voxels (bool, *comp*'s bounding box) that join the component *comp* (bool, in its own bounding box;
        *pe*, *valid* and *free*, the voxels it may take, in that box), or None when it gains nothing: smaller
        than ``OUTLINE_MIN_CORE_ML``, nothing to add, or more than ``HULL_MAX_GROWTH`` of its *size* (voxels)."""
        if self.off or size < self.min_vox:
            return None
        add = _inside(comp, pe, valid, self.ball, self.half, self.min_pe, self.sp, self.min_vox) & free
        n_add = int(np.count_nonzero(add))
        if n_add == 0 or n_add > HULL_MAX_GROWTH * size:
            return None
        return add


def _inside(comp: np.ndarray, pe: np.ndarray, valid: np.ndarray, ball: np.ndarray, half: np.ndarray,
            min_pe: float, sp: np.ndarray, min_vox: float) -> np.ndarray:
    """Steps 1-3 of the module docstring for one component *comp* in its own bounding box (step 4)."""
    pads = [(int(h), int(h)) for h in half]
    whole = np.pad(comp, pads)
    body = open_and_regrow(whole, sp, HULL_BODY_MM) if HULL_BODY_MM > 0 else whole
    if np.count_nonzero(body) < min_vox:
        body = whole  # no thick part at all (a thin rim around a necrotic centre): the whole component is closed
    inner = tuple(slice(int(h), -int(h)) for h in half)
    closed = ndimage.binary_closing(body, structure=ball)[inner]
    body = body[inner] | (closed & valid & (pe >= np.float32(min_pe)))
    filled = ndimage.binary_fill_holes(body)
    if HULL_PLANES:
        for k in range(body.shape[0]):
            if body[k].any():
                filled[k] |= ndimage.binary_fill_holes(body[k])
    return filled & valid & ~comp


def hull_lesions(exam, res, settings, maps) -> tuple[np.ndarray, list[str]]:
    """(voxels to add to ``res.outline``, notes) for the FTV run *res* (an :class:`~.ftv.FTVResult` with an
    outline) of *exam*, with *settings* its :class:`~.ftv.FTVSettings` and *maps* its kinetic maps."""
    outline = np.asarray(sitk.GetArrayViewFromImage(res.outline)) > 0
    sp = np.asarray(exam.reference.GetSpacing(), float)[::-1]
    out, n_add, grown = hull_fill(outline, maps.array("pe_early"), maps.array("valid") > 0, sp, settings.outline_hull_mm)
    if not n_add:
        return np.zeros(outline.shape, bool), []
    return out & ~outline, [f"{n_add} voxels inside {grown} outline component(s) added (closing by a "
                            f"{settings.outline_hull_mm:g} mm ball, PE >= {HULL_MIN_PE:g} % or enclosed; outline_hull_mm)"]
