"""Click mode of the panel: positive / negative clicks kept in a markups node, the segment
updated after every click (Qt-free; tested over real MRML with the slicer-core wheel).

The clicks are the control points of a point-list (fiducial) markups node: a control point's
label is ``+`` (tumor) or ``-`` (not tumor), and its description says ``positive`` or
``negative``, so the scene saved as ``.mrb`` keeps what every click meant. Positions are read in
world RAS (the scene's frame) and handed to :mod:`..engine.refine` as RAS points.

:meth:`ClickRefineLogic.sync` brings the segment in line with the markups node: control points
appended since the last call are applied one by one (the fast path of a click); when points were
removed, moved or re-signed (undo, the Markups module, a scene edit) the whole list is replayed
from the original result. :meth:`ClickRefineLogic.undo` removes the last click and replays.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import mrml_bridge as bridge
from ..core.exam import DCEExam
from ..core.results import SegmentationResult
from ..engine.refine import Click, Refiner, RefineSettings

CLICKS_NODE_NAME = "Refine clicks"
POSITIVE_LABEL, NEGATIVE_LABEL = "+", "-"
POSITIVE_COLOR, NEGATIVE_COLOR = (0.2, 0.9, 0.2), (0.95, 0.25, 0.2)


class ClickRefineLogic:
    """Refine *result* (of *exam*) shown in *seg_node* with clicks held in a markups node."""

    def __init__(self, ctx: bridge.MRMLContext, exam: DCEExam, result: SegmentationResult, seg_node,
                 reference_node=None, segment_id: str = bridge.TUMOR_SEGMENT_ID,
                 settings: RefineSettings | None = None, clicks_node=None, lesion_table=None):
        self.ctx = ctx
        self.lesion_table = lesion_table  # a table node to keep up to date (optional)
        self.exam = exam
        self.original = result
        self.seg_node = seg_node
        self.reference_node = reference_node
        self.segment_id = segment_id
        self.settings = settings
        self.clicks_node = clicks_node or self._new_clicks_node()
        self._refiner = Refiner(exam, result, settings)
        self._applied: list[Click] = []
        self.busy = False  # True while add_click places a point (observers of the node wait)

    # ------------------------------------------------------------------------- the markups node
    def _new_clicks_node(self):
        node = self.ctx.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", CLICKS_NODE_NAME)
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        if display is not None:
            display.SetSelectedColor(*POSITIVE_COLOR)
        return node

    def add_click(self, ras: Sequence[float], positive: bool = True) -> dict:
        """Place a click (RAS mm) as a control point and apply it; returns what it did."""
        node = self.clicks_node
        self.busy = True
        try:
            index = node.AddControlPoint(*(float(v) for v in ras))
        finally:
            self.busy = False
        self.set_sign(index, positive, sync=False)
        log = self.sync()
        return log[-1] if log else {}

    def set_sign(self, index: int, positive: bool, sync: bool = True) -> None:
        """Mark control point *index* positive or negative (label and description)."""
        node = self.clicks_node
        node.SetNthControlPointLabel(index, POSITIVE_LABEL if positive else NEGATIVE_LABEL)
        node.SetNthControlPointDescription(index, "positive" if positive else "negative")
        if sync:
            self.sync()

    def clicks(self) -> list[Click]:
        """The clicks the markups node holds, in order (a point without a sign is positive)."""
        node = self.clicks_node
        out = []
        for i in range(node.GetNumberOfControlPoints()):
            ras = [0.0, 0.0, 0.0]
            node.GetNthControlPointPositionWorld(i, ras)
            sign = (node.GetNthControlPointLabel(i) or "").strip()
            desc = (node.GetNthControlPointDescription(i) or "").strip().lower()
            positive = not (sign == NEGATIVE_LABEL or desc == "negative")
            out.append(Click.ras(ras, positive))
        return out

    # ------------------------------------------------------------------------- keeping in step
    def sync(self) -> list[dict]:
        """Apply what changed in the markups node; returns the log of the clicks in force."""
        clicks = self.clicks()
        n = len(self._applied)
        if len(clicks) >= n and _same(clicks[:n], self._applied):
            for click in clicks[n:]:
                self._refiner.add(click)
                self._applied.append(click)
        else:  # removed, moved or re-signed: replay from the original
            self._refiner = Refiner(self.exam, self.original, self.settings)
            self._applied = []
            for click in clicks:
                self._refiner.add(click)
                self._applied.append(click)
        self._update_segment()
        return list(self._refiner.log)

    def undo(self) -> bool:
        """Remove the last click and recompute from the original; False when there is none."""
        node = self.clicks_node
        n = node.GetNumberOfControlPoints()
        if n == 0:
            return False
        node.RemoveNthControlPoint(n - 1)
        self.sync()
        return True

    @property
    def log(self) -> list[dict]:
        """What each click in force did (see :meth:`..engine.refine.Refiner.add`)."""
        return list(self._refiner.log)

    def result(self) -> SegmentationResult:
        """The refined result (lesion table updated, clicks recorded)."""
        return self._refiner.result()

    def _update_segment(self) -> None:
        import SimpleITK as sitk

        label = sitk.GetImageFromArray(self._refiner.label.astype(np.uint8))
        label.CopyInformation(self.exam.reference)
        bridge.label_to_segmentation(self.ctx, label, self.seg_node, reference_node=self.reference_node,
                                     segment_id=self.segment_id)
        if self.lesion_table is not None:
            from .logic import LESION_COLUMNS, lesion_rows

            lesions = [les.as_dict() for les in self._refiner._lesions()]
            bridge.fill_table(self.ctx, LESION_COLUMNS, lesion_rows(lesions), self.lesion_table)

    @classmethod
    def from_scene(cls, ctx: bridge.MRMLContext, phases, seg_node, probability_node=None, register: bool = True,
                   **kwargs) -> "ClickRefineLogic":
        """Click mode on a result already in the scene: the exam from the panel's phases
        (motion-corrected again when the result was, so the clicks see what the engine saw),
        the label from *seg_node*'s tumor segment, the probability from *probability_node*."""
        import SimpleITK as sitk

        from .phases import exam_to_run, first_case_id

        exam = exam_to_run(phases, first_case_id(phases))
        if register:
            from ..preprocess.registration import register_exam

            exam, _ = register_exam(exam)
        segment_id = kwargs.get("segment_id", bridge.TUMOR_SEGMENT_ID)
        label = bridge.segment_to_label(ctx, seg_node, segment_id, exam.reference)
        prob = bridge.volume_node_to_image(probability_node) if probability_node is not None else None
        if prob is None or prob.GetSize() != label.GetSize():
            prob = sitk.Cast(label, sitk.sitkFloat32)
        prob.CopyInformation(label)
        result = SegmentationResult(case_id=exam.case_id, label=label, probability=prob, lesions=[],
                                    model_id=seg_node.GetAttribute("BreastTumorSeg.ModelID") or "unknown")
        return cls(ctx, exam, result, seg_node, reference_node=phases[0].node, **kwargs)


def _same(a: Sequence[Click], b: Sequence[Click], tol_mm: float = 1e-3) -> bool:
    return all(x.positive == y.positive and np.allclose(x.lps, y.lps, atol=tol_mm) for x, y in zip(a, b))
