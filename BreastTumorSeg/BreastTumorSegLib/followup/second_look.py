"""Prior-guided second look: a lesion seen at one visit and missing at another is looked for again where it was.

A reader who finds no lesion where the prior exam had one does not call it gone at once: they look at
that place again, harder, and call it *gone* only when nothing enhancing is left there; a lesion first
seen at a later visit is looked for the same way at the baseline before it is called *new*. The follow-up's
other prior steps (:mod:`.prior`, :mod:`.guided`, :mod:`.lookback`) read the visit's FTV mask or the
noise-based weaker rule, both inside the visit's breast region. This step reads the same model's own maps
instead, only in the registered neighbourhood of the missing lesion (``margin_mm`` around its mask):

* the model's probability at a lower level (``level``; the segmentation's is 0.5: for the FTV-rule models
  0.3 is PE about 47 % above the background threshold, :func:`..kinetics.ftv.soft_probability`), or
* the FTV rule itself with its own thresholds (PE >= the FTV setting's threshold, SER, pre-contrast signal
  above the visit's background threshold) but *not* limited to the visit's breast region: the place
  is known from the prior, and the breast region of two visits differs with the positioning.

A connected piece of that tissue in the neighbourhood, not touching a lesion the visit already has,
is accepted as the missing lesion only when it is

* on the prior lesion's own registered mask (grown by ``core_mm``: a shrinking tumor stays where it was),
* enhancing (its median early PE at least ``min_pe``),
* tissue, not noise or a rim (at least ``min_ml``, more than one voxel thick: :func:`.prior.is_tissue`), and
* compact (``min_compact``: the diameter of the sphere of its volume over its longest bounding-box side;
  a vessel or a thin band of background enhancement is long and thin).

A true disappearance (the tumor's tissue stops enhancing) leaves nothing that passes: the track stays
empty there (RECIST CR when no lesion is left). A truly new lesion has nothing enhancing under it at the
baseline (``back_cover``: at least this share of the later lesion's own place must be the second look's
tissue at the baseline before anything is searched) and stays new. Off at first (fu13,
``docs/decisions/followup-prior-look-issue31.md``); on by default since fu14 (below).

The two directions are separate settings (since fu14, ``docs/decisions/followup-look-back-issue31.md``):
``look_back`` (a lesion first seen later looked for at the baseline: on when the step is enabled) and
``look_forward`` (a known lesion missing at a later visit looked for there: off unless asked for). On
development the gains came from looking back, while looking forward filled a true complete response at
the breast region's edge with non-tumor enhancement beyond the region (ellipse 6001). Looking forward
only for the tracks the look back found (``forward_found``: a tumor the segmentation misses at the
baseline is missed at the other visits alike) keeps that response; the look back with it is on by
default (development and held-out rules held).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .prior import PriorSettings, is_tissue, neighbourhoods, to_visit_grid

SECOND_LOOK_FLAG = "second_look"
CUBE = np.ones((3, 3, 3), bool)


@dataclass(frozen=True)
class SecondLookSettings:
    enabled: bool = True  # on since fu14 (docs/decisions/followup-look-back-issue31.md)
    margin_mm: float = 5.0  # the neighbourhood searched: the prior lesion's registered mask grown by this much
    core_mm: float = 2.0  # a piece must touch the prior's own mask grown by this much
    level: float = 0.3  # the model's probability level inside the neighbourhood (0: not used)
    ftv_beyond_region: bool = True  # also the FTV rule's own thresholds outside the visit's breast region
    min_pe: float = 40.0  # a piece's median early PE (%)
    min_ml: float = 0.02
    min_compact: float = 0.3
    back_cover: float = 0.3  # looking back: share of the later lesion's place that must be tissue at the baseline
    look_back: bool = True  # a track that starts after the baseline is looked for at the baseline
    look_forward: bool = False  # a track missing at a later visit is looked for there (fu13's other half)
    # ... only the tracks whose baseline lesion the look back found (a tumor the segmentation misses at the
    # baseline, mostly beyond the breast region, is missed at the other visits alike): looked for at every
    # visit where they have no lesion, in their found pieces and their lesions at the other visits
    forward_found: bool = True


def look_tissue(exam, result, ftv, s: SecondLookSettings) -> tuple[np.ndarray, np.ndarray]:
    """(tissue, early PE) on *exam*'s grid (z, y, x): the voxels the second look may take (module docstring).
    *result*: the visit's :class:`~..core.results.SegmentationResult`; *ftv*: its FTV result (same rule
    at every visit)."""
    maps = ftv.maps
    pe = maps.array("pe_early")
    tissue = np.zeros(pe.shape, bool)
    if s.level > 0 and result.probability is not None:
        prob = sitk.GetArrayFromImage(result.probability)
        tissue |= prob >= np.float32(s.level)
    if s.ftv_beyond_region:
        pre = sitk.GetArrayFromImage(exam.pre)
        rule = (maps.array("valid") > 0) & (pre >= np.float32(ftv.background_threshold))
        rule &= pe >= np.float32(ftv.settings.pe_threshold)
        if ftv.ser_used:
            rule &= maps.array("ser") >= np.float32(ftv.settings.ser_min)
        tissue |= rule
    return tissue, pe


def compactness(piece: np.ndarray, spacing_zyx) -> float:
    """Diameter of the sphere of *piece*'s volume over the longest side of its bounding box (mm / mm)."""
    idx = np.argwhere(piece)
    sides = (idx.max(0) - idx.min(0) + 1) * np.asarray(spacing_zyx, float)
    d_eq = (6.0 * len(idx) * float(np.prod(spacing_zyx)) / np.pi) ** (1.0 / 3.0)
    return float(d_eq / max(float(sides.max()), 1e-6))


def accepted_pieces(comp: np.ndarray, tissue: np.ndarray, pe: np.ndarray, near: np.ndarray, core: np.ndarray,
                    spacing_zyx, s: SecondLookSettings) -> np.ndarray:
    """*comp* (labels 1..N, z, y, x) with the accepted pieces of *tissue* inside *near* (a bool neighbourhood)
    that touch *core* added as N+1... (module docstring)."""
    out = comp.astype(np.int32, copy=True)
    free = tissue & near & (out == 0)
    if not free.any():
        return out
    pieces, n = ndimage.label(free, structure=CUBE)
    touching = set(np.unique(pieces[ndimage.binary_dilation(out > 0, CUBE) & free]))
    vox_ml = float(np.prod(spacing_zyx)) / 1000.0
    label = int(out.max())
    for p in range(1, n + 1):
        piece = pieces == p
        if p in touching or not (piece & core).any() or not is_tissue(piece, vox_ml, PriorSettings(min_remnant_ml=s.min_ml)):
            continue
        if float(np.median(pe[piece])) < s.min_pe or compactness(piece, spacing_zyx) < s.min_compact:
            continue
        label += 1
        out[piece] = label
    return out


def _grown(mask: np.ndarray, spacing_zyx, mm: float) -> np.ndarray:
    return neighbourhoods(mask.astype(np.int32), spacing_zyx, mm) > 0


def missing_priors(tracks, visits, k: int) -> np.ndarray:
    """Bool mask (baseline grid) of every track that started before visit *k* and has no lesion at *k*:
    its lesions at the visits before *k* taken together."""
    out = np.zeros(visits[0].in_baseline.components_baseline.shape, bool)
    for t in tracks:
        if t.first_visit >= k or t.members.get(k):
            continue
        for j in range(t.first_visit, k):
            if t.members.get(j):
                out |= np.isin(visits[j].in_baseline.components_baseline, t.members[j])
    return out


def found_priors(found: dict[int, np.ndarray], tracks, visits, k: int) -> np.ndarray:
    """Bool mask (baseline grid) of every track the look back found at the baseline (*found*: track id -> its
    pieces there) that has no lesion at visit *k*: those pieces and its lesions at the other visits."""
    out = np.zeros(visits[0].in_baseline.components_baseline.shape, bool)
    for t in tracks:
        if t.track_id not in found or t.members.get(k):
            continue
        out |= found[t.track_id]
        for j, labs in t.members.items():
            if j != k and labs:
                out |= np.isin(visits[j].in_baseline.components_baseline, labs)
    return out


def look_forward(k: int, comp_k: np.ndarray, tissue: np.ndarray, pe: np.ndarray, prior: np.ndarray, exams, regs,
                 s: SecondLookSettings) -> np.ndarray | None:
    """Visit *k*'s labels with what the second look finds in *prior* (bool, baseline grid: where a known lesion
    is missing at *k*); None: nothing."""
    if not prior.any():
        return None
    base = exams[0].reference
    sp0 = np.asarray(base.GetSpacing())[::-1]
    tx = regs[k].transform if regs[k] is not None else None
    near = to_visit_grid(_grown(prior, sp0, s.margin_mm), base, exams[k].reference, tx) > 0
    core = to_visit_grid(_grown(prior, sp0, s.core_mm), base, exams[k].reference, tx) > 0
    out = accepted_pieces(comp_k, tissue, pe, near, core, np.asarray(exams[k].reference.GetSpacing())[::-1], s)
    return out if out.max() > comp_k.max() else None


def look_back_again(comp0: np.ndarray, tissue0: np.ndarray, pe0: np.ndarray, tracks, visits, spacing_zyx,
                    s: SecondLookSettings) -> tuple[np.ndarray | None, dict[int, np.ndarray]]:
    """The baseline's labels with what the second look finds under the lesions first seen later (when at
    least ``back_cover`` of such a lesion's own place is the second look's tissue at the baseline; None:
    nothing), and track id -> the pieces found for it (bool, baseline grid)."""
    out = comp0.astype(np.int32, copy=True)
    found = {}
    for t in tracks:
        if t.first_visit == 0:
            continue
        later = np.isin(visits[t.first_visit].in_baseline.components_baseline, t.members[t.first_visit])
        if not later.any() or np.count_nonzero(tissue0[later]) < s.back_cover * np.count_nonzero(later):
            continue  # nothing enhancing at the baseline where it is: new
        before = int(out.max())
        out = accepted_pieces(out, tissue0, pe0, _grown(later, spacing_zyx, s.margin_mm),
                              _grown(later, spacing_zyx, s.core_mm), spacing_zyx, s)
        if out.max() > before:
            found[t.track_id] = out > before
    return (out if out.max() > comp0.max() else None), found


def second_look(exams, results, segmented, visits, tracks, regs, s: SecondLookSettings) -> dict[int, np.ndarray]:
    """Visit index -> its new labels (z, y, x ints: the visit's lesions as followed, ``visits[k].components``,
    then the found pieces) for every visit where the second look found something: the baseline (looking
    back from the tracks that start later, ``look_back``) and the later visits (where a known lesion is
    missing, ``look_forward``; or only the tracks the look back found, ``forward_found``)."""
    found, back = {}, {}
    for k, (e, res, (_, _, ftv)) in enumerate(zip(exams, results, segmented)):
        if not (s.look_back if k == 0 else s.look_forward or (s.forward_found and back)):
            continue  # this direction is off (or the look back found nothing to follow)
        arr = sitk.GetArrayFromImage(visits[k].components)
        tissue, pe = look_tissue(e, res, ftv, s)
        if k == 0:
            new, back = look_back_again(arr, tissue, pe, tracks, visits, np.asarray(e.reference.GetSpacing())[::-1],
                                        s)
        else:
            prior = found_priors(back, tracks, visits, k) if s.forward_found else False
            if s.look_forward:
                prior = prior | missing_priors(tracks, visits, k)
            new = look_forward(k, arr, tissue, pe, prior, exams, regs, s)
        if new is not None:
            found[k] = new
    return found

