"""The inside of each lesion the pipeline keeps (issue 25, ``KEPT_HULL``, on).

:mod:`..kinetics.outline_hull` fills what each outline component of ``ftv-outline`` encloses (its body closed
by a ball, the enhancing tissue (PE >= 30 %) and the enclosed voxels of that closing added, within its own
bounding box). Done in the segmenter, before the false-positive reduction, it raised the voxel recall of found
heterogeneous and irregular tumors on held-out exams but also filled components of background enhancement, and
the held-out FP lesions per exam rose (docs/decisions/hull-fill-issue25.md).

This step does the same fill (:class:`..kinetics.outline_hull.HullFill`, the same functions) only to the lesions
the pipeline keeps, after the false-positive reduction, in the final label map on the segmenter's grid with its
kinetic maps' early PE:

* each kept lesion alone, inside its own bounding box; a lesion smaller than 0.1 mL, or one that would grow by
  more than its own volume, is left as it was;
* the added voxels never belong to or touch (26-neighbourhood) another lesion (or what an earlier lesion
  gained), and only the added voxels connected to the lesion join it: no two lesions are joined and no new
  lesion appears, the number of lesions never changes;
* a component the false-positive reduction removed is not in the label map, so it is neither filled nor revived;
* the lesion table's volume, diameter, centroid and voxel count of a grown lesion are measured again on the
  filled map (:func:`.postprocess.lesion_table`, as the false-positive reduction measures a split lesion), its
  side, flags and extra values kept, a note saying how much was added.

The probability map: each added voxel gets at least the lowest probability of the lesion it joins
(:func:`fill_probability`), so that a threshold which keeps the lesion keeps its inside too (the Slicer panel
re-thresholds the stored probability map; without this, moving its slider off the engine's threshold dropped the
fill). Used only with a segmenter that has kinetic maps (FTV),
never for a reader's seed or ROI.

**On** (``KEPT_HULL = True``) by the rule of docs/decisions/kept-hull-issue25.md: development 7000-7009 median voxel
recall heterogeneous 0.676 -> 0.709, irregular 0.613 -> 0.648, vessels 0.696 -> 0.731, no lesion or FP count changed;
held-out 5064-5071 once: recall heterogeneous 0.608 -> 0.689, irregular 0.665 -> 0.673, randomized 0.672 -> 0.720,
median Dice heterogeneous 0.722 -> 0.774, randomized 0.795 -> 0.837, no family lower, no FP count changed.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import from_array, padded_components, voxel_volume_ml
from ..kinetics.outline import FULL26
from ..kinetics.outline_hull import HullFill
from .fpreduce import sub_image
from .postprocess import lesion_table

# On by the rule of docs/decisions/kept-hull-issue25.md (development 7000-7009 and held-out 5064-5071 passed); False
# turns the step off.
KEPT_HULL = True
KEPT_HULL_MM = 6.0  # the closing ball's radius (the candidate of docs/decisions/hull-fill-issue25.md)


def fill_kept(components: sitk.Image, lesions: list, prob: sitk.Image, pe: np.ndarray, valid: np.ndarray,
              close_mm: float = KEPT_HULL_MM) -> tuple[sitk.Image, list, sitk.Image]:
    """(label, lesions, components) with each kept lesion of *components* (labels 1..N = the lesions' ``label``)
    filled (module docstring); *pe* and *valid* are (z, y, x) arrays on the grid of *components*."""
    arr = sitk.GetArrayViewFromImage(components)  # read only; the label map is copied when a lesion first grows
    if arr.dtype.kind not in "iu":
        arr = arr.astype(np.int64)
    if pe.shape != arr.shape or valid.shape != arr.shape:
        raise ValueError(f"kept_hull: kinetic maps {pe.shape} and label map {arr.shape} are not on one grid")
    fill = HullFill(np.asarray(components.GetSpacing(), float)[::-1], close_mm)
    by_label = {les.label: les for les in lesions}
    if fill.off or not by_label:
        return components > 0, lesions, components  # a comparison gives uint8 already: no cast, no copy
    out = arr  # the label map with what the lesions filled so far
    grown: dict[int, tuple] = {}
    for lab, box, comp in padded_components(arr, 0):
        if lab not in by_label:
            continue
        free = (out[box] == 0) & ~_near_others(out, box, lab)
        add = fill.added(comp, pe[box], np.asarray(valid[box], bool), free, int(np.count_nonzero(comp)))
        if add is None:
            continue
        pieces, _ = ndimage.label(comp | add, structure=FULL26)
        add &= np.isin(pieces, np.unique(pieces[comp]))  # only what joins the lesion itself
        if add.any():
            if out is arr:
                out = arr.copy()
            out[box][add] = lab
            grown[lab] = (box, int(np.count_nonzero(add)))
    if not grown:
        return components > 0, lesions, components
    new = from_array(out.astype(np.uint32, copy=False), components)
    vml = voxel_volume_ml(components)
    table = []
    for les in lesions:
        if les.label not in grown:
            table.append(les)
            continue
        box, n_add = grown[les.label]
        box_prob = sitk.RegionOfInterest(prob, [b.stop - b.start for b in box[::-1]], [b.start for b in box[::-1]])
        m = lesion_table(from_array((out[box] == les.label).astype(np.uint8), sub_image(components, box)), box_prob)[0]
        table.append(dataclasses.replace(
            m, label=les.label, side=les.side, flags=list(les.flags), extra=dict(les.extra),
            notes=list(les.notes) + [f"its inside filled: {n_add * vml:.3f} mL added (closing by a {close_mm:g} mm "
                                     "ball, PE >= 30 % or enclosed; engine/kept_hull.py)"]))
    return new > 0, table, new


def _near_others(labels: np.ndarray, box: tuple, lab: int) -> np.ndarray:
    """Bool in *box*: the voxels that are, or touch (26-neighbourhood), a lesion other than *lab*."""
    grown = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n)) for b, n in zip(box, labels.shape))
    other = (labels[grown] > 0) & (labels[grown] != lab)
    near = ndimage.binary_dilation(other, structure=FULL26) if other.any() else other
    return near[tuple(slice(b.start - g.start, b.start - g.start + (b.stop - b.start)) for b, g in zip(box, grown))]


def add_kept_hull(segmenter, exam, label: sitk.Image, lesions: list, components: sitk.Image, prob: sitk.Image,
                  options: dict, enabled: bool | None = None) -> tuple[sitk.Image, list, sitk.Image]:
    """The pipeline's step after the false-positive reduction: (label, lesions, components) with each kept
    lesion filled. Unchanged when off (*enabled*, default :data:`KEPT_HULL`), for a reader's ROI or seed, or
    for a segmenter without kinetic maps."""
    maps = step_maps(segmenter, exam, lesions, options, KEPT_HULL if enabled is None else enabled)
    if maps is None:
        return label, lesions, components
    return fill_kept(components, lesions, prob, maps.array("pe_early"), maps.array("valid") > 0)


def step_maps(segmenter, exam, lesions: list, options: dict, on: bool):
    """The segmenter's kinetic maps of *exam* for a step on the kept lesions, or None when the step does not run:
    off, no lesion, a reader's ROI or seed, a segmenter without kinetic maps, or one that does not outline the
    whole tumor (plain "ftv" is the I-SPY FTV mask, PE >= 70 %: nothing is filled or grown into it)."""
    maps_of = getattr(segmenter, "kinetic_maps", None)
    whole_tumor = getattr(getattr(segmenter, "settings", None), "outline_pe", 0.0) > 0
    if not on or not lesions or maps_of is None or not whole_tumor or options.get("roi") is not None \
            or options.get("seed_lps") is not None:
        return None
    return maps_of(exam)


def remeasured(components: sitk.Image, lesions: list, prob: sitk.Image, out: np.ndarray, added: dict[int, int],
               note) -> tuple[sitk.Image, list, sitk.Image]:
    """(label, lesions, components) for the label array *out* on the grid of *components*: each lesion in *added*
    (label -> voxels added) measured again on the final map as the pipeline measures it (side, flags and extra
    values kept, ``note(mL added)`` appended to its notes), the others as they were."""
    new = from_array(out.astype(np.uint32, copy=False), components)  # from_array copies: no copy of our own
    measured = {m.label: m for m in lesion_table(new, prob)}
    vml = voxel_volume_ml(components)
    table = [les if les.label not in added else dataclasses.replace(
        measured[les.label], side=les.side, flags=list(les.flags), extra=dict(les.extra),
        notes=list(les.notes) + [note(added[les.label] * vml)]) for les in lesions]
    return new > 0, table, new


def fill_probability(prob: sitk.Image, before: sitk.Image, after: sitk.Image) -> sitk.Image:
    """*prob* with each voxel the fill added (labelled in *after*, not in *before*: the components before and
    after :func:`add_kept_hull`) raised to the lowest probability of its lesion's own voxels; *prob* itself
    when nothing was added."""
    if after is before:
        return prob
    old = sitk.GetArrayViewFromImage(before)
    new = sitk.GetArrayViewFromImage(after)
    p = None
    for lab, box in enumerate(ndimage.find_objects(new), start=1):  # each lesion's box: no pass over the grid
        if box is None:
            continue
        own = old[box] == lab
        added = (new[box] == lab) & (old[box] == 0)
        if not added.any() or not own.any():
            continue
        if p is None:
            p = sitk.GetArrayFromImage(prob)
        sub = p[box]
        sub[added] = np.maximum(sub[added], sub[own].min())
    if p is None:
        return prob
    out = sitk.GetImageFromArray(p)
    out.CopyInformation(prob)
    return out
