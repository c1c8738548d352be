"""The chest wall found from the lungs behind it, along the patient's anterior-posterior axis.

The classical breast region (:mod:`.breast_region`) ends at one level per axial slice: the deepest
anterior skin near the midline (the skin over the sternum) plus a margin. Where the tissue in front
of the sternum is thick, or the breasts sit on a wide chest, that level lies well in front of the
pectoral muscle, and the back of the breast (with its tumors) is cut off. On development seeds of the
domain-randomised family (7000-7029, issue 25) the true breast was 21-59 % inside the region on the
exams whose tumors were lost to it, the chest-wall muscle 24-102 mm behind the region's floor, on
axial and coronal grids alike (the work grid is LPS whatever the acquisition orientation).

The lungs are the one structure behind the chest wall that looks the same in every contrast: dark
(air-like) before contrast, with or without fat suppression. Per (z, x) column of the LPS work grid:

1. Dark: the smoothed pre-contrast image below the skin line's air/tissue threshold
   (:func:`.body.air_tissue_threshold`, bounded as for the skin-line body).
2. Lungs: the dark voxels (and everything outside the body mask) not connected, within their axial
   slice, to the air in front of the body (a lung that the field of view cuts behind is open only
   at the grid's border), in 3D components of at least :data:`MIN_LUNG_ML`.
3. Lung front per column: the first lung row behind the anterior skin (a front more than
   :data:`MAX_DEPTH_MM` behind the skin is ignored); a column without lung (over the heart, the
   mediastinum, beside the body) has none. Walking from the side of the chest towards the midline the
   front never moves back (a cumulative minimum): medially the lung curves back around the heart, and
   behind the heart the first lung row is not the chest wall; a column whose own front lies more than
   :data:`CURVE_BACK_MM` behind that keeps the sternum rule.
4. The region's limit in that column: the lung front less :data:`WALL_MM` (ribs, intercostal and
   pectoral muscle), where that is deeper than the sternum rule's limit.

Used by :func:`.breast_region.breast_region` (``lung_level``) for volumes (not thin slabs: a sagittal
slab keeps its per-slice rule, a coronal slab shows no chest wall).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .body import SKIN_LINE_FLOOR, _otsu, air_tissue_threshold

# Off: failed its development rule (docs/decisions/lung-chest-wall-issue25.md: vessels median Dice -0.042,
# phantom median FP lesions/exam 0.5 -> 1); breast_region(lung_level=True) builds it on request.
LUNG_CHEST_WALL = False
WALL_MM = 25.0  # the chest wall in front of the lung: pleura, ribs, intercostal and pectoral muscle
MIN_LUNG_ML = 20.0  # a dark component inside the body at least this large is a lung
CURVE_BACK_MM = 4.0  # a column whose lung front lies this much behind the front lateral of it keeps the sternum rule
POSTERIOR_BORDER = 3  # rows of the work grid's posterior border left out of the lungs' connectivity
MAX_DEPTH_MM = 200.0  # a "lung" this far behind the anterior skin is not trusted


def dark_threshold(smooth: np.ndarray) -> float:
    """Air-like intensity: the skin line's threshold (:func:`.body.body_mask_lps` ``skin_line``)."""
    img = sitk.GetImageFromArray(smooth.astype(np.float32))
    otsu = _otsu(img)
    return min(0.5 * otsu, max(air_tissue_threshold(smooth), SKIN_LINE_FLOOR * otsu))


def lung_mask(work: sitk.Image, body: np.ndarray) -> np.ndarray:
    """Bool (z, y, x) on the LPS *work* grid: dark components not connected to the air in front of
    the body, of at least :data:`MIN_LUNG_ML` (module docstring, steps 1-2)."""
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(work, 2.0))
    first = np.where(body.any(axis=1), np.argmax(body, axis=1), body.shape[1])  # (z, x) anterior skin row
    rows = np.arange(body.shape[1])[None, :, None]
    front_air = rows < first[:, None, :]
    # Behind the anterior skin, off the grid's posterior border (where a body cut by the field of view
    # leaves the lungs open to the air beside the body).
    dark = ((smooth < dark_threshold(smooth)) | ~body) & ~front_air & (rows < body.shape[1] - POSTERIOR_BORDER)
    dark |= front_air
    inner = np.zeros_like(body)
    for z in range(body.shape[0]):  # per axial slice: a lung cut by the field of view is open only there
        lab, n = ndimage.label(dark[z])
        if n:
            keep = np.ones(n + 1, bool)
            keep[0] = False
            keep[np.unique(lab[front_air[z] & dark[z]])] = False
            inner[z] = keep[lab]
    lab, n = ndimage.label(inner)
    if n == 0:
        return inner
    keep = np.bincount(lab.ravel(), minlength=n + 1) * float(np.prod(work.GetSpacing())) / 1000.0 >= MIN_LUNG_ML
    keep[0] = False
    return keep[lab]


def lung_limit(work: sitk.Image, body: np.ndarray, x_mid: float, wall_mm: float = WALL_MM) -> np.ndarray | None:
    """Float (z, x): the deepest row of the breast region from the lungs (module docstring, steps
    3-4), NaN in columns without lung; None when no lung is found. *x_mid*: the body midline's column."""
    lungs = lung_mask(work, body)
    if not lungs.any():
        return None
    sx, sy = work.GetSpacing()[:2]
    n_y = body.shape[1]
    skin = np.where(body.any(axis=1), np.argmax(body, axis=1), n_y)
    behind = lungs & (np.arange(n_y)[None, :, None] > skin[:, None, :])
    front = np.where(behind.any(axis=1), np.argmax(behind, axis=1), n_y).astype(float)
    front[(front - skin) * sy > MAX_DEPTH_MM] = n_y
    none = front >= n_y  # no lung in the column (heart, mediastinum, beside the body): no limit from it
    # From the side of the chest towards the midline the front never moves back: medially the lung
    # curves back around the heart, and behind the heart the first lung row is no chest wall.
    m = int(np.clip(round(x_mid), 0, front.shape[1]))
    raw = front.copy()
    front[:, :m] = np.minimum.accumulate(front[:, :m], axis=1)
    front[:, m:] = np.minimum.accumulate(front[:, m:][:, ::-1], axis=1)[:, ::-1]
    # Only where the lung's front still comes forward (or holds) towards the midline: once it curves
    # back (its medial edge, the heart in front of it) the column keeps the sternum rule.
    none |= raw - front > CURVE_BACK_MM / sy
    limit = front - wall_mm / sy
    limit[none] = np.nan
    return limit if np.isfinite(limit).any() else None


def deeper_to_lungs(work: sitk.Image, body: np.ndarray, x_mid: float, level: np.ndarray, limit: np.ndarray,
                    margin_rows: float, method: str) -> tuple[np.ndarray, np.ndarray, str]:
    """The breast region's chest-wall *level* and *limit* (rows per (z, x)) moved back to the lungs'
    limit (:func:`lung_limit`) where that is deeper; *method* says so. The level stays *margin_rows*
    in front of the limit (the lesion gate and the mask check read the level)."""
    from_lungs = lung_limit(work, body, x_mid)
    if from_lungs is None:
        return level, limit, method + "; no lung found behind the chest wall"
    deeper = np.isfinite(from_lungs) & (from_lungs > limit)
    if not deeper.any():
        return level, limit, method + "; the lungs lie behind it"
    limit = np.where(deeper, from_lungs, limit)
    level = np.where(deeper, limit - margin_rows, level)
    return level, limit, method + f"; moved back to {WALL_MM:g} mm in front of the lungs in {int(deeper.sum())} columns"
