"""Track-guided search: where a lesion is seen at one visit, the others are read with a lower,
noise-based enhancement threshold.

A single exam has to call a voxel tumor on its own evidence: the I-SPY FTV rule (PE >= 70 % on a
pre-contrast signal above the background threshold and the PE noise floor) keeps a weakly enhancing
or dark tumor out. A series knows more: a lesion seen clearly at one visit tells where to look at
the others, and there a weaker signal is enough, as a reader who knows where the tumor was looks
harder at that place. :func:`guided_tissue` is that weaker rule, used *only* inside the registered
place of another visit's lesion:

* the local means over 3 voxels per axis (:func:`..kinetics.significance.significant_tissue`, the
  noise SD of the local-mean difference measured on each exam with a MAD) must lie above the noise
  floor of the local means for ``pe`` (``noise_z`` SDs; no background-fraction condition: the place
  is already known), and
* the local-mean PE must reach ``pe`` (40 %, below FTV's 70 %; the level of the follow-up's outline,
  :mod:`.measure`).

It feeds the follow-up's two searches in the place of other visits' lesions:

* the look-back (:mod:`.lookback`): a lesion first segmented at a later visit is looked for at the
  baseline in the FTV mask *or* this tissue (the cover rule unchanged: 30 % of the later lesion's own
  place must enhance at the baseline), so a weakly enhancing baseline tumor that a later visit shows is
  found, and its track is followed from the baseline;
* the remnants (:mod:`.prior`): at a later visit, a known (baseline) lesion is looked for in the FTV
  mask inside its 5 mm extent, and also in this tissue, but only inside the lesion's own registered
  mask grown by ``remnant_margin_mm`` (a shrinking tumor stays where it was), in pieces of at least
  ``min_ml``: a track is then found rather than left empty.

Tissue that stopped being tumor stops enhancing, so a gone tumor leaves nothing that passes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..kinetics.ftv import roi_array
from ..kinetics.significance import significant_tissue
from .prior import to_visit_grid

GUIDED_FLAG = "found_by_track"


@dataclass(frozen=True)
class GuidedSettings:
    enabled: bool = True
    # Local-mean PE in the place of another visit's lesion. 40 chosen on the 60 development series (ellipse +
    # heterogeneous seeds 6000-6029) against 50, 60 and off: matching 116/150 -> 117/150, RECIST 70/90 -> 72/90
    # (50 and 60: 116, 71), volume-change median unchanged; a 5 mm remnant place found one more track but
    # made a false PD (117, 70).
    pe: float = 40.0
    noise_z: float = 3.0  # local-mean pre-contrast signal at least this many noise SDs for ``pe``
    remnant_margin_mm: float = 2.0  # a known lesion's own mask, grown by this much, at a later visit
    min_ml: float = 0.02  # smaller pieces are not looked at
    # A known lesion whose extent still holds nothing at a visit after the search above (its track would be
    # empty there) is looked for again in its mask grown by this much (0: off; :mod:`.run`). 5 mm: on by rule 1 of
    # docs/decisions/followup-evidence-issue31.md with the evidence step (heterogeneous 6008's track found).
    empty_margin_mm: float = 5.0
    # ... and then, still empty, at its own level (:mod:`.relative`): local-mean PE >= relative_share x the baseline
    # lesion's median early PE, at least relative_min_pe (0: off; fu18, docs/decisions/followup-matching-issue31.md).
    relative_share: float = 0.0
    relative_min_pe: float = 20.0


def guided_tissue(exam, ftv, roi_mask: np.ndarray, s: GuidedSettings, pe_level: float | None = None) -> np.ndarray:
    """Bool mask (z, y, x; the exam's grid) of the tissue enhancing by the weaker, local-mean rule of the
    module docstring inside *roi_mask* (the visit's breast mask, as a bool array); *ftv*: the visit's
    :class:`~..kinetics.ftv.FTVResult` (its kinetic maps name the early phase). *pe_level*: the local-mean
    PE the tissue must reach instead of ``s.pe`` (the noise floor stays that of ``s.pe``)."""
    maps = ftv.maps
    pre = sitk.GetArrayFromImage(exam.pre).astype(np.float32, copy=False)
    early = sitk.GetArrayFromImage(exam.phases[maps.phases.early]).astype(np.float32, copy=False)
    region = roi_mask & (maps.array("valid") > 0)
    spacing_zyx = np.asarray(exam.reference.GetSpacing())[::-1]
    tissue, pe_m, _ = significant_tissue(pre, early, region, spacing_zyx, 0.0, s.noise_z, s.pe)
    return tissue & (pe_m >= np.float32(s.pe if pe_level is None else pe_level))


def empty_places(comp: sitk.Image, extent: np.ndarray, wide: np.ndarray, baseline: sitk.Image, visit: sitk.Image,
                 to_visit: sitk.Transform | None) -> np.ndarray:
    """On *visit*'s grid: the *wide* places (baseline-grid labels of the known lesions) of the lesions whose
    *extent* (baseline-grid labels) holds none of the visit's lesions *comp* (their tracks would be empty at
    this visit), 0 elsewhere (``empty_margin_mm``; *to_visit*: baseline point -> visit point)."""
    ext = to_visit_grid(extent, baseline, visit, to_visit)
    found = np.unique(ext[sitk.GetArrayViewFromImage(comp) > 0])
    out = to_visit_grid(wide, baseline, visit, to_visit)
    out[np.isin(out, found[found > 0])] = 0
    return out


class GuidedTissue:
    """Each visit's tissue by the weaker rule of this module, computed when first asked for."""

    def __init__(self, exams, results, ftvs, settings: GuidedSettings):
        self.exams, self.results, self.ftvs, self.settings = exams, results, ftvs, settings
        self._tissue: dict[tuple[int, float], np.ndarray] = {}

    def tissue(self, k: int, pe: float | None = None) -> np.ndarray:
        """Visit *k*'s tissue by the weaker rule (at local-mean PE *pe* instead of the settings' when given)."""
        key = (k, self.settings.pe if pe is None else float(pe))
        if key not in self._tissue:
            roi, _ = roi_array(self.results[k].breast_mask, self.exams[k].reference)
            self._tissue[key] = guided_tissue(self.exams[k], self.ftvs[k], roi, self.settings, key[1])
        return self._tissue[key]
