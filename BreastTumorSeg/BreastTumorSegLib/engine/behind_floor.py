"""A second look, component by component, behind the breast region's floor (issue 25, ``BEHIND_FLOOR``, on: v2).

The breast region ends at its floor (``context["chest_wall_row"]``: the skin over the sternum + 12 mm,
or the tissue wrap's floor). On development exams of the domain-randomised family the tumors lost to
the region lie behind that floor, in front of the pectoral muscle (docs/decisions/lung-chest-wall-issue25.md,
docs/decisions/missed-randomized-issue25.md). Moving the whole floor back (:mod:`..preprocess.lung_level`)
let muscle and its vessels into the FTV search and changed the exam-wide statistics the outline
draws from its region; a band bounded by the lungs (:mod:`..kinetics.deep_band`) held none of the lost lesions
of the rule's seeds (most lie where no lung is found, or beyond the lung-based limit).

This step leaves the region, the first FTV/outline run and everything it found as they are, and looks
at the body between the region's floor and :data:`DEPTH_MM` behind it (per (z, x) column of the LPS
work grid; the muscle lay 24-102 mm behind the floor on those exams). With the first run's own
thresholds (background level, fat decision, outline level; the core and outline rules of
:func:`..kinetics.beside_region.band_outline`) it outlines the enhancement there and keeps a component only when
it is

* separate: it does not touch the first run's outline (26-neighbourhood);
* contained: it does not continue through the band's deep end (meets that layer over at most
  ``beside_region.MAX_CONTACT`` of its own cross-section, :func:`..kinetics.deep_band._cut`): the heart, the
  chest-wall muscle and vessels running on are cut there;
* of a lesion's size: :data:`MIN_ML` to :data:`MAX_ML`, and compact (elongation at most
  :data:`MAX_ELONGATION`, :func:`..kinetics.beside_region.elongation`);
* clearly enhancing: median early PE at least the FTV PE threshold;
* (v2) behind the breast, not beside it: at least :data:`MIN_IN_FRONT` of its work-grid (z, x) columns hold
  breast region in front of it (:func:`region_columns`: the body in front of the region's floor); the axillary
  lymph nodes lie beside the breast, in columns the region does not reach;
* (v2) not a piece of a larger enhancing body: at least :data:`MIN_BODY_SHARE` of the enhancing body it belongs to
  (:func:`enhancing_bodies`: the body's voxels whose early uptake reaches the FTV PE threshold at the background
  level, with no band or outline rule), so the front of the heart where the chest is thin and a compact stretch
  of a thick vessel, which the band and the outline's rules cut from the rest, stay out;
* called a tumor by the component classifier of the false-positive reduction
  (:func:`.fpreduce.component_features`: volume, elongation, flatness, Feret diameter,
  thickness, Hessian tubularity, wash-in/washout, probability), judged with no override.

A kept component gets the first run's probability rule. The gate's chest-wall level moves back to the
band's deep end only in the work-grid columns of a kept component (one column around it), so the gate
keeps it as it keeps every confident component inside the body in front of the chest wall: in the label
map and the lesion table, flagged ``outside_breast_mask`` with the reason (a component that is not
confident is still removed by the gate). The false-positive reduction then judges it like any other.

Everything else behind the floor stays out: the region itself is not moved.

**On** (v2) by the rule of docs/decisions/behind-floor-v2-issue25.md. v1 (no guards) failed its development rule
(docs/decisions/missed-randomized-issue25.md): it kept axillary lymph nodes, a thick vessel's piece and pieces of the
heart behind the floor. v2 on development 7000-7009 (every family and hybrid row): vessels lesions 16/18 -> 17/18,
heterogeneous 14/15 -> 15/15, no median Dice or FP count changed; held-out 5056-5063 once: randomised lesions
4/9 -> 5/9, vessels 9/12 -> 10/12, heterogeneous 11/14 -> 13/14, median Dice randomised 0.004 -> 0.042, vessels
0.203 -> 0.478, heterogeneous 0.529 -> 0.651, no FP lesion added, nothing lower.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import padded_components
from ..kinetics.beside_region import elongation
from ..kinetics.deep_band import _on_exam, add_band_lesions, band_lesions, outer_layer
from ..kinetics.ftv import FTVResult, soft_probability
from ..kinetics.outline import FULL26
from . import curved_floor  # the band up to a curved chest wall (two-breast views, off)
from .fpreduce import DEFAULT_CLASSIFIER, VESSEL_SCALES_MM, component_features, get_classifier, phase_arrays, sub_image

# On (v2, docs/decisions/behind-floor-v2-issue25.md: development and held-out 5056-5063 passed, lesions gained, no FP
# added); v1 (MIN_IN_FRONT = MIN_BODY_SHARE = None) failed (missed-randomized-issue25.md). False turns the step off.
BEHIND_FLOOR = True
DEPTH_MM = 100.0  # the band ends this far behind the region's floor
MIN_ML = 0.2  # smaller components are not added (the "confident lesion" size)
MAX_ML = 40.0  # larger ones are not a lesion behind the breast (heart, a slab of muscle)
MAX_ELONGATION = 3.0  # sqrt(largest / second principal moment): a vessel's piece is longer
# v2 (docs/decisions/behind-floor-v2-issue25.md); None turns a guard off (v1's behaviour, missed-randomized-issue25.md).
MIN_IN_FRONT = 0.5  # behind the breast, not beside it: share of its work columns with breast region in front of it
MIN_BODY_SHARE = 0.2  # contained: at least this share of the enhancing body it belongs to (a piece of the heart is not)


def band_behind_floor(context: dict, depth_mm: float = DEPTH_MM) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(band, deep end layer, deep end row per (z, x) column) on the work grid of a
    :func:`..preprocess.breast_region.breast_region` *context*: the body from the region's floor to
    *depth_mm* behind it. None for slabs or without a chest-wall level."""
    floor = context.get("chest_wall_row")
    if context.get("level") is None or context.get("slab") is not None or floor is None:
        return None
    work, body = context["work"], context["body"]
    floor = np.asarray(floor, float)
    deep = floor + depth_mm / work.GetSpacing()[1]
    rows = np.arange(body.shape[1])[None, :, None]
    band = body & (rows > floor[:, None, :]) & (rows <= deep[:, None, :])
    if not band.any():
        return None
    return band, outer_layer(band, body & (rows > deep[:, None, :])), deep


def region_columns(context: dict) -> np.ndarray:
    """Bool (z, x) on the work grid: the columns holding breast region (the body in front of the region's floor)."""
    body = context["body"]
    rows = np.arange(body.shape[1])[None, :, None]
    return (body & (rows <= np.asarray(context["chest_wall_row"], float)[:, None, :])).any(axis=1)


def in_front_share(comp: np.ndarray, offset, ref: sitk.Image, work: sitk.Image, columns: np.ndarray) -> float:
    """Share of the work-grid (z, x) columns of *comp* (bool, its first voxel at exam index *offset*, (z, y, x))
    that hold breast region (*columns*, :func:`region_columns`)."""
    idx = (np.argwhere(comp) + np.asarray(offset))[:, ::-1].astype(float)  # (x, y, z) exam indices
    lps = idx @ (np.asarray(ref.GetDirection()).reshape(3, 3) * np.asarray(ref.GetSpacing())).T + np.asarray(ref.GetOrigin())
    to_work = np.linalg.inv(np.asarray(work.GetDirection()).reshape(3, 3) * np.asarray(work.GetSpacing()))
    w = np.rint((lps - np.asarray(work.GetOrigin())) @ to_work.T).astype(int)
    x = np.clip(w[:, 0], 0, columns.shape[1] - 1)
    z = np.clip(w[:, 2], 0, columns.shape[0] - 1)
    cols = np.unique(z * columns.shape[1] + x)
    return float(columns.ravel()[cols].mean())


def enhancing_bodies(exam, first: FTVResult, settings, maps, context: dict) -> tuple[np.ndarray, np.ndarray]:
    """(labels, volume in mL per label) of the enhancing voxels of the body on the exam grid, with no band or
    outline rule: the heart and a vessel running on are one large body here. Enhancing: the early uptake
    (early - pre) at least what the FTV PE threshold gives at the first run's background level (a voxel
    darker than that level before contrast counts when it enhances as much in absolute terms: the blood
    of a vessel or the heart of a fat-suppressed exam; noise in dark fat does not)."""
    ref = exam.reference
    uptake = maps.array("pe_early") * sitk.GetArrayViewFromImage(exam.pre).astype(np.float32)
    enh = _on_exam(context["body"], context["work"], ref) & (maps.array("valid") > 0)
    enh &= uptake >= np.float32(settings.pe_threshold * first.background_threshold)
    labels, _ = ndimage.label(enh, structure=FULL26)
    return labels, np.bincount(labels.ravel()) * float(np.prod(ref.GetSpacing())) / 1000.0


def _tumor_score(comp: np.ndarray, box: tuple, sl: tuple, exam, labels: np.ndarray, pe_box: np.ndarray, threshold: float,
                 phases) -> float:
    """The component classifier's tumor probability of *comp* (the component in ``labels[sl]``, the band's
    outline components in *box*) less its threshold, its features taken in its bounding box grown as the
    false-positive reduction grows it, with the first run's probability rule (:func:`..kinetics.ftv.soft_probability`
    of the outline components, *pe_box* the early PE in *box*) in that box's part of *box*."""
    shape = sitk.GetArrayViewFromImage(exam.reference).shape
    m = int(np.ceil(2 * max(VESSEL_SCALES_MM) / min(exam.reference.GetSpacing()))) + 1
    full = tuple(slice(max(b.start + s.start - m, 0), min(b.start + s.stop + m, n)) for b, s, n in zip(box, sl, shape))
    mask = np.zeros(tuple(f.stop - f.start for f in full), bool)
    mask[tuple(slice(b.start + s.start - f.start, b.start + s.stop - f.start) for b, s, f in zip(box, sl, full))] = comp
    prob = np.zeros(mask.shape, np.float32)
    inner = tuple(slice(f.start - b.start, f.stop - b.start) for b, f in zip(box, full))
    part = tuple(slice(max(i.start, 0), i.stop) for i in inner)
    got = soft_probability(labels[part] > 0, pe_box[part], threshold)
    prob[tuple(slice(max(-i.start, 0), max(-i.start, 0) + n) for i, n in zip(inner, got.shape))] = got
    prob[~mask] = 0.0
    pre, early, late = phases
    f = component_features(mask, sub_image(exam.reference, full), prob, np.asarray(pre[full], np.float32),
                           np.asarray(early[full], np.float32), None if late is None else np.asarray(late[full], np.float32))
    clf = get_classifier(DEFAULT_CLASSIFIER)
    return float(clf.probability(f[None])[0]) - clf.threshold


def _body_ml(comp: np.ndarray, offset, bodies: tuple[np.ndarray, np.ndarray]) -> float:
    """The volume (mL) of the enhancing bodies (:func:`enhancing_bodies`) that *comp* (first voxel at *offset*) meets."""
    labels, ml = bodies
    hit = np.unique(labels[tuple(slice(o, o + n) for o, n in zip(offset, comp.shape))][comp])
    return float(ml[hit[hit > 0]].sum())


@dataclass(frozen=True)
class Guards:
    """The limits a component in a band behind the breast region is judged by (:func:`component_judge`)."""
    min_ml: float
    max_ml: float
    max_elongation: float
    min_in_front: float | None  # None: not checked
    min_body_share: float | None  # None: not checked
    min_score: float = 0.0  # the classifier's tumor probability must pass its threshold by this much


def component_judge(exam, first: FTVResult, settings, maps, context: dict, guards: Guards, extra=None):
    """``judge(comp, sl, box, labels, pe)`` for :func:`..kinetics.deep_band.band_lesions`: the reason a component
    (*comp* in ``labels[sl]``, the band's box *box* on the exam grid, *pe* the exam's early PE) is not added, or None.
    In order: size and enhancement, elongation, the share with breast in front of it, ``extra(comp, sl)`` (a
    caller's own check, a reason or None), a piece of a larger enhancing body, the component classifier. The
    region's columns, the enhancing bodies and the phases are made when a component first needs them."""
    ref = exam.reference
    sp = np.asarray(ref.GetSpacing())[::-1]
    vox_ml = float(np.prod(sp)) / 1000.0
    made: dict = {}

    def once(key, make):
        if key not in made:
            made[key] = make()
        return made[key]

    def judge(comp, sl, box, labels, pe):
        at = [b.start + s.start for b, s in zip(box, sl)]
        ml = np.count_nonzero(comp) * vox_ml
        if not guards.min_ml <= ml <= guards.max_ml or np.median(pe[box][sl][comp]) < settings.pe_threshold:
            return "small, large or weak"
        if elongation(comp, sp) > guards.max_elongation:
            return "elongated"
        if guards.min_in_front is not None and in_front_share(
                comp, at, ref, context["work"], once("columns", lambda: region_columns(context))) < guards.min_in_front:
            return "beside the breast"
        why = extra(comp, sl) if extra is not None else None
        if why is not None:
            return why
        if guards.min_body_share is not None and ml < guards.min_body_share * _body_ml(
                comp, at, once("bodies", lambda: enhancing_bodies(exam, first, settings, maps, context))):
            return "a piece of a larger enhancing body"
        phases = once("phases", lambda: phase_arrays(list(exam.phases), exam.effective_times()))
        if _tumor_score(comp, box, sl, exam, labels, pe[box], settings.pe_threshold, phases) < guards.min_score:
            return "vessel-like"
        return None

    return judge


def behind_floor_lesions(exam, first: FTVResult, settings, maps, context: dict) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """(components to add on the exam grid, notes, the band's deep end per work column or None)."""
    judge = component_judge(exam, first, settings, maps, context,
                            Guards(MIN_ML, MAX_ML, MAX_ELONGATION, MIN_IN_FRONT, MIN_BODY_SHARE))
    add, notes, deep = band_lesions(exam, first, settings, maps, context, band_behind_floor(context),
                                    ("behind the floor: no chest-wall level (slab, or none found)",
                                     "behind the floor: no enhancement", "second look behind the breast region's floor: "),
                                    {"added": 0, "joining": 0, "cut": 0, "small, large or weak": 0, "elongated": 0,
                                     "beside the breast": 0, "a piece of a larger enhancing body": 0, "vessel-like": 0}, judge)
    if curved_floor.CURVED_FLOOR and deep is not None:  # two-breast views: the band up to the chest wall (off)
        more, more_notes = curved_floor.curved_floor_lesions(exam, first, settings, maps, context, add, judge)
        add, notes = add | more, notes + more_notes
    return add, notes, deep


def add_behind_floor(segmenter, exam, prob: sitk.Image, context: dict, region: dict | None,
                     options: dict) -> tuple[sitk.Image, dict | None]:
    """The pipeline's step after ``predict``: *prob* with the components kept behind the floor (module
    docstring) and the gate's *region* with its chest-wall level moved back in their columns. Unchanged
    when :data:`BEHIND_FLOOR` is off, for a reader's ROI or seed, or without an FTV outline."""
    return add_band_lesions(segmenter, exam, prob, context, region, options, BEHIND_FLOOR, behind_floor_lesions)
