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

Surface distances
-----------------
The *surface* of a mask is the set of its voxels that have at least one of their 6 face neighbours
outside the mask. For each surface voxel of A the distance (mm, between voxel centres) to the
nearest surface voxel of B is read from SimpleITK's exact Euclidean ``SignedMaurerDistanceMap`` of
B's surface; that gives the *directed* distances A→B, and likewise B→A. From these two sets:

* ``hausdorff`` = max of all directed distances (both directions);
* ``hd95`` = **the larger of the two directed 95th percentiles** (numpy linear interpolation), the
  definition of MONAI's ``compute_hausdorff_distance(percentile=95)`` and DeepMind's
  ``surface-distance`` package;
* ``assd`` = the mean of the pooled set of directed distances (both directions together).

Measured on digital spheres (``Testing/test_metrics.py``) these agree with the analytic values
within half of the largest voxel spacing, for isotropic and anisotropic grids.

Relation to 3D Slicer's *Segment Comparison* module (SlicerRT, computed by Plastimatch): its
"Hausdorff distance (boundary)" maximum is our ``hausdorff``; its "95% Hausdorff distance
(boundary)" is the *mean* of the two directed 95th percentiles and its "average Hausdorff distance
(boundary)" the mean of the two directed means — available here as
:meth:`SurfaceDistances.hd95_mean_of_directed` and :meth:`SurfaceDistances.mean_of_directed_means`.
Plastimatch picks boundary voxels and percentiles slightly differently (no interpolation), so
values can differ by a fraction of a voxel. Its Dice is the same as ours. SlicerRT resamples the
compared segment onto the reference grid; we refuse masks on different grids instead
(:func:`check_same_grid`), because resampling changes the boundaries being measured.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..core.imageutil import describe_grid, same_grid

# T-stage by greatest tumour dimension (AJCC 8th edition, breast): T1 <= 20 mm < T2 <= 50 mm < T3.
T1_MAX_MM = 20.0
T2_MAX_MM = 50.0


# ------------------------------------------------------------------------------------ helpers
def _bool(mask) -> np.ndarray:
    if isinstance(mask, sitk.Image):
        mask = sitk.GetArrayViewFromImage(mask)
    return np.asarray(mask) > 0


def binary_mask(mask: sitk.Image) -> sitk.Image:
    """The mask as a uint8 0/1 image (voxels > 0 are foreground) with the same geometry."""
    if not isinstance(mask, sitk.Image):
        raise TypeError(f"expected a SimpleITK image (geometry is needed), got {type(mask).__name__}")
    out = sitk.GetImageFromArray((sitk.GetArrayViewFromImage(mask) > 0).astype(np.uint8))
    out.CopyInformation(mask)
    return out


# Below this many voxels a SimpleITK filter runs faster on one thread than on a thread pool.
SINGLE_THREAD_VOXELS = 1 << 20


def _small(f, img: sitk.Image):
    """Run filter *f* single-threaded when *img* is small (lesion-sized crops), else as configured."""
    if img.GetNumberOfPixels() < SINGLE_THREAD_VOXELS:
        f.SetNumberOfThreads(1)
    return f


def _counts(a, b) -> tuple[int, int, int]:
    """(|A|, |B|, |A and B|) for two masks of the same shape."""
    a, b = _bool(a), _bool(b)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    return int(a.sum()), int(b.sum()), int(np.logical_and(a, b).sum())


def crop_to_foreground(*masks: sitk.Image, pad: int = 2) -> list[sitk.Image]:
    """The masks cropped to the bounding box of their union, grown by *pad* voxels.

    Cropping keeps the physical geometry (origin moves with the box), so every metric here gives
    the same value on the crops; it only makes distance maps on large volumes fast. All-empty
    masks are returned unchanged.
    """
    union = np.zeros(sitk.GetArrayViewFromImage(masks[0]).shape, bool)
    for m in masks:
        union |= _bool(m)
    if not union.any():
        return list(masks)
    lo, hi = [], []
    for ax in range(union.ndim):
        other = tuple(i for i in range(union.ndim) if i != ax)
        idx = np.flatnonzero(union.any(axis=other))
        lo.append(max(int(idx[0]) - pad, 0))
        hi.append(min(int(idx[-1]) + pad + 1, union.shape[ax]))
    # numpy (z, y, x) -> SimpleITK (x, y, z) slicing
    box = tuple(slice(lo[ax], hi[ax]) for ax in reversed(range(union.ndim)))
    return [m[box] for m in masks]


def check_same_grid(pred: sitk.Image, ref: sitk.Image, pred_name: str = "prediction",
                    ref_name: str = "reference") -> None:
    """Refuse to compare masks that do not share one voxel grid.

    Resampling one mask onto the other's grid changes the very boundaries being measured, so the
    metrics are only defined on a common grid; the caller must decide how to get there.
    """
    if pred.GetDimension() != ref.GetDimension() or not same_grid(pred, ref):
        raise InputError(
            f"the masks are on different voxel grids: {pred_name} has {describe_grid(pred)}, "
            f"{ref_name} has {describe_grid(ref)}", ref_name,
            f"resample {ref_name} onto the grid of {pred_name} (nearest neighbour, e.g. Slicer's "
            "'Resample Scalar/Vector/DWI Volume' or sitk.Resample) and compare again")


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
    p, r = _bool(pred), _bool(ref)
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
    return int(_bool(mask).sum()) * float(np.prod(mask.GetSpacing())) / 1000.0


def volume_difference_ml(pred: sitk.Image, ref: sitk.Image) -> float:
    """Signed volume difference, prediction − reference, in mL."""
    return volume_ml(pred) - volume_ml(ref)


def _components(binary: sitk.Image,
                fully_connected: bool = True) -> tuple[np.ndarray, sitk.LabelShapeStatisticsImageFilter]:
    """Connected-component labels (array) and their shape statistics, Feret diameter included."""
    cc = _small(sitk.ConnectedComponentImageFilter(), binary)
    cc.SetFullyConnected(fully_connected)
    labels = cc.Execute(binary)
    stats = _small(sitk.LabelShapeStatisticsImageFilter(), binary)
    stats.SetComputeFeretDiameter(True)
    stats.Execute(labels)
    return sitk.GetArrayFromImage(labels), stats


def _diameters(stats: sitk.LabelShapeStatisticsImageFilter) -> list[float]:
    return sorted((float(stats.GetFeretDiameter(lab)) for lab in stats.GetLabels()), reverse=True)


def lesion_diameters_mm(mask: sitk.Image, fully_connected: bool = True) -> list[float]:
    """Greatest 3D dimension (Feret diameter, mm) of each connected component, largest first.

    The Feret diameter is ITK's (``LabelShapeStatisticsImageFilter``): the largest distance between
    two voxel centres on the component's border, so a digital sphere of radius R measures a little
    under 2R (by less than one voxel spacing along the measured direction).
    """
    return _diameters(_components(binary_mask(mask), fully_connected)[1])


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


# ---------------------------------------------------------------------------- surface distances
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


def surface_voxels(mask: sitk.Image) -> sitk.Image:
    """Voxels of *mask* with at least one of their 6 face neighbours outside it (uint8 0/1)."""
    return _surface(binary_mask(mask))


def _surface(binary: sitk.Image) -> sitk.Image:
    f = _small(sitk.BinaryContourImageFilter(), binary)
    f.SetFullyConnected(False)
    f.SetBackgroundValue(0)
    f.SetForegroundValue(1)
    return f.Execute(binary)


def _distance_to(surface: sitk.Image) -> np.ndarray:
    """Distance (mm) from every voxel to the nearest voxel of a (one voxel thin) surface.

    The Maurer map of the surface image is exact Euclidean distance and zero on the surface
    itself, so its absolute value is the wanted distance inside and outside the mask alike.
    """
    f = _small(sitk.SignedMaurerDistanceMapImageFilter(), surface)
    f.SetInsideIsPositive(False)
    f.SetSquaredDistance(False)
    f.SetUseImageSpacing(True)
    f.SetBackgroundValue(0)
    return np.abs(sitk.GetArrayFromImage(f.Execute(surface)))


def surface_distances(pred: sitk.Image, ref: sitk.Image) -> SurfaceDistances:
    """Directed surface distances in mm between two masks on the same grid.

    Distances between voxel centres, using the image spacing (the direction matrix does not
    change distances). Either mask empty → empty arrays (all summaries ``nan``).
    """
    check_same_grid(pred, ref)
    p, r = crop_to_foreground(binary_mask(pred), binary_mask(ref))
    p, r = PreparedMask(p), PreparedMask(r)
    if not (p.count and r.count):
        return SurfaceDistances(np.zeros(0), np.zeros(0))
    return SurfaceDistances(r.distance[p.surface].astype(np.float64), p.distance[r.surface].astype(np.float64))


def hausdorff_mm(pred: sitk.Image, ref: sitk.Image) -> float:
    return surface_distances(pred, ref).hausdorff()


def hd95_mm(pred: sitk.Image, ref: sitk.Image) -> float:
    return surface_distances(pred, ref).hd95()


def assd_mm(pred: sitk.Image, ref: sitk.Image) -> float:
    return surface_distances(pred, ref).assd()


# ------------------------------------------------------------------------- lesion-wise detection
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
    return _detection(_components(p, fully_connected), _components(r, fully_connected), min_overlap)


def _detection(pred_cc, ref_cc, min_overlap: float = 0.0) -> DetectionResult:
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
        return _components(binary_mask(mask))
    labels = sitk.Cast(mask, sitk.sitkUInt32)
    stats = _small(sitk.LabelShapeStatisticsImageFilter(), labels)
    stats.Execute(labels)
    return sitk.GetArrayFromImage(labels), stats


def _lesion_level(pred_cc, ref_cc, min_ml: float) -> LesionLevel:
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
    return _lesion_level(_components(binary_mask(pred)), _labelled(ref, ref_is_labels), min_ml)


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
            r = _lesion_level(_components(binary), rcc, min_ml)
            found, true, fp = found + r.n_found, true + r.n_true, fp + r.n_false_positive
        out.append(FrocPoint(t, float("nan") if true == 0 else found / true, fp / max(len(refs), 1), true, found))
    return out


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


class PreparedMask:
    """A binary mask plus what every metric derives from it, each computed once on first use.

    Comparing one mask with many others (a reference against every reader and the model) then
    costs one contour, one distance map and one component labelling per mask instead of per
    pair. All masks compared with each other must share one grid (crop them together first with
    :func:`crop_to_foreground` to keep the work proportional to the lesions).
    """

    def __init__(self, mask: sitk.Image, name: str = "mask"):
        self.image = binary_mask(mask)
        self.name = name
        self.array = sitk.GetArrayFromImage(self.image) > 0
        self.count = int(self.array.sum())
        self._surface: np.ndarray | None = None
        self._distance: np.ndarray | None = None
        self._cc = None

    @property
    def surface(self) -> np.ndarray:
        if self._surface is None:
            self._surface = sitk.GetArrayFromImage(_surface(self.image)) > 0
        return self._surface

    @property
    def distance(self) -> np.ndarray:
        """Distance (mm) from every voxel to this mask's surface."""
        if self._distance is None:
            surf = sitk.GetImageFromArray(self.surface.astype(np.uint8))
            surf.CopyInformation(self.image)
            self._distance = _distance_to(surf)
        return self._distance

    @property
    def components(self):
        if self._cc is None:
            self._cc = _components(self.image)
        return self._cc

    @property
    def diameter_mm(self) -> float:
        return (_diameters(self.components[1]) or [0.0])[0]


def evaluate_prepared(p: PreparedMask, r: PreparedMask) -> SegmentationMetrics:
    """:func:`evaluate` for two :class:`PreparedMask` objects on one grid."""
    check_same_grid(p.image, r.image, p.name, r.name)
    if p.count and r.count:
        sd = SurfaceDistances(r.distance[p.surface].astype(np.float64), p.distance[r.surface].astype(np.float64))
    else:
        sd = SurfaceDistances(np.zeros(0), np.zeros(0))
    det = _detection(p.components, r.components)
    lev = _lesion_level(p.components, r.components, MIN_LESION_ML)
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
