"""Click-to-correct on the web station: a point in a slice view marked "tumor" or "not tumor"
refines the reader's segment with :mod:`..engine.refine`, the same code as
``breasttumorseg refine`` and the Slicer panel's click mode.

Offered in the ``assisted`` arm only -- there the reader works from the model's help, which
click-to-correct is part of; the ``unaided`` arm stays unaided -- and never on a submitted case.
Each click refines the segment as it is at that moment (the reader's own edits with the effects
included) on the motion-corrected exam the hanging protocol was made from, and the result
replaces the segment as one step of the editor's undo stack (Undo takes a click back like a
stroke). Every click is a single :class:`~..engine.refine.Refiner` step, so a click only changes
the neighbourhood the engine documents for it.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..core.results import SegmentationResult
from ..engine.refine import Click, Refiner

CLICK_ARMS = ("assisted",)  # the arms in which a reader may click-to-correct
MODES = ("off", "tumor", "not tumor")  # the toolbar's click modes


def offered(view) -> bool:
    """Whether the reading *view* (a :class:`..study.session.CaseView`) offers click-to-correct."""
    return view.arm in CLICK_ARMS and not view.locked


class ClickCorrector:
    """Refines a reader's segment of *exam* (its registered phases, on the segment's grid) one click at a time."""

    def __init__(self, exam):
        self.exam = exam
        self.log: list[dict] = []  # what each click did (:meth:`..engine.refine.Refiner.add`)

    def correct(self, mask: sitk.Image, ras, positive: bool) -> sitk.Image:
        """*mask* (uint8, the exam's grid) after one click at *ras* (mm): tumor when *positive*."""
        label = sitk.Cast(mask > 0, sitk.sitkUInt8)
        result = SegmentationResult(case_id=self.exam.case_id, label=label,
                                    probability=sitk.Cast(label, sitk.sitkFloat32), lesions=[], model_id="reader")
        refiner = Refiner(self.exam, result)
        self.log.append(refiner.add(Click.ras(ras, positive)))
        out = sitk.GetImageFromArray(refiner.label.astype(np.uint8))
        out.CopyInformation(mask)
        return out
