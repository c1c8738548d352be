"""Tumors darker before contrast than FTV's background level in fat-suppressed exams (issue 25, ``DARK_FATSAT``, off).

In an exam judged fat-suppressed FTV keeps a voxel only when its pre-contrast signal reaches 0.6 x p95 of the
region: made to drop fat, air and noise, where PE means nothing. In the domain-randomised anatomy (the vessels,
heterogeneous and irregular families) a tumor takes the parenchyma's signal before contrast, and the p95 of a
fat-suppressed breast is bright skin, nipple, vessels and dense parenchyma: the tumor falls under the level and is
lost whatever its enhancement (docs/decisions/dark-before-contrast-issue25.md, missed-vessels-issue25.md).
``kinetics/dark_lesions.py`` (off) looked for such tumors from voxels at PE >= 140 % after the segmenter's 2 mm
vessel opening; the vessels family's tumors are patchy (strongly enhancing parts in moderate tissue) and the
opening left nothing of them.

This step runs after the segmenter's ``predict``, only in exams the first run judged fat-suppressed, and leaves the
region, the thresholds and everything the first run found as they are. It judges a voxel against the exam's own
levels instead of the level made for bright fat:

* tissue, not fat or noise: its pre-contrast signal reaches the exam's fat level (the :data:`FAT_PERCENTILE`
  th percentile of the pre-contrast signal in the region, fat being most of a fat-suppressed breast) and its early
  subtraction reaches :data:`Z` x the subtraction's robust SD in the region (noise on a dark voxel does not make
  its PE; fat, which takes up no contrast, does not reach it);
* enhancing like a tumor: early PE >= FTV's PE threshold, with FTV's neighbour rule (4 of 26).

Those voxels are closed by one voxel (26-neighbourhood; the patchy parts of one tumor join) and cut from thin
vessels by an opening with a ball of :data:`OPEN_MM` followed by one ball of regrowth
(:func:`..kinetics.seeded.open_and_regrow`). A 26-connected component is kept only when it is

* separate: one voxel or more away from the first run's core and outline;
* mostly dark: at least :data:`MIN_DARK_SHARE` of it under the first run's background level (bright enhancing
  tissue is the first run's business);
* of a lesion's size: :data:`MIN_ML` to :data:`MAX_ML`;
* a mass, not a vessel: elongation at most :data:`MAX_ELONGATION` (:func:`..kinetics.beside_region.elongation`);
* deeper than the segmenter's skin margin (FTV's own ``drop_skin_components``, measured from the air);
* called a tumor by the false-positive reduction's component classifier (:func:`.behind_floor._tumor_score`:
  volume, elongation, flatness, thickness, Hessian tubularity, wash-in/washout), no override.

The search stays inside the breast region the segmenter searched (the heart and mediastinum are outside it). A kept
component gets the first run's probability rule (:func:`..kinetics.ftv.soft_probability`); the breast gate and the
false-positive reduction then judge it like any other. Only with an FTV outline (``ftv-outline``), never for a
reader's ROI or seed.

**Off** (``DARK_FATSAT = False``) by the rule of docs/decisions/missed-vessels-issue25.md: on development 7010-7039 it
found vessels 7022 and 7030 (Dice 0 -> 0.673, 0.925) and added nothing that is not tumor, but on the comparison seeds
7000-7009 every exam stayed identical (no vessels miss there it can reach; randomised 7009 t1 is darker than the
region's median, the fat level assumed here), so the rule's sensitivity condition failed and no held-out seed was run.
"""
from __future__ import annotations


import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import padded_components
from ..kinetics.beside_region import elongation
from ..kinetics.ftv import FTVResult, _neighbours_rule, drop_skin_components
from ..kinetics.outline import FULL26
from ..kinetics.outline_shells import body_of
from ..kinetics.seeded import open_and_regrow
from ..kinetics.significance import difference_noise
from .behind_floor import _tumor_score
from .fpreduce import phase_arrays
from .near_level import first_run_step

# Off: development 7000-7009 gained nothing (docs/decisions/missed-vessels-issue25.md); True: on.
DARK_FATSAT = False
FAT_PERCENTILE = 50.0  # the exam's fat level: this percentile of the pre-contrast signal in the region
Z = 5.0  # the early subtraction of a voxel: at least this many robust SDs
OPEN_MM = 1.5  # the opening's ball (vessels 1-4 mm wide; the segmenter's own is 2 mm)
MIN_DARK_SHARE = 0.5
MIN_ML = 0.2  # the confident lesion size
MAX_ML = 40.0
MAX_ELONGATION = 2.0  # sqrt(largest / second principal moment); 1 for a ball


def candidate_voxels(pre: np.ndarray, pe: np.ndarray, sub: np.ndarray, region: np.ndarray, sd: float,
                     pe_threshold: float, min_neighbors: int, spacing_zyx) -> tuple[np.ndarray, float]:
    """(bool candidates, the fat level): the voxels of *region* judged against the exam's own levels (module
    docstring), closed by one voxel and opened by :data:`OPEN_MM`."""
    fat = float(np.percentile(pre[region], FAT_PERCENTILE))
    cand = region & (pre >= np.float32(fat)) & (sub >= np.float32(Z * sd)) & (pe >= np.float32(pe_threshold))
    cand = _neighbours_rule(cand, min_neighbors)
    box = ndimage.find_objects(cand.view(np.uint8))
    if not box:
        return cand, fat
    bb = tuple(slice(max(s.start - 2, 0), min(s.stop + 2, n)) for s, n in zip(box[0], cand.shape))
    part = ndimage.binary_closing(cand[bb], structure=FULL26) & region[bb]
    cand[bb] = open_and_regrow(part, spacing_zyx, OPEN_MM) if OPEN_MM > 0 else part
    return cand, fat


def dark_fatsat_lesions(exam, first: FTVResult, settings, maps, roi: np.ndarray,
                        trace: list | None = None) -> tuple[np.ndarray, list[str]]:
    """(components to add on the exam grid, notes) inside the bool *roi* (the segmenter's search region);
    *trace* (a list) gets one dict per component judged."""
    pe = maps.array("pe_early")
    valid = maps.array("valid") > 0
    pre = sitk.GetArrayViewFromImage(exam.pre).astype(np.float32, copy=False)
    early_img = exam.phases[maps.phases.early]
    early = sitk.GetArrayViewFromImage(early_img).astype(np.float32, copy=False)
    region = roi & valid
    add = np.zeros(pe.shape, bool)
    sd = difference_noise(pre, early, region) if region.any() else None
    if not sd:
        return add, ["dark in a fat-suppressed exam: no subtraction noise level"]
    sp = np.asarray(exam.reference.GetSpacing(), float)[::-1]
    cand, fat = candidate_voxels(pre, pe, early - pre, region, sd, settings.pe_threshold, settings.min_neighbors, sp)
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
    for lab, sl, comp in padded_components(labels):
        ml = np.count_nonzero(comp) * vox_ml
        rec = {"label": lab, "box": sl, "ml": ml, "dark": float(dark[sl][comp].mean()), "why": None}
        if near[sl][comp].any():
            rec["why"] = "joining"
        elif rec["dark"] < MIN_DARK_SHARE:
            rec["why"] = "bright"
        elif not MIN_ML <= ml <= MAX_ML:
            rec["why"] = "small or large"
        else:
            rec["elongation"] = elongation(comp, sp)
            if rec["elongation"] > MAX_ELONGATION:
                rec["why"] = "elongated"
            else:
                if phases is None:
                    phases = phase_arrays(list(exam.phases), exam.effective_times())
                rec["score"] = _tumor_score(comp, whole, sl, exam, labels, pe, settings.pe_threshold, phases)
                rec["why"] = "vessel-like" if rec["score"] < 0 else "added"
        counts[rec["why"]] += 1
        if rec["why"] == "added":
            add[sl] |= comp
        if trace is not None and (rec["why"] != "small or large" or ml >= 0.05):
            trace.append(dict(rec, mask=comp))
    return add, [f"dark in a fat-suppressed exam (fat level {fat:.4g}, {Z:g} SD of the subtraction): "
                 + ", ".join(f"{v} {k}" for k, v in counts.items())]


def add_dark_fatsat(segmenter, exam, prob: sitk.Image, breast_mask: sitk.Image | None, options: dict,
                    enabled: bool | None = None, trace: list | None = None) -> sitk.Image:
    """The pipeline's step after ``predict``: *prob* with the kept components (module docstring) given the first
    run's probability rule. Unchanged when the step is off (*enabled*, default :data:`DARK_FATSAT`), for a reader's
    ROI or seed, without an FTV outline, without a breast region, or when the exam is not judged fat-suppressed."""
    return first_run_step(segmenter, exam, prob, breast_mask, options, DARK_FATSAT if enabled is None else enabled,
                          lambda first, maps, roi: dark_fatsat_lesions(exam, first, segmenter.settings, maps, roi, trace),
                          applies=lambda first: bool(first.fat_suppression.get("fat_suppressed")))
