"""Lesions followed across visits as tracks, in the baseline frame.

Each visit's lesions (connected components of its segmentation, measured in the visit's own frame:
volume and longest diameter do not depend on positioning) are brought into the baseline frame
(label map resampled through the visit's registration, nearest neighbour; centroids mapped). A
*track* is one lesion followed from the visit it first appears in; its reference is its mask at
the last visit it was seen, so a shrinking tumor is compared with its latest extent.

Visit by visit, tracks and lesions are paired by :func:`scipy.optimize.linear_sum_assignment` on
``cost = (1 - overlap) + distance / distance_scale_mm``, where overlap is the share of the smaller
of the two masks covered by the other and distance that of the centroids; a pair is admissible when
the masks overlap or the centroids lie within ``max_distance_mm`` (+ half the track's longest
diameter). A lesion left over that is admissible for a track paired in this visit is a *fragment*
of it (RECIST: fragments' diameters are added); every other left-over lesion starts a *new* track;
a track with no lesion in a visit has *disappeared* there.

With the earlier visits as a prior (``spacing_zyx`` given and ``extent_margin_mm`` > 0; the
follow-up's default, :mod:`.prior`), where a lesion lies decides first: every lesion overlapping a
track's *extent* (its masks at all earlier visits, grown by ``extent_margin_mm``, each voxel to the
nearest track) belongs to that track, the one it overlaps most, however many pieces it broke into
(its fragments); a track whose extent holds no lesion has disappeared. Only lesions outside every
extent go to the assignment above, with the tracks that have no mask (lost in the resampling), and
what is left of them starts new tracks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy.optimize import linear_sum_assignment

from ..core.results import Lesion
from .prior import neighbourhoods


@dataclass(frozen=True)
class MatchSettings:
    max_distance_mm: float = 15.0
    distance_scale_mm: float = 30.0
    extent_margin_mm: float = 5.0  # with spacing_zyx: a track's extent (module docstring); 0: off


@dataclass
class VisitLesions:
    """One visit's lesions: measured in its own frame, masks in the baseline frame."""

    lesions: list[Lesion]  # label i of ``components`` = lesions[i - 1]
    components_baseline: np.ndarray  # (z, y, x) int labels on the baseline grid
    centroids_baseline: list[np.ndarray]


@dataclass
class Track:
    track_id: int
    first_visit: int
    members: dict[int, list[int]] = field(default_factory=dict)  # visit -> lesion labels (1-based)
    reference: np.ndarray | None = None  # bool mask (baseline grid) at its last appearance
    centroid: np.ndarray | None = None
    diameter_mm: float = 0.0
    history: np.ndarray | None = None  # bool mask (baseline grid): every visit it was seen, together


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.count_nonzero(a & b)
    return inter / max(1, min(np.count_nonzero(a), np.count_nonzero(b)))


def _by_extent(tracks: list[Track], masks: list[np.ndarray], spacing_zyx, margin_mm: float) -> dict[int, list[int]]:
    """Track index -> the lesion labels (1-based) that overlap its extent most."""
    seen = np.zeros(masks[0].shape if masks else (0,), np.int32)
    for i, t in enumerate(tracks):
        if t.history is not None:
            seen[t.history] = i + 1
    extent = neighbourhoods(seen, spacing_zyx, margin_mm)
    out: dict[int, list[int]] = {}
    for j, m in enumerate(masks):
        hit = extent[m]
        hit = hit[hit > 0]
        if hit.size:
            out.setdefault(int(np.bincount(hit).argmax()) - 1, []).append(j + 1)
    return out


def match_visits(visits: list[VisitLesions], settings: MatchSettings | None = None,
                 spacing_zyx=None) -> list[Track]:
    """Tracks over *visits* (index 0 = baseline); see the module docstring (``spacing_zyx``: the
    baseline grid's, for the extents)."""
    s = settings or MatchSettings()
    use_extent = spacing_zyx is not None and s.extent_margin_mm > 0
    tracks: list[Track] = []

    def start(k: int, labels: list[int]) -> None:
        t = Track(len(tracks) + 1, k)
        tracks.append(t)
        _update(t, visits[k], k, labels)

    for lab in range(1, len(visits[0].lesions) + 1):
        start(0, [lab])
    for k in range(1, len(visits)):
        v = visits[k]
        n = len(v.lesions)
        masks = [v.components_baseline == lab for lab in range(1, n + 1)]
        claimed = _by_extent(tracks, masks, spacing_zyx, s.extent_margin_mm) if use_extent and n else {}
        done = {lab for labs in claimed.values() for lab in labs}
        cost = np.full((len(tracks), n), np.inf)
        for i, t in enumerate(tracks):
            if use_extent and t.history is not None and t.history.any():
                continue  # found by its extent or gone
            for j in range(n):
                if j + 1 in done:
                    continue
                d = float(np.linalg.norm(v.centroids_baseline[j] - t.centroid))
                ov = _overlap(t.reference, masks[j])
                if ov > 0 or d <= s.max_distance_mm + t.diameter_mm / 2:
                    cost[i, j] = (1 - ov) + d / s.distance_scale_mm
        paired: dict[int, list[int]] = {}
        if len(tracks) and n:
            big = np.where(np.isfinite(cost), cost, 1e6)
            rows, cols = linear_sum_assignment(big)
            for i, j in zip(rows, cols):
                if np.isfinite(cost[i, j]):
                    paired[int(i)] = [int(j) + 1]
        for i, labs in claimed.items():
            paired.setdefault(i, []).extend(labs)
        taken = {lab for labs in paired.values() for lab in labs}
        new = []
        for j in range(n):
            if j + 1 in taken:
                continue
            options = [(cost[i, j], i) for i in paired if np.isfinite(cost[i, j])]
            if options:
                paired[min(options)[1]].append(j + 1)  # a fragment of a lesion seen in this visit
            else:
                new.append(j + 1)
        for i, labs in paired.items():
            _update(tracks[i], v, k, sorted(labs))
        for lab in new:
            start(k, [lab])
    return tracks


def _update(t: Track, v: VisitLesions, k: int, labels: list[int]) -> None:
    t.members[k] = labels
    t.reference = np.isin(v.components_baseline, labels)
    t.history = t.reference.copy() if t.history is None else t.history | t.reference
    vols = np.array([v.lesions[lab - 1].volume_ml for lab in labels])
    t.centroid = np.average([v.centroids_baseline[lab - 1] for lab in labels], axis=0, weights=vols + 1e-9)
    t.diameter_mm = float(sum(v.lesions[lab - 1].longest_diameter_mm for lab in labels))


def visit_lesions(components: sitk.Image, lesions: list[Lesion], baseline: sitk.Image,
                  to_visit: sitk.Transform | None) -> VisitLesions:
    """:class:`VisitLesions` of one visit: *components* (labels 1..N = *lesions*) on the visit's grid,
    *to_visit* its registration (baseline point -> visit point; None for the baseline itself)."""
    tx = to_visit if to_visit is not None else sitk.Transform()
    comp = sitk.Resample(components, baseline, tx, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    inverse = to_visit.GetInverse() if to_visit is not None else None
    cents = [np.asarray(inverse.TransformPoint(les.centroid_lps) if inverse else les.centroid_lps, float)
             for les in lesions]
    return VisitLesions(lesions, sitk.GetArrayFromImage(comp).astype(np.int32), cents)
