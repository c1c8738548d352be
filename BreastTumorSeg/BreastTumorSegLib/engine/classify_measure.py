"""Measurement features of the per-breast classifier's candidates (issue 29, version 5 trial).

classify-v10/v11 (``docs/decisions/``): on the domain-randomised family what separates the classes is
the lesion's *kind* (non-mass / spiculated / rim / lobulated), its kinetic *curve* and its *size*; an
oracle reading them reaches 0.97-0.99, version 3 0.88-0.91 on development. These features measure
the three more directly than version 3's, on the exam's native grid and the unsmoothed kinetic maps
(:data:`~..models.classifier.MEASURE_FEATURES`, after ``docs/decisions/classify-v12.md``):

* **curve of the most enhancing part**, as a radiologist places the ROI: the mean early and late
  enhancement of the candidate's hottest :data:`HOT_SHARES` voxels (by early enhancement), their
  BI-RADS signal change ``(late - early) / (100 + early)`` (``m_hot10_change``, ``m_hot25_change``),
  the change of the enhancement itself (``m_hot10_enh_change``) and the late change against the
  hottest voxels' own peak over all post-contrast phases (``m_hot10_peak_change``); 0 with one
  post-contrast phase (the curve is unknown; ``curve_known`` says so);
* **size at half maximum**: the region around the candidate whose (lightly smoothed) early
  enhancement is at least half the candidate's 95th percentile, connected to it, inside the
  candidate's box widened by :data:`PAD_MM`: its volume (``m_halfmax_log_ml``) and that of its core
  above three quarters (``m_core_log_ml``) — a threshold relative to the lesion itself, not to the
  breast's background, so a faint lesion is not cut to its brightest piece;
* **kind**: on the hole-filled half-maximum region, the radial enhancement profile from its centroid
  (log of the mean enhancement of the region beyond half its equivalent radius over that of every
  voxel within half of it, inside the region or not: > 0 for a rim, ``m_rim_profile``), its solidity
  (``m_halfmax_solidity``: spicules and clumps lower it), the share of the ball of its equivalent
  radius around its centroid that is above half maximum (``m_fill``: a rim or a clumped non-mass
  region has gaps, a solid mass fills it), its
  outline irregularity (``m_halfmax_radial_cv``) and the fall of enhancement just outside it
  (``m_edge_contrast``: the ring one voxel outside against the region's 95th percentile; a
  spiculated or non-mass margin fades, a smooth mass drops).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .classify_grid import radial_cv

HOT_SHARES = (0.10, 0.25)
PAD_MM = 6.0
HALF, CORE = 0.5, 0.75
MAX_REGION_VOXELS = 400_000


def _curve_changes(mask: np.ndarray, box, maps) -> list[float]:
    if not maps.ser_available or maps.array("pe_late") is None:
        return [0.0, 0.0, 0.0, 0.0]
    early = np.asarray(maps.array("pe_early")[box][mask], np.float64)
    late = np.asarray(maps.array("pe_late")[box][mask], np.float64)
    peak = maps.array("pe_peak")
    peak = early if peak is None else np.asarray(peak[box][mask], np.float64)
    out = []
    order = np.argsort(-early)
    for share in HOT_SHARES:
        hot = order[:max(1, int(math.ceil(share * len(early))))]
        e, l_ = float(early[hot].mean()), float(late[hot].mean())
        out.append((l_ - e) / max(100.0 + e, 1.0))
        if share == HOT_SHARES[0]:
            enh = (l_ - e) / max(abs(e), 1.0)
            hot_p = order[:len(hot)] if peak is early else np.argsort(-peak)[:len(hot)]
            p, lp = float(peak[hot_p].mean()), float(late[hot_p].mean())
            peak_change = (lp - p) / max(100.0 + p, 1.0)
    return [float(np.clip(v, -1, 1)) for v in (out[0], out[1], enh, peak_change)]


def _region(mask: np.ndarray, box, pe: np.ndarray, valid: np.ndarray, spacing_zyx) -> tuple:
    """(half-maximum region, core region, widened box, level) around the candidate."""
    pad = np.ceil(PAD_MM / np.asarray(spacing_zyx)).astype(int)
    wide = tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(box, pad, pe.shape))
    sub = pe[wide]
    inner = np.zeros(sub.shape, bool)
    inner[tuple(slice(s.start - w.start, s.stop - w.start) for s, w in zip(box, wide))] = mask
    level = float(np.percentile(sub[inner], 95))
    ok = valid[wide]
    regions = []
    for frac in (HALF, CORE):
        above = ok & (sub >= frac * level)
        lab, _ = ndimage.label(above, structure=np.ones((3, 3, 3)))
        keep = np.unique(lab[inner & above])
        keep = keep[keep > 0]
        regions.append(np.isin(lab, keep) if len(keep) else (inner & above))
    return regions[0], regions[1], wide, level


def measure_features(mask: np.ndarray, box, maps, pe: np.ndarray, valid: np.ndarray, spacing_zyx,
                     vox_ml: float, solidity) -> list[float]:
    """The :data:`~..models.classifier.MEASURE_FEATURES` of one candidate (*mask* in *box* of the exam
    grid; *pe*: the smoothed early enhancement the candidates are found on; *solidity*: the
    classifier's convex-hull fill function)."""
    curve = _curve_changes(mask, box, maps)
    half, core, wide, level = _region(mask, box, pe, valid, spacing_zyx)
    if half.sum() > MAX_REGION_VOXELS or not half.any():
        half = np.zeros(half.shape, bool)
        half[tuple(slice(s.start - w.start, s.stop - w.start) for s, w in zip(box, wide))] = mask
    filled = ndimage.binary_fill_holes(half)
    sub = pe[wide]
    sp = np.asarray(spacing_zyx, float)
    pts = np.argwhere(filled) * sp
    centre = pts.mean(axis=0)
    radius = (3 * len(pts) * float(np.prod(sp)) / (4 * math.pi)) ** (1 / 3)
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(sub.shape, sp)], indexing="ij"), -1)
    r = np.linalg.norm(grid - centre, axis=-1) / max(radius, 1e-6)
    core_zone, outer_zone = (r <= 0.5) & valid[wide], filled & (r > 0.5)
    rim = 0.0
    if core_zone.any() and outer_zone.any():
        rim = math.log(max(float(sub[outer_zone].mean()), 5.0) / max(float(sub[core_zone].mean()), 5.0))
    ball = r <= 1.0
    fill = float((half & ball).sum() / max(int(ball.sum()), 1))
    ring = ndimage.binary_dilation(filled, structure=np.ones((3, 3, 3))) & ~filled & valid[wide]
    edge = float(np.mean(sub[ring])) / max(level, 1.0) if ring.any() else 0.0
    return [*curve, math.log(max(int(half.sum()), 1) * vox_ml), math.log(max(int(core.sum()), 1) * vox_ml),
            float(np.clip(rim, -2, 2)), float(solidity(filled, spacing_zyx)),
            fill, radial_cv(filled, spacing_zyx),
            float(np.clip(edge, -1, 2))]
