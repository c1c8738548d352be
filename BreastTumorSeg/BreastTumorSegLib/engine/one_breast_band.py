"""The deep zone of a one-breast field of view, searched as a band of its own (issue 25, ``ONE_BREAST_BAND``, off).

In a one-breast view the sternum is not in the field of view and the sternum rule's "midline band" is the
field of view's medial border, which cuts through the breast: the breast region becomes a 12-30 mm shell
under the breast's own skin and the tumors behind it are not searched (development census,
docs/decisions/breast-region-reach-issue25.md: 25 of 50 lesions lost to the region). Growing FTV's region
to the chest wall there (``breast_region.ONE_BREAST_WRAP``, off) found them but changed FTV's exam-wide
statistics and reached the heart and the axilla. This step leaves the region and FTV's first run as they
are (as :mod:`.behind_floor` does) and, in a one-breast view only, looks at:

* the band: the body from the region's floor back to a chest-wall anchor that is not the field of view's
  edge (:func:`chest_wall_anchor`): :data:`LUNG_WALL_MM` in front of the lungs (the dark air-filled
  components inside the body, :func:`..preprocess.lung_level.lung_mask`) in the columns where they are
  found, else :data:`DEPTH_MM` behind the floor;
* bounded laterally to the breast's own footprint: only the work-grid (z, x) columns that hold breast region
  in front of the floor (:func:`.behind_floor.region_columns`), so the axilla beside the breast is not searched.

The band's candidates are its enhancing voxels (:func:`band_candidates`: early PE at least the FTV PE threshold and
early uptake at least what that threshold gives at the first run's background level, so a tumor dark before contrast
counts; the first run's outline rule needs a bright pre-contrast voxel and kept none of them on the census' one-breast
exams). A lesion the region's floor cuts is judged whole: the first run's outline components its band part touches
join it (the gate removed such a lesion, mostly outside the shell, when the network was not confident). Pieces within
:data:`GROUP_MM` of each other are judged as one lesion (a heterogeneous tumor's speckled core falls apart). A group is
kept only when it

* does not continue through the band's deep end (the heart, the chest-wall muscle, a vessel running on);
* is of a lesion's size (:data:`MIN_ML` to :data:`MAX_ML`), compact (:data:`MAX_ELONGATION`) and clearly
  enhancing (median early PE at least the FTV PE threshold);
* lies behind the breast: at least :data:`MIN_IN_FRONT` of its columns hold breast region in front of it;
* touches no lung (:func:`..preprocess.lung_level.lung_mask`, grown by :data:`LUNG_CLEAR_MM`);
* is not a piece of a larger enhancing body (:data:`MIN_BODY_SHARE`, :func:`.behind_floor.enhancing_bodies`: the heart);
* is called a tumor by the false-positive reduction's component classifier (:func:`.behind_floor._tumor_score`),
  by at least :data:`MIN_SCORE` above its threshold.

A kept group gets the first run's probability rule, and since in a one-breast view the zone between the shell
and the chest wall IS the breast, it is added to the breast mask the gate uses (the gate's chest-wall level
moves back in its columns too): the gate keeps it as a lesion inside the breast, not as a flagged one that
needs the network's confidence. The false-positive reduction then judges it like any other.

**Off** until its rule passes (docs/decisions/one-breast-band-issue25.md).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import from_array, padded_components
from ..kinetics.beside_region import band_box
from ..kinetics.deep_band import _cut, _on_exam, _pair_on_exam, add_band_lesions, outer_layer
from ..kinetics.ftv import FTVResult
from ..kinetics.outline import FULL26
from ..preprocess.lung_level import lung_mask
from .behind_floor import Guards, component_judge, region_columns
from .fpreduce import VESSEL_SCALES_MM

ONE_BREAST_BAND = False  # off until docs/decisions/one-breast-band-issue25.md's rule passes
DEPTH_MM = 80.0  # the band ends this far behind the region's floor where no lung is found
LUNG_WALL_MM = 10.0  # ... and this far in front of the lungs where they are (pleura, ribs, intercostal muscle)
GROUP_MM = 3.0  # outline pieces this close are judged as one lesion
MIN_ML = 0.2
MAX_ML = 40.0
MAX_ELONGATION = 3.0
MIN_IN_FRONT = 0.8  # stricter than behind_floor's 0.5: the axilla lies beside a one-breast view's breast
MIN_BODY_SHARE = 0.2
LUNG_CLEAR_MM = 5.0
# The classifier's tumor probability must pass its threshold by this much (behind_floor: 0): an axillary node of the
# census exam heterogeneous 7100 scored +0.19, the tumors of the census' one-breast exams +0.40 to +0.49.
MIN_SCORE = 0.3


def one_breast_view(context: dict) -> bool:
    """Whether *context* (:func:`..preprocess.breast_region.breast_region`) is a whole-volume one-breast view."""
    return bool((context.get("layout") or {}).get("unilateral_side")) and context.get("slab") is None \
        and context.get("chest_wall_row") is not None and context.get("level") is not None


def chest_wall_anchor(context: dict, lungs: np.ndarray) -> np.ndarray:
    """Float (z, x): the band's deep end row per work column: :data:`LUNG_WALL_MM` in front of the first lung row
    behind the floor where a lung lies in the column, else :data:`DEPTH_MM` behind the floor."""
    work = context["work"]
    sy = work.GetSpacing()[1]
    floor = np.asarray(context["chest_wall_row"], float)
    n_y = lungs.shape[1]
    rows = np.arange(n_y)[None, :, None]
    behind = lungs & (rows > floor[:, None, :])
    front = np.where(behind.any(axis=1), np.argmax(behind, axis=1), n_y).astype(float)
    deep = floor + DEPTH_MM / sy
    return np.where(front < n_y, np.minimum(deep, front - LUNG_WALL_MM / sy), deep)


def one_breast_band(context: dict, lungs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(band, deep end layer, deep end row per (z, x) column; -1 outside the band's columns) on the work grid."""
    body = context["body"]
    floor = np.asarray(context["chest_wall_row"], float)
    deep = chest_wall_anchor(context, lungs)
    cols = region_columns(context) & (deep > floor)
    rows = np.arange(body.shape[1])[None, :, None]
    band = body & cols[:, None, :] & (rows > floor[:, None, :]) & (rows <= deep[:, None, :])
    if not band.any():
        return None
    rim = outer_layer(band, body & cols[:, None, :] & (rows > deep[:, None, :]))
    return band, rim, np.where(cols, deep, -1.0)


def _groups(found: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Labels of *found*'s voxels, pieces within :data:`GROUP_MM` of each other under one label."""
    r = np.maximum(np.rint(GROUP_MM / 2.0 / sp).astype(int), 0)
    near = ndimage.binary_dilation(found, structure=np.ones(tuple(2 * r + 1), bool)) if r.any() else found
    grouped, _ = ndimage.label(near, structure=FULL26)
    grouped[~found] = 0
    return grouped


def band_candidates(exam, first: FTVResult, settings, maps, band: np.ndarray) -> np.ndarray:
    """Bool (exam grid): the band's enhancing voxels: early PE at least the FTV PE threshold and early uptake
    (early - pre) at least what that threshold gives at the first run's background level (as
    :func:`.behind_floor.enhancing_bodies`: a tumor dark before contrast, as many are on a fat-suppressed exam,
    counts when it enhances as much in absolute terms; noise in dark fat does not)."""
    pe = maps.array("pe_early")
    uptake = pe * sitk.GetArrayViewFromImage(exam.pre).astype(np.float32)
    cand = band & (maps.array("valid") > 0) & (pe >= np.float32(settings.pe_threshold))
    return cand & (uptake >= np.float32(settings.pe_threshold * first.background_threshold))


def band_lesions(exam, first: FTVResult, settings, maps, context: dict) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """(groups to add on the exam grid, notes, the band's deep end per work column or None)."""
    ref = exam.reference
    empty = np.zeros(sitk.GetArrayViewFromImage(ref).shape, bool)
    if not one_breast_view(context):
        return empty, ["one-breast band: not a whole-volume one-breast view"], None
    lungs = lung_mask(context["work"], context["body"])
    got = one_breast_band(context, lungs)
    if got is None:
        return empty, ["one-breast band: empty"], None
    band_w, rim_w, deep = got
    band, rim = _pair_on_exam(band_w, rim_w, context["work"], ref)
    cand = band_candidates(exam, first, settings, maps, band)
    if not cand.any():
        return empty, ["one-breast band: no enhancement"], deep
    sp = np.asarray(ref.GetSpacing())[::-1]
    vox_ml = float(np.prod(sp)) / 1000.0
    box = band_box(cand, sp, 2 * max(VESSEL_SCALES_MM) + 4.0)
    outline = sitk.GetArrayViewFromImage(first.outline if first.outline is not None else first.mask)[box] > 0
    before, _ = ndimage.label(outline, structure=FULL26)
    found = cand[box]
    # A lesion the region cuts: its part in the band and the first outline's pieces it touches, judged whole.
    touched = np.unique(before[ndimage.binary_dilation(found, structure=FULL26)])
    found = found | np.isin(before, touched[touched > 0])
    grouped = _groups(found, sp)
    pe = maps.array("pe_early")
    r = int(np.ceil(LUNG_CLEAR_MM / context["work"].GetSpacing()[0]))
    near_lung = _on_exam(ndimage.binary_dilation(lungs, iterations=r) if lungs.any() else lungs, context["work"], ref)[box]
    rim = rim[box]
    judge = component_judge(exam, first, settings, maps, context,
                            Guards(MIN_ML, MAX_ML, MAX_ELONGATION, MIN_IN_FRONT, MIN_BODY_SHARE, MIN_SCORE),
                            extra=lambda comp, sl: "at the lung" if (near_lung[sl] & comp).any() else None)
    counts = {"added": 0, "cut": 0, "small, large or weak": 0, "elongated": 0, "beside the breast": 0,
              "at the lung": 0, "a piece of a larger enhancing body": 0, "vessel-like": 0}
    add = np.zeros(found.shape, bool)
    for _, sl, comp in padded_components(grouped):
        if not (comp & cand[box][sl]).any():
            continue  # the first outline's own components that touch nothing in the band: the first run's business
        why = "cut" if _cut(comp, rim[sl], vox_ml * 1000.0) else judge(comp, sl, box, grouped, pe)
        if why is None:
            why = "added"
            add[sl] |= comp
        counts[why] += 1
    out = empty
    out[box] = add
    return out, ["one-breast band behind the shell: " + ", ".join(f"{v} {k}" for k, v in counts.items())], deep


def add_one_breast_band(segmenter, exam, prob: sitk.Image, context: dict, region: dict | None, gate: sitk.Image,
                        options: dict) -> tuple[sitk.Image, dict | None, sitk.Image]:
    """The pipeline's step after ``predict``: (*prob* with the band's lesions, the gate's *region* with its
    chest-wall level moved back in their columns, the gate's breast mask *gate* holding them). Unchanged when
    :data:`ONE_BREAST_BAND` is off, for a reader's ROI or seed, without an FTV outline or a chest-wall level."""
    kept: list = []

    def find(exam, first, settings, maps, context):
        add, notes, deep = band_lesions(exam, first, settings, maps, context)
        kept.append(add)
        return add, notes, deep

    new, region = add_band_lesions(segmenter, exam, prob, context, region, options, ONE_BREAST_BAND, find)
    if not kept or not kept[0].any():
        return new, region, gate
    g = sitk.GetArrayFromImage(gate)
    if g.shape != kept[0].shape:
        return new, region, gate
    return new, region, sitk.Cast(from_array(((g > 0) | kept[0]).astype(np.uint8), gate), gate.GetPixelID())
