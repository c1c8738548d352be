"""Tumors dark before contrast: a separate path beside FTV's background condition ("ftv-outline",
``FTVSettings.dark_lesion_min_pe``, used by :mod:`..models.ftv_segmenter`).

FTV keeps a voxel only when its pre-contrast signal reaches ``background_fraction`` (0.6) x p95 of the
ROI in a fat-suppressed exam (a noise floor otherwise): PE means nothing on fat, air or noise. A tumor
darker than that before contrast is removed whatever its enhancement. On development seeds 7000-7039
that lost randomised 7009 t1 (PE 236 %) and several heterogeneous / irregular / vessels tumors
(docs/decisions/dark-before-contrast-issue25.md). Widening the condition itself (fs10's post-contrast
floor, :mod:`.fat_sat_floor`) failed: it widened the core for every dark tissue, and dark enhancing
non-tumor tissue merged into a tumor's component.

This step never touches the first run's core or outline. It looks, inside the ROI, for voxels whose
enhancement is both **strong** and **significant**:

* PE (early) >= ``dark_lesion_min_pe`` (candidate 2 x ``pe_threshold``; what a dark voxel's own PE
  cannot fake once the subtraction is significant),
* the early subtraction ``S_early - S_pre`` >= ``DARK_Z`` x its robust SD in the ROI
  (:func:`~.significance.difference_noise`): noise on a dark voxel does not make its PE,

then FTV's neighbour rule, SER >= ``ser_min`` and the segmenter's vessel opening. A 26-connected
component of what is left becomes an outline seed when

* at least ``DARK_MIN_SHARE`` of it fails FTV's background condition (the dark tumors this step is
  for; bright strong tissue is the first run's business),
* it holds at least ``OUTLINE_MIN_CORE_ML``,
* it touches neither the first run's core nor its outline (what the first run reports; one voxel apart
  at least),
* it is compact (elongation, :func:`~.beside_region.elongation`, at most ``DARK_MAX_ELONGATION``),
* and it lies deeper than the skin margin, measured from the air (:func:`~.outline_shells.body_of`).

The seeds grow like the first outline (:func:`~.outline.whole_tumor_outline`, the first run's level,
margin and edge rules) over the first run's tissue plus the dark voxels whose subtraction is
significant at ``noise_z``; the growth stays one voxel away from the first outline, so no existing
lesion changes. The breast gate and the false-positive reduction judge the result like any lesion.
``FTVSettings`` keeps it off (``dark_lesion_min_pe=0``).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import padded_components
from .beside_region import elongation
from .fat_sat_floor import background_ok
from .ftv import _neighbours_rule, drop_skin_components
from .outline import FULL26, OUTLINE_MIN_CORE_ML, bbox, whole_tumor_outline
from .outline_shells import body_of
from .seeded import open_and_regrow
from .significance import difference_noise

DARK_Z = 5.0  # the subtraction of a seed voxel: at least this many robust SDs
DARK_MIN_SHARE = 0.5  # share of a seed component failing FTV's background condition
DARK_MAX_ELONGATION = 2.5  # compact, not tubular (the shells' limit, kinetics/outline_shells.py)


def dark_seeds(strong: np.ndarray, dark: np.ndarray, keep_out: np.ndarray, valid, spacing_zyx,
               vessel_radius_mm: float, skin_margin_mm: float) -> tuple[np.ndarray, int]:
    """(seed mask, number of components): the components of *strong* (after the neighbour and SER rules)
    that the module docstring accepts. *dark*: voxels failing FTV's background condition; *keep_out*: the
    first run's core and outline (never touched); *valid*: the body (skin margin), or a function of no
    argument that makes it (called once, and only when a component reaches the skin test).

    Everything is computed in the bounding box of *strong* (its labels, sizes and counts): the same components,
    numbered in the same raster order, as over the whole grid. The labels are held in that box grown by the skin
    test's pad (clipped to the array), so each component's padded box (:func:`..core.imageutil.padded_components`)
    is the very box, clipped where the array clips it, that the whole grid gives; whether a component touches the
    first run is read in that box (a 26-dilation of the component reaches one voxel beyond it)."""
    sp = np.asarray(spacing_zyx, float)
    min_vox = OUTLINE_MIN_CORE_ML / (float(np.prod(sp)) / 1000.0)
    seeds = np.zeros(strong.shape, bool)
    box = ndimage.find_objects(strong.view(np.uint8) if strong.dtype == bool else strong.astype(np.uint8))
    if not box:
        return seeds, 0
    b = box[0]
    cand = strong[b].copy()
    if vessel_radius_mm > 0:
        cand = open_and_regrow(cand, sp, vessel_radius_mm)
    labels_b, n = ndimage.label(cand, structure=FULL26)
    if n == 0:
        return seeds, 0
    sizes = np.bincount(labels_b.ravel(), minlength=n + 1)
    n_dark = np.bincount(labels_b[dark[b] & cand], minlength=n + 1)
    pad = np.ceil(skin_margin_mm / sp).astype(int) + 2
    wide = tuple(slice(max(s.start - p, 0), min(s.stop + p, m)) for s, p, m in zip(b, pad, strong.shape))
    labels = np.zeros(tuple(w.stop - w.start for w in wide), labels_b.dtype)
    labels[tuple(slice(s.start - w.start, s.stop - w.start) for s, w in zip(b, wide))] = labels_b
    body = None
    found = 0
    for lab, bw, comp in padded_components(labels, pad):
        if sizes[lab] < min_vox or n_dark[lab] < DARK_MIN_SHARE * sizes[lab]:
            continue
        bx = tuple(slice(s.start + w.start, s.stop + w.start) for s, w in zip(bw, wide))
        if (ndimage.binary_dilation(comp, structure=FULL26) & keep_out[bx]).any():
            continue  # touches the first run's core or outline
        if elongation(comp, sp) > DARK_MAX_ELONGATION:
            continue  # a vessel running on, a strip of chest wall
        if skin_margin_mm > 0:
            if body is None:
                body = valid() if callable(valid) else valid
            if drop_skin_components(comp.copy(), body[bx], sp, skin_margin_mm):
                continue  # lies within the skin margin (nipple, skin)
        seeds[bx] |= comp
        found += 1
    return seeds, found


def dark_lesions(exam, roi_mask: np.ndarray, res, settings, maps) -> tuple[np.ndarray, list[str]]:
    """(voxels to add to ``res.outline``, notes) for the first FTV run *res* (an :class:`~.ftv.FTVResult`
    with an outline) of *exam* inside *roi_mask*; *settings*: its :class:`~.ftv.FTVSettings`, *maps*: its
    kinetic maps (module docstring).

    The maps of the step (subtraction, tissue, dark, strong and growth voxels) are computed in the bounding box of
    the region (``roi_mask`` and the valid voxels) grown by one voxel: each is empty outside the region, pointwise
    inside it, the subtraction noise is read from the region's voxels in the same order, FTV's neighbour rule and the
    26-dilation of the first run need nothing beyond a region voxel's neighbours. The seeds and the outline see the
    whole grid (their boxes are clipped where the array clips them)."""
    s = settings
    sp = np.asarray(exam.reference.GetSpacing(), float)[::-1]
    pe_all = maps.array("pe_early")
    valid = maps.array("valid") > 0
    region_all = roi_mask & valid
    box = bbox(region_all)
    if box is None:
        return np.zeros(pe_all.shape, bool), []
    region, pe = region_all[box], pe_all[box]
    pre_all = sitk.GetArrayViewFromImage(exam.pre).astype(np.float32, copy=False)
    early_img = exam.phases[maps.phases.early]
    early = sitk.GetArrayViewFromImage(early_img).astype(np.float32, copy=False)[box]
    pre = pre_all[box]
    sd = difference_noise(pre, early, region)
    if sd is None:
        return np.zeros(pe_all.shape, bool), []
    sub = early - pre
    ser = maps.array("ser")[box] if res.ser_used else None
    tissue = region & background_ok(pre_all, res.background_threshold, exam, maps, region_all,
                                    dict(res.fat_suppression), s)[box]
    dark = region & ~tissue
    strong = _neighbours_rule(region & (pe >= np.float32(s.dark_lesion_min_pe)) & (sub >= np.float32(DARK_Z * sd)),
                              s.min_neighbors)
    if ser is not None:
        strong &= ser >= np.float32(s.ser_min)
    core = sitk.GetArrayViewFromImage(res.mask) > 0
    outline = sitk.GetArrayViewFromImage(res.outline) > 0
    seeds, found = dark_seeds(_on_grid(strong, box, pe_all.shape), _on_grid(dark, box, pe_all.shape), core | outline,
                              lambda: body_of(valid), sp, s.vessel_radius_mm, s.skin_margin_mm)
    if not found:
        return np.zeros(pe_all.shape, bool), []
    grow = (tissue | (dark & (sub >= np.float32(s.noise_z * sd)))) & (pe >= np.float32(res.outline_level))
    if ser is not None:
        grow &= ser >= np.float32(s.ser_min)
    grow &= ~ndimage.binary_dilation(outline[box] | core[box], structure=FULL26)
    out = whole_tumor_outline(seeds, _on_grid(grow, box, pe_all.shape), pe_all, sp, s.outline_margin_mm,
                              edge_fraction=s.outline_edge_fraction,
                              edge_min_pe=s.outline_edge_over_level * res.outline_level, edge_below_pe=s.pe_threshold)
    added = out & ~outline
    return added, [f"{found} compact component(s) dark before contrast enhancing >= {s.dark_lesion_min_pe:g} % and "
                   f">= {DARK_Z:g} SD of the subtraction outlined: {int(np.count_nonzero(added))} voxels added "
                   "(dark_lesion_min_pe)"]


def _on_grid(part: np.ndarray, box: tuple[slice, ...], shape) -> np.ndarray:
    """The bool array *part* of the box *box* placed on a grid of *shape* (empty elsewhere)."""
    whole = np.zeros(shape, bool)
    whole[box] = part
    return whole
