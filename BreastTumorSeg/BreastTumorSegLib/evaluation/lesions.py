"""Lesion-wise scores: each true lesion found or missed, false-positive components, FROC.

Lesions are connected components (26-connected unless asked otherwise) of the masks, or the label
values of a label map (e.g. a phantom's ``tumor_labels``). :func:`lesion_detection` matches the
components of one prediction with those of its reference; :func:`lesion_level` counts, per exam,
true lesions of at least :data:`MIN_LESION_ML` found and false-positive components; :func:`froc`
traces lesion sensitivity against false positives per exam over probability thresholds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .masks import binary_mask, check_same_grid, components, threads_for


@dataclass(frozen=True)
class LesionMatch:
    """One connected component of the reference and whether the prediction found it."""

    label: int
    voxels: int
    volume_ml: float
    diameter_mm: float
    overlap_fraction: float  # fraction of the lesion's voxels inside the prediction
    detected: bool


@dataclass(frozen=True)
class DetectionResult:
    lesions: list[LesionMatch]
    n_pred_components: int
    n_false_positive_components: int  # predicted components touching no reference lesion

    @property
    def n_reference_lesions(self) -> int:
        return len(self.lesions)

    @property
    def n_detected(self) -> int:
        return sum(les.detected for les in self.lesions)

    @property
    def lesion_sensitivity(self) -> float:
        """Detected / reference lesions; ``nan`` when the reference has no lesion."""
        return float("nan") if not self.lesions else self.n_detected / len(self.lesions)


def lesion_detection(pred: sitk.Image, ref: sitk.Image, min_overlap: float = 0.0,
                     fully_connected: bool = True) -> DetectionResult:
    """Lesion-wise detection: each reference component is *found* or *missed*.

    A reference lesion counts as detected when the prediction covers at least one of its voxels
    and at least ``min_overlap`` of them (0.0 = any voxel, the usual "hit" criterion). A predicted
    component that touches no reference lesion is a false-positive component. Components are
    26-connected unless ``fully_connected=False`` (6-connected).
    """
    check_same_grid(pred, ref)
    p, r = binary_mask(pred), binary_mask(ref)
    return detection_of(components(p, fully_connected), components(r, fully_connected), min_overlap)


def detection_of(pred_cc, ref_cc, min_overlap: float = 0.0) -> DetectionResult:
    """:func:`lesion_detection` on (labels, statistics) pairs from :func:`.masks.components`."""
    pred_arr, _ = pred_cc
    ref_arr, stats = ref_cc
    hits = np.bincount(ref_arr[pred_arr > 0].ravel(), minlength=int(ref_arr.max()) + 1)
    lesions = []
    for lab in stats.GetLabels():
        n = int(stats.GetNumberOfPixels(lab))
        frac = hits[lab] / n
        lesions.append(LesionMatch(int(lab), n, float(stats.GetPhysicalSize(lab)) / 1000.0,
                                   float(stats.GetFeretDiameter(lab)), float(frac),
                                   bool(hits[lab] > 0 and frac >= min_overlap)))
    lesions.sort(key=lambda les: -les.voxels)
    n_pred = int(pred_arr.max())
    touching = np.unique(pred_arr[(ref_arr > 0) & (pred_arr > 0)])
    return DetectionResult(lesions, n_pred, n_pred - int(touching.size))


# ---------------------------------------------------------------------- lesion-level (per exam)
# A true lesion smaller than this is not counted (found or missed); a prediction on it is no FP.
MIN_LESION_ML = 0.1


@dataclass(frozen=True)
class LesionLevel:
    """Per-lesion outcome of one exam (see :func:`lesion_level`)."""

    n_true: int  # true lesions >= min_ml
    n_found: int  # of those, overlapped by a predicted component
    n_false_positive: int  # predicted components overlapping no true lesion (of any size)
    n_pred: int  # predicted components
    voxel_recall: float  # fraction of true-lesion voxels predicted (all lesions); nan: no truth
    min_ml: float = MIN_LESION_ML

    @property
    def sensitivity(self) -> float:
        """Found / true lesions (>= ``min_ml``); ``nan`` when there is none."""
        return float("nan") if self.n_true == 0 else self.n_found / self.n_true


def _labelled(mask: sitk.Image, as_labels: bool) -> tuple[np.ndarray, sitk.LabelShapeStatisticsImageFilter]:
    if not as_labels:
        return components(binary_mask(mask))
    labels = sitk.Cast(mask, sitk.sitkUInt32)
    stats = threads_for(sitk.LabelShapeStatisticsImageFilter(), labels)
    stats.Execute(labels)
    return sitk.GetArrayFromImage(labels), stats


def lesion_level_of(pred_cc, ref_cc, min_ml: float) -> LesionLevel:
    """:func:`lesion_level` on (labels, statistics) pairs from :func:`.masks.components` (or labelled)."""
    pred_arr, _ = pred_cc
    ref_arr, stats = ref_cc
    hit = np.zeros(int(ref_arr.max()) + 1, bool)
    hit[np.unique(ref_arr[pred_arr > 0])] = True
    big = [lab for lab in stats.GetLabels() if stats.GetPhysicalSize(lab) / 1000.0 >= min_ml]
    touching = np.unique(pred_arr[(ref_arr > 0) & (pred_arr > 0)])
    n_pred = int(np.unique(pred_arr[pred_arr > 0]).size)
    nref = int(np.count_nonzero(ref_arr))
    recall = float("nan") if nref == 0 else float(np.count_nonzero((ref_arr > 0) & (pred_arr > 0))) / nref
    return LesionLevel(len(big), int(sum(hit[lab] for lab in big)), n_pred - int(touching.size), n_pred, recall,
                       float(min_ml))


def lesion_level(pred: sitk.Image, ref: sitk.Image, min_ml: float = MIN_LESION_ML,
                 ref_is_labels: bool = False) -> LesionLevel:
    """Per-lesion matching of one exam.

    True lesions are the 26-connected components of *ref* (or, with ``ref_is_labels``, its label
    values: one per lesion, e.g. a phantom's ``tumor_labels``). A true lesion of at least
    ``min_ml`` is *found* when any predicted component overlaps it; a predicted component
    (26-connected) overlapping no true lesion is a false positive; ``voxel_recall`` is the
    fraction of true-lesion voxels inside the prediction.
    """
    check_same_grid(pred, ref)
    return lesion_level_of(components(binary_mask(pred)), _labelled(ref, ref_is_labels), min_ml)


@dataclass(frozen=True)
class FrocPoint:
    threshold: float
    sensitivity: float  # found / true lesions (>= min_ml) over all exams
    mean_fp_per_exam: float
    n_true: int
    n_found: int


def froc(probabilities: list[sitk.Image], refs: list[sitk.Image], thresholds=(0.5, 0.7, 0.8, 0.9, 0.95),
         min_ml: float = MIN_LESION_ML, min_pred_ml: float = 0.0, ref_is_labels: bool = False) -> list[FrocPoint]:
    """FROC: lesion sensitivity against the mean number of false-positive lesions per exam.

    For every threshold each probability map is cut at ``p >= threshold``; its components of at
    least ``min_pred_ml`` are matched with :func:`lesion_level`. Give the pipeline's map
    restricted to its label map (``prob * label``) to trace the curve of what it reports.
    Sensitivity never rises with the threshold (a higher cut's mask lies inside a lower one's).
    """
    if len(probabilities) != len(refs):
        raise ValueError("give one reference per probability map")
    ref_cc = [_labelled(r, ref_is_labels) for r in refs]
    out = []
    for t in sorted(float(v) for v in thresholds):
        found = true = fp = 0
        for prob, rcc in zip(probabilities, ref_cc):
            binary = sitk.Cast(sitk.GreaterEqual(prob, t), sitk.sitkUInt8)
            if min_pred_ml > 0:
                vox = int(np.ceil(min_pred_ml * 1000.0 / float(np.prod(prob.GetSpacing()))))
                cc = sitk.RelabelComponent(sitk.ConnectedComponent(binary, True), minimumObjectSize=vox)
                binary = sitk.Cast(cc > 0, sitk.sitkUInt8)
            r = lesion_level_of(components(binary), rcc, min_ml)
            found, true, fp = found + r.n_found, true + r.n_true, fp + r.n_false_positive
        out.append(FrocPoint(t, float("nan") if true == 0 else found / true, fp / max(len(refs), 1), true, found))
    return out
