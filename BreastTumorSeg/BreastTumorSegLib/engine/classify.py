"""Per-breast malignancy probability and heatmap of a DCE exam (after Gong et al.).

    from BreastTumorSegLib.engine.classify import classify_exam
    res = classify_exam(exam)                 # model "breastcls-demo"
    res.probabilities                         # {"L": 0.93, "R": 0.04}: the breasts present
    res.heatmap                               # float32 on the pre-contrast grid

Steps (each timed in ``result.timings``):

1. **register** the phases (motion correction, as ``segment``; ``register=False`` skips it);
2. **breasts**: the classical whole-breast mask and layout
   (:func:`~..preprocess.breast_region.breast_region`); a voxel's side comes from patient
   coordinates as in the lesion table (:func:`.postprocess.lesion_table`): LPS x greater than the
   body midline is the patient's left, every voxel of a unilateral exam is that breast's;
3. **kinetics** (:func:`~..kinetics.maps.compute_kinetic_maps`): early percentage enhancement
   (the 2nd post-contrast subtraction of a typical protocol, over the pre-contrast signal), curve
   type and SER;
4. **candidates** per breast: connected regions of the (lightly smoothed) early enhancement above
   ``max(50 %, background + 30 %)``, where *background* is the 80th percentile of the breast's
   early enhancement (background parenchymal enhancement raises the bar), each at least
   ``MIN_CANDIDATE_ML``, holes filled (a rim-enhancing lesion is one candidate);
5. **features** of each candidate (:data:`~..models.classifier.FEATURES`: size, elongation,
   roundness and solidity (margin), enhancement and its contrast to the background, the fractions
   of washout / plateau / persistent voxels and SER (kinetic curve type), rim-to-core ratio,
   heterogeneity, background level) and its malignancy probability from the model
   (:class:`~..models.classifier.BreastClassifier`);
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
from ..models.classifier import DEFAULT_CLASSIFIER, FEATURES, BreastClassifier, load_classifier
from ..preprocess.breast_region import breast_region
from ..preprocess.registration import register_exam
from .postprocess import midline_x

SIDE_CODES = {"left": "L", "right": "R"}
MIN_CANDIDATE_ML = 0.03
MIN_THRESHOLD_PE = 50.0  # %
ABOVE_BACKGROUND_PE = 30.0  # %
MAX_CANDIDATES = 25  # per breast, largest first (bounds the time on a strongly enhancing breast)
RIM_DEPTH_MM = 2.0
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

    def as_dict(self) -> dict:
        return {"probability": round(float(self.probability), 4), "volume_ml": round(self.volume_ml, 4),
                "centroid_lps_mm": [round(float(c), 2) for c in self.centroid_lps],
                "features": {f: round(float(v), 4) for f, v in zip(FEATURES, self.features)}}


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

    def as_dict(self) -> dict:
        """JSON-ready summary (``classification.json``)."""
        return {"case_id": self.case_id, "model": self.model_id, "software_version": __version__,
                "probabilities": {k: round(float(v), 4) for k, v in self.probabilities.items()},
                "breasts": {side: {"probability": round(float(self.probabilities[side]), 4),
                                   "n_candidates": len(self.candidates.get(side, [])),
                                   "candidates": [c.as_dict() for c in self.candidates.get(side, [])[:5]]}
                            for side in self.probabilities},
                "heatmap": "per-voxel probability of the enhancing candidate it belongs to (0 elsewhere)",
                "settings": self.settings, "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
                "intended_use": self.card.get("intended_use", "research only; trained on synthetic exams only")}


def output_names(case_id: str) -> dict[str, str]:
    """Files of a classification in an output folder (``classify``, ``segment --classify``)."""
    return {"classification": f"{case_id}_classification.json", "heatmap": f"{case_id}_heatmap.nii.gz",
            "picture": f"{case_id}_classification.png"}


# ----------------------------------------------------------------------------- sides
def side_map(pre: sitk.Image, breast: np.ndarray, layout: dict, mask_img: sitk.Image) -> np.ndarray:
    """uint8 (z, y, x): 1 = left breast, 2 = right breast, 0 = not breast (patient coordinates)."""
    out = np.zeros(breast.shape, np.uint8)
    uni = layout.get("unilateral_side")
    if uni in SIDE_CODES:
        out[breast] = 1 if uni == "left" else 2
        return out
    mid = layout.get("midline_x")
    mid = midline_x(mask_img) if mid is None else float(mid)
    if mid is None:
        return out
    m = np.asarray(pre.GetDirection()).reshape(3, 3) * np.asarray(pre.GetSpacing())
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in breast.shape), indexing="ij", sparse=True)
    x = np.float32(pre.GetOrigin()[0]) + np.float32(m[0, 0]) * i + np.float32(m[0, 1]) * j + np.float32(m[0, 2]) * k
    left = x > np.float32(mid)
    out[breast & left] = 1
    out[breast & ~left] = 2
    return out


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


def _features(mask: np.ndarray, box, maps, pe: np.ndarray, background: float, spacing_zyx, vox_ml: float,
              shape_stats: dict) -> np.ndarray:
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
    return np.array([
        math.log(mask.sum() * vox_ml), math.log(max(shape_stats["elongation"], 1.0)), shape_stats["roundness"],
        _solidity(mask, spacing_zyx), med / 100, float(np.percentile(pe_in, 90)) / 100,
        (med + 20) / (background + 20), *frac, math.log(ser), float(np.clip(rim, -2, 2)),
        float(np.std(pe_in) / max(abs(med), 1.0)), background / 100], np.float64)


def _finite(value: float, default: float) -> float:
    return float(value) if math.isfinite(value) else default


def find_candidates(exam: DCEExam, maps, sides: np.ndarray) -> list[Candidate]:
    """The enhancing candidates of every breast (module docstring, step 4) with their features."""
    pre = exam.pre
    spacing_zyx = np.asarray(pre.GetSpacing())[::-1]
    vox_ml = voxel_volume_ml(pre)
    pe = ndimage.gaussian_filter(np.asarray(maps.array("pe_early"), np.float32), 0.6 / np.maximum(spacing_zyx / spacing_zyx.min(), 1))
    valid = maps.array("valid") > 0
    out: list[Candidate] = []
    for side, code in (("left", 1), ("right", 2)):
        breast = sides == code
        if not breast.any():
            continue
        background = max(float(np.percentile(pe[breast & valid], BACKGROUND_PERCENTILE)), 0.0) \
            if (breast & valid).any() else 0.0
        threshold = max(MIN_THRESHOLD_PE, background + ABOVE_BACKGROUND_PE)
        lab, n = ndimage.label(breast & valid & (pe >= threshold), structure=np.ones((3, 3, 3)))
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())[1:]
        keep = [int(i) + 1 for i in np.argsort(-sizes)[:MAX_CANDIDATES] if sizes[i] * vox_ml >= MIN_CANDIDATE_ML]
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
            shape_stats = {"elongation": _finite(stats.GetElongation(v), 1.0), "roundness": _finite(stats.GetRoundness(v), 1.0)}
            # a candidate one voxel thin has no defined roundness or elongation (ITK gives NaN/inf)
            feats = np.nan_to_num(_features(m, box, maps, pe, background, spacing_zyx, vox_ml, shape_stats),
                                  nan=0.0, posinf=0.0, neginf=0.0)
            out.append(Candidate(side, box, m, feats, tuple(stats.GetCentroid(v)), float(m.sum() * vox_ml)))
    return out


# ----------------------------------------------------------------------------- the classifier
def breast_probability(candidate_probabilities, no_candidate: float) -> float:
    """A breast's probability: its most suspicious candidate's, *no_candidate* without any."""
    return float(max(candidate_probabilities)) if len(candidate_probabilities) else float(no_candidate)


def exam_candidates(exam: DCEExam, register: bool = True, reporter: Reporter | None = None):
    """Steps 1-5 without the model: (aligned exam, side map, candidates, kinetic maps, breast
    context). The trainer (:mod:`BreastTumorSegLib.training.classify`) labels these candidates."""
    reporter = reporter or Reporter(None, None, STAGE_WEIGHTS)
    with reporter.stage("register"):
        if register:
            exam, _ = register_exam(exam, reporter=reporter)
    with reporter.stage("breasts"):
        laterality = exam.metadata.get("laterality") or exam.metadata.get("Laterality")
        mask_img, context = breast_region(exam.pre, laterality=laterality)
        sides = side_map(exam.pre, sitk.GetArrayViewFromImage(mask_img) > 0, context["layout"], mask_img)
    with reporter.stage("kinetics"):
        maps = compute_kinetic_maps(exam)
    with reporter.stage("candidates"):
        cands = find_candidates(exam, maps, sides)
    return exam, sides, cands, maps, context


def classify_exam(exam: DCEExam, model: str | BreastClassifier = DEFAULT_CLASSIFIER, *, register: bool = True,
                  models_dir=None, progress=None, cancel=None) -> ClassificationResult:
    """Per-breast malignancy probabilities and heatmap of *exam* (module docstring).

    ``model``: a classification model's name (``"breastcls-demo"``; ``monai:PATH`` is refused with
    a one-line reason, :mod:`~..models.classifier`) or a loaded :class:`BreastClassifier`.
    ``register=False`` when the phases are already aligned (e.g. ``segment``'s registered phases).
    ``progress(stage, fraction, message)`` and ``cancel`` follow :class:`~..core.progress.Reporter`."""
    clf = model if isinstance(model, BreastClassifier) else load_classifier(model, [models_dir] if models_dir else None)
    reporter = Reporter(progress, cancel, STAGE_WEIGHTS)
    exam, sides, cands, maps, context = exam_candidates(exam, register, reporter)
    if cands:
        probs = clf.probability(np.stack([c.features for c in cands]))
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
        "min_threshold_pe": MIN_THRESHOLD_PE, "above_background_pe": ABOVE_BACKGROUND_PE,
        "min_candidate_ml": MIN_CANDIDATE_ML}
    early = maps.phases.early
    subtraction = sitk.Subtract(sitk.Cast(exam.phases[early], sitk.sitkFloat32), sitk.Cast(exam.pre, sitk.sitkFloat32))
    return ClassificationResult(exam.case_id, probabilities, heatmap, clf.model_id, by_side, timings, settings,
                                clf.card, subtraction)
