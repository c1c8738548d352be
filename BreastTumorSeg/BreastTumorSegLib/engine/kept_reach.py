"""More rounds of the kept-lesion growth, each from the grown lesion (issue 25, ``KEPT_REACH``, off: held-out failed).

The voxel census of found irregular and heterogeneous tumors on development seeds 7010-7039
(docs/decisions/missed-voxels-issue25.md) says where the growth of :mod:`.kept_grow` stops: of the tumor voxels a
found lesion still misses, 30 % (irregular) and 9 % (heterogeneous) lie beyond its reach (``KEPT_GROW_MM``, 2.5 mm;
PE median 44 %, 85-100 % connected to the lesion through missed tumor: the rest of a lobe) and 19 % of both lie outside
the outline's per-plane hull or in its widening under the lesion's own moderate level; the growth stops at the extent
of what the outline found. A longer reach in one round adds nearly nothing (the hull of the outline still bounds it).
This step runs the same growth (:func:`.kept_grow.grow_labels`, its settings unchanged) ``REACH_ROUNDS`` more times,
each round from the lesion the previous one left: its hull, its background shell, its threshold, its moderate-parts
test and its pre-contrast test are measured again on the grown lesion, so a lobe is followed step by step while each
step obeys the same local rules. A lesion the growth left as it was is left again (the same input gives the same
answer); the number of lesions never changes and no two lesions touch (the growth's own guarantees).

The lesion table is measured again on the final map (:func:`.kept_hull.remeasured`); the pipeline raises the added
voxels' probability as for the fill (:func:`.kept_hull.fill_probability`). Used only with a segmenter that outlines
the whole tumor and has kinetic maps (``ftv-outline``), never for a reader's seed or ROI.

**Off** by the rule of docs/decisions/missed-voxels-issue25.md: chosen on development 7010-7039 (2 more rounds: median
voxel recall irregular 0.670 -> 0.713, heterogeneous 0.764 -> 0.829, Dice 0.713 -> 0.717 and 0.826 -> 0.841); held-out
5136-5143 once: recall irregular 0.638 -> 0.690, heterogeneous 0.915 -> 0.949, Dice irregular 0.711 -> 0.741 but
heterogeneous 0.844 -> 0.843 (the rule asked for no fall), phantom 0.873 -> 0.867, vessels 0.616 -> 0.598, no lesion or
FP count changed.
"""
from __future__ import annotations


import numpy as np
import SimpleITK as sitk

from . import kept_grow
from .kept_hull import remeasured, step_maps

KEPT_REACH = False  # off: held-out 5136-5143 failed (docs/decisions/missed-voxels-issue25.md)
REACH_ROUNDS = 2  # rounds of the growth after the first one (kept_grow)


def reach_labels(labels: np.ndarray, pe: np.ndarray, valid: np.ndarray, pre: np.ndarray, spacing_zyx,
                 rounds: int | None = None, only: set | None = None) -> tuple[np.ndarray, dict]:
    """(*labels* after *rounds* (None: :data:`REACH_ROUNDS`) more rounds of :func:`.kept_grow.grow_labels`, each on
    the previous round's result; {label: voxels added over all rounds}). Arrays are (z, y, x) on one grid."""
    rounds = REACH_ROUNDS if rounds is None else int(rounds)
    out, added = labels, {}
    for _ in range(max(rounds, 0)):
        out, grown = kept_grow.grow_labels(out, pe, valid, pre, spacing_zyx, only=only)
        if not grown:
            break
        for lab, n in grown.items():
            added[lab] = added.get(lab, 0) + n
    return out, added


def reach_kept(components: sitk.Image, lesions: list, prob: sitk.Image, pe: np.ndarray, valid: np.ndarray,
               pre: np.ndarray) -> tuple[sitk.Image, list, sitk.Image]:
    """(label, lesions, components) with each kept lesion of *components* (labels = the lesions' ``label``) grown
    :data:`REACH_ROUNDS` more rounds; *pe*, *valid*, *pre* are (z, y, x) arrays on its grid."""
    arr = sitk.GetArrayViewFromImage(components)
    if pe.shape != arr.shape or valid.shape != arr.shape or pre.shape != arr.shape:
        raise ValueError(f"kept_reach: kinetic maps {pe.shape}, pre-contrast {pre.shape} and label map {arr.shape} "
                         "are not on one grid")
    out, added = reach_labels(arr, pe, valid, pre, np.asarray(components.GetSpacing(), float)[::-1],
                              only={les.label for les in lesions})
    if not added:
        return sitk.Cast(components > 0, sitk.sitkUInt8), lesions, components
    return remeasured(components, lesions, prob, out, added,
                      lambda ml: f"grown further: {ml:.3f} mL added in up to {REACH_ROUNDS} more rounds of the "
                                 "growth, each from the grown lesion (engine/kept_reach.py)")


def add_kept_reach(segmenter, exam, label: sitk.Image, lesions: list, components: sitk.Image, prob: sitk.Image,
                   options: dict, enabled: bool | None = None) -> tuple[sitk.Image, list, sitk.Image]:
    """The pipeline's step after the growth of the kept lesions: (label, lesions, components) with each kept lesion
    grown further. Unchanged when off (*enabled*, default :data:`KEPT_REACH`), for a reader's ROI or seed, or for
    a segmenter without kinetic maps or that does not outline the whole tumor."""
    maps = step_maps(segmenter, exam, lesions, options, KEPT_REACH if enabled is None else enabled)
    if maps is None:
        return label, lesions, components
    pre = exam.phases[0]
    return reach_kept(components, lesions, prob, maps.array("pe_early"), maps.array("valid") > 0,
                      sitk.GetArrayViewFromImage(pre).astype(np.float32, copy=False))
