"""The look-back: a lesion first seen at a later visit is looked for in the baseline before it is called new.

A reader who finds a lesion in a later exam looks back at the baseline: a tumor that was there
already (the baseline's segmentation missed it: a weakly enhancing part cut below its minimum
size, a piece opened away as thin) is not a *new* lesion, and calling it new would make the visit
progressive disease (RECIST). :func:`look_back` carries every lesion that starts a track at a later
visit into the baseline frame (the registration, as :mod:`.match` does), grows it by
``margin_mm`` and searches the baseline's own FTV mask there (the same PE/SER thresholds and
fat-suppression decision as every visit, :mod:`..kinetics.ftv`): the enhancing pieces found, each
grown to the whole connected enhancing region within ``grow_mm`` of the later lesion, of at least
``min_remnant_ml`` and more than one voxel thick (the rules of :func:`.prior.find_remnants`), not
touching a segmented baseline lesion, become baseline lesions flagged ``found_on_later_visit``. The
follow-up is then recomputed with them, so the later lesion joins the baseline lesion's track and
the baseline lesion is a prior for the visits between. A truly new lesion (no enhancement at the
baseline where it is) stays new: the search runs only when at least ``lookback_min_cover`` (30 %) of
the later lesion's own place enhances at the baseline, so background enhancement beside a new lesion
does not make it old (a new lesion on the development series was taken this way).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .prior import PriorSettings, is_tissue, neighbourhoods

CUBE = np.ones((3, 3, 3), bool)
LOOKBACK_FLAG = "found_on_later_visit"


def _grown(mask: np.ndarray, spacing_zyx, margin_mm: float) -> np.ndarray:
    """*mask* (bool) grown by *margin_mm*."""
    return neighbourhoods(mask.astype(np.int32), spacing_zyx, margin_mm) > 0


def look_back(later_masks: list[np.ndarray], components0: np.ndarray, enhancing0: np.ndarray,
              spacing_zyx, settings: PriorSettings) -> tuple[np.ndarray, int]:
    """Baseline labels (z, y, x ints, 1..N) with the enhancing tissue found where the *later_masks*
    (bool, baseline grid: the lesions that start a track after the baseline) lie added as N+1...
    (module docstring); returns them and the number added."""
    comp = components0.astype(np.int32, copy=True)
    free = enhancing0 & (comp == 0)
    near_segmented = ndimage.binary_dilation(comp > 0, CUBE)
    vox_ml = float(np.prod(spacing_zyx)) / 1000.0
    label, added = int(comp.max()), 0
    for mask in later_masks:
        if not mask.any() or np.count_nonzero(enhancing0[mask]) < settings.lookback_min_cover * np.count_nonzero(mask):
            continue  # the baseline does not enhance where the later lesion is: new
        where = _grown(mask, spacing_zyx, settings.margin_mm) & free
        if not where.any():
            continue  # nothing enhancing at the baseline: new
        pieces, _ = ndimage.label(free & _grown(mask, spacing_zyx, settings.lookback_grow_mm), structure=CUBE)
        for p in np.unique(pieces[where]):
            if p == 0:  # lookback_grow_mm below margin_mm
                continue
            piece = (pieces == p) & (comp == 0)
            if (piece & near_segmented).any() or not is_tissue(piece, vox_ml, settings):
                continue
            label += 1
            added += 1
            comp[piece] = label
    return comp, added

