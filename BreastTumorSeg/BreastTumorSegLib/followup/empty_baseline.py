"""A baseline with no lesion at all, read again (issue 31, fu16: ``docs/decisions/followup-census-issue31.md``).

A patient is followed across visits because of a tumor: a baseline read that finds no lesion at all is
a failed read, not a healthy breast. Every later step of the follow-up starts from a lesion some visit
segmented; when none did at the baseline, every later visit reads *complete response* ("no lesion left")
and every tumor's matching is wrong. The development census found the tumors missed this way inside the
breast region to be darker before contrast than the FTV rule's background threshold (non-fat-suppressed
heterogeneous phantoms: the rule's pre-contrast floor drops 83-91 % of a tumor whose early PE is 78-130 %)
or enhancing just at the rule's PE threshold, in speckles too small for a lesion.

Only when, after every other step, the baseline still has no lesion, this step reads it again inside its
breast region with a relaxed rule (:func:`reread_tissue`): the model's probability at ``level`` or the FTV
rule's PE/SER thresholds without its pre-contrast background floor (``keep_background``: with it). The
compact, enhancing pieces of that tissue (the second look's piece rules:
:func:`.second_look.accepted_pieces`, here at least ``min_ml`` and a median early PE of ``min_pe``), the
largest ``max_lesions`` of them, become baseline lesions, and each later visit is looked at again the
same way where they lie (registered, grown by ``margin_mm``; a piece must touch their mask grown by
``core_mm``): a tumor that shrank is found, one that stopped enhancing (gone) is not. Off by default:
the development and held-out rule of the record decides.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..kinetics.ftv import roi_array
from .prior import neighbourhoods, to_visit_grid
from .second_look import SecondLookSettings, accepted_pieces

EMPTY_BASELINE_FLAG = "empty_baseline_reread"


@dataclass(frozen=True)
class EmptyBaselineSettings:
    enabled: bool = False  # off until the rule of docs/decisions/followup-census-issue31.md decides
    level: float = 0.3  # the model's probability level (0: not used)
    keep_background: bool = False  # True: the FTV rule with its pre-contrast background floor
    min_pe: float = 70.0  # a piece's median early PE (%)
    min_ml: float = 0.1  # a piece's volume (mL)
    min_compact: float = 0.3  # the second look's compactness
    max_lesions: int = 5  # the largest pieces kept at the baseline
    margin_mm: float = 5.0  # later visits: where the found lesions lie, grown by this much, is searched
    core_mm: float = 2.0  # ... and a piece must touch their mask grown by this much

    def pieces(self) -> SecondLookSettings:
        """The second look's piece rules at this step's thresholds."""
        return SecondLookSettings(min_pe=self.min_pe, min_ml=self.min_ml, min_compact=self.min_compact)


def reread_tissue(exam, result, ftv, s: EmptyBaselineSettings) -> tuple[np.ndarray, np.ndarray]:
    """(tissue, early PE) on *exam*'s grid (z, y, x): the relaxed rule inside the visit's breast region."""
    maps = ftv.maps
    pe = maps.array("pe_early")
    tissue = (maps.array("valid") > 0) & (pe >= np.float32(ftv.settings.pe_threshold))
    if ftv.ser_used:
        tissue &= maps.array("ser") >= np.float32(ftv.settings.ser_min)
    if s.keep_background:
        tissue &= sitk.GetArrayFromImage(exam.pre) >= np.float32(ftv.background_threshold)
    if s.level > 0 and result.probability is not None:
        tissue |= sitk.GetArrayFromImage(result.probability) >= np.float32(s.level)
    roi, _ = roi_array(result.breast_mask, exam.reference)
    return tissue & roi, pe


def largest(labels: np.ndarray, n: int) -> np.ndarray:
    """*labels* (1..N) with only its *n* largest labels kept, relabelled 1..n, largest first."""
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.argsort(-sizes, kind="stable")[:n] + 1
    out = np.zeros_like(labels)
    for new, old in enumerate(keep, start=1):
        if sizes[old - 1]:
            out[labels == old] = new
    return out


def reread(exams, results, ftvs, components: list[np.ndarray], regs, s: EmptyBaselineSettings) -> dict[int, np.ndarray]:
    """Visit index -> its new labels (z, y, x: *components[k]* then the pieces found) for every visit where
    something was found; empty unless the baseline (*components[0]*) has no lesion (module docstring)."""
    if components[0].any():
        return {}
    base = exams[0].reference
    sp0 = np.asarray(base.GetSpacing())[::-1]
    tissue, pe = reread_tissue(exams[0], results[0], ftvs[0], s)
    everywhere = np.ones(tissue.shape, bool)
    found0 = largest(accepted_pieces(components[0], tissue, pe, everywhere, everywhere, sp0, s.pieces()), s.max_lesions)
    if not found0.any():
        return {}
    out = {0: found0}
    prior = found0 > 0
    for k in range(1, len(exams)):
        tx = regs[k].transform if regs[k] is not None else None
        near = to_visit_grid(neighbourhoods(prior.astype(np.int32), sp0, s.margin_mm) > 0, base, exams[k].reference, tx) > 0
        core = to_visit_grid(neighbourhoods(prior.astype(np.int32), sp0, s.core_mm) > 0, base, exams[k].reference, tx) > 0
        tissue_k, pe_k = reread_tissue(exams[k], results[k], ftvs[k], s)
        new = accepted_pieces(components[k], tissue_k, pe_k, near, core,
                              np.asarray(exams[k].reference.GetSpacing())[::-1], s.pieces())
        if new.max() > components[k].max():
            out[k] = new
    return out
