"""Surface distances between two masks on one grid: Hausdorff, HD95, ASSD (mm).

The *surface* of a mask is the set of its voxels that have at least one of their 6 face neighbours
outside the mask. For each surface voxel of A the distance (mm, between voxel centres) to the
nearest surface voxel of B is read from SimpleITK's exact Euclidean ``SignedMaurerDistanceMap`` of
B's surface; that gives the *directed* distances A→B, and likewise B→A. From these two sets:

* ``hausdorff`` = max of all directed distances (both directions);
* ``hd95`` = **the larger of the two directed 95th percentiles** (numpy linear interpolation), the
  definition of MONAI's ``compute_hausdorff_distance(percentile=95)`` and DeepMind's
  ``surface-distance`` package;
* ``assd`` = the mean of the pooled set of directed distances (both directions together).

Either mask empty → every distance is ``nan`` (no surface to measure to).

Measured on digital spheres (``Testing/test_metrics.py``) these agree with the analytic values
within half of the largest voxel spacing, for isotropic and anisotropic grids.

Relation to 3D Slicer's *Segment Comparison* module (SlicerRT, computed by Plastimatch): its
"Hausdorff distance (boundary)" maximum is our ``hausdorff``; its "95% Hausdorff distance
(boundary)" is the *mean* of the two directed 95th percentiles and its "average Hausdorff distance
(boundary)" the mean of the two directed means — available here as
:meth:`SurfaceDistances.hd95_mean_of_directed` and :meth:`SurfaceDistances.mean_of_directed_means`.
Plastimatch picks boundary voxels and percentiles slightly differently (no interpolation), so
values can differ by a fraction of a voxel. SlicerRT resamples the compared segment onto the
reference grid; we refuse masks on different grids instead (:func:`.masks.check_same_grid`),
because resampling changes the boundaries being measured.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .masks import PreparedMask, binary_mask, check_same_grid, crop_to_foreground


@dataclass(frozen=True)
class SurfaceDistances:
    """Directed surface distances (mm) between a prediction and a reference; see module doc."""

    pred_to_ref: np.ndarray  # one value per surface voxel of the prediction
    ref_to_pred: np.ndarray  # one value per surface voxel of the reference

    @property
    def defined(self) -> bool:
        """False when either mask is empty (every distance is then ``nan``)."""
        return self.pred_to_ref.size > 0 and self.ref_to_pred.size > 0

    def hausdorff(self) -> float:
        """Symmetric Hausdorff distance: the largest directed distance."""
        if not self.defined:
            return float("nan")
        return float(max(self.pred_to_ref.max(), self.ref_to_pred.max()))

    def percentile(self, q: float = 95.0) -> float:
        """Robust Hausdorff: the larger of the two directed *q*-th percentiles."""
        if not self.defined:
            return float("nan")
        return float(max(np.percentile(self.pred_to_ref, q), np.percentile(self.ref_to_pred, q)))

    def hd95(self) -> float:
        """HD95 = max of the two directed 95th percentiles (MONAI / DeepMind definition)."""
        return self.percentile(95.0)

    def assd(self) -> float:
        """Average symmetric surface distance: mean of both directed sets pooled."""
        if not self.defined:
            return float("nan")
        return float(np.concatenate([self.pred_to_ref, self.ref_to_pred]).mean())

    def hd95_mean_of_directed(self) -> float:
        """Mean of the two directed 95th percentiles (SlicerRT's "95% Hausdorff distance")."""
        if not self.defined:
            return float("nan")
        return float(0.5 * (np.percentile(self.pred_to_ref, 95) + np.percentile(self.ref_to_pred, 95)))

    def mean_of_directed_means(self) -> float:
        """Mean of the two directed means (SlicerRT's "average Hausdorff distance")."""
        if not self.defined:
            return float("nan")
        return float(0.5 * (self.pred_to_ref.mean() + self.ref_to_pred.mean()))

    @classmethod
    def between(cls, p: PreparedMask, r: PreparedMask) -> SurfaceDistances:
        """Directed distances between two prepared masks on one grid (empty when either is empty)."""
        if not (p.count and r.count):
            return cls(np.zeros(0), np.zeros(0))
        return cls(r.distance[p.surface].astype(np.float64), p.distance[r.surface].astype(np.float64))


def surface_distances(pred: sitk.Image, ref: sitk.Image) -> SurfaceDistances:
    """Directed surface distances in mm between two masks on the same grid.

    Distances between voxel centres, using the image spacing (the direction matrix does not
    change distances). Either mask empty → empty arrays (all summaries ``nan``).
    """
    check_same_grid(pred, ref)
    p, r = crop_to_foreground(binary_mask(pred), binary_mask(ref))
    return SurfaceDistances.between(PreparedMask(p), PreparedMask(r))


def hausdorff_mm(pred: sitk.Image, ref: sitk.Image) -> float:
    return surface_distances(pred, ref).hausdorff()


def hd95_mm(pred: sitk.Image, ref: sitk.Image) -> float:
    return surface_distances(pred, ref).hd95()


def assd_mm(pred: sitk.Image, ref: sitk.Image) -> float:
    return surface_distances(pred, ref).assd()
