"""Component-level false-positive reduction: vessels are not tumors.

Runs after :func:`~.postprocess.postprocess` on its component image (labels 1..N):

1. **Split** (every component): the parts thinner than ``split_radius_mm`` are found with a
   morphological opening done on distance maps (a voxel is kept when it lies within
   ``split_radius_mm`` of a voxel at least that deep inside the hole-filled component). A thin
   part at least ``min_branch_mm`` long (Feret diameter) is cut off as a candidate of its own
   (a vessel running into a tumor); shorter ones (spicules, the junction) stay with the lesion.
   A component without any thick voxel (an isolated vessel) stays whole. With
   ``small_split_radius_mm`` > 0 (off by default), such a component is split again at that
   smaller radius: a small or flat lesion (no part ``split_radius_mm`` deep) touching a vessel
   is then cut from it instead of being judged, or kept, together with it.
2. **Features** per candidate, in its bounding box only: volume, elongation and flatness
   (principal moments, ``LabelShapeStatisticsImageFilter``), Feret diameter (for a part of more
   than ``FERET_MAX_VOXELS`` voxels: the longest axis of its equivalent ellipsoid) over the
   diameter of the sphere of equal volume, thickness (distance map: largest and 90th percentile depth),
   tubularity (Hessian vesselness of the early subtraction normalised to the candidate's
   median enhancement, ``sitk.ObjectnessMeasure`` with objectDimension=1 at two scales,
   scale-normalised: mean, and fraction of voxels above 0.5; a box of more than
   ``VESSEL_MAX_VOXELS`` voxels is binned first, which bounds the time of a heart-sized component), kinetics (median wash-in
   ``(S_early - S_pre) / S_pre`` and washout ``(S_late - S_early) / S_early``), probability
   (mean, max, fraction >= 0.9). Names and order: :data:`FEATURES`.
3. **Decision** by a small learned classifier (:class:`ComponentClassifier`: standardisation +
   logistic regression, weights in safetensors verified by SHA-256 against its card, applied
   with numpy; trained by :mod:`BreastTumorSegLib.training.fpreduce`), except that a candidate
   with a large, compact, confident core (``override_core_ml`` of p >= ``override_p``,
   elongation <= ``override_max_elongation``) is never removed.
4. **Second look** (``rescue_radius_mm`` > 0; :mod:`.fprescue`, on for "ftv-outline"): a whole
   component the classifier rejects keeps its compact body (what an opening by that ball leaves,
   >= ``rescue_min_ml``, elongation <= ``rescue_max_elongation``) when the classifier, given the
   body alone, calls it a tumor: a small tumor with a vessel leaving it, too small to be split in
   step 1, is no longer deleted with its vessel.
5. **Join** (``join_touching``): kept pieces of one component that touch each other (26-connected,
   as the label map's components) are one lesion again, measured on the joined piece, so the table
   has one row per component of the label map (:func:`join_touching`).

Nothing is removed silently: :class:`FPReport` counts removals per reason (``vessel_like``:
the classifier; ``vessel_branch``: a thin part cut off a lesion and then rejected;
``below_min_size``: a piece left smaller than the minimum lesion size), and a lesion that lost
a part carries the flag ``vessel_part_removed`` with a note giving the removed volume.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.imageutil import from_array, voxel_volume_ml
from ..core.results import Lesion
from ..kinetics.maps import choose_phases
from ..models.cards import BUNDLED_MODELS_DIR
from ..models.logistic import LogisticModel
from .fprescue import rescue_part
from .postprocess import lesion_table
from .shape import depth_mm, distance_from_mm, elongation_flatness

FEATURES = ("log_volume_ml", "log_elongation", "log_flatness", "feret_over_sphere", "max_depth_mm", "p90_depth_mm",
            "vesselness_mean", "vesselness_frac", "wash_in", "washout", "p_mean", "p_max", "p_core_frac")
DEFAULT_CLASSIFIER = "vesselfilter-demo"
CLASSIFIER_TASK = "component_filter"
VESSEL_SCALES_MM = (1.0, 2.0)
VESSEL_GAMMA = 0.1
VESSEL_MAX_VOXELS = 150_000  # a larger box is binned before the vesselness (time bound)


@dataclass
class FPReduceSettings:
    enabled: bool = True
    split_radius_mm: float = 3.0  # parts thinner than this (depth, mm) are tube-like
    min_branch_mm: float = 10.0  # a thin part at least this long is cut off as a vessel candidate
    small_split_radius_mm: float = 0.0  # > 0: a component with no part split_radius_mm deep is split at this radius
    override_core_ml: float = 0.2
    override_p: float = 0.9
    override_max_elongation: float = 2.5
    rescue_radius_mm: float = 0.0  # > 0: a rejected component's compact body left by this opening gets a second look (fprescue.py)
    rescue_min_ml: float = 0.1
    rescue_max_elongation: float = 2.5
    classifier: str = DEFAULT_CLASSIFIER
    join_touching: bool = True  # kept pieces of one component that touch are one lesion (issue 25, join_touching)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class FPReport:
    """What the stage did: written into the summary JSON (``settings["fp_reduction"]``)."""

    candidates: int = 0
    kept: int = 0
    split: int = 0  # lesions from which a thin part was cut off
    overridden: int = 0  # kept by the confident-core rule although the classifier said no
    rescued: int = 0  # rejected whole, but its compact body (fprescue.py) kept
    removed: dict = field(default_factory=dict)  # reason -> count
    removed_components: list = field(default_factory=list)
    classifier: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"candidates": self.candidates, "kept": self.kept, "split": self.split,
                "overridden": self.overridden, **({"rescued": self.rescued} if self.rescued else {}), "removed": dict(self.removed),
                "n_removed": int(sum(self.removed.values())), "removed_components": self.removed_components,
                "classifier": self.classifier}  # its time is in the result's timings (postprocess), not here:
        # the summary's settings stay the same between identical runs (batch on Ray == local)


# ----------------------------------------------------------------------------- the classifier
class ComponentClassifier(LogisticModel):
    """Standardisation + logistic regression over :data:`FEATURES`, from safetensors + card."""

    @classmethod
    def load(cls, name: str = DEFAULT_CLASSIFIER, folder: str | Path | None = None) -> "ComponentClassifier":
        folder = Path(folder) if folder else BUNDLED_MODELS_DIR
        return cls.read(folder / f"{name}.json", CLASSIFIER_TASK, FEATURES, "component classifier")


_CACHE: dict = {}


def get_classifier(name: str) -> ComponentClassifier:
    if name not in _CACHE:
        _CACHE[name] = ComponentClassifier.load(name)
    return _CACHE[name]


# ----------------------------------------------------------------------------- geometry helpers
FERET_MAX_VOXELS = 20_000  # Feret diameters cost O(border voxels^2): larger parts use the ellipsoid's


def _lengths(stats: sitk.LabelShapeStatisticsImageFilter, label_image: sitk.Image) -> dict[int, float]:
    """Longest dimension (mm) per label: the Feret diameter, or for a part of more than
    ``FERET_MAX_VOXELS`` voxels the longest axis of its equivalent ellipsoid (cheap, close for
    compact shapes)."""
    out = {lab: float(max(stats.GetEquivalentEllipsoidDiameter(lab))) for lab in stats.GetLabels()}
    small = [lab for lab in stats.GetLabels() if stats.GetNumberOfPixels(lab) <= FERET_MAX_VOXELS]
    if small:
        keep = sitk.ChangeLabel(label_image, changeMap={float(v): 0.0 for v in stats.GetLabels() if v not in small})
        feret = sitk.LabelShapeStatisticsImageFilter()
        feret.ComputeFeretDiameterOn()
        feret.SetNumberOfThreads(1)
        feret.Execute(keep)
        out.update({lab: float(feret.GetFeretDiameter(lab)) for lab in small})
    return out


def split_component(mask: np.ndarray, like: sitk.Image, radius_mm: float, min_branch_mm: float,
                    only_below: float = np.inf) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(lesion parts, thin branches) of one component (boolean arrays on *like*'s grid).

    Opening by a ball of *radius_mm* (via distance maps); the thin leftover pieces at least
    *min_branch_mm* long are branches. Without a branch the component stays whole (an opening
    alone never cuts a lesion); with one, the rest falls into its connected parts. With
    *only_below*, a component with a voxel that deep stays whole (the retry of a small lesion).
    """
    depth = depth_mm(from_array(mask.astype(np.uint8), like))
    core = depth >= radius_mm
    if not core.any() or depth.max() >= only_below:  # (only_below: the small-lesion retry)
        return [mask], []
    rest = mask & ~(distance_from_mm(core, like) <= radius_mm + 1e-3)
    if not rest.any():
        return [mask], []
    cc = sitk.ConnectedComponent(from_array(rest.astype(np.uint8), like), True)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.SetNumberOfThreads(1)
    stats.Execute(cc)
    arr = sitk.GetArrayViewFromImage(cc)
    length = _lengths(stats, cc)
    branches = [arr == lab for lab in stats.GetLabels() if length[lab] >= min_branch_mm]
    if not branches:
        return [mask], []
    lesion = mask & ~np.any(branches, axis=0)
    # what only a branch held together falls apart (two lesions joined by a vessel stay two)
    cc = sitk.ConnectedComponent(from_array(lesion.astype(np.uint8), like), True)
    arr = sitk.GetArrayViewFromImage(cc)
    return [arr == lab for lab in range(1, int(arr.max()) + 1)], branches


# ----------------------------------------------------------------------------- features
def _vesselness(sub: sitk.Image) -> np.ndarray:
    """Largest scale-normalised tubular objectness over :data:`VESSEL_SCALES_MM` (about 0-1)."""
    out = None
    for s in VESSEL_SCALES_MM:
        sm = sitk.SmoothingRecursiveGaussian(sub, s) * (s * s)
        f = sitk.ObjectnessMeasureImageFilter()
        f.SetObjectDimension(1)
        f.SetBrightObject(True)
        f.SetScaleObjectnessMeasure(False)
        f.SetAlpha(0.5)
        f.SetBeta(0.5)
        f.SetGamma(VESSEL_GAMMA)
        f.SetNumberOfThreads(1)
        v = sitk.GetArrayFromImage(f.Execute(sm))
        out = v if out is None else np.maximum(out, v)
    return out


def component_features(mask: np.ndarray, like: sitk.Image, prob: np.ndarray, pre: np.ndarray,
                       early: np.ndarray, late: np.ndarray | None) -> np.ndarray:
    """The :data:`FEATURES` of one candidate (arrays cropped to its box, *like* the box image)."""
    m = from_array(mask.astype(np.uint8), like)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.SetNumberOfThreads(1)
    stats.Execute(m)
    vol_ml = stats.GetPhysicalSize(1) / 1000.0
    sphere_d = 2.0 * (3.0 * stats.GetPhysicalSize(1) / (4.0 * math.pi)) ** (1 / 3)
    depth = depth_mm(m)[mask]
    s0 = np.maximum(pre, 1e-6 * max(float(np.abs(pre).max()), 1e-6))
    sub = early - pre
    level = float(np.median(sub[mask]))
    norm = from_array((sub / (abs(level) if abs(level) > 0 else 1.0)).astype(np.float32), like)
    shrink = int(math.ceil((mask.size / VESSEL_MAX_VOXELS) ** (1 / 3)))
    if shrink > 1:  # a large component (heart, a big tumor): vesselness on a coarser copy of its box
        norm = sitk.BinShrink(norm, [shrink] * 3)
        small = sitk.GetArrayFromImage(sitk.BinShrink(from_array(mask.astype(np.float32), like), [shrink] * 3)) >= 0.5
        ves = _vesselness(norm)[small] if small.any() else np.zeros(1)
    else:
        ves = _vesselness(norm)[mask]
    wash_in = float(np.median(sub[mask] / s0[mask]))
    washout = 0.0 if late is None else float(np.median((late[mask] - early[mask]) / np.maximum(early[mask], s0[mask])))
    p = prob[mask]
    shape = [math.log(float(np.clip(v, 1.0, 50.0))) if np.isfinite(v) else math.log(50.0)
             for v in elongation_flatness(mask, like, stats)]
    return np.array([math.log(max(vol_ml, 1e-4)), *shape,
                     _lengths(stats, m)[1] / max(sphere_d, 1e-3), float(depth.max()),
                     float(np.percentile(depth, 90)), float(ves.mean()), float((ves > 0.5).mean()),
                     float(np.clip(wash_in, -1, 10)), float(np.clip(washout, -2, 2)), float(p.mean()),
                     float(p.max()), float((p >= 0.9).mean())], np.float64)


def confident_core(mask: np.ndarray, prob: np.ndarray, like: sitk.Image, s: FPReduceSettings) -> bool:
    """A large (>= override_core_ml), compact (elongation <= override_max_elongation) core of p >= override_p."""
    core = mask & (prob >= s.override_p)
    if core.sum() * voxel_volume_ml(like) < s.override_core_ml:
        return False
    cc = sitk.RelabelComponent(sitk.ConnectedComponent(from_array(core.astype(np.uint8), like), True), sortByObjectSize=True)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(cc)
    return (stats.GetPhysicalSize(1) / 1000.0 >= s.override_core_ml
            and elongation_flatness(sitk.GetArrayViewFromImage(cc) == 1, like, stats)[0] <= s.override_max_elongation)


# ----------------------------------------------------------------------------- the stage
@dataclass
class _Candidate:
    box: tuple  # numpy slices (z, y, x)
    mask: np.ndarray  # in the box
    parent: int  # label of the component it came from
    branch: bool  # a thin part cut off a lesion
    whole: bool = False  # the whole component, unchanged


def _box(bb, size, margin: int) -> tuple:
    lo = [max(int(bb[a]) - margin, 0) for a in range(3)]
    hi = [min(int(bb[a]) + int(bb[a + 3]) + margin, int(size[a])) for a in range(3)]
    return tuple(slice(lo[a], hi[a]) for a in (2, 1, 0))


def sub_image(like: sitk.Image, box: tuple) -> sitk.Image:
    """An empty image with the geometry of *like* cropped to numpy *box* (z, y, x slices)."""
    idx = [box[2].start, box[1].start, box[0].start]
    out = sitk.Image([box[2].stop - box[2].start, box[1].stop - box[1].start, box[0].stop - box[0].start],
                     sitk.sitkUInt8)
    out.SetSpacing(like.GetSpacing())
    out.SetDirection(like.GetDirection())
    out.SetOrigin(like.TransformIndexToPhysicalPoint([int(v) for v in idx]))
    return out


def candidates(components: sitk.Image, settings: FPReduceSettings) -> list[_Candidate]:
    """Every component, split into lesion parts and thin branches (see the module docstring)."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(components)
    arr = sitk.GetArrayViewFromImage(components)
    margin = int(math.ceil(2 * max(VESSEL_SCALES_MM) / min(components.GetSpacing()))) + 1
    out = []
    for lab in stats.GetLabels():
        box = _box(stats.GetBoundingBox(lab), components.GetSize(), margin)
        like = sub_image(components, box)
        mask = np.asarray(arr[box]) == lab
        parts, branches = split_component(mask, like, settings.split_radius_mm, settings.min_branch_mm)
        if not branches and 0 < settings.small_split_radius_mm < settings.split_radius_mm:
            parts, branches = split_component(mask, like, settings.small_split_radius_mm, settings.min_branch_mm,
                                              only_below=settings.split_radius_mm)
        out += [_Candidate(box, p, int(lab), False, not branches) for p in parts]
        out += [_Candidate(box, b, int(lab), True) for b in branches]
    return out


def phase_arrays(phases: list[sitk.Image], times_min) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    choice = choose_phases(times_min)
    view = lambda k: sitk.GetArrayViewFromImage(phases[k])  # noqa: E731
    return view(0), view(choice.early), None if choice.late is None else view(choice.late)


def reduce_false_positives(components: sitk.Image, prob: sitk.Image, phases: list[sitk.Image], times_min,
                           lesions: list[Lesion], settings: FPReduceSettings | None = None,
                           classifier: ComponentClassifier | None = None):
    """(label, lesions, components, :class:`FPReport`) after splitting and classifying.

    *components* and *lesions* are :func:`~.postprocess.postprocess`'s (lesion ``label`` =
    component label). New lesions keep the side, flags and notes of the component they came from.
    """
    t0 = time.perf_counter()
    s = settings or FPReduceSettings()
    report = FPReport()
    if not s.enabled or not lesions:
        return sitk.Cast(components > 0, sitk.sitkUInt8), lesions, components, report
    clf = classifier or get_classifier(s.classifier)
    report.classifier = str(clf.card.get("name", s.classifier))
    cands = candidates(components, s)
    report.candidates = len(cands)
    pre, early, late = phase_arrays(phases, times_min)
    p_arr = sitk.GetArrayViewFromImage(prob)
    feats = []
    for c in cands:
        like = sub_image(components, c.box)
        feats.append(component_features(c.mask, like, np.asarray(p_arr[c.box], np.float32),
                                        np.asarray(pre[c.box], np.float32), np.asarray(early[c.box], np.float32),
                                        None if late is None else np.asarray(late[c.box], np.float32)))
    scores = clf.probability(np.array(feats)) if feats else np.zeros(0)
    min_vox = max(1, int(math.ceil(0.05 / voxel_volume_ml(components))))  # postprocess's default floor
    vml = voxel_volume_ml(components)
    kept: list[_Candidate] = []
    removed_from: dict[int, float] = {}
    judged = []
    for c, f, score in zip(cands, feats, scores):
        keep = score >= clf.threshold
        like = sub_image(components, c.box)
        if not keep and not c.branch and confident_core(c.mask, np.asarray(p_arr[c.box]), like, s):
            keep, report.overridden = True, report.overridden + 1
        if not keep and not c.branch and s.rescue_radius_mm > 0:
            c, keep = _second_look(c, like, clf, p_arr, pre, early, late, s, removed_from, vml)
            report.rescued += int(keep)
        judged.append((c, f, score, keep))
    if s.join_touching:
        judged = join_touching(judged, sitk.GetArrayViewFromImage(components))
    for c, f, score, keep in judged:
        reason = None
        if not keep:
            reason = "vessel_branch" if c.branch else "vessel_like"
        elif c.mask.sum() < min_vox:
            reason = "below_min_size"
        if not reason:
            kept.append(c)
            continue
        report.removed[reason] = report.removed.get(reason, 0) + 1
        zyx = np.argwhere(c.mask).mean(0) + [b.start for b in c.box]
        report.removed_components.append({
            "reason": reason, "from_lesion": c.parent, "volume_ml": round(float(c.mask.sum() * vml), 4),
            "tumor_score": round(float(score), 3), "elongation": round(float(math.exp(f[1])), 2),
            "vesselness": round(float(f[6]), 3),
            "centroid_lps_mm": [round(v, 1) for v in components.TransformContinuousIndexToPhysicalPoint(
                [float(v) for v in zyx[::-1]])]})
        if c.branch:
            removed_from[c.parent] = removed_from.get(c.parent, 0.0) + float(c.mask.sum() * vml)
    kept.sort(key=lambda c: -int(c.mask.sum()))  # label 1 = largest, as postprocess numbers them
    out = np.zeros(sitk.GetArrayViewFromImage(components).shape, np.uint32)
    by_label = {les.label: les for les in lesions}
    table = []
    for n, c in enumerate(kept, start=1):
        out[c.box][c.mask] = n
        old = by_label[c.parent]
        if c.whole:  # unchanged: postprocess's measurements stand
            les = dataclasses.replace(old, label=n, flags=list(old.flags), notes=list(old.notes), extra=dict(old.extra))
        else:  # measured on the lesion part alone
            box_prob = sitk.RegionOfInterest(prob, [b.stop - b.start for b in c.box[::-1]],
                                             [b.start for b in c.box[::-1]])
            les = lesion_table(from_array(c.mask.astype(np.uint8), sub_image(components, c.box)), box_prob)[0]
            les.label, les.side = n, old.side
            les.flags, les.notes, les.extra = list(old.flags), list(old.notes), dict(old.extra)
            gone = removed_from.get(c.parent)
            if gone:
                les.flags.append("vessel_part_removed")
                les.notes.append(f"a tubular part of {gone:.2f} mL touching this lesion was removed as a vessel; "
                                 "volume and diameter are of the lesion alone")
        table.append(les)
    report.split = len({c.parent for c in kept if c.parent in removed_from})
    new = from_array(out, components)
    report.kept = len(table)
    report.seconds = time.perf_counter() - t0
    return sitk.Cast(new > 0, sitk.sitkUInt8), table, new, report


def join_touching(judged: list, comp_arr: np.ndarray) -> list:
    """*judged* (candidate, features, score, keep) with the kept pieces of one component that touch
    each other (26-connected, the connectivity of the label map's components) joined into one
    candidate: the label map holds them as one lesion, so does the table. A joined piece equal to
    the whole component is ``whole`` (postprocess's measurements stand); otherwise it is measured
    anew. Its features and score are those of its largest member (they are only reported)."""
    out, groups = [], {}
    for item in judged:
        if item[3]:
            groups.setdefault(item[0].parent, []).append(item)
        else:
            out.append(item)
    for parent, items in groups.items():
        if len(items) == 1:
            out += items
            continue
        c0 = items[0][0]
        union = np.any([it[0].mask for it in items], axis=0)
        cc = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(union.astype(np.uint8)), True))
        whole = np.asarray(comp_arr[c0.box]) == parent
        for lab in range(1, int(cc.max()) + 1):
            piece = cc == lab
            members = [it for it in items if np.any(it[0].mask & piece)]
            if len(members) == 1:
                out += members
                continue
            big = max(members, key=lambda it: int(it[0].mask.sum()))
            out.append((dataclasses.replace(c0, mask=piece, branch=False, whole=bool(np.array_equal(piece, whole))),
                        big[1], big[2], True))
    return out


def _second_look(c: _Candidate, like: sitk.Image, clf: ComponentClassifier, p_arr, pre, early, late,
                 s: FPReduceSettings, removed_from: dict, vml: float) -> tuple[_Candidate, bool]:
    """(candidate, keep) for a rejected whole component: its compact body (:mod:`.fprescue`) when
    the classifier calls that body a tumor, the rest counted as a removed vessel part."""
    part = rescue_part(c.mask, like, s.rescue_radius_mm, s.rescue_min_ml, s.rescue_max_elongation)
    if part is None:
        return c, False
    f = component_features(part, like, np.asarray(p_arr[c.box], np.float32), np.asarray(pre[c.box], np.float32),
                           np.asarray(early[c.box], np.float32),
                           None if late is None else np.asarray(late[c.box], np.float32))
    if clf.probability(f[None])[0] < clf.threshold:
        return c, False
    removed_from[c.parent] = removed_from.get(c.parent, 0.0) + float(np.count_nonzero(c.mask & ~part) * vml)
    return dataclasses.replace(c, mask=part, whole=False), True
