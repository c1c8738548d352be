"""Segmentation metrics (spacing-aware, in mm and mL).

Every mask is a SimpleITK image (any integer or float pixel type); voxels ``> 0`` are foreground.
Functions that measure distances or volumes need the image geometry and therefore take images;
the overlap scores (:func:`dice` and friends) also accept numpy arrays.

Empty masks are handled explicitly, never by a division-by-zero warning:

=====================  =====================================  ===============================
metric                 reference empty                        prediction empty
=====================  =====================================  ===============================
Dice, Jaccard          1.0 if the prediction is empty too,    0.0 (unless both are empty)
                       else 0.0
sensitivity            ``nan`` (no positives to find)         0.0
precision              0.0 (``nan`` if both are empty)        ``nan`` (nothing was predicted)
HD, HD95, ASSD         ``nan`` (no surface to measure to)     ``nan``
volume difference      defined (prediction volume)            defined (-reference volume)
longest diameter       0.0 mm, T-stage ``"T0"``               0.0 mm, ``"T0"``
=====================  =====================================  ===============================

Surface distances (Hausdorff, HD95, ASSD, and how they relate to 3D Slicer's *Segment Comparison*)
are defined in :mod:`.surface`; lesion-wise detection and FROC in :mod:`.lesions`; the mask
preparation every metric shares (binary masks, same-grid check, crops, :class:`PreparedMask`) in
:mod:`.masks`. This module holds the overlap scores, volumes and sizes, and :func:`evaluate`, which
computes every metric of one prediction against one reference. Its Dice is the same as Slicer's.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk

from .lesions import MIN_LESION_ML, detection_of, lesion_level_of
from .masks import (PreparedMask, binary_mask, check_same_grid, components, crop_to_foreground, feret_diameters,
                    foreground)
from .surface import SurfaceDistances

# T-stage by greatest tumour dimension (AJCC 8th edition, breast): T1 <= 20 mm < T2 <= 50 mm < T3.
T1_MAX_MM = 20.0
T2_MAX_MM = 50.0


def _counts(a, b) -> tuple[int, int, int]:
    """(|A|, |B|, |A and B|) for two masks of the same shape."""
    a, b = foreground(a), foreground(b)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    return int(a.sum()), int(b.sum()), int(np.logical_and(a, b).sum())


# ------------------------------------------------------------------------------ overlap scores
def dice(a, b) -> float:
    """Dice coefficient 2|A∩B| / (|A| + |B|) of two binary masks (images or arrays, same shape).

    Two empty masks agree perfectly: 1.0.
    """
    na, nb, inter = _counts(a, b)
    if na + nb == 0:
        return 1.0
    return 2.0 * inter / (na + nb)


def jaccard(a, b) -> float:
    """Jaccard index |A∩B| / |A∪B| (= Dice / (2 − Dice)); 1.0 for two empty masks."""
    na, nb, inter = _counts(a, b)
    union = na + nb - inter
    return 1.0 if union == 0 else inter / union


def sensitivity(pred, ref) -> float:
    """Fraction of reference voxels the prediction covers (recall); ``nan`` for an empty reference."""
    npred, nref, inter = _counts(pred, ref)
    return float("nan") if nref == 0 else inter / nref


def precision(pred, ref) -> float:
    """Fraction of predicted voxels inside the reference (PPV); ``nan`` for an empty prediction."""
    npred, nref, inter = _counts(pred, ref)
    return float("nan") if npred == 0 else inter / npred


def dice_2d(pred, ref, slice_index: int | None = None, axis: int = 0) -> tuple[float, int]:
    """Dice on one 2D slice, as Hirsch et al. scored readers who outlined a single slice.

    ``axis`` is the numpy axis of the slices ((z, y, x) order, so 0 = the acquisition's slice
    axis whatever the orientation). Without ``slice_index`` the slice where the *reference* has
    its largest area is used (the prediction's, if the reference is empty). Returns
    ``(dice, slice_index)``. Both masks empty on the slice gives 1.0.
    """
    p, r = foreground(pred), foreground(ref)
    if p.shape != r.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {r.shape}")
    if slice_index is None:
        other = tuple(i for i in range(r.ndim) if i != axis)
        areas = r.sum(axis=other)
        if not areas.any():
            areas = p.sum(axis=other)
        slice_index = int(np.argmax(areas))
    return dice(np.take(p, slice_index, axis=axis), np.take(r, slice_index, axis=axis)), slice_index


# ------------------------------------------------------------------------------ volumes, size
def volume_ml(mask: sitk.Image) -> float:
    """Foreground volume in mL (1 mL = 1000 mm³)."""
    return int(foreground(mask).sum()) * float(np.prod(mask.GetSpacing())) / 1000.0


def volume_difference_ml(pred: sitk.Image, ref: sitk.Image) -> float:
    """Signed volume difference, prediction − reference, in mL."""
    return volume_ml(pred) - volume_ml(ref)


def lesion_diameters_mm(mask: sitk.Image, fully_connected: bool = True) -> list[float]:
    """Greatest 3D dimension (Feret diameter, mm) of each connected component, largest first.

    The Feret diameter is ITK's (``LabelShapeStatisticsImageFilter``): the largest distance between
    two voxel centres on the component's border, so a digital sphere of radius R measures a little
    under 2R (by less than one voxel spacing along the measured direction).
    """
    return feret_diameters(components(binary_mask(mask), fully_connected)[1])


def longest_diameter_mm(mask: sitk.Image) -> float:
    """Greatest dimension of the largest lesion in *mask* (mm); 0.0 for an empty mask.

    For multifocal disease AJCC stages by the largest tumour, so this is the largest Feret
    diameter among the connected components, not the span of all of them together.
    """
    diam = lesion_diameters_mm(mask)
    return diam[0] if diam else 0.0


def t_stage(diameter_mm: float) -> str:
    """Size-based T category: ``"T1"`` ≤ 20 mm < ``"T2"`` ≤ 50 mm < ``"T3"``; ``"T0"`` for 0 mm.

    Only size is known from a mask: T4 (chest wall or skin invasion) cannot be assigned here.
    """
    if not np.isfinite(diameter_mm) or diameter_mm < 0:
        raise ValueError(f"diameter must be a finite non-negative number of mm, got {diameter_mm}")
    if diameter_mm == 0:
        return "T0"
    if diameter_mm <= T1_MAX_MM:
        return "T1"
    if diameter_mm <= T2_MAX_MM:
        return "T2"
    return "T3"


# ------------------------------------------------------------------------------ all at once
@dataclass
class SegmentationMetrics:
    """Every metric of one prediction against one reference (see module doc for empty masks)."""

    dice: float
    jaccard: float
    sensitivity: float
    precision: float
    hausdorff_mm: float
    hd95_mm: float
    assd_mm: float
    pred_volume_ml: float
    ref_volume_ml: float
    volume_difference_ml: float
    pred_diameter_mm: float
    ref_diameter_mm: float
    pred_t_stage: str
    ref_t_stage: str
    ref_lesions: int
    detected_lesions: int
    false_positive_components: int
    extra: dict = field(default_factory=dict)
    # per lesion, true lesions >= MIN_LESION_ML (see :func:`lesion_level`)
    lesion_sensitivity: float = float("nan")
    true_lesions: int = 0
    found_lesions: int = 0
    false_positive_lesions: int = 0

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d


def evaluate_prepared(p: PreparedMask, r: PreparedMask) -> SegmentationMetrics:
    """:func:`evaluate` for two :class:`PreparedMask` objects on one grid."""
    check_same_grid(p.image, r.image, p.name, r.name)
    sd = SurfaceDistances.between(p, r)
    det = detection_of(p.components, r.components)
    lev = lesion_level_of(p.components, r.components, MIN_LESION_ML)
    pd_, rd = p.diameter_mm, r.diameter_mm
    na, nb = p.count, r.count
    inter = int(np.logical_and(p.array, r.array).sum())
    vox_ml = float(np.prod(p.image.GetSpacing())) / 1000.0
    return SegmentationMetrics(
        dice=1.0 if na + nb == 0 else 2.0 * inter / (na + nb),
        jaccard=1.0 if na + nb == 0 else inter / (na + nb - inter),
        sensitivity=float("nan") if nb == 0 else inter / nb,
        precision=float("nan") if na == 0 else inter / na,
        hausdorff_mm=sd.hausdorff(), hd95_mm=sd.hd95(), assd_mm=sd.assd(),
        pred_volume_ml=na * vox_ml, ref_volume_ml=nb * vox_ml, volume_difference_ml=(na - nb) * vox_ml,
        pred_diameter_mm=pd_, ref_diameter_mm=rd, pred_t_stage=t_stage(pd_), ref_t_stage=t_stage(rd),
        ref_lesions=det.n_reference_lesions, detected_lesions=det.n_detected,
        false_positive_components=det.n_false_positive_components,
        lesion_sensitivity=lev.sensitivity, true_lesions=lev.n_true, found_lesions=lev.n_found,
        false_positive_lesions=lev.n_false_positive)


def evaluate(pred: sitk.Image, ref: sitk.Image, pred_name: str = "prediction",
             ref_name: str = "reference") -> SegmentationMetrics:
    """All metrics of *pred* against *ref* (same grid required, else :class:`InputError`).

    Runs on the box around both masks, so full-size volumes cost little more than the lesions
    they contain.
    """
    check_same_grid(pred, ref, pred_name, ref_name)
    p, r = crop_to_foreground(binary_mask(pred), binary_mask(ref))
    return evaluate_prepared(PreparedMask(p, pred_name), PreparedMask(r, ref_name))
