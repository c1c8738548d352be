"""New enhancement: a lesion that appears at a later visit, found where that visit enhances and no
earlier visit did.

A single exam calls a lesion only on its own evidence, so a new lesion that the visit's segmentation
misses (a weakly enhancing or dark one the I-SPY FTV rule keeps out: a pre-contrast signal below the
background threshold, PE near 70 %) leaves the visit without a new lesion, and RECIST without its PD.
A series knows more: the same place at the earlier visits. A reader compares the visits side by side;
tissue that enhances now where nothing enhanced before is *new*, and the comparison, not the level of
one exam, is the evidence. :func:`new_enhancement` is that comparison:

* the visit's tissue enhancing by the weaker rule of :mod:`.guided` (local-mean PE >= 40 % above the
  noise floor of the local means) inside the visit's breast mask,
* minus every earlier visit's enhancing tissue by the same rule at half its level (``earlier_pe`` = 20 %
  local-mean PE: tissue enhancing near 40 % at every visit, background enhancement on the rule's edge,
  passes at one visit and not at another by noise alone, and is not new; the noise floor of the
  pre-contrast signal stays the 40 % rule's, so a lower level never excludes more tissue), each
  brought into this visit's grid through the registrations and grown by ``earlier_margin_mm``
  (registration error, partial volume at an edge; a growing lesion or background enhancement seen
  before is not new),
* minus the visit's own lesions grown by ``lesion_margin_mm`` (they are already there: segmented,
  remnants, track-guided),
* only where every earlier visit was read: inside each earlier visit's breast region (brought into
  this grid), ``earlier_margin_mm`` from its edge (tissue outside an earlier visit's region was never
  looked at there, so its enhancement now is not evidence of anything new; on development series
  two tumors outside the baseline's region became false new lesions without this),

in pieces of at least ``min_ml`` that survive an erosion by ``min_thickness_voxels`` (compact: a
vessel or a one-voxel edge is not a lesion), each added to the visit's lesions flagged
``new_enhancement``. :mod:`.match` then starts a track with it (it lies outside every known lesion's
extent), and :mod:`.response` reads it as a new lesion (PD when it is at least 10 mm long).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import from_array
from .prior import labels_like, neighbourhoods, to_visit_grid

NEW_ENHANCEMENT_FLAG = "new_enhancement"
SEEN_BEFORE_FLAG = "enhanced_before"


@dataclass(frozen=True)
class NewEnhancementSettings:
    # On: chosen on the 60 development series (ellipse + heterogeneous, seeds 6000-6029; rule in
    # docs/decisions/followup-issue31.md): matching 117/150 -> 120/150, RECIST 72/90 -> 76/90, volume-change
    # median unchanged (6.0 points); three new lesions the segmentation missed found (PD), one false finding
    # of 0.17 mL (7 mm: no PD) in a series whose tumor lies outside the breast region.
    enabled: bool = True
    min_ml: float = 0.1  # smaller new pieces are not a lesion (noise, an edge)
    earlier_pe: float = 20.0  # earlier visits "enhanced" where their local-mean PE reached this (half the rule's)
    earlier_margin_mm: float = 4.0  # the earlier visits' enhancing tissue grown by this much
    lesion_margin_mm: float = 4.0  # the visit's own lesions grown by this much
    min_thickness_voxels: int = 1  # a piece must survive this many erosions (6-connected)
    # A segmented lesion that starts a track after the baseline is not an unequivocal new lesion (no PD by
    # itself, :mod:`.response`) when at least this share of it lies where an earlier visit enhanced (at
    # ``seen_before_pe``) or was never read (outside its breast region): flag ``enhanced_before`` (0: off).
    # Off: on the 60 development series 0.5 made two false PDs right (heterogeneous 6016, 6019) and two true ones
    # wrong (6023, 6027: the true new lesion lies where the baseline's parenchyma enhances >= 40 %): RECIST 76 -> 76,
    # matching unchanged, so it fails rule 1 of docs/decisions/followup-evidence-issue31.md.
    seen_before_share: float = 0.0
    seen_before_pe: float = 40.0  # ... "enhanced" there: local-mean PE at least this (the weaker rule's own level)


def _grown(mask: np.ndarray, spacing_zyx, margin_mm: float) -> np.ndarray:
    return neighbourhoods(mask.astype(np.int32), spacing_zyx, margin_mm) > 0 if margin_mm > 0 else mask


def earlier_in_visit(earlier: list[tuple[np.ndarray, sitk.Image, sitk.Transform | None]], baseline: sitk.Image,
                     visit: sitk.Image, to_visit: sitk.Transform | None) -> np.ndarray:
    """Bool mask on *visit*'s grid: where any earlier visit's tissue lies, through the baseline frame.
    *earlier*: (tissue: bool on that visit's grid, that visit's reference image, its registration:
    baseline point -> its point, None for the baseline); *to_visit*: this visit's registration."""
    union = np.zeros(sitk.GetArrayViewFromImage(baseline).shape, bool)
    for arr, ref, tx in earlier:
        union |= sitk.GetArrayFromImage(sitk.Resample(from_array(arr.astype(np.uint8), ref), baseline,
                                                      tx if tx is not None else sitk.Transform(),
                                                      sitk.sitkNearestNeighbor, 0)) > 0
    return to_visit_grid(union, baseline, visit, to_visit) > 0


def new_enhancement(components: sitk.Image, tissue: np.ndarray, earlier: np.ndarray,
                    s: NewEnhancementSettings, looked: np.ndarray | None = None) -> tuple[sitk.Image, int]:
    """*components* (labels 1..N, the visit's grid) with the pieces of *tissue* (bool, this visit's weaker
    rule) that lie away from *earlier* (bool, where earlier visits enhanced, on this grid) and from the
    visit's lesions added as N+1... (module docstring); returns them and the number added. *looked*
    (bool, this grid): where every earlier visit was read (their breast regions); only there, at least
    ``earlier_margin_mm`` inside, can enhancement be new."""
    comp = sitk.GetArrayFromImage(components).astype(np.int32)
    spacing_zyx = np.asarray(components.GetSpacing())[::-1]
    cand = tissue & ~_grown(earlier, spacing_zyx, s.earlier_margin_mm) & ~_grown(comp > 0, spacing_zyx,
                                                                               s.lesion_margin_mm)
    if looked is not None:
        cand &= ~_grown(~looked, spacing_zyx, s.earlier_margin_mm)
    if not cand.any():
        return components, 0
    pieces, n = ndimage.label(cand, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(pieces.ravel(), minlength=n + 1)
    vox_ml = float(np.prod(spacing_zyx)) / 1000.0
    cross = ndimage.generate_binary_structure(3, 1)
    label, added = int(comp.max()), 0
    for p in np.flatnonzero(sizes * vox_ml >= s.min_ml):
        if p == 0:
            continue
        piece = pieces == p
        if s.min_thickness_voxels > 0 and not ndimage.binary_erosion(piece, cross, s.min_thickness_voxels).any():
            continue
        label += 1
        added += 1
        comp[piece] = label
    if not added:
        return components, 0
    return labels_like(comp, components), added


def seen_before(lesion: np.ndarray, earlier: np.ndarray, looked: np.ndarray | None = None) -> float:
    """The share of *lesion* (bool, a visit's grid) lying where an earlier visit enhanced (*earlier*, bool)
    or was not read (outside *looked*, bool: every earlier visit's breast region), on the same grid."""
    n = np.count_nonzero(lesion)
    if not n:
        return 0.0
    old = earlier if looked is None else earlier | ~looked
    return float(np.count_nonzero(lesion & old)) / n
