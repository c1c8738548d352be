"""Tumors dark before contrast, in the breast region and in the band beside it (issue 25, ``DARK_BESIDE``, off).

Census of the irregular family's missed lesions >= 0.1 mL on development seeds 7005-7039
(docs/decisions/missed-irregular-issue25.md): 8 of the 13 missed lesions are darker before contrast than FTV's
background level over most of their voxels (0-45 % of them pass it), while enhancing strongly (median PE 64-138 %,
p90 138-267 %); 4 of them lie inside the segmenter's breast region, 4 wholly outside it (in the true breast). FTV's
background condition removes them whatever their enhancement, and no step that is on looks at dark tissue: the
dark-lesion path (``kinetics/dark_lesions.py``, ``FTVSettings.dark_lesion_min_pe``) is built but off (its held-out
run gained nothing) and it looks only inside the region; the steps that look beyond the region (the beside-region
band, behind the floor) apply the background condition.

This step runs after the segmenter's ``predict`` and changes nothing the first run found. It applies the dark-lesion
path (:func:`..kinetics.dark_lesions.dark_lesions`: voxels enhancing >= :data:`MIN_PE` whose subtraction is
significant, FTV's neighbour, SER and vessel-opening rules, compact components mostly failing the background
condition, deeper than the skin margin, not touching the first core or outline; grown with the first run's level and
margin over the first run's tissue plus the dark voxels with a significant subtraction) to the region grown by
:data:`BAND_MM` (:func:`..kinetics.beside_region.band_around`, the beside-region band's width), and adds an outline
component of it only when it

* does not touch the first run's outline (26-neighbourhood);
* is contained: it does not reach the band's outermost layer (the heart, the chest-wall muscle and a vessel running
  on continue beyond it);
* holds :data:`MIN_ML` to :data:`MAX_ML` and is compact (elongation at most :data:`MAX_ELONGATION`);
* is called a tumor by the false-positive reduction's component classifier with no override
  (:func:`.behind_floor._tumor_score`, as :mod:`.near_level` and :mod:`.behind_floor` use it).

A kept component gets the first run's probability rule (:func:`..kinetics.ftv.soft_probability`); the breast gate
then keeps one outside the breast mask only when it is confident (flagged ``outside_breast_mask``), and the
false-positive reduction judges it like any other. Only with an FTV outline (``ftv-outline``), never for a reader's
seed or ROI.

**Off** (``DARK_BESIDE = False``) until the rule of docs/decisions/missed-irregular-issue25.md decides.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import padded_components
from ..kinetics.beside_region import band_around, elongation
from ..kinetics.dark_lesions import dark_lesions
from ..kinetics.ftv import FTVResult
from ..kinetics.outline import FULL26
from .behind_floor import _tumor_score
from .fpreduce import phase_arrays
from .near_level import _touches, first_run_step

# Off until the rule of docs/decisions/missed-irregular-issue25.md decides; True: on.
DARK_BESIDE = False
MIN_PE = 100.0  # early PE of a seed voxel (dark_lesions' dark_lesion_min_pe), chosen on development 7010-7039
BAND_MM = 20.0  # the band beside the region (FTVOutlineSegmenter.default_beside_region_mm)
MIN_ML = 0.1  # an added component: at least this (the outline's minimum core) ...
MAX_ML = 40.0  # ... and at most this
MAX_ELONGATION = 2.5  # compact (the dark-lesion and shell steps' limit)


def dark_beside_lesions(exam, first: FTVResult, settings, maps, roi: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(components to add on the exam grid, notes) in and beside the bool *roi* (the segmenter's search region)
    for the first run *first* with *settings* (its :class:`..kinetics.ftv.FTVSettings`) and *maps*."""
    add = np.zeros(roi.shape, bool)
    if not roi.any() or first.outline is None:
        return add, []
    sp = np.asarray(exam.reference.GetSpacing(), float)[::-1]
    wide, rim = band_around(roi, sp, BAND_MM)
    got, _ = dark_lesions(exam, wide, first, replace(settings, dark_lesion_min_pe=MIN_PE), maps)
    counts = {"added": 0, "joining": 0, "cut by the band": 0, "small, large or elongated": 0, "vessel-like": 0}
    if not got.any():
        return add, [f"dark before contrast, in and {BAND_MM:g} mm beside the region: none"]
    outline = sitk.GetArrayViewFromImage(first.outline) > 0
    labels, _ = ndimage.label(got, structure=FULL26)
    vox_ml = float(np.prod(sp)) / 1000.0
    pe = maps.array("pe_early")
    whole = tuple(slice(0, n) for n in got.shape)
    phases = phase_arrays(list(exam.phases), exam.effective_times())
    for _, sl, comp in padded_components(labels):
        ml = np.count_nonzero(comp) * vox_ml
        if not MIN_ML <= ml <= MAX_ML or elongation(comp, sp) > MAX_ELONGATION:
            counts["small, large or elongated"] += 1
        elif _touches(comp, sl, outline):
            counts["joining"] += 1
        elif (comp & rim[sl]).any():
            counts["cut by the band"] += 1
        elif _tumor_score(comp, whole, sl, exam, labels, pe, settings.pe_threshold, phases) < 0:
            counts["vessel-like"] += 1
        else:
            add[sl] |= comp
            counts["added"] += 1
    return add, [f"dark before contrast, in and {BAND_MM:g} mm beside the region (PE >= {MIN_PE:g} %): "
                 + ", ".join(f"{v} {k}" for k, v in counts.items())]


def add_dark_beside(segmenter, exam, prob: sitk.Image, breast_mask: sitk.Image | None, options: dict,
                    enabled: bool | None = None) -> sitk.Image:
    """The pipeline's step after ``predict``: *prob* with the dark tumors in and beside the region (module
    docstring) given the first run's probability rule. Unchanged when the step is off (*enabled*, default
    :data:`DARK_BESIDE`), for a reader's ROI or seed, without an FTV outline or without a breast region."""
    return first_run_step(segmenter, exam, prob, breast_mask, options, DARK_BESIDE if enabled is None else enabled,
                          lambda first, maps, roi: dark_beside_lesions(exam, first, segmenter.settings, maps, roi))
