"""Grid-relative margin features of the per-breast classifier's candidates (issue 29, version 8 trial).

The margin features of :mod:`.classify` (``radial_cv``: the spread of the outline's distances to the
centroid; ``solidity``: the share of the convex hull filled) are measured on the exam's voxel grid.
On a coarse or anisotropic grid (the domain-randomised exams: 0.6-3 mm in plane, slices up to
6 mm) a perfectly smooth lesion already has a ragged outline, and more so the fewer voxels it has,
so the same number means "spiculated" on one exam and "smooth" on another
(``docs/decisions/classify-v8.md``: on the randomised development exams ``radial_cv`` alone no
longer separates the malignant lesions from the benign breasts' top candidates, AUC 0.46-0.48,
although it is the shipped model's most used feature). These features put each candidate against a
**smooth sphere of the same volume drawn on the same grid** (the exam's voxel spacing; a sphere
looks the same on any permutation of the axes, so the order of the spacings does not matter):

* ``grid_radial_cv_excess``: the candidate's ``radial_cv`` minus the sphere's (0 = as smooth as a
  sphere can look on this grid);
* ``grid_log_voxels_per_radius``: log of the sphere's radius in units of the coarsest voxel side
  (how much outline detail the grid can show at all).

(``solidity`` needs no such reference: a convex shape fills its hull on any grid, a voxelised
sphere scores 1.) They are computed from a candidate's feature row
(:data:`~..models.classifier.FEATURES`: its volume and ``radial_cv``) and the exam's spacing, so the
run time and the trainer's cached exams (:mod:`..training.classify_mip`, whose cache keeps the
spacing) share one function. The sphere is drawn at :data:`OFFSETS` sub-voxel positions and
averaged; a sphere of more than :data:`MAX_RADIUS_VOXELS` finest voxels is not drawn (its cost grows
with the cube of the radius): its value is the one at that radius scaled by ``MAX / radius`` (the
outline's jitter is a voxel whatever the radius, its mean distance grows with it). Values are
memoised on the rounded volume and spacing.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import ndimage

from ..models.classifier import FEATURES, GRID_FEATURES

_VOL = FEATURES.index("log_volume_ml")
_RCV = FEATURES.index("radial_cv")
MAX_RADIUS_VOXELS = 12.0
OFFSETS = ((0.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.25, 0.5, 0.0), (0.5, 0.0, 0.25))  # in voxels


def radial_cv(mask: np.ndarray, spacing_zyx) -> float:
    """Irregularity of the outline (the classifier's ``radial_cv``): coefficient of variation of the
    boundary voxels' distances to the centroid (0 for a sphere; lobulations and spicules raise it)."""
    pts = np.argwhere(mask) * np.asarray(spacing_zyx)
    edge = np.argwhere(mask & ~ndimage.binary_erosion(mask)) * np.asarray(spacing_zyx)
    if len(edge) < 4:
        return 0.0
    r = np.linalg.norm(edge - pts.mean(axis=0), axis=1)
    return float(np.std(r) / max(float(np.mean(r)), 1e-6))


def _sphere(radius_mm: float, spacing, offset) -> np.ndarray:
    """A ball of *radius_mm* voxelised on *spacing* (mm), its centre shifted by *offset* voxels."""
    sp = np.asarray(spacing, float)
    half = np.ceil(radius_mm / sp).astype(int) + 2
    axes = [(np.arange(-h, h + 1) - o) * s for h, o, s in zip(half, offset, sp)]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    return zz ** 2 + yy ** 2 + xx ** 2 <= radius_mm ** 2


@lru_cache(maxsize=4096)
def _reference(log_volume_key: int, spacing_key: tuple) -> tuple[float, float]:
    """(radial_cv, log radius in coarsest voxels) of a smooth sphere; keys are rounded (log volume
    in 1/20, spacing in 1/20 mm, sorted) so that nearby candidates share one sphere."""
    spacing = tuple(v / 20.0 for v in spacing_key)
    volume_mm3 = math.exp(log_volume_key / 20.0) * 1000.0
    radius = (3.0 * volume_mm3 / (4.0 * math.pi)) ** (1 / 3)
    drawn = min(radius, MAX_RADIUS_VOXELS * min(spacing))
    rcv = [radial_cv(ball, spacing) for ball in (_sphere(drawn, spacing, off) for off in OFFSETS) if ball.any()]
    return (float(np.mean(rcv)) * drawn / radius if rcv else 0.0), math.log(radius / max(spacing))


def sphere_reference(log_volume_ml: float, spacing_zyx) -> tuple[float, float]:
    """(radial_cv, log radius / coarsest voxel side) of a smooth sphere of volume
    ``exp(log_volume_ml)`` mL drawn on a grid of *spacing_zyx* mm (any axis order)."""
    key = tuple(sorted(int(round(float(s) * 20)) for s in spacing_zyx))
    if min(key) <= 0:
        raise ValueError(f"voxel spacing {tuple(spacing_zyx)} must be positive")
    return _reference(int(round(float(log_volume_ml) * 20)), key)


def grid_features(x: np.ndarray, spacing_zyx) -> np.ndarray:
    """(n, len(GRID_FEATURES)) for the candidate rows *x* (FEATURES first) of one exam of voxel
    spacing *spacing_zyx* (mm)."""
    x = np.asarray(x, np.float64)
    out = np.zeros((len(x), len(GRID_FEATURES)))
    for i, row in enumerate(x):
        rcv, log_r = sphere_reference(row[_VOL], spacing_zyx)
        out[i] = (row[_RCV] - rcv, log_r)
    return out


def spacing_from_record(x: np.ndarray, spacing2d) -> tuple[float, float, float]:
    """The exam's three voxel sides (mm, any order) from a cached exam: the MIP's two pixel sides
    (the axes other than the projection's) and the voxel volume (a candidate's volume over its voxel
    count, :data:`FEATURES` ``log_volume_ml`` and ``log_n_voxels``) for the third."""
    x = np.atleast_2d(np.asarray(x, np.float64))
    if not x.size:
        raise ValueError("an exam without candidates has no voxel volume in its record")
    vox_mm3 = float(np.median(np.exp(x[:, _VOL] - x[:, FEATURES.index("log_n_voxels")]))) * 1000.0
    a, b = (float(v) for v in spacing2d)
    return a, b, vox_mm3 / (a * b)


# ----------------------------------------------------------------------------- harmonised inputs
# Version 4 (``breastcls-grid``, classify-v8.md): the shipped trees unchanged, their two inputs counted
# in the exam's voxels read as on one reference grid, the middle of our phantom family's drawn grids
# (in-plane 1.5-2.0 mm, slices 1.8-3.0 mm: training/phantom/__init__.py), where those features work.
REFERENCE_SPACING_MM = (1.75, 1.75, 2.4)
HARMONISED = ("radial_cv", "log_n_voxels")
_NVOX = FEATURES.index("log_n_voxels")


def harmonised(x: np.ndarray, spacing_zyx, reference=REFERENCE_SPACING_MM) -> np.ndarray:
    """Candidate rows *x* (FEATURES first; other columns kept) of an exam of voxel spacing
    *spacing_zyx* with :data:`HARMONISED` read as on the *reference* grid: ``radial_cv`` minus the
    smooth sphere's on the exam's grid plus the same sphere's on the reference grid
    (:func:`sphere_reference`), ``log_n_voxels`` the candidate's volume counted in reference voxels."""
    out = np.array(x, np.float64, copy=True)
    if not len(out):
        return out
    ref_ml = float(np.prod(reference)) / 1000.0
    for row in out:
        row[_RCV] += sphere_reference(row[_VOL], reference)[0] - sphere_reference(row[_VOL], spacing_zyx)[0]
        row[_NVOX] = row[_VOL] - math.log(ref_ml)
    return out


def card_harmonises(card: dict | None) -> tuple | None:
    """The reference spacing when a classification card asks for harmonised inputs
    (``"grid_harmonisation": {"reference_spacing_mm": [...], "features": [...]}``), else None; a
    card that names other features than :data:`HARMONISED` is refused (ValueError)."""
    spec = (card or {}).get("grid_harmonisation")
    if not spec:
        return None
    if tuple(spec.get("features", ())) != HARMONISED or len(spec.get("reference_spacing_mm", ())) != 3:
        raise ValueError(f"card {card.get('name', '?')}: grid_harmonisation must name the features {list(HARMONISED)} "
                         "and a 3-value reference_spacing_mm")
    return tuple(float(v) for v in spec["reference_spacing_mm"])
