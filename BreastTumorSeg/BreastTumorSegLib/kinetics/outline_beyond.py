"""The outline of a tumor that straddles the breast region's edge (``FTVSettings.outline_beyond_roi``, used by :mod:`.ftv`).

FTV looks for its strongly enhancing core inside the ROI (as a segmenter: the automatic breast
mask), and :func:`~.outline.whole_tumor_outline` grows the core only into ROI tissue. An automatic
breast mask is a guess: on development exams of the domain-randomised family (seeds 6000-6029 and
7000-7009, ``benchmarks/bench_outline_losses.py``) 19 % of all tumor voxels lay outside it, the
largest single loss of ``ftv-outline`` there, and in several exams the tumor's core was found
inside the mask while the rest of the same tumor, beyond the mask's edge (towards the chest wall
or the side of the chest), was cut off by the mask (seed 6014: 1269 of 3906 voxels; 6001: 1514 of
1752). The breast region should decide what is *reported* as outside the breast (the pipeline's
gate flags it), not cut a tumor in two.

With ``outline_beyond_roi`` the outline may therefore also grow into tissue *outside* the ROI,
under exactly the rules it obeys inside (:func:`growth_beyond_roi`): the same background condition
(pre-contrast signal >= FTV's background threshold / noise floor), PE >= the same outline level
(the larger of ``outline_pe`` and the exam's own background enhancement, measured inside the ROI as
before), SER >= ``ser_min``, connected to a core that lies inside the ROI and within
``outline_margin_mm`` of it. Nothing is searched for outside the ROI (no new cores), and tissue
within ``skin_margin_mm`` of the body surface stays out (skin and nipple enhance). ``ftv_ml``, the
I-SPY core volume, is unchanged. A ROI the reader gives the segmenter (``predict(..., roi=...)``) is a
decision, not a guess: :class:`~..models.ftv_segmenter.FTVSegmenter` turns the option off for it.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..core.imageutil import labels_in_box, padded_components
from .outline import FULL26


def growth_beyond_roi(seeds: np.ndarray, roi_mask: np.ndarray, body: np.ndarray, pre: np.ndarray, pe: np.ndarray,
                      background: float, level: float, ser: np.ndarray | None, ser_min: float,
                      spacing_zyx, margin_mm: float, skin_margin_mm: float) -> np.ndarray:
    """Voxels outside *roi_mask* an outline grown from *seeds* may take (module docstring): in *body*,
    more than *skin_margin_mm* inside its surface, pre >= *background*, PE >= *level*, SER >= *ser_min*
    (*ser* None: no SER), within *margin_mm* of a seed. Only the box around each seed component is
    looked at (the cost follows the lesions, not the exam)."""
    out = np.zeros(seeds.shape, bool)
    sp = np.asarray(spacing_zyx, float)
    pad = int(np.ceil(margin_mm / float(np.min(sp)))) + 1
    labels, _ = labels_in_box(seeds, FULL26)  # seeds are few: labelled in their box (the same labels)
    for _, box, comp in padded_components(labels, pad):
        if roi_mask[box].all():
            continue
        grow = body[box] & ~roi_mask[box] & (pre[box] >= np.float32(background)) & (pe[box] >= np.float32(level))
        if ser is not None:
            grow &= ser[box] >= np.float32(ser_min)
        if not grow.any():
            continue
        grow &= ndimage.distance_transform_edt(~comp, sampling=sp) <= margin_mm
        if skin_margin_mm > 0 and grow.any():
            grow &= _depth(body, box, sp, skin_margin_mm) > skin_margin_mm
        out[box] |= grow
    return out


def _depth(body: np.ndarray, box: tuple[slice, ...], sp: np.ndarray, margin_mm: float) -> np.ndarray:
    """Distance (mm) of each voxel of *box* from the outside of *body* (air), measured in a box grown
    by *margin_mm* so that the box's own edge is not taken for the body surface (the field of view's
    edge is: tissue cut off by it may be skin)."""
    pad = int(np.ceil(margin_mm / float(np.min(sp)))) + 1
    big = tuple(slice(max(b.start - pad, 0), min(b.stop + pad, n)) for b, n in zip(box, body.shape))
    depth = ndimage.distance_transform_edt(np.pad(body[big], 1), sampling=sp)[1:-1, 1:-1, 1:-1]
    return depth[tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, big))]
