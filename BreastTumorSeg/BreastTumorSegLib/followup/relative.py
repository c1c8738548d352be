"""A known lesion looked for at its own level before it is called gone (issue 31, fu18; off until its rule decides).

The track-guided search (:mod:`.guided`) looks for a baseline lesion missing at a later visit with one
weaker level for every lesion (local-mean PE >= 40 %). A tumor that shrinks under treatment also enhances
less: on the development series of ``docs/decisions/followup-matching-issue31.md`` the remnants the
follow-up left out (their tracks empty, the tumor called gone while 0.09-0.3 mL of it was left) had a
median local-mean PE of 28-45 %, below that level, where their baseline lesions had 54-72 %. A reader who
knows what the lesion looked like compares it with itself: the level here is relative to the lesion.

Only for a baseline lesion whose extent still holds no lesion of the visit after every earlier search (its
track would be empty there), in the same place as the guided empty search (its mask grown by
``GuidedSettings.empty_margin_mm``, registered into the visit), tissue is taken at the lesion's own level:
``relative_share`` x the median early PE of the baseline lesion's voxels (the visit's FTV maps), and at
least ``relative_min_pe`` (the noise condition of :func:`.guided.guided_tissue` unchanged). Pieces of it
are accepted as :func:`.prior.find_remnants` accepts them (at least ``GuidedSettings.min_ml``, more than
one voxel thick, not touching a lesion of the visit). A tumor that is gone (its tissue no longer enhancing)
leaves nothing at any level above the noise.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..core.imageutil import from_array
from .guided import empty_places
from .prior import PriorSettings, find_remnants

RELATIVE_FLAG = "found_at_own_level"


def lesion_levels(base_labels: np.ndarray, pe_early: np.ndarray, share: float, min_pe: float) -> dict[int, float]:
    """Per baseline lesion label of *base_labels* (z, y, x): the local-mean PE its remnant must reach,
    ``max(min_pe, share x median(pe_early over the lesion))`` (rounded to 1 %: lesions of one level share
    one tissue map)."""
    out = {}
    for lab in np.unique(base_labels[base_labels > 0]):
        pe = pe_early[base_labels == lab]
        pe = pe[np.isfinite(pe)]
        med = float(np.median(pe)) if pe.size else 0.0
        out[int(lab)] = float(round(max(min_pe, share * med)))
    return out


def relative_remnants(comp: sitk.Image, extent: np.ndarray, wide: np.ndarray, levels: dict[int, float], tissue_at,
                      baseline: sitk.Image, visit: sitk.Image, to_visit, min_ml: float) -> tuple[sitk.Image, int]:
    """*comp* (a later visit's lesions, its grid) with the pieces found at each empty lesion's own level added
    (labels after its own) and the number added. *extent*, *wide*: baseline-grid labels (the lesions' extents
    and search places); *levels*: :func:`lesion_levels`; *tissue_at(level)*: the visit's tissue (bool array,
    its grid) by the guided rule at that local-mean PE."""
    if not levels:
        return comp, 0
    places = empty_places(comp, extent, wide, baseline, visit, to_visit)
    added = 0
    for level in sorted({levels[int(lab)] for lab in np.unique(places[places > 0]) if int(lab) in levels}):
        labs = [lab for lab, v in levels.items() if v == level]
        place = np.where(np.isin(places, labs), places, 0)
        tissue = from_array(tissue_at(level).astype(np.uint8), comp)
        comp, n = find_remnants(comp, tissue, place, PriorSettings(min_remnant_ml=min_ml))
        added += n
    return comp, added
