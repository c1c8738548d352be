"""Harmonization and network inputs (after Hirsch et al. 2022).

* Per-exam intensity scaling: every phase is divided by the 95th percentile of the
  pre-contrast image inside the body (removes scanner gain and coil differences).
* Canonical frame: the exam is re-oriented to LPS axes (a permutation/flip of axes, no
  interpolation) and resampled to the model's isotropic spacing.
* Inputs: T1c (first post-contrast), DCE-in = T1c − pre, DCE-out = least-squares slope of the
  post-contrast phases per minute (0 when there is only one post-contrast phase).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..core.exam import DCEExam
from ..core.imageutil import isotropic_grid, resample_to

INPUT_NAMES = ("t1c", "dce_in", "dce_out")


def pre_contrast_p95(exam: DCEExam, body: sitk.Image | None = None) -> float:
    """95th percentile of the pre-contrast image inside the body (whole image if no mask)."""
    pre = sitk.GetArrayViewFromImage(exam.pre)
    if body is not None:
        vals = pre[sitk.GetArrayViewFromImage(body) > 0]
    else:
        vals = pre[pre > 0]
    if vals.size == 0:
        vals = pre.ravel()
    p95 = float(np.percentile(vals, 95))
    return p95 if p95 > 0 else 1.0


def post_contrast_slope(post: np.ndarray, times_min: np.ndarray) -> np.ndarray:
    """Per-voxel least-squares slope (per minute) of the post-contrast phases (phase axis first)."""
    if post.shape[0] < 2:
        return np.zeros(post.shape[1:], np.float32)
    t = np.asarray(times_min, np.float64)
    w = (t - t.mean()) / ((t - t.mean()) ** 2).sum()
    slope = np.zeros(post.shape[1:], np.float32)
    for wi, p in zip(w.astype(np.float32), post):
        slope += wi * p
    return slope


@dataclass
class ModelGrid:
    """Inputs for a network on its canonical grid, and how to return to the exam grid."""

    inputs: np.ndarray  # (C, z, y, x) float32
    grid: sitk.Image  # geometry of `inputs` (LPS-aligned, isotropic)
    scale: float  # the p95 used
    names: tuple[str, ...]


def canonical_grid(reference: sitk.Image, spacing_mm: float) -> sitk.Image:
    """LPS-aligned grid of the given isotropic spacing covering *reference*."""
    lps = sitk.DICOMOrient(reference, "LPS")
    return isotropic_grid(lps, spacing_mm)


# Context kept around the breasts when the network's input is cropped to them (inference and training).
CROP_MARGIN_MM = 16.0


def breast_crop(mask: np.ndarray, spacing_mm: float, margin_mm: float = CROP_MARGIN_MM) -> tuple[slice, ...]:
    """Bounding box (z, y, x slices) of a boolean mask on the model grid, widened by *margin_mm*;
    the whole grid when the mask is empty."""
    if not mask.any():
        return tuple(slice(0, s) for s in mask.shape)
    margin = int(round(margin_mm / spacing_mm))
    idx = np.nonzero(mask)
    return tuple(slice(max(0, int(i.min()) - margin), min(s, int(i.max()) + margin + 1))
                 for i, s in zip(idx, mask.shape))


def breast_model_input(pre: sitk.Image, spacing_mm: float, truth: sitk.Image | None = None) -> dict:
    """Input of the whole-breast model: the pre-contrast image on an uncropped LPS grid of
    *spacing_mm*, divided by the 95th percentile of its voxels above zero (``pre_coarse``,
    float16); with *truth*, the true breast mask on the same grid (``breast_coarse``)."""
    grid = canonical_grid(pre, spacing_mm)
    arr = sitk.GetArrayFromImage(resample_to(sitk.Cast(pre, sitk.sitkFloat32), grid))
    vals = arr[arr > 0]
    p95 = float(np.percentile(vals, 95)) if vals.size else 1.0
    out = {"pre_coarse": (arr / max(p95, 1e-6)).astype(np.float16)}
    if truth is not None:
        out["breast_coarse"] = (sitk.GetArrayFromImage(resample_to(truth, grid, sitk.sitkNearestNeighbor)) > 0
                                ).astype(np.uint8)
    return out


def to_model_grid(exam: DCEExam, spacing_mm: float, body: sitk.Image | None = None,
                  kind: str = "hirsch") -> ModelGrid:
    """Harmonize *exam* (already motion-corrected) and build network inputs on the model grid.

    kind="hirsch": channels (t1c, dce_in, dce_out) scaled by the pre-contrast p95.
    kind="phases": every phase and its subtraction from pre, (2*(N-1)) channels, for the
    spatial-temporal model.
    """
    scale = pre_contrast_p95(exam, body)
    grid = canonical_grid(exam.reference, spacing_mm)
    phases = [sitk.GetArrayFromImage(resample_to(p, grid)) / np.float32(scale) for p in exam.phases]
    pre = phases[0]
    if kind == "hirsch":
        t1c = phases[1]
        dce_in = t1c - pre
        times = exam.effective_times()[1:]
        dce_out = post_contrast_slope(np.stack(phases[1:]), times)
        inputs = np.stack([t1c, dce_in, dce_out]).astype(np.float32)
        names = INPUT_NAMES
    elif kind == "phases":
        chans, names = [], []
        for i, p in enumerate(phases[1:], start=1):
            chans += [p, p - pre]
            names += [f"phase{i}", f"sub{i}"]
        inputs = np.stack(chans).astype(np.float32)
        names = tuple(names)
    else:
        raise ValueError(f"unknown input kind {kind!r}")
    return ModelGrid(inputs, grid, scale, names)

