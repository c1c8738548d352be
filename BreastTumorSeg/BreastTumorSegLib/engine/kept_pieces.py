"""Pieces of a kept lesion that the outline dropped, given back to it (issue 25, ``KEPT_PIECES``, off: its rule failed held-out).

Irregular (multi-lobed) tumors lose whole pieces: on development irregular 7000-7019 (docs/decisions/
irregular-pieces-issue25.md) 29 % of the missed voxels of found tumors, and 67 % of those more than 5 mm from the
outline, are tissue that ``ftv-outline`` outlines without its vessel opening (a lobe whose strong part is thinner than
the opening's ball loses its seed, and the outline's growth never reaches it); 4 % are parts the false-positive
reduction's split cut off. This step looks again, after the false-positive reduction and the fill of the kept lesions
(:mod:`.kept_hull`), beside each kept lesion alone, in its box grown by ``PIECES_REACH_MM``:

* **candidates**: tissue (kinetic maps' ``valid``) enhancing at least ``PIECES_MIN_PE`` (the outline's own level)
  and at least ``PIECES_PE_LIKE`` of the lesion's median PE (at the outline's level alone a dropped lobe runs into
  the moderate background around it),
  not a lesion and not touching another lesion (or what an earlier lesion gained); their 26-connected pieces; a piece
  beside another lesion (within one voxel of its neighbourhood) never joins (no piece bridges two lesions);
* a piece **joins** the lesion when all hold: it lies within ``PIECES_GAP_MM`` of the lesion (touching counts); it
  does not reach the edge of the search box (a piece running further is background or a vessel, not a lobe); its
  volume is at least ``PIECES_MIN_ML``, at least ``PIECES_MIN_SHARE`` and at most ``PIECES_MAX_RATIO`` times the
  lesion's (a lobe, not a speck of enhancing tissue beside it); it **enhances like the
  lesion**: a strong part of its own (PE p90 at least the lesion's median) and, with a late phase, a median SER
  within ``PIECES_SER_TOL`` of the lesion's; it is **not tubular**: the ratio of its two longest principal axes at
  most ``PIECES_MAX_ELONGATION``;
* the number of lesions never changes (a piece takes its lesion's label; no piece joins two lesions, nothing is made
  where no lesion was kept); the lesion table is measured again on the final map (:func:`.postprocess.lesion_table`;
  side, flags, extra values and notes kept, a note added). The pipeline raises the added voxels' probability as for
  the fill (:func:`.kept_hull.fill_probability`). Used only with a segmenter that has kinetic maps (FTV), never for a
  reader's seed or ROI.

**Off** by the rule of docs/decisions/irregular-pieces-issue25.md: development 7000-7009 passed (median voxel recall
irregular 0.648 -> 0.698, Dice 0.721 -> 0.782, nothing lower, no FP change); held-out 5088-5095 once: every summary row
unchanged (irregular recall 0.613 -> 0.613), so the recall condition (>= +0.03) failed.
"""
from __future__ import annotations


import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import padded_components
from ..kinetics.ftv import SEGMENTER_OUTLINE_PE
from ..kinetics.outline import FULL26
from .kept_hull import _near_others, remeasured, step_maps

KEPT_PIECES = False  # off: held-out 5088-5095 failed the recall condition (docs/decisions/irregular-pieces-issue25.md)
PIECES_REACH_MM = 20.0  # the search box: the lesion's box grown by this much
PIECES_GAP_MM = 3.0  # a piece joins only within this distance of the lesion (mm)
PIECES_MIN_PE = SEGMENTER_OUTLINE_PE  # candidates enhance at least this much (%): the outline's own level
PIECES_PE_LIKE = 0.6  # candidates enhance at least this fraction of the lesion's median PE too
PIECES_SER_TOL = 0.3  # |median SER of the piece - of the lesion| at most this (with a late phase)
PIECES_MAX_ELONGATION = 3.0  # longest / second principal axis: above this a piece is tubular (a vessel)
PIECES_MIN_ML = 0.1  # smaller pieces stay out (on development 7010-7014 every piece this small was not tumor)
PIECES_MIN_SHARE = 0.3  # a piece smaller than this fraction of the lesion stays out (a lobe, not a speck beside it)
PIECES_MAX_RATIO = 3.0  # a piece larger than this many times the lesion stays out


def piece_labels(labels: np.ndarray, pe: np.ndarray, valid: np.ndarray, ser: np.ndarray | None, spacing_zyx,
                 only: set | None = None) -> tuple[np.ndarray, dict]:
    """(*labels* with the dropped pieces joined to their lesions (module docstring), {label: voxels added});
    *labels* (int, 0 = none), *pe*, *valid* and *ser* (None: no late phase) are (z, y, x) arrays on one grid."""
    sp = np.asarray(spacing_zyx, float)
    if not labels.any():
        return labels, {}
    vml = float(np.prod(sp)) / 1000.0
    pad = np.ceil(PIECES_REACH_MM / sp).astype(int)
    out = labels.copy()
    added: dict[int, int] = {}
    for lab, box, comp in padded_components(labels, pad):
        if only is not None and lab not in only:
            continue
        others = ((out[box] != 0) & ~comp) | _near_others(out, box, lab)
        add = _pieces(comp, pe[box], np.asarray(valid[box], bool), None if ser is None else ser[box], others, sp, vml)
        if add is not None:
            out[box][add] = lab
            added[lab] = int(np.count_nonzero(add))
    return out, added


def _pieces(comp, pe, valid, ser, others, sp, vml) -> np.ndarray | None:
    """The voxels (bool, in the box) of the pieces that join the lesion *comp*, or None; *others*: the voxels of,
    or touching, another lesion (or what an earlier lesion gained)."""
    own = comp & valid
    if not own.any():
        return None
    pe_les = float(np.median(pe[own]))
    cand = valid & ~others & ~comp & (pe >= np.float32(max(PIECES_MIN_PE, PIECES_PE_LIKE * pe_les)))
    if not cand.any():
        return None
    dist = ndimage.distance_transform_edt(~comp, sampling=sp)
    pieces, n = ndimage.label(cand, structure=FULL26)
    size = int(np.count_nonzero(comp))
    ser_les = None if ser is None else float(np.median(ser[own]))
    beside_others = ndimage.binary_dilation(others, structure=FULL26) if others.any() else others
    add = np.zeros_like(comp)
    for k, sl in enumerate(ndimage.find_objects(pieces), start=1):
        if sl is None:
            continue
        p = pieces[sl] == k
        nvox = int(np.count_nonzero(p))
        if nvox * vml < PIECES_MIN_ML or nvox < PIECES_MIN_SHARE * size or nvox > PIECES_MAX_RATIO * size:
            continue
        if any(s.start == 0 or s.stop == m for s, m in zip(sl, pieces.shape)):
            continue  # runs to the edge of the search box: not a lobe of this lesion
        if float(dist[sl][p].min()) > PIECES_GAP_MM or (p & beside_others[sl]).any():
            continue  # too far from this lesion, or beside another one (no piece joins two lesions)
        ppe = pe[sl][p]
        if np.percentile(ppe, 90) < pe_les:
            continue
        if ser_les is not None and abs(float(np.median(ser[sl][p])) - ser_les) > PIECES_SER_TOL:
            continue
        if elongation(np.argwhere(p) * sp) > PIECES_MAX_ELONGATION:
            continue
        add[sl] |= p
    return add if add.any() else None


def elongation(points_mm: np.ndarray) -> float:
    """Square root of the ratio of the two largest principal moments of *points_mm* (n, 3); inf for a line."""
    if len(points_mm) < 4:
        return float("inf")
    ev = np.sort(np.linalg.eigvalsh(np.cov(points_mm.T)))[::-1]
    return float(np.sqrt(ev[0] / ev[1])) if ev[1] > 1e-9 else float("inf")


def join_pieces(components: sitk.Image, lesions: list, prob: sitk.Image, pe: np.ndarray, valid: np.ndarray,
                ser: np.ndarray | None) -> tuple[sitk.Image, list, sitk.Image]:
    """(label, lesions, components) with the dropped pieces joined to the kept lesions of *components* (labels
    1..N = the lesions' ``label``); *pe*, *valid* and *ser* are (z, y, x) arrays on its grid."""
    arr = sitk.GetArrayFromImage(components).astype(np.int64)
    if pe.shape != arr.shape or valid.shape != arr.shape or (ser is not None and ser.shape != arr.shape):
        raise ValueError(f"kept_pieces: kinetic maps {pe.shape} and label map {arr.shape} are not on one grid")
    by_label = {les.label: les for les in lesions}
    out, added = piece_labels(arr, pe, valid, ser, np.asarray(components.GetSpacing(), float)[::-1], set(by_label))
    if not added:
        return sitk.Cast(components > 0, sitk.sitkUInt8), lesions, components
    return remeasured(components, lesions, prob, out, added,
                      lambda ml: f"pieces beside it joined: {ml:.3f} mL (enhancing like it, within {PIECES_GAP_MM:g} "
                                 "mm, not tubular; engine/kept_pieces.py)")


def add_kept_pieces(segmenter, exam, label: sitk.Image, lesions: list, components: sitk.Image, prob: sitk.Image,
                    options: dict, enabled: bool | None = None) -> tuple[sitk.Image, list, sitk.Image]:
    """The pipeline's step after the fill of the kept lesions: (label, lesions, components) with the dropped pieces
    joined. Unchanged when off (*enabled*, default :data:`KEPT_PIECES`), for a reader's ROI or seed, or for a
    segmenter without kinetic maps."""
    maps = step_maps(segmenter, exam, lesions, options, KEPT_PIECES if enabled is None else enabled)
    if maps is None:
        return label, lesions, components
    return join_pieces(components, lesions, prob, maps.array("pe_early"), maps.array("valid") > 0, maps.array("ser"))
