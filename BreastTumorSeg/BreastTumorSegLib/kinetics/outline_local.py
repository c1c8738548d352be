"""The moderately enhancing rest of a tumor, judged against the tissue around that tumor
(``FTVSettings.outline_local``, used by :mod:`.ftv` after the outline's growth; off by default).

The outline grows from the FTV core into tissue above one level for the whole exam: the larger of
``outline_pe`` (40 %) and the 95th percentile of the exam's background parenchymal enhancement (BPE)
far from every core. In the ``irregular`` and ``heterogeneous`` families that level is 47-59 % in
most exams, while the moderately enhancing parts of the tumors have PE 40-70 % and their
partial-volume edge 20-40 %: ``ftv-outline`` outlines the strong core and stops one voxel short of the
rest (development seeds 7000-7009: the missed voxels under the level lie 1-2 mm from the outline,
PE median 30-47 %, 15-35 % of their core's PE; SER does not separate them from the tissue around
the tumor, which is why :mod:`.outline_kinetic` failed). The exam's BPE is not the tumor's
surroundings: in those families the tissue 1-6 mm outside a tumor has median PE 0-10 % and 90th
percentile 10-45 % for most tumors, while in the original ``phantom`` family it enhances like BPE
(seed 7000: median 26 %, 90th percentile 61 %).

:func:`local_growth` therefore looks, for each outline component grown from a core of at least
``OUTLINE_MIN_CORE_ML``, at its own ring (tissue ``RING_MM`` outside it, not in the outline):

* ``"level"``: the component grows into tissue connected to it, at most ``GROW_MM`` from it and
  within ``outline_margin_mm`` of its core, with PE >= max(``outline_pe``, the ring's
  ``RING_PERCENTILE`` percentile), when that local level is below the exam's level; where the
  ring enhances like the BPE nothing changes. One-voxel-thin additions count only at
  ``outline_edge_over_level`` x the local level (the outline's own edge rule), and only blobs of such
  tissue that end near the component are taken (:func:`_bounded`: at most ``MAX_FAR`` as many of their
  voxels beyond ``GROW_MM`` as within), since enhancing tissue that runs on is background (the original
  ``phantom`` family: without this bound seed 7000 lost 0.659 -> 0.520 Dice, 7001 0.673 -> 0.507);
* ``"edge"``: the same, then one layer of ring-side voxels next to its moderately enhancing voxels
  (PE < ``pe_threshold``) at half maximum: PE >= (their neighbour's PE + the ring's median) / 2,
  and above the ring's ``EDGE_FLOOR_PERCENTILE`` percentile (the partial-volume voxel a reader's
  outline runs through, :func:`~.outline.half_maximum_edge` per component with its own ring).

A component whose addition exceeds ``MAX_GROWTH`` of its own volume is left as it was: that is
growth into the background, not the rest of a tumor. SER >= ``ser_min`` applies as in the outline.

Measured by the rule of ``docs/decisions/outline-local-issue25.md`` (``"level"``): development seeds
7000-7009 passed (median voxel recall heterogeneous 0.676 -> 0.726, irregular 0.613 -> 0.656; Dice
0.775 -> 0.822 and 0.714 -> 0.732; no family lower by more than 0.009, no median FP lesions up), held-out
5040-5047 failed (median FP lesions per exam phantom 0.5 -> 1, randomized 0 -> 0.5; recall irregular
+0.020, heterogeneous +0.000): off by default, ``FTVOutlineSegmenter(outline_local="level")`` turns it on.
``"edge"`` is built and unit-tested, not evaluated.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..core.errors import InputError
from ..core.imageutil import padded_components
from .outline import FACE6, FULL26, OUTLINE_MIN_CORE_ML, _grown
from .outline_kinetic import kinetic_growth

MODES = ("off", "level", "edge")
RING_MM = (3.0, 8.0)  # the tissue around an outline component
RING_PERCENTILE = 90.0  # its enhancement: the local counterpart of the exam's BPE percentile
EDGE_FLOOR_PERCENTILE = 75.0  # a half-maximum edge voxel enhances more than this much of the ring
GROW_MM = 4.0  # the local growth reaches at most this far from the component
MAX_FAR = 0.5  # enhancing tissue reaching farther than GROW_MM with more than this fraction is background
MAX_GROWTH = 0.6  # a component growing by more than this fraction of its volume is left as it was
MIN_RING_VOXELS = 30


def below_level_growth(out: np.ndarray, seeds: np.ndarray, tissue: np.ndarray, pe: np.ndarray, ser: np.ndarray | None,
                       spacing_zyx, s, level: float, notes: list | None = None) -> np.ndarray:
    """The outline's two optional additions under the exam's level, in order: the kinetic one
    (:func:`~.outline_kinetic.kinetic_growth`, ``s.outline_kinetic_tol``) and the local one
    (:func:`local_growth`, ``s.outline_local``); *s* is an :class:`~.ftv.FTVSettings`."""
    out = kinetic_growth(out, seeds, tissue, pe, ser, spacing_zyx, s.outline_pe, level, s.outline_margin_mm,
                         s.outline_kinetic_tol, notes)
    return local_growth(out, seeds, tissue, pe, ser, spacing_zyx, s, level, notes)


def local_growth(out: np.ndarray, seeds: np.ndarray, tissue: np.ndarray, pe: np.ndarray, ser: np.ndarray | None,
                 spacing_zyx, s, level: float, notes: list | None = None) -> np.ndarray:
    """*out* plus the tissue of the module docstring (a new array; *out* itself when nothing is added)."""
    mode = getattr(s, "outline_local", "off")
    if mode not in MODES:
        raise InputError(f"outline_local '{mode}' is not one of {', '.join(MODES)}",
                         fix="use outline_local='off' (default), 'level' or 'edge'")
    if mode == "off" or not out.any() or not seeds.any():
        return out
    sp = np.asarray(spacing_zyx, float)
    vox_ml = float(np.prod(sp)) / 1000.0
    allowed = tissue if ser is None else tissue & (ser >= np.float32(s.ser_min))
    labels, _ = ndimage.label(out, structure=FULL26)
    pad = int(np.ceil(max(RING_MM[1], GROW_MM + 1.0) / float(np.min(sp)))) + 2
    result = out.copy()
    added = kept = 0
    for _lab, box, comp in padded_components(labels, pad):
        core = comp & seeds[box]
        if np.count_nonzero(core) * vox_ml < OUTLINE_MIN_CORE_ML:
            continue
        add = _component_growth(comp, core, out[box], allowed[box], pe[box], sp, s, level, mode == "edge")
        n_add = int(np.count_nonzero(add))
        if n_add == 0:
            continue
        if n_add > MAX_GROWTH * np.count_nonzero(comp):
            kept += 1
            continue
        result[box] |= add
        added += n_add
    if notes is not None:
        notes.append(f"{added} voxels above the level of the tissue around their outline component added "
                     f"(outline_local '{mode}'; {kept} component(s) left as they were: growth over "
                     f"{MAX_GROWTH:g} of their volume)")
    return result if added else out


def _component_growth(comp: np.ndarray, core: np.ndarray, out: np.ndarray, allowed: np.ndarray, pe: np.ndarray,
                      sp: np.ndarray, s, level: float, edge: bool) -> np.ndarray:
    """The voxels one component *comp* (of the outline *out*, core *core*) gains; all arrays are the
    component's box."""
    dist = ndimage.distance_transform_edt(~comp, sampling=sp)
    ring = allowed & ~out & (dist > RING_MM[0]) & (dist <= RING_MM[1])
    if np.count_nonzero(ring) < MIN_RING_VOXELS:
        return np.zeros_like(comp)
    ring_pe = pe[ring]
    local = max(s.outline_pe, float(np.percentile(ring_pe, RING_PERCENTILE)))
    region = comp
    if local < level:
        near_core = ndimage.distance_transform_edt(~core, sampling=sp) <= s.outline_margin_mm
        cand = _bounded(comp, allowed & ~out & (pe >= np.float32(local)), dist) & near_core
        # The outline's own rule for what it adds (:func:`~.outline._grown`): one-voxel-thin additions are a
        # partial-volume edge and count only at ``outline_edge_over_level`` x the local level.
        cand = _grown(comp, cand, pe, sp, GROW_MM, s.outline_edge_fraction, s.outline_edge_over_level * local) & ~comp
        if cand.any():
            grown, _ = ndimage.label(comp | cand, structure=FULL26)
            region = comp | (np.isin(grown, np.unique(grown[comp])) & cand)
    if edge:
        around = max(float(np.median(ring_pe)), 0.0)
        floor = max(float(np.percentile(ring_pe, EDGE_FLOOR_PERCENTILE)), around)
        inner = np.where(region, pe, np.float32(-np.inf)).astype(np.float32)
        nearest = ndimage.maximum_filter(inner, footprint=FACE6, mode="constant", cval=-np.inf)
        layer = ndimage.binary_dilation(region, structure=FACE6) & ~region & ~out & allowed
        half = np.float32(0.5) * (nearest + np.float32(around))
        moderate = (nearest > np.float32(around)) & (nearest < np.float32(s.pe_threshold))
        region = region | (layer & moderate & (pe >= half) & (pe > np.float32(floor)))
    return region & ~comp


def _bounded(comp: np.ndarray, cand: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """The parts within ``GROW_MM`` of *comp* of the 26-connected blobs of *cand* touching it, for
    blobs that end there: with at most ``MAX_FAR`` times as many voxels farther out (in the box) as
    within. Enhancing tissue that runs on beyond the tumor is background, not the rest of the tumor."""
    blobs, n = ndimage.label(cand, structure=FULL26)
    if n == 0:
        return cand
    touching = np.zeros(n + 1, bool)
    touching[np.unique(blobs[ndimage.binary_dilation(comp, structure=FULL26) & cand])] = True
    near = dist <= GROW_MM
    n_near = np.bincount(blobs[near & cand], minlength=n + 1)
    n_far = np.bincount(blobs[~near & cand], minlength=n + 1)
    ok = touching & (n_far <= MAX_FAR * n_near)
    ok[0] = False
    return ok[blobs] & near
