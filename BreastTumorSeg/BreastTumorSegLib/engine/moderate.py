"""Compact, moderately enhancing tumors that stand out from their own ring (issues 25 and 31, ``MODERATE``, off).

FTV's core needs PE >= 70 % (``FTVSettings.pe_threshold``) in a voxel and in 4 of its 26 neighbours. A compact tumor
whose early PE sits under that level (40-70 %) has no core: no outline grows from it and it is missed whole,
whatever it stands out from (docs/decisions/followup-matching-issue31.md: ellipse 7105, 5.9 mL at PE p50 64 %, the
model's probability <= 0.45 everywhere; the follow-up's baseline misses). :mod:`.near_level` (off) looks for such
tumors with an absolute margin (the ring's PE p90 <= 20 %) and leaves out a component touching the first run's
result; this step judges a component against its **own** ring instead, and looks beside what the first run found.

After the segmenter's ``predict``, inside the breast region it searched, on tissue passing the first run's
pre-contrast background condition: the voxels whose 3 x 3 x 3 neighbourhood median PE reaches :data:`MIN_PE`
(:func:`.near_level.near_level_voxels`), less the first run's result grown by one voxel (its outline, or its FTV
mask for plain ``ftv``), less the components within the segmenter's skin margin. A 26-connected component is kept
when it is

* of a lesion's size: :data:`MIN_ML` to :data:`MAX_ML`;
* moderate as a whole: its median PE at least :data:`MIN_PE` and under the FTV level;
* a mass: elongation at most :data:`MAX_ELONGATION` (:func:`..kinetics.beside_region.elongation`);
* standing out from its own ring: its median PE at least :data:`MIN_CONTRAST` points above the
  :data:`RING_PERCENTILE` th percentile PE of the judged tissue 1.5-6 mm around it (the first run's result
  excluded, so a tumor beside a found one is judged on its own surroundings), and at least
  :data:`MIN_RING_SHARE` of that shell is judged tissue;
* called a tumor by the false-positive reduction's component classifier (:func:`.behind_floor._tumor_score`).

A kept component enters the probability map by the first run's rule (:func:`..kinetics.ftv.soft_probability`,
0.6 inside); the gate and the false-positive reduction then judge it like any other. Never for a reader's ROI or
seed. The decision and the development census: docs/decisions/moderate-tumors-issue25.md.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import padded_components
from ..kinetics.beside_region import elongation
from ..kinetics.ftv import FTVResult, drop_skin_components
from ..kinetics.outline import FULL26
from .near_level import ClassifierJudge, first_run_step, near_level_voxels, ring_pe

# Off until its rule passes (docs/decisions/moderate-tumors-issue25.md); True: on.
MODERATE = False
MIN_PE = 40.0  # neighbourhood median and component median PE (%)
MIN_ML = 0.2
MAX_ML = 20.0  # the tumors in question are a few mL; background enhancement at this level is larger (census)
MAX_ELONGATION = 2.0
MIN_CONTRAST = 40.0  # component median PE minus its ring's RING_PERCENTILE th percentile (PE points)
RING_PERCENTILE = 90.0
MIN_RING_SHARE = 0.5


def found_by_first_run(first: FTVResult) -> np.ndarray:
    """Bool: the first run's result (its outline, or its FTV mask without one) grown by one voxel (26-neighbourhood)."""
    found = sitk.GetArrayViewFromImage(first.mask if first.outline is None else first.outline) > 0
    return ndimage.binary_dilation(found, structure=FULL26) if found.any() else found.copy()


def stands_out(comp: np.ndarray, sl: tuple, pe: np.ndarray, judged: np.ndarray, spacing_zyx) -> bool:
    """Whether *comp* (its mask in the slices *sl*) stands out from its own ring of *judged* tissue: at least
    :data:`MIN_RING_SHARE` of the shell judged, and its median PE :data:`MIN_CONTRAST` over the ring's percentile."""
    ring, share = ring_pe(comp, sl, pe, judged, spacing_zyx)
    if share < MIN_RING_SHARE or not ring.size:
        return False
    return float(np.median(pe[sl][comp])) - float(np.percentile(ring, RING_PERCENTILE)) >= MIN_CONTRAST


def moderate_lesions(exam, first: FTVResult, settings, maps, roi: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(components to add on the exam grid, notes) inside the bool *roi* (the segmenter's search region)."""
    pe = maps.array("pe_early")
    valid = maps.array("valid") > 0
    pre = sitk.GetArrayViewFromImage(exam.pre)
    ok = roi & valid & (pre >= np.float32(first.background_threshold))
    add = np.zeros(ok.shape, bool)
    if not ok.any():
        return add, ["moderate tumors: no tissue"]
    sp = np.asarray(exam.reference.GetSpacing())[::-1]
    found = found_by_first_run(first)
    tissue = ndimage.find_objects(ok.view(np.uint8))[0]
    bb = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(tissue, ok.shape))
    cand = np.zeros(ok.shape, bool)
    cand[bb] = near_level_voxels(pe[bb], ok[bb], MIN_PE)
    cand &= ~found
    if settings.skin_margin_mm > 0:  # the nipple and skin, as FTV's own core leaves them out
        drop_skin_components(cand, valid, sp, settings.skin_margin_mm)
    labels, _ = ndimage.label(cand, structure=FULL26)
    judged = ok & ~found
    vox_ml = float(np.prod(sp)) / 1000.0
    counts = {"added": 0, "small or large": 0, "weak, or over the level": 0, "elongated": 0,
              "not above its ring": 0, "vessel-like": 0}
    judge = ClassifierJudge(exam, labels, pe, settings.pe_threshold)
    for _, sl, comp in padded_components(labels):
        ml = np.count_nonzero(comp) * vox_ml
        if not MIN_ML <= ml <= MAX_ML:
            counts["small or large"] += 1
        elif not MIN_PE <= np.median(pe[sl][comp]) < settings.pe_threshold:
            counts["weak, or over the level"] += 1
        elif elongation(comp, sp) > MAX_ELONGATION:
            counts["elongated"] += 1
        elif not stands_out(comp, sl, pe, judged, sp):
            counts["not above its ring"] += 1
        else:
            judge.add(comp, sl, add, counts)
    return add, ["moderate tumors standing out from their ring: " + ", ".join(f"{v} {k}" for k, v in counts.items())]


def add_moderate(segmenter, exam, prob: sitk.Image, breast_mask: sitk.Image | None, options: dict,
                 enabled: bool | None = None) -> sitk.Image:
    """The pipeline's step after ``predict``: *prob* with the moderate components (module docstring) given the first
    run's probability rule. Unchanged when the step is off (*enabled*, default :data:`MODERATE`), for a reader's ROI
    or seed, without an FTV first run (``ftv`` or ``ftv-outline``) or without a breast region."""
    return first_run_step(segmenter, exam, prob, breast_mask, options, MODERATE if enabled is None else enabled,
                          lambda first, maps, roi: moderate_lesions(exam, first, segmenter.settings, maps, roi),
                          need_outline=False)
