"""A guard on the components of ``engine/dark_before``: their enhancement must stand out of the noise (issue 25,
``DARK_GUARD``; docs/decisions/dark-before-guard-issue25.md).

``dark_before``'s finders judge a dark component by its percentage enhancement (PE >= 100 % or 140 % in a seed,
FTV's level elsewhere). In tissue that is nearly black before contrast (fat of a fat-suppressed exam, air at the
skin) that ratio has a denominator near zero: a few noise SDs of subtraction read as PE 100-240 %. The development
census (randomised 7010-7039, ``benchmarks/dark_before_census.py``) found every false lesion the step added in the
phantom's fat or air (or fat, vessel and muscle behind the floor), with a median early subtraction of 1.9-10 robust
SDs of the subtraction noise, 6 of 9 under 5; every dark tumor it found had 5.2 or more.

The guard keeps a component only when the median of its early subtraction (early phase minus pre-contrast) reaches
:data:`MIN_Z` robust SDs of the subtraction noise in the breast region (:func:`..kinetics.significance.difference_noise`,
the noise level part 1 of ``dark_before`` uses): the same 5 SD that part 1 already asks of each voxel, asked here of
the component's median, in every part. It reads the signal in units of the exam's own noise, so it does not depend
on the scanner's scale, the voxel size or the fat level.

**Off** (``DARK_GUARD = False``) by the rule of the record: held-out 5160-5167 (once, all families and hybrids) it
dropped no component on any of the 96 exams, so the summed FP lesions did not fall by >= 2 (13 -> 13). On development
randomised 7000-7049 it removes 8 of the 15 false lesions ``dark_before`` adds and keeps all 13 dark-before tumors.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..kinetics.outline import FULL26
from ..kinetics.significance import difference_noise

DARK_GUARD = False  # off: held-out 5160-5167 failed the rule of docs/decisions/dark-before-guard-issue25.md
MIN_Z = 5.0  # median early subtraction of a component, in robust SDs of the subtraction noise (part 1's FAT_Z)


def subtraction_z(exam, maps, roi: np.ndarray, add: np.ndarray) -> tuple[np.ndarray, float | None]:
    """(median early subtraction of each 26-connected component of the bool *add*, in robust SDs of the subtraction
    noise in *roi* & the valid tissue; component k at index k - 1 of ``ndimage.label(add, FULL26)``, the noise SD or
    None where the region holds too little signal to measure it)."""
    pre = sitk.GetArrayViewFromImage(exam.pre).astype(np.float32, copy=False)
    early = sitk.GetArrayViewFromImage(exam.phases[maps.phases.early]).astype(np.float32, copy=False)
    valid = maps.array("valid") > 0
    region = roi & valid
    sd = difference_noise(pre, early, region) if region.any() else None
    labels, n = ndimage.label(add, structure=FULL26)
    if not sd or n == 0:
        return np.zeros(n), sd
    sub = early - pre
    med = ndimage.median(sub, labels, np.arange(1, n + 1))
    return np.asarray(med, float) / sd, sd


def add_dark_guard(first, exam, add: np.ndarray, maps, roi: np.ndarray, enabled: bool | None = None
                   ) -> tuple[np.ndarray, list[str]]:
    """(*add* less its components whose median early subtraction is under :data:`MIN_Z` noise SDs, notes). *add*
    comes back as the very object given when the guard is off (*enabled*, default :data:`DARK_GUARD`), *add* is
    empty, no noise level can be measured (then nothing is dropped) or every component passes. *first* (the first
    run) is not read: it keeps the pipeline steps' argument order."""
    on = DARK_GUARD if enabled is None else enabled
    if not on or not add.any():
        return add, []
    z, sd = subtraction_z(exam, maps, roi, add)
    if not sd:
        return add, ["dark-before guard: no subtraction noise level, nothing dropped"]
    weak = np.flatnonzero(z < MIN_Z) + 1
    note = [f"dark-before guard (median early subtraction >= {MIN_Z:g} SD): {len(z) - len(weak)} kept, "
            f"{len(weak)} dropped"]
    if not len(weak):
        return add, note
    labels, _ = ndimage.label(add, structure=FULL26)
    return add & ~np.isin(labels, weak), note
