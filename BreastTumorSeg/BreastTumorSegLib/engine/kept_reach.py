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

**The stop** (irr18, docs/decisions/reach-stop-issue25.md): the held-out run of the rounds alone (5136-5143) lost
median Dice on vessels (-0.018) and phantom (-0.006): a round follows the partial-volume halo of a strong lesion and
the high end of the background's enhancement as readily as a lobe. Each lesion's round is now kept only if the layer
it adds has a PE median of at least ``REACH_FADE`` (0.8) x the lesion's own PE 10th percentile (a lobe enhances like
the tumor's moderate parts, a halo fades under them) and at least ``REACH_BG`` (1.5) x the level of the tissue
around it (the growth's own threshold: background enhancement just over that level is not tumor standing out of
it); else the layer is taken back and the lesion grows no further. No round runs on slices thicker than
``REACH_MAX_SLICE_MM`` (2.5 mm, the growth's reach): there a round moves in-plane only, where the slice's partial
volume smears the enhancement past the reader's outline (development hybrid-sagittal-irregular, 3 mm: as many
non-tumor voxels added as tumor, median Dice -0.012 to -0.017). **Still off**: held-out 5168-5175 once, the rounds with
the stop: median voxel recall irregular and heterogeneous unchanged, hybrid-axial-irregular +0.023 (0.03 asked on two
of the four irregular rows), vessels median Dice 0.732 -> 0.724 (at most -0.005 allowed); no lesion or FP count changed.

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
from scipy import ndimage

from . import kept_grow
from .kept_hull import remeasured, step_maps

KEPT_REACH = False  # off: held-out 5136-5143 failed, with the stop 5168-5175 failed (reach-stop-issue25.md)
REACH_ROUNDS = 2  # rounds of the growth after the first one (kept_grow)
REACH_FADE = 0.8  # a round's layer joins only if its PE median >= this x the lesion's own PE p10 (else it stops)
REACH_BG = 1.5  # ... and >= this x the level of the tissue around the lesion (the growth's threshold); 0: no such test
REACH_MAX_SLICE_MM = 2.5  # no rounds on a grid whose coarsest spacing is over this (thick slices: in-plane only)


def reach_labels(labels: np.ndarray, pe: np.ndarray, valid: np.ndarray, pre: np.ndarray, spacing_zyx,
                 rounds: int | None = None, only: set | None = None) -> tuple[np.ndarray, dict]:
    """(*labels* after *rounds* (None: :data:`REACH_ROUNDS`) more rounds of :func:`.kept_grow.grow_labels`, each on
    the previous round's result; {label: voxels added over all rounds}). Arrays are (z, y, x) on one grid.

    Each lesion's round is kept only if the layer it adds stands out as tumor (:func:`_layer_is_tumor_like`:
    :data:`REACH_FADE`, :data:`REACH_BG`, read when called); otherwise that layer is taken back and the lesion
    grows no further. On a grid whose coarsest spacing is over :data:`REACH_MAX_SLICE_MM` (thick slices) no round
    is run."""
    rounds = REACH_ROUNDS if rounds is None else int(rounds)
    sp = np.asarray(spacing_zyx, float)
    out, added = labels, {}
    if float(np.max(sp)) > REACH_MAX_SLICE_MM:
        return out, added  # thick slices: a round moves in-plane only, where the slice's partial volume smears
    alive = only
    for _ in range(max(rounds, 0)):
        new, grown = kept_grow.grow_labels(out, pe, valid, pre, sp, only=alive)
        if grown and (REACH_FADE > 0 or REACH_BG > 0):
            grown = _taken_back(out, new, grown, pe, valid, sp)
        if not grown:
            break
        for lab, n in grown.items():
            added[lab] = added.get(lab, 0) + n
        out, alive = new, set(grown)  # a lesion the round left as it was is left again by the next one
    return out, added


def _taken_back(before: np.ndarray, after: np.ndarray, grown: dict, pe: np.ndarray, valid: np.ndarray,
                sp: np.ndarray) -> dict:
    """*grown* less the lesions whose added layer (in *after*, not in *before*) is not tumor-like; their layer is set
    back to 0 in *after* (in place: *after* is the growth's own copy)."""
    pad = np.ceil((kept_grow.KEPT_GROW_MM + kept_grow.GROW_SHELL_MM) / sp).astype(int) + 1
    boxes = ndimage.find_objects(after, max_label=max(grown))
    kept = {}
    for lab, n in grown.items():
        box = tuple(slice(max(s.start - p, 0), s.stop + p) for s, p in zip(boxes[lab - 1], pad))
        was, now = before[box] == lab, after[box] == lab
        layer = now & ~was
        if _layer_is_tumor_like(was, layer, pe[box], np.asarray(valid[box], bool), before[box] == 0, sp):
            kept[lab] = n
        else:
            after[box][layer] = 0
    return kept


def _layer_is_tumor_like(comp, layer, pe, valid, free, sp) -> bool:
    """Whether the *layer* a round added to the lesion *comp* (bool, one box) goes on like a tumor: its PE median is
    at least :data:`REACH_FADE` x the lesion's own PE 10th percentile (a lobe enhances like the tumor's moderate
    parts; the partial-volume halo of a strong lesion fades below them) and at least :data:`REACH_BG` x the level
    of the tissue around the lesion (the growth's threshold: the higher of ``GROW_MIN_PE`` and the
    ``GROW_BG_Q``-th percentile of PE in the shell ``GROW_SHELL_MM`` wide beyond ``KEPT_GROW_MM``): a layer just
    over that level is the background enhancement's own high end, not tumor standing out of it."""
    own = pe[comp & valid]
    if own.size == 0 or not layer.any():
        return False
    m = float(np.median(pe[layer]))
    if m < REACH_FADE * float(np.percentile(own, 10)):
        return False
    if REACH_BG > 0:
        dist = ndimage.distance_transform_edt(~comp, sampling=sp)
        shell = (dist > kept_grow.KEPT_GROW_MM) & (dist <= kept_grow.KEPT_GROW_MM + kept_grow.GROW_SHELL_MM) \
            & valid & free
        if np.count_nonzero(shell) >= 10:
            level = max(kept_grow.GROW_MIN_PE, float(np.percentile(pe[shell], kept_grow.GROW_BG_Q)))
            if m < REACH_BG * level:
                return False
    return True


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
