"""Tumors dark before contrast, in the breast region and behind its floor (issue 25, ``DARK_BEHIND``, off).

FTV keeps a voxel only when its pre-contrast signal reaches the run's background threshold (0.6 x p95 of the
region in an exam judged fat-suppressed, a noise floor otherwise). On development exams of the domain-randomised
family (docs/decisions/missed-randomized-v2-issue25.md) that threshold lay 1.2-2.3 x above the median pre-contrast
signal of the glandular tissue in the exams where it lost a tumor: the phantom draws a tumor's pre-contrast signal
from the glandular tissue's, so such a tumor fails the condition whatever its enhancement. Five of the 19 missed
randomised lesions (>= 0.1 mL) of 7000-7039 were dark and enhancing at PE 74-236 %, four of them (mostly) behind
the region's floor, where neither shipped step looks for them: the behind-floor step (:mod:`.behind_floor`) outlines
with the first run's thresholds (so not a dark tumor), and ``dark_lesion_min_pe`` (:mod:`..kinetics.dark_lesions`,
off) looks inside the region only.

This step runs after the behind-floor step and leaves the region, the first run and everything found before as it
is. On the breast region the segmenter searched plus the body from the region's floor to
:data:`.behind_floor.DEPTH_MM` behind it (:func:`.behind_floor.band_behind_floor`), it runs the dark-lesion rule of
:func:`..kinetics.dark_lesions.dark_lesions` (voxels with early PE >= :data:`MIN_PE` whose subtraction is at least
5 robust SDs, FTV's neighbour rule and vessel opening; a compact component, mostly darker than the background
threshold, apart from the first outline, deeper than the skin margin, grown with the first run's outline rules).
What that adds is judged per 26-connected component:

* mostly inside the breast region (at least half of it): kept as it is (the breast gate and the false-positive
  reduction judge it like any lesion);
* otherwise (behind the floor) it must pass the behind-floor step's guards: :data:`.behind_floor.MIN_ML` to
  :data:`.behind_floor.MAX_ML`, its median early PE at least :data:`MIN_PE` (the seed level, for the whole
  component: on development 7010 a dark vessel's piece behind the floor, PE median 136 %, passed every other guard;
  the two dark tumors behind the floor there, 7028 and 7030, had 201 % and 147 %), elongation at most :data:`.behind_floor.MAX_ELONGATION`, not continuing through
  the band's deep end (:func:`..kinetics.deep_band._cut`), behind the breast rather than beside it
  (:data:`.behind_floor.MIN_IN_FRONT`), not a piece of a larger enhancing body (:data:`.behind_floor.MIN_BODY_SHARE`)
  and called a tumor by the component classifier.

Kept components get the first run's probability rule; the gate's chest-wall level moves back in their columns
(:func:`..kinetics.deep_band.add_band_lesions`), so a confident one behind the floor is kept flagged
``outside_breast_mask`` and one that is not confident is removed by the gate. Only with an FTV outline
(``ftv-outline``), never for a reader's ROI or seed, never on slabs (no floor).

**Off** (``DARK_BEHIND = False``) by the rule of docs/decisions/missed-randomized-v2-issue25.md: development 7000-7009
passed (randomised lesions 7/13 -> 8/13, nothing else changed); held-out 5104-5111 (once) gained a heterogeneous and a
vessels lesion (10/11 -> 11/11, 8/11 -> 9/11), no FP or Dice lower, but no randomised lesion (8/14 -> 8/14): the
rule's first condition failed.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..kinetics.beside_region import elongation
from ..kinetics.dark_lesions import dark_lesions
from ..kinetics.deep_band import _cut, _on_exam, add_band_lesions
from ..kinetics.ftv import roi_array
from ..kinetics.outline import FULL26
from . import behind_floor as bf

# Off: held-out 5104-5111 gained no randomised lesion (docs/decisions/missed-randomized-v2-issue25.md); True: on.
DARK_BEHIND = False
MIN_PE = 140.0  # early PE of a seed voxel: 2 x the FTV threshold (kinetics/dark_lesions.py's candidate)
MIN_IN_REGION = 0.5  # a component with at least this share inside the breast region is judged as a region lesion


def dark_components(exam, first, settings, maps, context: dict, roi: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """(components to add on the exam grid, notes, the band's deep end per work column or None): the dark
    lesions (module docstring) of the breast region *roi* (bool, exam grid) and the band behind its floor."""
    ref = exam.reference
    empty = np.zeros(roi.shape, bool)
    got = bf.band_behind_floor(context)
    band = rim = deep = None
    area = roi
    if got is not None:
        band_w, rim_w, deep = got
        band, rim = _on_exam(band_w, context["work"], ref), _on_exam(rim_w, context["work"], ref)
        area = roi | band
    if not area.any():
        return empty, ["dark lesions: no region"], deep
    found, _ = dark_lesions(exam, area, first, replace(settings, dark_lesion_min_pe=MIN_PE), maps)
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
        elif np.median(pe[sl][comp]) < MIN_PE:
            why = "weak"
        elif elongation(comp, sp) > bf.MAX_ELONGATION:
            why = "elongated"
        elif rim is not None and _cut(comp, rim[sl], vox_ml * 1000.0):
            why = "cut"
        else:
            if columns is None:
                columns = bf.region_columns(context)
                bodies = bf.enhancing_bodies(exam, first, settings, maps, context)
                phases = bf.phase_arrays(list(exam.phases), exam.effective_times())
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
    return add, ["dark lesions (region and behind its floor): " + ", ".join(f"{v} {k}" for k, v in counts.items())], \
        (deep if deep is not None else np.full(context["body"].shape[::2], -1.0))


def add_dark_behind(segmenter, exam, prob: sitk.Image, breast_mask: sitk.Image | None, context: dict,
                    region: dict | None, options: dict) -> tuple[sitk.Image, dict | None]:
    """The pipeline's step after the behind-floor step: *prob* with the dark lesions kept (module docstring) and
    the gate's *region* with its chest-wall level moved back in their columns. Unchanged when :data:`DARK_BEHIND`
    is off, for a reader's ROI or seed, without an FTV outline, a breast region or a chest-wall level."""
    if breast_mask is None:
        return prob, region
    return add_band_lesions(segmenter, exam, prob, context, region, options, DARK_BEHIND,  # the region read only when on
                            lambda e, first, s, maps, ctx: dark_components(e, first, s, maps, ctx,
                                                                           roi_array(breast_mask, e.reference)[0]))
