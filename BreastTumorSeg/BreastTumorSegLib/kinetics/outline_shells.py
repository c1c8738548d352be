"""Rim-enhancing and necrotic tumors whose strong part is a thin shell ("ftv-outline",
``FTVSettings.outline_shell_min_pe``, used by :mod:`..models.ftv_segmenter`).

The segmenter opens FTV's core with a ball of ``vessel_radius_mm`` (2 mm) so that vessels do not
seed the outline, and an outline grows only from a core of ``OUTLINE_MIN_CORE_ML``. A tumor whose
strongly enhancing tissue is a shell 2-3.5 mm thick (a rim around a moderately enhancing interior, a
mixed wall around a necrotic centre) loses all or nearly all of its core to that opening, and with it
its whole outline. On development seeds 7000-7039 of the heterogeneous and irregular families this
was the largest cause of tumors missed entirely (docs/decisions/missed-heterogeneous-issue25.md).
The compact islands of :mod:`.outline_islands` do not cover it: a shell is neither removed whole nor
small and round (it is as long as the tumor, and part of it may survive as a speck under the outline's
minimum core).

A vessel is a tube: closing it and filling what it encloses leaves a tube. A shell encloses its
interior. This step therefore looks, in the first run's FTV core *before* its vessel opening, for the
26-connected components that

* hold at least ``OUTLINE_MIN_CORE_ML`` and are not yet outlined (the opened core inside them, and the
  first outline over them, stay under that volume and under half of the component),
* lie deeper than the segmenter's skin margin (the nipple and skin rule of :func:`~.ftv.drop_skin_components`),
  measured from the air (the tissue signal with what it encloses in each plane, :func:`body_of`: FTV's own
  rule measures it from any dark voxel, and in a fat-suppressed exam the dark fat around a deep tumor is
  not skin),
* whose median PE reaches ``outline_shell_min_pe`` (candidate 100 %: on development seeds the strong walls of
  the missed tumors had a median PE of 103-171 %, the shells this rule found in the background parenchymal
  enhancement of phantom 7002 and heterogeneous 7020 79-100 %; a tumor's strong part is marked enhancement),
* and whose **hull** (a closing by a ball of ``SHELL_CLOSE_MM``, then the holes filled in each
  acquisition plane) keeps a **body** of at least ``OUTLINE_MIN_CORE_ML`` under the same vessel
  opening, and is compact (elongation, :func:`~.beside_region.elongation`, at most ``SHELL_MAX_ELONGATION``).

The component and its body seed the outline, grown with the first run's level, tissue and margin
(:func:`~.outline.whole_tumor_outline`); the result is added to the first outline. The breast gate and
the false-positive reduction (``engine/fpreduce.py``) judge it like any other component.

``FTVSettings`` keeps it off (``outline_shell_min_pe=0``); ``ftv-outline`` turns it on at 100 % by the rule of
docs/decisions/missed-heterogeneous-issue25.md (development 7000-7009: heterogeneous lesions 13 -> 14 of 15,
vessels 15 -> 16 of 18; held-out 5048-5055, once: irregular 5/12 -> 6/12, median Dice 0.069 -> 0.274, no family
lower, no FP lesions added). Cost: every exam pays FTV's core rules once more without the opening (neighbour count, SER), one
per-plane hole fill of the body and one labelling; each component is then tested in its own box.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import labels_in_box
from ..core.memo import remember_last
from .beside_region import elongation
from .fat_sat_floor import background_ok
from .ftv import _neighbours_rule, drop_skin_components
from .outline import FULL26, OUTLINE_MIN_CORE_ML, whole_tumor_outline
from .seeded import _ellipsoid, open_and_regrow

SHELL_CLOSE_MM = 3.0  # the closing that bridges the gaps of a patchy wall
SHELL_MAX_ELONGATION = 2.5  # the hull of a tumor is compact; a closed tube or a strip of chest wall is not


def shell_hull(comp: np.ndarray, spacing_zyx, close_mm: float = SHELL_CLOSE_MM) -> np.ndarray:
    """*comp* closed by a ball of *close_mm* and its holes filled in each (z) acquisition plane.

    *comp* must have room for the closing around it (a padded box)."""
    sp = np.asarray(spacing_zyx, float)
    ball = _ellipsoid(close_mm, sp)
    hull = ndimage.binary_closing(comp, structure=ball) | comp if ball.size > 1 else comp.copy()
    for k in range(hull.shape[0]):
        if hull[k].any():
            hull[k] = ndimage.binary_fill_holes(hull[k])
    return hull


@remember_last(lambda valid: (valid,))
def body_of(valid: np.ndarray) -> np.ndarray:
    """*valid* (tissue signal) with what it encloses in each acquisition plane: in a fat-suppressed exam the
    dark fat inside the breast is not air, and the skin margin is measured from the air.

    Remembered (:func:`~..core.memo.remember_last`): the first run's shells and the dark step's skin test ask it of
    the same valid voxels."""
    body = valid.copy()
    for k in range(body.shape[0]):
        if body[k].any():
            body[k] = ndimage.binary_fill_holes(body[k])
    return body


def shell_seeds(core0: np.ndarray, opened: np.ndarray, outline: np.ndarray, valid: np.ndarray, spacing_zyx,
                vessel_radius_mm: float, skin_margin_mm: float, pe: np.ndarray | None = None,
                min_pe: float = 0.0) -> tuple[np.ndarray, int]:
    """(seed mask, number of shells): the components of *core0* (FTV's core before the vessel opening)
    that the module docstring's conditions accept, each with the body of its hull. *opened*: the core
    after the opening; *outline*: the first outline; *valid*: the body (for the skin margin); with *pe*,
    the component's median PE must reach *min_pe*."""
    sp = np.asarray(spacing_zyx, float)
    vox_ml = float(np.prod(sp)) / 1000.0
    min_vox = OUTLINE_MIN_CORE_ML / vox_ml
    labels, n = labels_in_box(core0, FULL26)  # in the cores' box: the same labels
    seeds = np.zeros(core0.shape, bool)
    if n == 0:
        return seeds, 0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    held_core = np.bincount(labels[opened & core0], minlength=n + 1)
    held_outline = np.bincount(labels[outline & core0], minlength=n + 1)
    pad = np.ceil(max(SHELL_CLOSE_MM + vessel_radius_mm, skin_margin_mm) / sp).astype(int) + 2
    found = 0
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None or sizes[lab] < min_vox:
            continue
        if held_core[lab] >= min_vox or held_outline[lab] >= min(min_vox, 0.5 * sizes[lab]):
            continue  # the first outline grew from it already (or could have)
        box = tuple(slice(max(b.start - p, 0), min(b.stop + p, m)) for b, p, m in zip(sl, pad, core0.shape))
        comp = labels[box] == lab
        if pe is not None and float(np.median(pe[box][comp])) < min_pe:
            continue  # background enhancement: its wall enhances less than a tumor's strong part
        if skin_margin_mm > 0 and drop_skin_components(comp.copy(), valid[box], sp, skin_margin_mm):
            continue  # lies within the skin margin (nipple, skin)
        hull = shell_hull(comp, sp)
        body = open_and_regrow(hull, sp, vessel_radius_mm) if vessel_radius_mm > 0 else hull
        if np.count_nonzero(body) < min_vox or elongation(hull, sp) > SHELL_MAX_ELONGATION:
            continue
        seeds[box] |= comp | body
        found += 1
    return seeds, found


def first_run_cores(exam, roi_mask: np.ndarray, res, settings, maps):
    """(spacing zyx, PE, valid, SER or None, tissue, core before the vessel opening) of the first FTV run *res* of
    *exam* inside *roi_mask*: FTV's tissue (background condition) and its core rules without the opening."""
    s = settings
    sp = np.asarray(exam.reference.GetSpacing(), float)[::-1]
    pe = maps.array("pe_early")
    valid = maps.array("valid") > 0
    pre = sitk.GetArrayViewFromImage(exam.pre).astype(np.float32, copy=False)
    ser = maps.array("ser") if res.ser_used else None
    tissue = roi_mask & valid & background_ok(pre, res.background_threshold, exam, maps, roi_mask & valid,
                                              dict(res.fat_suppression), s)
    core0 = _neighbours_rule(tissue & (pe >= np.float32(s.pe_threshold)), s.min_neighbors)
    if ser is not None:
        core0 &= ser >= np.float32(s.ser_min)
    return sp, pe, valid, ser, tissue, core0


def grown_from(seeds: np.ndarray, tissue: np.ndarray, pe: np.ndarray, ser, sp, res, settings,
               min_core_ml: float = OUTLINE_MIN_CORE_ML) -> np.ndarray:
    """The outline grown from *seeds* with the first run's level, tissue and margin (cores of >= *min_core_ml*)."""
    s = settings
    grow = tissue & (pe >= np.float32(res.outline_level))
    if ser is not None:
        grow &= ser >= np.float32(s.ser_min)
    return whole_tumor_outline(seeds, grow, pe, sp, s.outline_margin_mm, edge_fraction=s.outline_edge_fraction,
                               edge_min_pe=s.outline_edge_over_level * res.outline_level,
                               edge_below_pe=s.pe_threshold, min_core_ml=min_core_ml)


def shell_lesions(exam, roi_mask: np.ndarray, res, settings, maps) -> tuple[np.ndarray, list[str]]:
    """(voxels to add to ``res.outline``, notes) for the first FTV run *res* (an
    :class:`~.ftv.FTVResult` with an outline) of *exam* inside *roi_mask*, with *settings* its
    :class:`~.ftv.FTVSettings` and *maps* its kinetic maps (module docstring)."""
    s = settings
    sp, pe, valid, ser, tissue, core0 = first_run_cores(exam, roi_mask, res, s, maps)
    opened = sitk.GetArrayViewFromImage(res.mask) > 0
    outline = sitk.GetArrayViewFromImage(res.outline) > 0
    seeds, found = shell_seeds(core0, opened, outline, body_of(valid), sp, s.vessel_radius_mm, s.skin_margin_mm,
                               pe, s.outline_shell_min_pe)
    if not found:
        return np.zeros(core0.shape, bool), []
    added = grown_from(seeds, tissue, pe, ser, sp, res, s) & ~outline
    return added, [f"{found} shell-like strong part(s) the vessel opening removed (rim / necrotic tumors) outlined: "
                   f"{int(np.count_nonzero(added))} voxels added (outline_shell_min_pe {s.outline_shell_min_pe:g} %)"]
