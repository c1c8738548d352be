"""The later visits as evidence about the baseline's segmentation: two tumors it merged are split, the
pieces of one tumor it cut apart are joined.

The baseline's lesions are every track's start, so a baseline segmentation that took two touching tumors
as one lesion gives both one track (the second tumor is "missed" at every visit and its fate is the
other's), and one that cut a weakly enhancing tumor into pieces leaves all but one piece's track empty at
the next visit (read as pieces gone). A reader who sees the later exam reads the baseline again: two
lesions now where there was one, or one lesion now covering several baseline pieces, is evidence about
what the baseline showed. After the tracks are followed once, :func:`baseline_corrections` reads the
later visits that way:

* **split** (``split``): a baseline lesion whose track holds two or more lesions at a later visit, each
  of at least ``min_piece_ml``, is divided between them (a watershed of its distance map, seeded by the
  later lesions brought into the baseline frame), but only when it has a *neck* there: the largest
  distance to the lesion's edge on the boundary between the two parts is at most ``neck_ratio`` of the
  smaller part's own largest distance (two touching, roughly convex tumors). A tumor that was whole and
  broke up under treatment (the later pieces of one convex lesion, a slab cut through its middle) has
  no neck where it is divided (the ratio is near 1) and stays one lesion: RECIST adds its fragments'
  diameters at the later visit and compares them with the whole tumor's.
* **join** (``join``): baseline lesions whose tracks are empty at a later visit while one lesion of that
  visit (in the baseline frame) overlaps them, grown by ``join_margin_mm``, together with the lesion of
  the track it belongs to, are one lesion when the baseline itself connects them by enhancing tissue (the
  FTV mask or the weaker rule of :mod:`.guided`): one tumor the baseline's segmentation cut into pieces.
  The joined lesion has one label and the longest diameter of the union.

The corrected baseline (a label map, labels 1..N) replaces the segmented one and the follow-up is run
again (:mod:`.run`), as after the look-back. Lesions keep their flags (a joined lesion: all its parts').
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .kinetic_split import kinetic_parts, two_seeds
from .prior import neighbourhoods

CUBE = np.ones((3, 3, 3), bool)
SPLIT_FLAG = "split_by_later_visit"
JOIN_FLAG = "joined_by_later_visit"


@dataclass(frozen=True)
class EvidenceSettings:
    # On (rule 1 of docs/decisions/followup-evidence-issue31.md): with empty_margin_mm = 5 mm, on the 60 development
    # series (ellipse + heterogeneous, seeds 6000-6029) matching 120/150 -> 126/150, RECIST 76/90 -> 76/90, volume-
    # change median 6.0 -> 5.64 points (ellipse 6004 joined, ellipse and heterogeneous 6029 split).
    split: bool = True
    join: bool = True
    min_piece_ml: float = 0.05  # a later lesion smaller than this is no evidence of a second tumor
    neck_ratio: float = 0.6  # split only where the neck is at most this share of the smaller part's depth
    join_margin_mm: float = 5.0  # a later lesion overlapping a baseline piece grown by this much covers it (the
    # prior's extent margin)
    # Two touching tumors without a neck (one embedded in the other) told apart by their enhancement: a lesion the
    # neck test keeps whole is split where the baseline's early-PE map changes between the two later lesions (a
    # watershed of its gradient), when its median PE under the two later lesions differ by at least
    # ``kinetic_pe_diff`` of the larger and by at least ``kinetic_spread`` times their own spread (the median
    # absolute deviation): two tumors with their own uptake. One tumor cut by a slab under treatment enhances alike
    # on both sides. See :mod:`.kinetic_split`. Candidate of rule 1 of docs/decisions/followup-kinetic-issue31.md
    # (development 60 series: matching 126 -> 128/150, RECIST 76 -> 77/90, volume median 5.64 -> 5.79 points;
    # with a spread of 2 two heterogeneous tumors' texture was split too: 126, 76); the held-out rule 2 decides.
    kinetic_split: bool = True
    kinetic_pe_diff: float = 0.15
    kinetic_spread: float = 4.0

    @property
    def enabled(self) -> bool:
        return self.split or self.join


def _box(mask: np.ndarray, pad: int = 2) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + 1 + pad, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def split_lesion(lesion: np.ndarray, seeds: list[np.ndarray], spacing_zyx, neck_ratio: float) -> np.ndarray | None:
    """Labels 1..2 over *lesion* (bool) divided between the two largest *seeds* (bool masks, same grid) by
    a watershed of its distance map, or None when the seeds do not each reach the lesion or the lesion has
    no neck between the parts (module docstring)."""
    seeds = two_seeds(lesion, seeds)
    if seeds is None:
        return None
    box = _box(lesion)
    sub = lesion[box]
    dist = ndimage.distance_transform_edt(sub, sampling=spacing_zyx).astype(np.float32)
    markers = np.zeros(sub.shape, np.uint32)
    markers[seeds[1][box]] = 2
    markers[seeds[0][box]] = 1  # a voxel in both: the larger seed's
    ws = sitk.MorphologicalWatershedFromMarkers(sitk.GetImageFromArray(-dist), sitk.GetImageFromArray(markers),
                                                markWatershedLine=False, fullyConnected=True)
    parts = sitk.GetArrayFromImage(ws).astype(np.int32)
    parts[~sub] = 0
    a, b = parts == 1, parts == 2
    if not a.any() or not b.any():
        return None
    border = a & ndimage.binary_dilation(b, CUBE)
    if not border.any():
        return None
    neck = float(dist[border].max())
    depth = min(float(dist[a].max()), float(dist[b].max()))
    if neck > neck_ratio * depth:
        return None
    out = np.zeros(lesion.shape, np.int32)
    out[box] = parts
    return out


def _join_groups(comp0: np.ndarray, visits, tracks, enhancing0: np.ndarray, spacing_zyx,
                 s: EvidenceSettings) -> list[set[int]]:
    """Groups of baseline labels that one later lesion covers and the baseline's enhancing tissue connects."""
    base = {t.track_id: t.members[0][0] for t in tracks if t.first_visit == 0 and len(t.members.get(0, [])) == 1}
    connected, _ = ndimage.label((comp0 > 0) | enhancing0, structure=CUBE)
    part = {lab: int(np.bincount(connected[comp0 == lab]).argmax()) for lab in set(base.values())}
    groups: list[set[int]] = []
    for k in range(1, len(visits)):
        comp_k = visits[k].components_baseline
        empty = [tid for tid, lab in base.items() if not next(t for t in tracks if t.track_id == tid).members.get(k)]
        if not empty:
            continue
        grown = {tid: neighbourhoods((comp0 == base[tid]).astype(np.int32), spacing_zyx, s.join_margin_mm) > 0
                 for tid in empty}
        for t in tracks:
            if t.track_id not in base or not t.members.get(k):
                continue
            later = np.isin(comp_k, t.members[k])
            covered = {base[tid] for tid in empty if (later & grown[tid]).any()
                       and part[base[tid]] == part[base[t.track_id]]}
            if covered:
                groups.append(covered | {base[t.track_id]})
    merged: list[set[int]] = []  # groups sharing a label are one
    for g in groups:
        for m in [m for m in merged if m & g]:
            g |= m
            merged.remove(m)
        merged.append(g)
    return merged


def baseline_corrections(comp0: np.ndarray, visits, tracks, enhancing0: np.ndarray, spacing_zyx,
                         s: EvidenceSettings, pe0: np.ndarray | None = None) -> tuple[np.ndarray, dict[int, str]] | None:
    """The baseline's label map (z, y, x ints, 1..N) corrected by the later visits (module docstring) and,
    the flag of every new label that was split or joined; None when nothing changes. *visits*: the
    :class:`~.match.VisitLesions` of every visit, *tracks* those followed from them, *enhancing0* (bool) the
    baseline's enhancing tissue (FTV mask or weaker rule), *pe0* its early-PE map (for ``kinetic_split``)."""
    vox_ml = float(np.prod(spacing_zyx)) / 1000.0
    out = comp0.astype(np.int32, copy=True)
    origin: dict[int, str] = {}
    nxt = int(comp0.max())
    if s.join:
        for group in _join_groups(comp0, visits, tracks, enhancing0, spacing_zyx, s):
            keep = min(group)
            out[np.isin(comp0, sorted(group))] = keep
            origin[keep] = JOIN_FLAG
    if s.split:
        for t in tracks:
            if t.first_visit != 0 or len(t.members.get(0, [])) != 1 or t.members[0][0] in origin:
                continue
            lab = t.members[0][0]
            lesion = comp0 == lab
            for k in range(1, len(visits)):
                labs = [x for x in t.members.get(k, []) if visits[k].lesions[x - 1].volume_ml >= s.min_piece_ml]
                if len(labs) < 2:
                    continue
                seeds = [visits[k].components_baseline == x for x in labs]
                parts = split_lesion(lesion, seeds, spacing_zyx, s.neck_ratio)
                if parts is None and s.kinetic_split and pe0 is not None:
                    parts, _ = kinetic_parts(lesion, seeds, pe0, spacing_zyx, s.kinetic_pe_diff, s.kinetic_spread)
                if parts is None or min(np.count_nonzero(parts == p) for p in (1, 2)) * vox_ml < s.min_piece_ml:
                    continue
                nxt += 1
                out[parts == 2] = nxt
                origin[lab] = origin[nxt] = SPLIT_FLAG
                break
    if not origin:
        return None
    # labels 1..N again, the old order kept (the lesion table is re-made from the map)
    used = np.unique(out[out > 0])
    relabel = np.zeros(int(used.max()) + 1, np.int32)
    relabel[used] = np.arange(1, used.size + 1)
    return relabel[out], {int(relabel[lab]): v for lab, v in origin.items()}
