"""Lesions just beside the breast region ("ftv-outline", ``FTVSettings.beside_region_mm``).

FTV and its outline look only inside their ROI, which for a segmenter is the automatic breast
region. Where that region misses part of the breast (lateral tissue around the side of the chest,
a breast the layout under-reads), a tumor lying a few mm outside it is never seen, and one the
region's edge cuts is outlined only up to the edge. On development seeds 7000-7009 of the vessel
and irregular families this was the largest single cause of missed tumor voxels (vessels: 28 % of
all truth voxels; 4 of the 7 missed lesions of both families lay wholly or mostly outside the
region, 1-18 mm from it, all inside the true breast, their missed voxels at a median PE of
60-180 %).

Growing the region itself (the lateral and tissue wraps of :mod:`..preprocess.breast_region` and
:mod:`..preprocess.chestwall`) lets the FTV rule reach the enhancing chest wall and the heart and
was measured worse. This step keeps the region and asks a narrower question: is there a *whole
lesion* just outside it? The same FTV rule and outline (same settings, the fat-suppression
decision of the first run) are applied to the region grown by ``beside_region_mm`` (a band
around it), and an outline component of that run is added when

* it reaches outside the region (the region's own lesions are already there), and
* it is **contained** in the band: no voxel of it lies in the band's outermost layer. A structure
  the band cuts (heart, enhancing chest-wall muscle, a vessel running on) continues beyond where we
  looked, so it is not a lesion beside the breast; a tumor is a closed object.

A lesion the region's edge cut is then outlined whole (its component in the wider run replaces the
cut one). What is added lies outside the breast mask: the breast gate of
:mod:`..engine.postprocess` flags it ``outside_breast_mask`` (or removes it when deep behind the
chest wall) and the false-positive reduction judges it like any other component.

**Off by default** (``FTVOutlineSegmenter.default_beside_region_mm`` = 0; ``beside_region_mm=20``
turns it on), by the rule of docs/decisions/beside-region-issue25.md. On development seeds 7000-7009
(20 mm) it passed: median Dice vessels 0.704 -> 0.786, irregular 0.681 -> 0.715, heterogeneous
0.764 -> 0.797, phantom 0.603 -> 0.663, the other families unchanged, median FP lesions per exam
unchanged everywhere. On held-out seeds 5004-5007, measured once, vessels rose 0.725 -> 0.763
(lesions 4/5 -> 5/5) but the randomised family's median Dice fell 0.711 -> 0.663 (more than the
0.02 allowed), so it stays off.
Known cost: a lesion the region's edge cut can be completed together with a vessel leaving it, and
the false-positive classifier may then call the whole a vessel (heterogeneous 7009: one 0.9 mL
lesion lost that way).

The band's distance is measured on a grid of about 2 mm (blocks of voxels; a block is in the region
when any of its voxels is), which keeps the step cheap on clinical-size exams.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import from_array
from .outline import FULL26

BAND_GRID_MM = 2.0  # the band's distance is measured on blocks of about this size


def band_around(roi: np.ndarray, spacing_zyx, band_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(*roi* grown by *band_mm*, the band's outermost layer, about one block thick) on *roi*'s grid."""
    sp = np.asarray(spacing_zyx, float)
    f = np.maximum(1, np.round(BAND_GRID_MM / sp)).astype(int)
    shape = np.asarray(roi.shape)
    padded = -(-shape // f) * f
    grid = np.zeros(tuple(padded), bool)
    grid[tuple(slice(0, n) for n in shape)] = roi
    blocks = grid.reshape(padded[0] // f[0], f[0], padded[1] // f[1], f[1], padded[2] // f[2], f[2]).any(axis=(1, 3, 5))
    if not blocks.any():
        empty = np.zeros(roi.shape, bool)
        return empty, empty
    dist = ndimage.distance_transform_edt(~blocks, sampling=sp * f)
    step = float(np.max(sp * f))
    full = dist[np.ix_(np.arange(shape[0]) // f[0], np.arange(shape[1]) // f[1], np.arange(shape[2]) // f[2])]
    wide = (full <= band_mm) | roi
    rim = wide & ~roi & (full > band_mm - step)
    return wide, rim


def lesions_beside_region(exam, roi: np.ndarray, first, settings, maps) -> tuple[np.ndarray, list[str]]:
    """Outline components (bool array on the exam grid) to add to *first* (the
    :class:`~.ftv.FTVResult` inside *roi*), and notes; see the module docstring. *settings* is the
    :class:`~.ftv.FTVSettings` with ``beside_region_mm`` > 0."""
    from .ftv import functional_tumor_volume  # ftv imports nothing from here; avoid a cycle at import

    band_mm = float(settings.beside_region_mm)
    empty = np.zeros(roi.shape, bool)
    if band_mm <= 0 or not roi.any() or roi.all():
        return empty, []
    ref = exam.reference
    wide, rim = band_around(roi, np.asarray(ref.GetSpacing())[::-1], band_mm)
    s = replace(settings, beside_region_mm=0.0, fat_suppressed=bool(first.fat_suppression["fat_suppressed"]))
    wider = functional_tumor_volume(exam, from_array(wide.astype(np.uint8), ref), s, maps=maps)
    found = sitk.GetArrayFromImage(wider.outline if wider.outline is not None else wider.mask) > 0
    before = sitk.GetArrayFromImage(first.outline if first.outline is not None else first.mask) > 0
    labels, _ = ndimage.label(found, structure=FULL26)
    add = empty.copy()
    n_added = n_cut = 0
    for lab, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        comp = labels[box] == lab
        if not (comp & ~roi[box]).any():
            continue  # the region's own lesion: left as the first run outlined it
        if (comp & rim[box]).any():
            n_cut += 1  # continues beyond the band: heart, chest wall, a vessel running on
            continue
        add[box] |= comp & ~before[box]
        n_added += 1
    notes = [f"{n_added} lesion(s) within {band_mm:g} mm beside the breast region added or completed, "
             f"{n_cut} structure(s) the band cuts left out (beside_region_mm)"]
    return add, notes
