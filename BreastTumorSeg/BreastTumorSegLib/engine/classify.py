"""Per-breast malignancy probability and heatmap of a DCE exam (after Gong et al.).

    from BreastTumorSegLib.engine.classify import classify_exam
    res = classify_exam(exam)                 # model "breastcls-demo"
    res.probabilities                         # {"L": 0.93, "R": 0.04}: the breasts present
    res.heatmap                               # float32 on the pre-contrast grid

Steps (each timed in ``result.timings``):

1. **register** the phases (motion correction, as ``segment``; ``register=False`` skips it);
2. **breasts**: where each breast's score is computed from (:mod:`.classify_region`): the body
   in front of the chest wall (body and chest-wall level of
   :func:`~..preprocess.breast_region.breast_region`), with the classical breast mask only as a
   hint (its voxels always count, it is never the only source) and, when given, a lesion mask
   inside the body; a voxel's side comes from patient coordinates as in the lesion table
   (:func:`.postprocess.lesion_table`): LPS x greater than the body midline is the patient's
   left, every voxel of a unilateral exam is that breast's;
3. **kinetics** (:func:`~..kinetics.maps.compute_kinetic_maps`): early percentage enhancement
   (the 2nd post-contrast subtraction of a typical protocol, over the pre-contrast signal), curve
   type and SER;
4. **candidates** per breast: connected regions of the (lightly smoothed) early enhancement above
   ``max(50 %, background + 30 %)``, where *background* is the 80th percentile of the breast's
   early enhancement (background parenchymal enhancement raises the bar), each at least
   ``MIN_CANDIDATE_ML`` and ``MIN_CANDIDATE_VOXELS`` (a single coarse voxel has no shape), holes
   filled (a rim-enhancing lesion is one candidate); and, with
   :data:`.classify_lesions.SEGMENTER_CANDIDATES` (on), every lesion of the segmenter's label map
   (``segmenter_lesions``, else the shipped segmenter run on the aligned exam) as one more candidate
   (:func:`segmenter_candidates`, ``docs/decisions/classify-v10.md``);
5. **features** of each candidate (:data:`~..models.classifier.FEATURES`: size, elongation,
   roundness, solidity and radial irregularity (margin), longest axis, enhancement and its
   contrast to the background, the fractions of washout / plateau / persistent voxels and SER
   (kinetic curve type), the curve of its most enhancing quarter (the hot spot: mean late change,
   washout and persistent fractions), rim-to-core ratio, heterogeneity, background level, the
   breast's early-subtraction MIP level and the candidate's dominance over it, the share of it
   inside the breast mask: the mask as a soft hint; its voxel count and the exam's timing: whether
   a late phase exists and the early-to-late time, so a model can tell how much the shape and
   curve features say on this exam) and its malignancy
   probability from the model
   (:func:`~..models.classifier.load_classifier`: gradient-boosted trees or a logistic regression);
   every candidate also carries the second subtraction's MIP features (:mod:`.classify_mip`) and its
   breast-context features (:mod:`.classify_context`), read only by a card that lists them; a card
   listing the grid-relative margin features gets them, and a card with ``grid_harmonisation``
   reads ``radial_cv`` and ``log_n_voxels`` as on its reference grid (:mod:`.classify_grid`);
6. **per breast** the probability of its most suspicious candidate (a breast without candidates
   gets the card's ``no_candidate_probability``); the **heatmap** holds, at every voxel of a
   candidate, that candidate's probability (0 elsewhere): the per-voxel contribution to the
   breast's score.

Probabilities are keyed "L" / "R" (:data:`SIDE_CODES`), only for the breasts in the field of view.
This is a synthetic-data model: see its card and the README before reading anything into a number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from .. import __version__
from ..core.exam import DCEExam
from ..core.imageutil import voxel_volume_ml
from ..core.progress import Reporter
from ..kinetics.maps import PERSISTENT, PLATEAU, WASHOUT, compute_kinetic_maps
from ..models.classifier import (CONTEXT_FEATURES, DEFAULT_CLASSIFIER, FEATURES, GRID_FEATURES, MIP_FEATURES,
                                 WITH_CONTEXT, WITH_MEASURE, BreastClassifier, BreastTreeClassifier,
                                 load_classifier)
from ..preprocess.breast_region import breast_region
from ..preprocess.registration import register_exam
from .classify_context import context_features
from .classify_grid import card_harmonises, grid_features, harmonised, radial_cv
from .classify_measure import measure_features
from .classify_mip import candidate_footprint, exam_mips, mip_feature_rows, projection_axis, second_subtraction_index
from . import classify_lesions  # the segmenter's lesions as more candidates (engine/classify_lesions.py, off)
from . import classify_region
from .classify_region import classification_sides, lesions_in_body

SIDE_CODES = {"left": "L", "right": "R"}
MIN_CANDIDATE_ML = 0.03
MIN_CANDIDATE_VOXELS = 4  # and at least this many voxels: one coarse voxel has no shape to measure
MIN_THRESHOLD_PE = 50.0  # %
ABOVE_BACKGROUND_PE = 30.0  # %
MAX_CANDIDATES = 25  # per breast, largest first (bounds the time on a strongly enhancing breast)
RIM_DEPTH_MM = 2.0
HOT_PERCENTILE = 75  # of the candidate's early enhancement: its most suspicious part (hot spot)
BACKGROUND_PERCENTILE = 80  # of the early enhancement over the breast: background parenchymal enhancement
STAGE_WEIGHTS = {"register": 3.0, "breasts": 1.0, "kinetics": 1.0, "candidates": 1.0}


@dataclass
class Candidate:
    """One enhancing region of one breast."""

    side: str  # "left" / "right"
    box: tuple  # numpy (z, y, x) slices of the exam grid
    mask: np.ndarray  # bool, hole-filled, in the box
    features: np.ndarray  # FEATURES order
    centroid_lps: tuple
    volume_ml: float
    probability: float = float("nan")
    mip_features: np.ndarray | None = None  # MIP_FEATURES order (:mod:`.classify_mip`)
    context_features: np.ndarray | None = None  # CONTEXT_FEATURES order (:mod:`.classify_context`)
    grid_features: np.ndarray | None = None  # GRID_FEATURES order (:mod:`.classify_grid`), for a card that reads them
    measure_features: np.ndarray | None = None  # MEASURE_FEATURES order (:mod:`.classify_measure`)

    def model_input(self, names) -> np.ndarray:
        """The features a model with the feature list *names* reads (FEATURES [+ MIP_FEATURES
        [+ CONTEXT_FEATURES [+ GRID_FEATURES]]])."""
        if len(names) == len(FEATURES):
            return self.features
        if tuple(names) == WITH_MEASURE:
            return np.concatenate([self.features, self.measure_features])
        if len(names) == len(FEATURES) + len(MIP_FEATURES):
            return np.concatenate([self.features, self.mip_features])
        if len(names) == len(WITH_CONTEXT):
            return np.concatenate([self.features, self.mip_features, self.context_features])
        return np.concatenate([self.features, self.mip_features, self.context_features, self.grid_features])

    def as_dict(self) -> dict:
        extra = {} if self.mip_features is None else dict(zip(MIP_FEATURES, self.mip_features))
        if self.context_features is not None:
            extra.update(zip(CONTEXT_FEATURES, self.context_features))
        if self.grid_features is not None:
            extra.update(zip(GRID_FEATURES, self.grid_features))
        return {"probability": round(float(self.probability), 4), "volume_ml": round(self.volume_ml, 4),
                "centroid_lps_mm": [round(float(c), 2) for c in self.centroid_lps],
                "features": {f: round(float(v), 4) for f, v in [*zip(FEATURES, self.features), *extra.items()]}}


@dataclass
class ClassificationResult:
    """What :func:`classify_exam` returns (see the module docstring)."""

    case_id: str
    probabilities: dict  # "L"/"R" -> P(malignant), for the breasts present
    heatmap: sitk.Image  # float32, on the pre-contrast grid
    model_id: str
    candidates: dict = field(default_factory=dict)  # "L"/"R" -> [Candidate], most suspicious first
    timings: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    card: dict = field(default_factory=dict)
    subtraction: sitk.Image | None = None  # early phase minus pre-contrast (aligned): what the picture shows

    @property
    def threshold(self) -> float | None:
        """The card's operating threshold (:func:`operating_threshold`)."""
        return operating_threshold(self.card)

    def as_dict(self) -> dict:
        """JSON-ready summary (``classification.json``); ``operating_threshold`` and each breast's
        ``above_threshold`` (probability >= threshold) only when the card has an operating point."""
        t = self.threshold
        return {"case_id": self.case_id, "model": self.model_id, "software_version": __version__,
                "probabilities": {k: round(float(v), 4) for k, v in self.probabilities.items()},
                **({} if t is None else {"operating_threshold": t}),
                "breasts": {side: {"probability": round(float(self.probabilities[side]), 4),
                                   **({} if t is None else {"above_threshold": bool(self.probabilities[side] >= t)}),
                                   "n_candidates": len(self.candidates.get(side, [])),
                                   "candidates": [c.as_dict() for c in self.candidates.get(side, [])[:5]]}
                            for side in self.probabilities},
                "heatmap": "per-voxel probability of the enhancing candidate it belongs to (0 elsewhere)",
                "settings": self.settings, "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
                "intended_use": self.card.get("intended_use", "research only; trained on synthetic exams only")}


def operating_threshold(card: dict | None) -> float | None:
    """The breast probability at or above which the model calls a breast suspicious: the card's
    ``threshold`` (its operating point, chosen on the training cross-validation:
    ``training.operating_point``); None without one."""
    card = card or {}
    t = card.get("threshold", ((card.get("training") or {}).get("operating_point") or {}).get("threshold"))
    return None if t is None else float(t)


def probability_text(p: float, threshold: float | None) -> str:
    """``"0.21 (below 0.39)"`` / ``"0.93 (above 0.39)"`` (at or above counts as above; three decimals
    where two would print the threshold itself), ``"0.21"`` without a threshold."""
    if threshold is None:
        return f"{p:.2f}"
    shown = f"{p:.3f}" if round(p, 2) == round(threshold, 2) else f"{p:.2f}"
    return f"{shown} ({'above' if p >= threshold else 'below'} {threshold:g})"


def output_names(case_id: str) -> dict[str, str]:
    """Files of a classification in an output folder (``classify``, ``segment --classify``)."""
    return {"classification": f"{case_id}_classification.json", "heatmap": f"{case_id}_heatmap.nii.gz",
            "picture": f"{case_id}_classification.png"}


# ----------------------------------------------------------------------------- candidates
def _solidity(mask: np.ndarray, spacing_zyx) -> float:
    """Voxels of *mask* over the voxels inside its convex hull (1 = convex; spicules lower it)."""
    while mask.size > 200_000:  # a large region: its hull on a coarser grid
        mask, spacing_zyx = mask[::2, ::2, ::2], np.asarray(spacing_zyx) * 2
    pts = np.argwhere(mask)
    if len(pts) < 8:
        return 1.0
    edge = pts if len(pts) < 4000 else np.argwhere(mask & ~ndimage.binary_erosion(mask))
    try:
        hull = ConvexHull(edge * np.asarray(spacing_zyx))
    except QhullError:
        return 1.0
    grid = np.argwhere(np.ones(mask.shape, bool)) * np.asarray(spacing_zyx)
    inside = np.all(grid @ hull.equations[:, :3].T + hull.equations[:, 3] <= 1e-6, axis=1)
    return float(min(1.0, mask.sum() / max(int(inside.sum()), 1)))


def _hot_kinetics(mask: np.ndarray, box, maps, pe_in: np.ndarray) -> list[float]:
    """The kinetic curve of the candidate's most suspicious part, its most enhancing quarter
    (:data:`HOT_PERCENTILE`): the relative late change of its mean curve (washout < -0.1 <
    plateau < 0.1 < persistent, as the voxel curve types), its washout and persistent voxel
    fractions, and the 90th percentile of the candidate's SER (its worst curve)."""
    if not maps.ser_available:
        return [0.0, 1 / 3, 1 / 3, 0.0]
    hot = pe_in >= np.percentile(pe_in, HOT_PERCENTILE)
    early = float(maps.array("pe_early")[box][mask][hot].mean())
    late = float(maps.array("pe_late")[box][mask][hot].mean())
    curve = maps.array("curve_type")[box][mask][hot]
    assessed = curve > 0
    frac = [float(np.mean(curve[assessed] == c)) if assessed.any() else 1 / 3 for c in (WASHOUT, PERSISTENT)]
    ser90 = float(np.percentile(np.clip(maps.array("ser")[box][mask], 0.05, 5.0), 90))
    return [float(np.clip((late - early) / max(100.0 + early, 1.0), -1, 1)), *frac, math.log(ser90)]


def _features(mask: np.ndarray, box, maps, pe: np.ndarray, background: float, spacing_zyx, vox_ml: float,
              shape_stats: dict, mip_p95: float) -> np.ndarray:
    pe_in = pe[box][mask]
    curve = maps.array("curve_type")[box][mask]
    assessed = curve > 0
    if maps.ser_available and assessed.any():
        frac = [float(np.mean(curve[assessed] == c)) for c in (WASHOUT, PLATEAU, PERSISTENT)]
        ser = float(np.median(np.clip(maps.array("ser")[box][mask], 0.05, 5.0)))
    else:  # one post-contrast phase: the curve type is unknown
        frac, ser = [1 / 3] * 3, 1.0
    depth = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing_zyx)[1:-1, 1:-1, 1:-1]
    rim_depth = max(RIM_DEPTH_MM, float(np.min(spacing_zyx)))  # the outer voxel layer at least
    shell, core = mask & (depth <= rim_depth), mask & (depth > rim_depth)
    rim = 0.0
    if core.sum() >= 3 and shell.any():
        rim = math.log(max(float(pe[box][shell].mean()), 5.0) / max(float(pe[box][core].mean()), 5.0))
    med = float(np.median(pe_in))
    p90 = float(np.percentile(pe_in, 90))
    return np.array([
        math.log(mask.sum() * vox_ml), math.log(max(shape_stats["elongation"], 1.0)), shape_stats["roundness"],
        _solidity(mask, spacing_zyx), med / 100, p90 / 100,
        (med + 20) / (background + 20), *frac, math.log(ser), float(np.clip(rim, -2, 2)),
        float(np.std(pe_in) / max(abs(med), 1.0)), background / 100,
        *_hot_kinetics(mask, box, maps, pe_in), math.log(max(shape_stats["major_axis_mm"], 1.0)),
        radial_cv(mask, spacing_zyx), mip_p95 / 100, (p90 + 20) / (max(mip_p95, 0.0) + 20)], np.float64)


def breast_mip_p95(pe: np.ndarray, breast: np.ndarray) -> float:
    """95th percentile of the breast's maximum intensity projection (along the slice axis) of the
    early enhancement, over the breast's footprint (Gong et al.: the subtraction MIP)."""
    footprint = breast.any(axis=0)
    if not footprint.any():
        return 0.0
    mip = np.where(breast, pe, -np.inf).max(axis=0)
    return float(np.percentile(mip[footprint], 95))


def acquisition_features(maps) -> list[float]:
    """What the exam's timing lets the curve features say (the same for every candidate): 1 when a
    late phase exists (curve type and SER assessable; 0 with one post-contrast phase), and the
    time (min) from the early to the late phase (0 without a late phase)."""
    ph = maps.phases
    if not maps.ser_available or ph.late is None or ph.late_time_min is None:
        return [0.0, 0.0]
    return [1.0, float(ph.late_time_min - ph.early_time_min)]


def _finite(value: float, default: float) -> float:
    return float(value) if math.isfinite(value) else default


def smoothed_enhancement(maps, spacing_zyx) -> np.ndarray:
    """The early enhancement the candidates are found and measured on (lightly smoothed)."""
    return ndimage.gaussian_filter(np.asarray(maps.array("pe_early"), np.float32),
                                   0.6 / np.maximum(spacing_zyx / spacing_zyx.min(), 1))


def breast_levels(pe: np.ndarray, where: np.ndarray) -> tuple[float, float]:
    """(background level: :data:`BACKGROUND_PERCENTILE` of the early enhancement, MIP level:
    :func:`breast_mip_p95`) of a breast's valid voxels *where*."""
    background = max(float(np.percentile(pe[where], BACKGROUND_PERCENTILE)), 0.0) if where.any() else 0.0
    return background, breast_mip_p95(pe, where)


def _candidate(side: str, box, m: np.ndarray, stats, v: int, maps, pe, background: float, mip_p95: float, hint,
               acquisition, spacing_zyx, vox_ml: float) -> Candidate:
    """The candidate of label *v* (mask *m* in *box*; *stats*: ITK shape statistics with perimeter)."""
    shape_stats = {"elongation": _finite(stats.GetElongation(v), 1.0), "roundness": _finite(stats.GetRoundness(v), 1.0),
                   "major_axis_mm": _finite(max(stats.GetEquivalentEllipsoidDiameter(v)), 1.0)}
    # a candidate one voxel thin has no defined roundness or elongation (ITK gives NaN/inf)
    feats = np.nan_to_num(_features(m, box, maps, pe, background, spacing_zyx, vox_ml, shape_stats, mip_p95),
                          nan=0.0, posinf=0.0, neginf=0.0)
    inside = float(hint[box][m].mean()) if hint is not None else 1.0
    feats = np.append(feats, [inside, math.log(float(m.sum())), *acquisition])
    return Candidate(side, box, m, feats, tuple(stats.GetCentroid(v)), float(m.sum() * vox_ml))


def add_measure_features(exam: DCEExam, maps, cands: list[Candidate], context: dict | None = None) -> None:
    """Set the ``measure_features`` of every candidate that has none (:mod:`.classify_measure`,
    classify-v12: read only by a card listing ``WITH_MEASURE``, so computed only for one); the
    smoothed enhancement of the finder's pass (*context*'s ``"finder_pass"``) is reused when it was
    made on these *maps*."""
    todo = [c for c in cands if c.measure_features is None]
    if not todo:
        return
    spacing_zyx = np.asarray(exam.pre.GetSpacing())[::-1]
    vox_ml = voxel_volume_ml(exam.pre)
    shared = (context or {}).get("finder_pass") or {}
    pe = shared["pe"] if shared.get("maps") is maps and "pe" in shared else smoothed_enhancement(maps, spacing_zyx)
    valid = maps.array("valid") > 0
    for c in todo:
        c.measure_features = np.nan_to_num(np.array(measure_features(c.mask, c.box, maps, pe, valid, spacing_zyx, vox_ml,
                                                                     _solidity), np.float64),
                                           nan=0.0, posinf=0.0, neginf=0.0)


def segmenter_candidates(exam: DCEExam, maps, sides: np.ndarray, hint: np.ndarray, context: dict,
                         lesion_mask: sitk.Image) -> list[Candidate]:
    """One candidate per connected lesion of the segmenter's *lesion_mask*
    (:mod:`.classify_lesions`), with the features of :func:`find_candidates` (the breast's
    background and MIP levels as the finder reads them). What the finder's pass of the same exam
    already computed (*context*'s ``"finder_pass"``, :func:`exam_candidates`: the smoothed
    enhancement, the valid mask, the breasts' levels) is reused, not computed again."""
    comp, codes = classify_lesions.lesion_components(exam.pre, sides, context, lesion_mask)
    if not codes:
        return []
    spacing_zyx = np.asarray(exam.pre.GetSpacing())[::-1]
    vox_ml = voxel_volume_ml(exam.pre)
    shared = finder_pass(context, maps, sides)
    pe = shared["pe"] if shared else smoothed_enhancement(maps, spacing_zyx)
    valid = shared["valid"] if shared else maps.array("valid") > 0
    acquisition = acquisition_features(maps)
    known = shared["levels"] if shared else {}
    levels = {code: known[code] if code in known else breast_levels(pe, (sides == code) & valid)
              for code in set(codes.values())}
    img = sitk.GetImageFromArray(comp)
    img.CopyInformation(exam.pre)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputePerimeterOn()
    stats.Execute(img)
    objects = ndimage.find_objects(comp)
    out = []
    for v, code in codes.items():
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in objects[v - 1])
        out.append(_candidate("left" if code == 1 else "right", box, comp[box] == v, stats, v, maps, pe,
                              *levels[code], hint, acquisition, spacing_zyx, vox_ml))
    return out


def finder_pass(context: dict, maps, sides: np.ndarray) -> dict | None:
    """*context*'s record of :func:`find_candidates`' pass (``shared``) when it was made on these
    *maps* and *sides*, else None."""
    shared = context.get("finder_pass")
    return shared if shared and shared.get("maps") is maps and shared.get("sides") is sides else None


def find_candidates(exam: DCEExam, maps, sides: np.ndarray, hint: np.ndarray | None = None,
                    stats_sides: np.ndarray | None = None, shared: dict | None = None) -> list[Candidate]:
    """The enhancing candidates of every breast (module docstring, step 4) with their features;
    *hint*: the breast mask (bool), whose share of each candidate is its last feature (1 without);
    *stats_sides*: where each breast's background, threshold and MIP level are read (*sides*
    without; :data:`.classify_region.LUNG_KEEPS_STATISTICS`); *shared*: a dict this pass fills with
    what :func:`segmenter_candidates` reads too (:func:`finder_pass`), so it is computed once."""
    pre = exam.pre
    spacing_zyx = np.asarray(pre.GetSpacing())[::-1]
    vox_ml = voxel_volume_ml(pre)
    pe = smoothed_enhancement(maps, spacing_zyx)
    valid = maps.array("valid") > 0
    acquisition = acquisition_features(maps)
    if shared is not None:
        shared.update(maps=maps, sides=sides, hint=hint, pe=pe, valid=valid, levels={})
    out: list[Candidate] = []
    for side, code in (("left", 1), ("right", 2)):
        breast = sides == code
        if not breast.any():
            continue
        own_side = stats_sides is None or not (stats_sides == code).any()
        stats = breast if own_side else stats_sides == code
        background, mip_p95 = breast_levels(pe, stats & valid)
        if shared is not None and own_side:  # read on the breast itself, as the segmenter's lesions read them
            shared["levels"][code] = (background, mip_p95)
        threshold = max(MIN_THRESHOLD_PE, background + ABOVE_BACKGROUND_PE)
        lab, n = ndimage.label(breast & valid & (pe >= threshold), structure=np.ones((3, 3, 3)))
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())[1:]
        keep = [int(i) + 1 for i in np.argsort(-sizes)[:MAX_CANDIDATES]
                if sizes[i] * vox_ml >= MIN_CANDIDATE_ML and sizes[i] >= MIN_CANDIDATE_VOXELS]
        if not keep:
            continue
        objects = ndimage.find_objects(lab)
        filled = np.zeros(lab.shape, np.uint32)
        boxes = {}
        for v in keep:
            box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in objects[v - 1])
            m = ndimage.binary_fill_holes(lab[box] == v)
            filled[box][m] = v
            boxes[v] = box
        img = sitk.GetImageFromArray(filled)
        img.CopyInformation(pre)
        stats = sitk.LabelShapeStatisticsImageFilter()
        stats.ComputePerimeterOn()
        stats.Execute(img)
        for v in keep:
            box = boxes[v]
            m = filled[box] == v
            out.append(_candidate(side, box, m, stats, v, maps, pe, background, mip_p95, hint, acquisition,
                                  spacing_zyx, vox_ml))
    add_mip_features(exam, sides, valid, hint, out, shared)
    for c, row in zip(out, context_features(np.array([c.features for c in out]), [f"exam:{c.side}" for c in out])):
        c.context_features = row
    return out


def add_mip_features(exam: DCEExam, sides: np.ndarray, valid: np.ndarray, hint: np.ndarray | None,
                     cands: list[Candidate], shared: dict | None = None) -> None:
    """Set every candidate's ``mip_features`` (:mod:`.classify_mip`: the second subtraction's MIP;
    *hint*: the breast mask, where the breast features are read); *shared*: the finder's pass
    (:func:`finder_pass`), whose MIPs are made once and kept there."""
    if not cands:
        return
    axis = projection_axis(exam.pre)
    mips = shared.get("mips") if shared is not None else None
    if mips is None:
        post = sitk.GetArrayFromImage(exam.phases[second_subtraction_index(exam.n_phases)])
        mips = exam_mips(sitk.GetArrayFromImage(exam.pre), post, sides, exam.pre, valid, hint)
        if shared is not None:
            shared["mips"] = mips
    rows = mip_feature_rows(mips, [c.side for c in cands],
                            [candidate_footprint(sides.shape, c.box, c.mask, axis) for c in cands])
    for c, row in zip(cands, rows):
        c.mip_features = row


# ----------------------------------------------------------------------------- the classifier
def breast_probability(candidate_probabilities, no_candidate: float) -> float:
    """A breast's probability: its most suspicious candidate's, *no_candidate* without any."""
    return float(max(candidate_probabilities)) if len(candidate_probabilities) else float(no_candidate)


def exam_candidates(exam: DCEExam, register: bool = True, reporter: Reporter | None = None,
                    lesion_mask: sitk.Image | None = None):
    """Steps 1-5 without the model: (aligned exam, side map, candidates, kinetic maps, breast
    context; the context's ``"classification_region"`` says how the region was found). The
    trainer (:mod:`BreastTumorSegLib.training.classify`) labels these candidates."""
    reporter = reporter or Reporter(None, None, STAGE_WEIGHTS)
    with reporter.stage("register"):
        if register:
            exam, _ = register_exam(exam, reporter=reporter)
    with reporter.stage("breasts"):
        laterality = exam.metadata.get("laterality") or exam.metadata.get("Laterality")
        mask_img, context = breast_region(exam.pre, laterality=laterality)
        hint = sitk.GetArrayFromImage(mask_img) > 0
        sides, context["classification_region"] = classification_sides(exam.pre, hint, context, lesion_mask)
        stats_sides = None
        if classify_region.LUNG_REGION and classify_region.LUNG_KEEPS_STATISTICS:
            stats_sides, _ = classification_sides(exam.pre, hint, context, lesion_mask, lungs=False)
        if lesion_mask is not None:  # a lesion segment found inside the body counts as breast for the hint
            hint |= (sides > 0) & lesions_in_body(exam.pre, context, lesion_mask)
        context["breast_hint"] = hint
    with reporter.stage("kinetics"):
        maps = compute_kinetic_maps(exam)
    with reporter.stage("candidates"):
        context["finder_pass"] = {}  # what the segmenter's candidates read too (segmenter_candidates)
        cands = find_candidates(exam, maps, sides, hint, stats_sides, context["finder_pass"])
    return exam, sides, cands, maps, context


def classify_exam(exam: DCEExam, model: str | BreastClassifier | BreastTreeClassifier = DEFAULT_CLASSIFIER, *, register: bool = True,
                  models_dir=None, progress=None, cancel=None, lesion_mask: sitk.Image | None = None,
                  segmenter_lesions: sitk.Image | None = None) -> ClassificationResult:
    """Per-breast malignancy probabilities and heatmap of *exam* (module docstring).

    ``model``: a classification model's name (``"breastcls-demo"``; ``monai:PATH`` is refused with
    a one-line reason, :mod:`~..models.classifier`) or a loaded classifier (:func:`~..models.classifier.load_classifier`).
    ``register=False`` when the phases are already aligned (e.g. ``segment``'s registered phases).
    ``progress(stage, fraction, message)`` and ``cancel`` follow :class:`~..core.progress.Reporter`.
    ``lesion_mask`` (e.g. ``segment``'s label map): lesions inside the body are looked at even where
    the breast region does not reach (:mod:`.classify_region`). ``segmenter_lesions``: the shipped
    segmenter's label map of this exam when the caller has it (:mod:`.classify_lesions`; else, with
    its switch on, the segmenter runs here)."""
    clf = load_classifier(model, [models_dir] if models_dir else None) if isinstance(model, str) else model
    reporter = Reporter(progress, cancel, STAGE_WEIGHTS)
    exam, sides, cands, maps, context = exam_candidates(exam, register, reporter, lesion_mask)
    if classify_lesions.SEGMENTER_CANDIDATES:
        with reporter.stage("segmenter lesions"):
            label = segmenter_lesions if segmenter_lesions is not None else classify_lesions.segmenter_label(exam)
            more = segmenter_candidates(exam, maps, sides, context["breast_hint"], context, label)
            shared = finder_pass(context, maps, sides)
            if shared is not None and shared.get("hint") is not context["breast_hint"]:
                shared = None  # (the MIPs are read on the hint the finder had)
            add_mip_features(exam, sides, shared["valid"] if shared else maps.array("valid") > 0,
                             context["breast_hint"], more, shared)
            cands = cands + more
            rows = [] if not cands else context_features(np.array([c.features for c in cands]), [f"exam:{c.side}" for c in cands])
            for c, row in zip(cands, rows):
                c.context_features = row
    if cands:
        names = getattr(clf, "feature_names", FEATURES)
        if tuple(names) == WITH_MEASURE:  # a card reading the measurement features (classify-v12)
            add_measure_features(exam, maps, cands, context)
        if len(names) > len(WITH_CONTEXT):  # a card reading the grid-relative margin (:mod:`.classify_grid`)
            rows = grid_features(np.array([c.features for c in cands]), exam.pre.GetSpacing())
            for c, row in zip(cands, rows):
                c.grid_features = row
        rows = np.stack([c.model_input(names) for c in cands])
        reference = card_harmonises(getattr(clf, "card", None))
        if reference is not None:  # a card reading the features in the exam's voxels as on one grid
            rows = harmonised(rows, exam.pre.GetSpacing(), reference)
        probs = clf.probability(rows)
        for c, p in zip(cands, probs):
            c.probability = float(p)
    breast = sides > 0
    heat = np.zeros(breast.shape, np.float32)
    for c in sorted(cands, key=lambda c: c.probability):  # the most suspicious wins where regions touch
        heat[c.box][c.mask] = np.float32(c.probability)
    heatmap = sitk.GetImageFromArray(heat)
    heatmap.CopyInformation(exam.pre)
    present = [s for s, code in (("left", 1), ("right", 2)) if (sides == code).any()]
    by_side = {SIDE_CODES[s]: sorted((c for c in cands if c.side == s), key=lambda c: -c.probability) for s in present}
    probabilities = {k: breast_probability([c.probability for c in v], clf.no_candidate_probability)
                     for k, v in by_side.items()}
    timings = dict(reporter.timings)
    settings = {"registered": bool(register), "kinetics": maps.info(), "layout": {
        k: context["layout"].get(k) for k in ("midline_x", "unilateral_side")},
        "region": context.get("classification_region", {}),
        "min_threshold_pe": MIN_THRESHOLD_PE, "above_background_pe": ABOVE_BACKGROUND_PE,
        "min_candidate_ml": MIN_CANDIDATE_ML}
    early = maps.phases.early
    subtraction = sitk.Subtract(sitk.Cast(exam.phases[early], sitk.sitkFloat32), sitk.Cast(exam.pre, sitk.sitkFloat32))
    return ClassificationResult(exam.case_id, probabilities, heatmap, clf.model_id, by_side, timings, settings,
                                clf.card, subtraction)
