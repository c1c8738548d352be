"""Tumors darker before contrast than FTV's background level, wherever FTV's region leaves them (issue 25, ``DARK_BEFORE``).

FTV keeps a voxel only when its pre-contrast signal reaches the run's background level (0.6 x p95 of the region in an
exam judged fat-suppressed, a noise floor otherwise). A tumor that takes the parenchyma's (or the fat's) signal before
contrast falls under that level and is lost whatever its enhancement: on development 7000-7039 the randomised,
heterogeneous, vessels and irregular families lose such tumors inside the breast region, in the 20 mm beside it and
behind its floor (docs/decisions/dark-before-contrast-issue25.md, missed-vessels-issue25.md,
missed-irregular-issue25.md, missed-randomized-v2-issue25.md). Three steps were built for them, one place each
(``dark_fatsat``, ``dark_beside``, ``dark_behind``); each found real tumors on development and added no false lesion
where measured, and each failed a rule that asked for one family's count. This module replaces the three with one
step, one switch and one decision (docs/decisions/dark-before-issue25.md). It runs after the behind-floor step and
changes nothing found before it; three finders, each with the settings chosen for it on development 7010-7039, give
components, and their union enters the probability map by the first run's rule
(:func:`..kinetics.ftv.soft_probability`):

1. **In the region of a fat-suppressed exam, judged on the exam's own fat level** (:func:`fatsat_lesions`): tissue
   over the :data:`FAT_PERCENTILE` th percentile of the region's pre-contrast signal, subtraction >= :data:`FAT_Z`
   robust SDs, PE >= FTV's level with FTV's neighbour rule; closed by one voxel, opened by :data:`FAT_OPEN_MM` and
   regrown; a component is kept when it is one voxel or more away from the first run, at least
   :data:`FAT_DARK_SHARE` of it under the background level, :data:`FAT_MIN_ML` to :data:`MAX_ML`, elongation at
   most :data:`FAT_MAX_ELONGATION`, deeper than the skin margin and called a tumor by the component classifier.
2. **In the region and :data:`BAND_MM` beside it** (:func:`beside_lesions`): the dark-lesion path
   (:func:`..kinetics.dark_lesions.dark_lesions` at PE >= :data:`BESIDE_MIN_PE`) on the region grown by the band; an
   outline component is kept when it does not touch the first outline, does not reach the band's outermost layer,
   holds :data:`BESIDE_MIN_ML` to :data:`MAX_ML`, has elongation at most :data:`BESIDE_MAX_ELONGATION` and the
   classifier calls it a tumor.
3. **In the region and behind its floor** (:func:`behind_lesions`): the dark-lesion path at PE >= :data:`BEHIND_MIN_PE`
   on the region plus the behind-floor band (:func:`.behind_floor.band_behind_floor`); a component at least
   :data:`MIN_IN_REGION` inside the region is kept as it is, one behind the floor must pass the behind-floor step's
   guards (size, median PE >= :data:`BEHIND_MIN_PE`, elongation, not cut by the band's deep end, behind the breast
   rather than beside it, not a piece of a larger enhancing body, the classifier). The gate's chest-wall level moves
   back in the columns of these components (:func:`..kinetics.deep_band.add_band_lesions`), so a confident one
   behind the floor is kept flagged ``outside_breast_mask``.

With ``engine.dark_guard.DARK_GUARD`` on, each part's components must also have a median early subtraction of at
least 5 noise SDs (:mod:`.dark_guard`; off until its rule decides). The breast gate and the false-positive reduction then judge every added component like any other. Only with an FTV
outline (``ftv-outline``), never for a reader's ROI or seed; part 3 needs a chest-wall level (not on slabs).

**On** (``DARK_BEFORE = True``) by the rule of docs/decisions/dark-before-issue25.md: held-out 5128-5135 (once), lesions
found over the four tumor families 25 -> 28 (randomised 3/7 -> 4/7, heterogeneous 9/13 -> 10/13, irregular 5/9 ->
6/9), no lesion lost, no false lesion added, phantom / ellipse / hybrid rows identical. Development 7010-7039: 121 ->
133, but 9 false lesions in 6 of 27 randomised exams (parts 1 and 2; the record).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import padded_components
from ..kinetics.beside_region import band_around, elongation
from ..kinetics.dark_lesions import dark_lesions
from ..kinetics.deep_band import _cut, _pair_on_exam, add_band_lesions
from ..kinetics.ftv import FTVResult, _neighbours_rule, drop_skin_components, roi_array
from ..kinetics.outline import FULL26
from ..kinetics.outline_shells import body_of
from ..kinetics.seeded import open_and_regrow
from ..kinetics.significance import difference_noise
from . import behind_floor as bf
from . import dark_guard
from .fpreduce import phase_arrays
from .near_level import _touches, first_run_step

# On: held-out 5128-5135 passed the rule of docs/decisions/dark-before-issue25.md; False: off.
DARK_BEFORE = True
MAX_ML = 40.0  # an added component holds at most this (every part)
# 1. fat-suppressed exams, the exam's own fat level (was engine/dark_fatsat.py, ves16)
FAT_PERCENTILE = 50.0  # the exam's fat level: this percentile of the pre-contrast signal in the region
FAT_Z = 5.0  # the early subtraction of a voxel: at least this many robust SDs
FAT_OPEN_MM = 1.5  # the opening's ball (vessels 1-4 mm wide; the segmenter's own is 2 mm)
FAT_DARK_SHARE = 0.5  # at least this share of a component under the first run's background level
FAT_MIN_ML = 0.2  # the confident lesion size
FAT_MAX_ELONGATION = 2.0  # sqrt(largest / second principal moment); 1 for a ball
# 2. in the region and the band beside it (was engine/dark_beside.py, irr16)
BESIDE_MIN_PE = 100.0  # early PE of a seed voxel (dark_lesions' dark_lesion_min_pe)
BAND_MM = 20.0  # the band beside the region (FTVOutlineSegmenter.default_beside_region_mm)
BESIDE_MIN_ML = 0.1  # the outline's minimum core
BESIDE_MAX_ELONGATION = 2.5  # compact (the dark-lesion and shell steps' limit)
# 3. in the region and behind its floor (was engine/dark_behind.py, rand16)
BEHIND_MIN_PE = 140.0  # early PE of a seed voxel and a behind-floor component's median: 2 x the FTV threshold
MIN_IN_REGION = 0.5  # a component with at least this share inside the region is judged as a region lesion


def _fat_candidates(pre, pe, sub, region, sd, pe_threshold, min_neighbors, spacing_zyx) -> tuple[np.ndarray, float]:
    """(bool candidates, the fat level) of part 1: the voxels of *region* judged against the exam's own levels,
    closed by one voxel and opened by :data:`FAT_OPEN_MM`."""
    fat = float(np.percentile(pre[region], FAT_PERCENTILE))
    cand = region & (pre >= np.float32(fat)) & (sub >= np.float32(FAT_Z * sd)) & (pe >= np.float32(pe_threshold))
    cand = _neighbours_rule(cand, min_neighbors)
    box = ndimage.find_objects(cand.view(np.uint8))
    if not box:
        return cand, fat
    bb = tuple(slice(max(s.start - 2, 0), min(s.stop + 2, n)) for s, n in zip(box[0], cand.shape))
    part = ndimage.binary_closing(cand[bb], structure=FULL26) & region[bb]
    cand[bb] = open_and_regrow(part, spacing_zyx, FAT_OPEN_MM) if FAT_OPEN_MM > 0 else part
    return cand, fat


def fatsat_lesions(exam, first: FTVResult, settings, maps, roi: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Part 1 (module docstring): (components to add on the exam grid, notes) inside the bool *roi*."""
    pe = maps.array("pe_early")
    valid = maps.array("valid") > 0
    pre = sitk.GetArrayViewFromImage(exam.pre).astype(np.float32, copy=False)
    early = sitk.GetArrayViewFromImage(exam.phases[maps.phases.early]).astype(np.float32, copy=False)
    region = roi & valid
    add = np.zeros(pe.shape, bool)
    sd = difference_noise(pre, early, region) if region.any() else None
    if not sd:
        return add, ["dark in a fat-suppressed exam: no subtraction noise level"]
    sp = np.asarray(exam.reference.GetSpacing(), float)[::-1]
    cand, fat = _fat_candidates(pre, pe, early - pre, region, sd, settings.pe_threshold, settings.min_neighbors, sp)
    if settings.skin_margin_mm > 0:
        drop_skin_components(cand, body_of(valid), sp, settings.skin_margin_mm)
    first_run = (sitk.GetArrayViewFromImage(first.mask) > 0) | (sitk.GetArrayViewFromImage(first.outline) > 0)
    near = ndimage.binary_dilation(first_run, structure=FULL26) if first_run.any() else first_run
    dark = pre < np.float32(first.background_threshold)
    labels, _ = ndimage.label(cand, structure=FULL26)
    vox_ml = float(np.prod(sp)) / 1000.0
    counts = {"added": 0, "joining": 0, "bright": 0, "small or large": 0, "elongated": 0, "vessel-like": 0}
    phases = None
    whole = tuple(slice(0, n) for n in pe.shape)
    for _, sl, comp in padded_components(labels):
        ml = np.count_nonzero(comp) * vox_ml
        if near[sl][comp].any():
            why = "joining"
        elif dark[sl][comp].mean() < FAT_DARK_SHARE:
            why = "bright"
        elif not FAT_MIN_ML <= ml <= MAX_ML:
            why = "small or large"
        elif elongation(comp, sp) > FAT_MAX_ELONGATION:
            why = "elongated"
        else:
            if phases is None:
                phases = phase_arrays(list(exam.phases), exam.effective_times())
            why = "vessel-like" if bf._tumor_score(comp, whole, sl, exam, labels, pe, settings.pe_threshold,
                                                   phases) < 0 else "added"
        counts[why] += 1
        if why == "added":
            add[sl] |= comp
    return add, [f"dark in a fat-suppressed exam (fat level {fat:.4g}, {FAT_Z:g} SD of the subtraction): "
                 + ", ".join(f"{v} {k}" for k, v in counts.items())]


def beside_lesions(exam, first: FTVResult, settings, maps, roi: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Part 2 (module docstring): (components to add on the exam grid, notes) in and beside the bool *roi*."""
    add = np.zeros(roi.shape, bool)
    if not roi.any():
        return add, []
    sp = np.asarray(exam.reference.GetSpacing(), float)[::-1]
    wide, rim = band_around(roi, sp, BAND_MM)
    got, _ = dark_lesions(exam, wide, first, replace(settings, dark_lesion_min_pe=BESIDE_MIN_PE), maps)
    if not got.any():
        return add, [f"dark before contrast, in and {BAND_MM:g} mm beside the region: none"]
    counts = {"added": 0, "joining": 0, "cut by the band": 0, "small, large or elongated": 0, "vessel-like": 0}
    outline = sitk.GetArrayViewFromImage(first.outline) > 0
    labels, _ = ndimage.label(got, structure=FULL26)
    vox_ml = float(np.prod(sp)) / 1000.0
    pe = maps.array("pe_early")
    whole = tuple(slice(0, n) for n in got.shape)
    phases = phase_arrays(list(exam.phases), exam.effective_times())
    for _, sl, comp in padded_components(labels):
        ml = np.count_nonzero(comp) * vox_ml
        if not BESIDE_MIN_ML <= ml <= MAX_ML or elongation(comp, sp) > BESIDE_MAX_ELONGATION:
            why = "small, large or elongated"
        elif _touches(comp, sl, outline):
            why = "joining"
        elif (comp & rim[sl]).any():
            why = "cut by the band"
        elif bf._tumor_score(comp, whole, sl, exam, labels, pe, settings.pe_threshold, phases) < 0:
            why = "vessel-like"
        else:
            add[sl] |= comp
            why = "added"
        counts[why] += 1
    return add, [f"dark before contrast, in and {BAND_MM:g} mm beside the region (PE >= {BESIDE_MIN_PE:g} %): "
                 + ", ".join(f"{v} {k}" for k, v in counts.items())]


def in_and_beside(exam, first: FTVResult, settings, maps, roi: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Parts 1 (only in an exam the first run judged fat-suppressed) and 2: the union of their components, their notes."""
    add, notes = beside_lesions(exam, first, settings, maps, roi)
    if first.fat_suppression.get("fat_suppressed"):
        more, more_notes = fatsat_lesions(exam, first, settings, maps, roi)
        add |= more
        notes = more_notes + notes
    add, guard_notes = dark_guard.add_dark_guard(first, exam, add, maps, roi)
    return add, notes + guard_notes


def behind_lesions(exam, first, settings, maps, context: dict, roi: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Part 3 (module docstring): (components to add on the exam grid, notes, the band's deep end per work column,
    -1 where there is none) of the breast region *roi* (bool, exam grid) and the band behind its floor."""
    ref = exam.reference
    empty = np.zeros(roi.shape, bool)
    got = bf.band_behind_floor(context)
    rim = deep = None
    area = roi
    if got is not None:
        band_w, rim_w, deep = got
        band, rim = _pair_on_exam(band_w, rim_w, context["work"], ref)  # one resampling, the same two arrays
        area = roi | band
    if deep is None:
        deep = np.full(context["body"].shape[::2], -1.0)
    if not area.any():
        return empty, ["dark lesions: no region"], deep
    found, _ = dark_lesions(exam, area, first, replace(settings, dark_lesion_min_pe=BEHIND_MIN_PE), maps)
    if not found.any():
        return empty, ["dark lesions (region and behind its floor): none"], deep
    sp = np.asarray(ref.GetSpacing())[::-1]
    vox_ml = float(np.prod(sp)) / 1000.0
    labels, _ = ndimage.label(found, structure=FULL26)
    counts = {"in the region": 0, "behind the floor": 0, "small or large": 0, "weak": 0, "elongated": 0, "cut": 0,
              "beside the breast": 0, "a piece of a larger enhancing body": 0, "vessel-like": 0}
    add = np.zeros(roi.shape, bool)
    pe = maps.array("pe_early")
    whole = tuple(slice(0, n) for n in roi.shape)
    columns = bodies = phases = None
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        comp = labels[sl] == lab
        n = np.count_nonzero(comp)
        if np.count_nonzero(comp & roi[sl]) >= MIN_IN_REGION * n:
            add[sl] |= comp
            counts["in the region"] += 1
            continue
        at = [s.start for s in sl]
        if not bf.MIN_ML <= n * vox_ml <= bf.MAX_ML:
            why = "small or large"
        elif np.median(pe[sl][comp]) < BEHIND_MIN_PE:
            why = "weak"
        elif elongation(comp, sp) > bf.MAX_ELONGATION:
            why = "elongated"
        elif rim is not None and _cut(comp, rim[sl], vox_ml * 1000.0):
            why = "cut"
        else:
            if columns is None:
                columns = bf.region_columns(context)
                bodies = bf.enhancing_bodies(exam, first, settings, maps, context)
                phases = phase_arrays(list(exam.phases), exam.effective_times())
            if bf.in_front_share(comp, at, ref, context["work"], columns) < bf.MIN_IN_FRONT:
                why = "beside the breast"
            elif n * vox_ml < bf.MIN_BODY_SHARE * bf._body_ml(comp, at, bodies):
                why = "a piece of a larger enhancing body"
            elif bf._tumor_score(comp, whole, sl, exam, labels, pe, settings.pe_threshold, phases) < 0:
                why = "vessel-like"
            else:
                add[sl] |= comp
                why = "behind the floor"
        counts[why] += 1
    add, guard_notes = dark_guard.add_dark_guard(first, exam, add, maps, roi)
    return add, ["dark lesions (region and behind its floor): " + ", ".join(f"{v} {k}" for k, v in counts.items())
                 ] + guard_notes, deep


def add_dark_before(segmenter, exam, prob: sitk.Image, breast_mask: sitk.Image | None, context: dict | None,
                    region: dict | None, options: dict, enabled: bool | None = None) -> tuple[sitk.Image, dict | None]:
    """The pipeline's step after the behind-floor step: *prob* with the components of the three parts (module
    docstring) given the first run's probability rule, and the gate's *region* with its chest-wall level moved back
    in the columns of part 3's components. *prob* and *region* come back as the very objects given when the step adds
    nothing, is off (*enabled*, default :data:`DARK_BEFORE`), for a reader's ROI or seed, without an FTV outline or
    without a breast region; part 3 also needs a chest-wall level in *region*."""
    on = DARK_BEFORE if enabled is None else enabled
    if not on or breast_mask is None:
        return prob, region
    prob = first_run_step(segmenter, exam, prob, breast_mask, options, True,
                          lambda first, maps, roi: in_and_beside(exam, first, segmenter.settings, maps, roi))
    return add_band_lesions(segmenter, exam, prob, context, region, options, True,
                            lambda e, first, s, maps, ctx: behind_lesions(e, first, s, maps, ctx,
                                                                          roi_array(breast_mask, e.reference)[0]))
