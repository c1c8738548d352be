"""Per-breast features of the second post-contrast subtraction's MIP (after Gong et al.).

Gong et al. found the second post-contrast subtraction (phase 2 minus the pre-contrast phase) the
most informative single input of a per-breast malignancy model, and its maximum-intensity
projection (MIP) a good 2D input. This module reads that MIP as a few numbers per breast and per
candidate, added to the candidate features of :mod:`.classify` (:data:`MIP_FEATURES`):

* **the subtraction**: phase 2 minus phase 0 (phase 1 when the exam has one post-contrast phase),
  divided by the breast's own pre-contrast level (the median pre-contrast signal over the
  breast's region), in percent, so that scanner scale does not matter;
* **the MIP** of it along the patient's S-I axis (an axial MIP whatever the slice axis: the image
  axis whose direction is closest to S-I), over each breast's classification region only
  (:mod:`.classify_region`; its 2D footprint is where that region projects);
* **per breast**: the top of the MIP (99th percentile) against the breast's own MIP background
  (its median; the spread between the quartiles); the brightest blob of the MIP (the connected
  region around the MIP's maximum above half-way between the background and the maximum): its
  area, compactness (4 pi area / perimeter^2) and the radial irregularity of its outline;
  **asymmetry**: the top of this breast's MIP over the other breast's background (its 90th
  percentile; the other breast is the best reference for background enhancement), 0 when the exam
  shows one breast;
* **per candidate**: its peak in the MIP over the breast's MIP background, and the share of the
  brightest blob that its projection covers (is this candidate what the MIP shows?).

Everything is computed from 2D arrays (:class:`BreastMIP` and each candidate's projected
footprint), so the trainer can cache them per exam and recompute the features without
regenerating exams; :func:`exam_mips` and :func:`candidate_footprint` produce them from an exam.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..models.classifier import MIP_FEATURES

SECOND_POST = 2  # phase index of the second post-contrast phase
TOP_PERCENTILE = 99
BLOB_LEVEL = 0.5  # the blob: above background + this share of (maximum - background)
MIN_TISSUE_ML = 20.0  # of breast mask in a breast's region, for the tissue MIP
MIN_PRE_LEVEL = 1e-3  # a breast whose pre-contrast median is below this (of the exam's maximum) gets none


@dataclass
class BreastMIP:
    """One breast's MIP of the second subtraction: ``mip`` (float32 2D, % of the breast's
    pre-contrast level, 0 outside), ``footprint`` (bool 2D: where its classification region
    projects), the 2D pixel ``spacing`` (mm, numpy order), and the same MIP over the breast mask
    part of the region only (``tissue``, ``tissue_footprint``; the whole region's when the mask
    holds less than :data:`MIN_TISSUE_ML` of it): the breast features read that one, so that the
    heart and the vessels behind the chest wall do not make the brightest blob."""

    mip: np.ndarray
    footprint: np.ndarray
    spacing: tuple
    tissue: np.ndarray
    tissue_footprint: np.ndarray


def second_subtraction_index(n_phases: int) -> int:
    """The phase subtracted: the second post-contrast phase, the first when there is only one."""
    return SECOND_POST if n_phases > SECOND_POST else 1


def projection_axis(image: sitk.Image) -> int:
    """The numpy axis of *image*'s (z, y, x) array closest to the patient's S-I direction."""
    d = np.asarray(image.GetDirection(), float).reshape(3, 3)  # column i: image axis i in LPS
    return 2 - int(np.argmax(np.abs(d[2])))


def exam_mips(pre: np.ndarray, post: np.ndarray, sides: np.ndarray, image: sitk.Image,
              valid: np.ndarray | None = None, hint: np.ndarray | None = None,
              codes=(("left", 1), ("right", 2))) -> dict[str, BreastMIP]:
    """{side: :class:`BreastMIP`} of the breasts present in *sides* (0 / 1 left / 2 right, the
    classification region) from the pre-contrast array and the post-contrast phase subtracted
    (*post*: phase :func:`second_subtraction_index`, aligned; (z, y, x) arrays on *image*'s grid);
    *valid*: voxels with a usable pre-contrast signal; *hint*: the breast mask (bool)."""
    axis = projection_axis(image)
    spacing = tuple(float(s) for i, s in enumerate(np.asarray(image.GetSpacing())[::-1]) if i != axis)
    pre = np.asarray(pre, np.float32)
    sub = np.asarray(post, np.float32) - pre
    scale = float(np.max(pre)) if pre.size else 0.0
    vox_ml = float(np.prod(image.GetSpacing())) / 1000.0
    out = {}
    for side, code in codes:
        region = sides == code
        if valid is not None:
            region &= valid
        if not region.any():
            continue
        level = float(np.median(pre[region]))
        if level <= MIN_PRE_LEVEL * max(scale, 1e-6):
            continue
        mips = []
        tissue = region & hint if hint is not None else region
        for where in (region, tissue if tissue.sum() * vox_ml >= MIN_TISSUE_ML else region):
            mip = np.where(where, sub, -np.inf).max(axis=axis)
            foot = np.isfinite(mip)
            mips += [np.where(foot, 100.0 * mip / level, 0.0).astype(np.float32), foot]
        out[side] = BreastMIP(mips[0], mips[1], spacing, mips[2], mips[3])
    return out


def candidate_footprint(shape: tuple, box: tuple, mask: np.ndarray, axis: int) -> np.ndarray:
    """The 2D projection along *axis* of a candidate (*mask* in the numpy *box* of an array of *shape*)."""
    out = np.zeros(tuple(n for i, n in enumerate(shape) if i != axis), bool)
    inner = tuple(s for i, s in enumerate(box) if i != axis)
    out[inner] |= mask.any(axis=axis)
    return out


def _background(m: BreastMIP) -> tuple[float, float, float]:
    """(median, interquartile spread, 90th percentile) of the tissue MIP over its footprint."""
    v = m.tissue[m.tissue_footprint]
    q25, q50, q75, q90 = np.percentile(v, [25, 50, 75, 90])
    return float(q50), float(q75 - q25), float(q90)


def brightest_blob(m: BreastMIP) -> np.ndarray:
    """Bool 2D: the connected region of the (lightly smoothed) tissue MIP around its maximum above
    background + :data:`BLOB_LEVEL` x (maximum - background)."""
    smooth = np.where(m.tissue_footprint, ndimage.uniform_filter(m.tissue, 3), -np.inf)
    peak = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    bg = _background(m)[0]
    top = float(smooth[peak])
    lab, _ = ndimage.label(smooth >= bg + BLOB_LEVEL * max(top - bg, 0.0))
    return lab == lab[peak] if lab[peak] else np.zeros(smooth.shape, bool)


def _outline(blob: np.ndarray, spacing) -> tuple[float, float, float]:
    """(area mm^2, compactness 4 pi A / P^2, radial coefficient of variation of the edge) of a 2D blob;
    the perimeter counts the pixel edges between the blob and the rest (a staircase: a disc gives
    about pi/4, not 1; the same for every exam)."""
    dy, dx = float(spacing[0]), float(spacing[1])
    area = float(blob.sum()) * dy * dx
    if blob.sum() < 2:
        return area, 1.0, 0.0
    pad = np.pad(blob, 1)
    perim = (np.count_nonzero(pad[1:, :] != pad[:-1, :]) * dx + np.count_nonzero(pad[:, 1:] != pad[:, :-1]) * dy)
    edge = np.argwhere(blob & ~ndimage.binary_erosion(blob)) * np.array([dy, dx])
    r = np.linalg.norm(edge - (np.argwhere(blob) * np.array([dy, dx])).mean(axis=0), axis=1)
    cv = float(np.std(r) / max(float(np.mean(r)), 1e-6)) if len(r) >= 3 else 0.0
    return area, float(min(4 * math.pi * area / max(perim, 1e-6) ** 2, 1.0)), cv


def breast_features(mips: dict[str, BreastMIP], side: str) -> tuple[np.ndarray, np.ndarray]:
    """(the six per-breast features of :data:`MIP_FEATURES`, the brightest blob) of *side*."""
    m = mips[side]
    bg, spread, _ = _background(m)
    top = float(np.percentile(m.tissue[m.tissue_footprint], TOP_PERCENTILE))
    blob = brightest_blob(m)
    area, compact, cv = _outline(blob, m.spacing)
    other = next((mips[s] for s in mips if s != side), None)
    asym = math.log((max(top, 0.0) + 10.0) / (max(_background(other)[2], 0.0) + 10.0)) if other is not None else 0.0
    feats = [top / 100, (top - bg) / max(spread, 1.0), math.log(max(area, 1.0)), compact, cv, asym]
    return np.nan_to_num(np.array(feats, np.float64), nan=0.0, posinf=0.0, neginf=0.0), blob


def candidate_features(m: BreastMIP, blob: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """The two per-candidate features: its peak in the region's MIP over the breast's tissue MIP
    background (log of the ratio, +10 % each) and the share of the brightest blob its projection covers."""
    bg = _background(m)[0]
    inside = footprint & m.footprint
    peak = float(m.mip[inside].max()) if inside.any() else bg
    share = float((blob & footprint).sum() / blob.sum()) if blob.any() else 0.0
    return np.array([math.log((max(peak, 0.0) + 10.0) / (max(bg, 0.0) + 10.0)), share], np.float64)


def mip_feature_rows(mips: dict[str, BreastMIP], sides: list[str], footprints: list[np.ndarray]) -> np.ndarray:
    """(candidates, len(:data:`MIP_FEATURES`)): every candidate's breast features then its own
    (*sides*: each candidate's side, *footprints*: its 2D projection); zeros for a breast without MIP."""
    per_breast = {s: breast_features(mips, s) for s in mips}
    rows = []
    for side, foot in zip(sides, footprints):
        if side not in per_breast:
            rows.append(np.zeros(len(MIP_FEATURES)))
            continue
        feats, blob = per_breast[side]
        rows.append(np.concatenate([feats, candidate_features(mips[side], blob, foot)]))
    return np.array(rows, np.float64).reshape(-1, len(MIP_FEATURES))
