"""Lesions in the deep band behind the breast region's floor (issue 25, ``DEEP_BAND``, off).

The breast region ends at the skin over the sternum + 12 mm. On development exams of the
domain-randomised family (7000-7029) all 9 lesions lost to the region lay behind that floor, 24-102 mm
in front of the pectoral muscle (docs/decisions/lung-chest-wall-issue25.md). Moving the whole region's
floor back to the lungs (:mod:`..preprocess.lung_level`) found some of them but failed its rule: the
deeper region brought muscle and its vessels into the search and changed the exam-wide statistics
(background level, BPE) the FTV outline draws from the region.

This step leaves the region and the first FTV/outline run as they are and looks at the band between
the region's floor (``context["chest_wall_row"]``) and the floor found from the lungs
(:func:`..preprocess.lung_level.lung_limit`: :data:`~..preprocess.lung_level.WALL_MM` in front of the
lung) less :data:`DEEP_MARGIN_MM`, in the columns where the lungs give a deeper floor. With the first
run's own thresholds (background level, fat-suppression decision, outline level; the core and outline
rules of :func:`.beside_region.band_outline`) it outlines the enhancement in the band and adds a
component only when it is

* separate: it does not touch the first run's outline (26-neighbourhood): nothing the first run found
  changes;
* contained: no voxel in the band's outer layer towards the chest wall (next to the body deeper than
  the band's limit in the band's columns) over more than ``beside_region.MAX_CONTACT`` (0.75) of its
  own cross-section: a structure the band cuts there continues into the chest wall (muscle, its
  vessels); a tumor lying against the muscle touches it over a few voxels (7012: 3 voxels of 14.8 mL). Where the band ends beside it (columns without lung behind) nothing is
  cut off: on development exam 7012 the tumor lies across that end;
* compact: elongation (:func:`.beside_region.elongation`) at most :data:`MAX_ELONGATION`, and at least
  :data:`MIN_ML`;
* clearly enhancing: its median early PE at least the FTV PE threshold.

The added components get the first run's probability rule; the breast gate's chest-wall level moves
back only in the columns of an added component (so the gate does not remove it as "behind the chest
wall"), and the false-positive reduction judges it like any other component.

**Off** by the rule of docs/decisions/deep-band-issue25.md: on development 7000-7009 (every family and
hybrid row) one exam changed, irregular 7005 0.000 -> 0.599 (15/16 -> 16/16 lesions), nothing lower, no
FP added, but the randomised family's sensitivity, the rule's third condition, stayed 7/13 (those seeds
hold no lesion inside a band). Randomised 7010-7029 (reported only): 7012 0.000 -> 0.674, nothing else.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import component_parts as core_parts  # the boxes around the band's cores
from ..core.imageutil import from_array, padded_components, resample_to
from ..core.memo import remember_last
from ..preprocess.breast_region import _midline_column
from ..preprocess.lung_level import lung_limit
from .beside_region import MAX_CONTACT, band_box, band_cores, band_outline, elongation
from .ftv import FTVResult, soft_probability
from .outline import FULL26, bbox

# Off: failed its development rule (docs/decisions/deep-band-issue25.md: randomised lesion sensitivity 7/13 -> 7/13;
# no family lower, no FP added, irregular 15/16 -> 16/16); no held-out run. run_with_deep_band.py turns it on.
DEEP_BAND = False
DEEP_MARGIN_MM = 5.0  # the band ends this far in front of the lung-based floor
MAX_ELONGATION = 3.0  # sqrt(largest / second principal moment): a vessel's piece is longer
MIN_ML = 0.1  # smaller components are not added


def band_on_work(context: dict, margin_mm: float = DEEP_MARGIN_MM) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(band, outer layer, deep limit row per (z, x) or -1) on the work grid of a
    :func:`..preprocess.breast_region.breast_region` *context*; None for slabs, without a chest-wall
    level, or when no lung gives a deeper floor."""
    floor = context.get("chest_wall_row")
    if context.get("level") is None or context.get("slab") is not None or floor is None:
        return None
    work, body = context["work"], context["body"]
    limit = lung_limit(work, body, _midline_column(body, context["layout"], work))
    if limit is None:
        return None
    deep = np.where(np.isfinite(limit), limit - margin_mm / work.GetSpacing()[1], -1.0)
    ok = deep > floor
    if not ok.any():
        return None
    rows = np.arange(body.shape[1])[None, :, None]
    deep = np.where(ok, deep, -1.0)
    band = body & ok[:, None, :] & (rows > floor[:, None, :]) & (rows <= deep[:, None, :])
    # The outer layer towards the chest wall only (the body deeper than the band's limit in its own
    # columns): where the band ends beside it (no lung behind) a tumor lying across is not cut off.
    behind = body & ok[:, None, :] & (rows > deep[:, None, :])
    return band, outer_layer(band, behind), deep


def outer_layer(band: np.ndarray, behind: np.ndarray) -> np.ndarray:
    """The voxels of *band* that are or touch (26-neighbourhood) a voxel of *behind*: the dilation of *behind*
    taken only in the box of *band* grown by one voxel (all that a band voxel's neighbours reach)."""
    rim = np.zeros(band.shape, bool)
    grown = bbox(band, margin=1)
    if grown is not None:
        rim[grown] = band[grown] & ndimage.binary_dilation(behind[grown], structure=FULL26)
    return rim


def _on_exam(arr: np.ndarray, work: sitk.Image, ref: sitk.Image) -> np.ndarray:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.CopyInformation(work)
    out = resample_to(img, ref, sitk.sitkNearestNeighbor)
    return sitk.GetArrayFromImage(out) > 0


def _cut(comp: np.ndarray, rim: np.ndarray, vox_mm3: float) -> bool:
    """Whether *comp* continues through the band's outer layer *rim*: it meets it over more than
    :data:`~.beside_region.MAX_CONTACT` of its own cross-section (pi r^2, r the radius of a ball of its
    volume); a body lying against the chest wall meets it over a few voxels."""
    contact = float(np.count_nonzero(comp & rim)) * vox_mm3 ** (2.0 / 3.0)
    r = (3.0 * float(np.count_nonzero(comp)) * vox_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0)
    return contact > MAX_CONTACT * np.pi * r * r


def _grid(img: sitk.Image) -> tuple:
    """Everything of *img* that a resampling from or onto it reads besides its voxels: size, origin, spacing, direction."""
    return img.GetSize(), img.GetOrigin(), img.GetSpacing(), img.GetDirection()


@remember_last(lambda band_w, rim_w, work, ref: (band_w, rim_w, _grid(work), _grid(ref)))
def _pair_on_exam(band_w: np.ndarray, rim_w: np.ndarray, work: sitk.Image, ref: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_on_exam` of *band_w* and of *rim_w* with one nearest-neighbour resampling (bit 1: band, bit 2: rim):
    each exam voxel takes the same work voxel for both, so the two arrays are those of two resamplings.

    Remembered (:func:`~..core.memo.remember_last`): the behind-floor step and the dark step's part 3 resample the
    same band of the same context (the work grid's voxels are not read, only its geometry; the exam grid's likewise)."""
    img = sitk.GetImageFromArray(band_w.astype(np.uint8) | (rim_w.astype(np.uint8) << 1))
    img.CopyInformation(work)
    out = resample_to(img, ref, sitk.sitkNearestNeighbor)
    arr = sitk.GetArrayViewFromImage(out)
    return (arr & 1) > 0, (arr & 2) > 0


def outline_in_parts(exam, maps, band: np.ndarray, first, settings, box: tuple[slice, ...]) -> np.ndarray:
    """``band_outline(exam, maps, band, band, first, settings, box)[0]``, the same voxels, computed only in boxes
    around the band's cores (:func:`core_parts`, grown as far as *box* is grown around the candidates): each
    step of the outline reaches less far from a core than that (the vessel opening, the skin depth, the growth
    within ``outline_margin_mm``, the closing of each outline component), so a box lying that far around its
    cores gives what the whole *box* gives there, and no outline voxel lies outside the boxes."""
    sp = np.asarray(exam.reference.GetSpacing())[::-1]
    _, core, _, _, _ = band_cores(exam, maps, band, first, settings, box)
    found = np.zeros(core.shape, bool)
    for part in core_parts(core, sp, band_pad_mm(settings)):
        sub = tuple(slice(b.start + p.start, b.start + p.stop) for b, p in zip(box, part))
        found[part] = band_outline(exam, maps, band, band, first, settings, sub)[0]
    return found


def band_pad_mm(settings) -> float:
    """How far the box of :func:`band_components` reaches around the band's candidate voxels."""
    return 2 * settings.outline_margin_mm + settings.skin_margin_mm + 4.0


def band_components(exam, first: FTVResult, settings, maps, context: dict, band_w: np.ndarray, rim_w: np.ndarray,
                    parts: bool = True):
    """The first run's thresholds outlined inside a band behind the breast region (*band_w*, its outer
    layer *rim_w*: work-grid arrays of ``context``), in the box around the band's enhancing voxels:
    ``(box, labels, before, rim, pe)`` -- the outline's 26-connected components in the box, the first
    outline and the outer layer (both in the box), the early PE on the exam grid -- or None when nothing
    in the band enhances above the first run's thresholds. *parts* (default) outlines only around the band's
    cores (:func:`outline_in_parts`, the same voxels); False outlines the whole box."""
    ref = exam.reference
    band, rim = _pair_on_exam(band_w, rim_w, context["work"], ref)
    sp = np.asarray(ref.GetSpacing())[::-1]
    pe = maps.array("pe_early")
    cand = band & (pe >= np.float32(settings.pe_threshold)) & (maps.array("valid") > 0)
    cand &= sitk.GetArrayViewFromImage(exam.pre) >= np.float32(first.background_threshold)
    if not cand.any():
        return None
    box = band_box(cand, sp, band_pad_mm(settings))
    if parts:
        found = outline_in_parts(exam, maps, band, first, settings, box)
    else:
        found, _ = band_outline(exam, maps, band, band, first, settings, box)
    outline = first.outline if first.outline is not None else first.mask
    before = sitk.GetArrayViewFromImage(outline)[box] > 0
    # Labelled in the outline's own bounding box (the same labels: a raster scan of the box meets the components in
    # the same order as one of the whole array, so each keeps its number; outside the box all is 0).
    labels = np.zeros(found.shape, np.int32)
    crop = bbox(found, margin=0)
    if crop is not None:
        labels[crop], _ = ndimage.label(found[crop], structure=FULL26)
    return box, labels, before, rim[box], pe


def joins(comp: np.ndarray, sl: tuple[slice, ...], before: np.ndarray) -> bool:
    """Whether *comp* (a component in ``before[sl]``) is or touches (26-neighbourhood) a voxel of *before*: the
    dilation of *before* in its array, read in the box *sl* grown by one voxel only."""
    grown = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(sl, before.shape))
    near = ndimage.binary_dilation(before[grown], structure=FULL26)
    return bool((comp & near[tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(sl, grown))]).any())


def band_lesions(exam, first: FTVResult, settings, maps, context: dict, got, notes: tuple[str, str, str],
                 counts: dict, judge) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """(components to add on the exam grid, notes, the band's deep end per work column or None) for the band
    *got* (``(band, outer layer, deep end)`` on the work grid, or None): each outline component in the band that
    neither joins the first outline nor continues through the outer layer (:func:`_cut`) is added when
    ``judge(comp, sl, box, labels, pe)`` (*comp* in ``labels[sl]``, the band's box *box* on the exam grid)
    gives None, else counted under the key of *counts* it gives. *notes*: (no band, no enhancement, the
    counts' prefix)."""
    empty = np.zeros(sitk.GetArrayViewFromImage(exam.reference).shape, bool)
    if got is None:
        return empty, [notes[0]], None
    band_w, rim_w, deep = got
    comps = band_components(exam, first, settings, maps, context, band_w, rim_w)
    if comps is None:
        return empty, [notes[1]], deep
    box, labels, before, rim, pe = comps
    vox_ml = float(np.prod(np.asarray(exam.reference.GetSpacing())[::-1])) / 1000.0
    add = np.zeros(labels.shape, bool)
    for _, sl, comp in padded_components(labels):
        if joins(comp, sl, before):
            why = "joining"
        elif _cut(comp, rim[sl], vox_ml * 1000.0):
            why = "cut"
        else:
            why = judge(comp, sl, box, labels, pe)
        if why is None:
            add[sl] |= comp
            why = "added"
        counts[why] += 1
    out = empty
    out[box] = add
    return out, [notes[2] + ", ".join(f"{v} {k}" for k, v in counts.items())], deep


def deep_lesions(exam, first: FTVResult, settings, maps, context: dict) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """(components to add on the exam grid, notes, the band's deep limit per work column or None)."""
    sp = np.asarray(exam.reference.GetSpacing())[::-1]
    vox_ml = float(np.prod(sp)) / 1000.0

    def judge(comp, sl, box, labels, pe):
        if np.count_nonzero(comp) * vox_ml < MIN_ML or np.median(pe[box][sl][comp]) < settings.pe_threshold:
            return "small or weak"
        return "elongated" if elongation(comp, sp) > MAX_ELONGATION else None

    return band_lesions(exam, first, settings, maps, context, band_on_work(context),
                        ("deep band: no lung-based floor deeper than the region's", "deep band: no enhancement",
                         "deep band behind the breast region: "),
                        {"added": 0, "joining": 0, "cut": 0, "elongated": 0, "small or weak": 0}, judge)


def add_deep_lesions(segmenter, exam, prob: sitk.Image, context: dict, region: dict | None,
                     options: dict) -> tuple[sitk.Image, dict | None]:
    """The pipeline's step after ``predict``: *prob* with the deep band's lesions (module docstring)
    and the gate's *region* with its chest-wall level moved back in their columns. Unchanged when
    :data:`DEEP_BAND` is off, for a reader's ROI or seed, or without an FTV outline."""
    return add_band_lesions(segmenter, exam, prob, context, region, options, DEEP_BAND, deep_lesions)


def add_band_lesions(segmenter, exam, prob: sitk.Image, context: dict, region: dict | None, options: dict,
                     enabled: bool, find) -> tuple[sitk.Image, dict | None]:
    """A band step after ``predict``: ``find(exam, first, settings, maps, context)`` gives the components
    to add (exam grid), notes and the band's deep end per work column (-1 where there is none); *prob*
    gets them with the first run's probability rule and the gate's *region* its chest-wall level moved
    back to the deep end in their columns (one column around them). Unchanged when not *enabled*, for a
    reader's ROI or seed, or without an FTV outline."""
    first = getattr(segmenter, "last_result", None)
    if not enabled or options.get("roi") is not None or options.get("seed_lps") is not None \
            or not isinstance(first, FTVResult) or first.outline is None or region is None or region.get("level") is None:
        return prob, region
    maps = segmenter.kinetic_maps(exam)
    add, notes, deep = find(exam, first, segmenter.settings, maps, context)
    segmenter.last_result = replace(first, notes=list(first.notes) + notes)
    if not add.any():
        return prob, region
    p = sitk.GetArrayFromImage(prob)
    extra = soft_probability(add, maps.array("pe_early"), segmenter.settings.pe_threshold)
    new = from_array(np.maximum(p, extra).astype(np.float32), exam.reference)
    work = context["work"]
    cols = ndimage.binary_dilation(sitk.GetArrayFromImage(resample_to(
        from_array(add.astype(np.uint8), exam.reference), work, sitk.sitkNearestNeighbor)).any(axis=1), iterations=1)
    cols &= deep >= 0
    level = np.asarray(region["level"], float).copy()
    level[cols] = np.maximum(level[cols], deep[cols] - region.get("chest_margin_mm", 0.0) / work.GetSpacing()[1])
    return new, dict(region, level=level)
