"""What only the running Slicer application does for the panel: dialogs, slice-view layers,
plots in the layout, switching to the Segment Editor, the markups place mode.

The panel reaches the application only through a host object, so it runs without it: the tests
pass their own host (``Testing/qt_harness.py``) that records these calls.
"""
from __future__ import annotations

import logging
import traceback

import slicer

from ...core.errors import BreastTumorSegError
from ..background import EngineFailed
from .install import DependencyError


class SlicerHost:
    """What the running Slicer application does for the panel: dialogs, slice-view layers, module
    switching. The tests pass their own host (``Testing/qt_harness.py``) that records these calls."""

    def show_error(self, what: str, exc: BaseException) -> None:
        """One clear message for expected failures; the traceback only in the details of unexpected ones."""
        if isinstance(exc, (BreastTumorSegError, ValueError, EngineFailed, DependencyError, OSError)):
            logging.warning(f"BreastTumorSeg: {what} {exc}")
            slicer.util.errorDisplay(f"{what}\n\n{exc}", windowTitle="BreastTumorSeg")
        else:
            logging.error(f"BreastTumorSeg: {what}\n{traceback.format_exc()}")
            slicer.util.errorDisplay(f"{what}\n\n{type(exc).__name__}: {exc}", windowTitle="BreastTumorSeg",
                                     detailedText=traceback.format_exc())

    def show_background(self, node) -> None:
        slicer.util.setSliceViewerLayers(background=node, fit=True)

    def show_chart(self, chart) -> None:
        slicer.modules.plots.logic().ShowChartInLayout(chart)

    def open_segment_editor(self, segmentation, source, segment_id: str) -> None:
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.util.getModuleWidget("SegmentEditor").editor
        editor.setSegmentationNode(segmentation)
        if source is not None:
            editor.setSourceVolumeNode(source)
        editor.setCurrentSegmentID(segment_id)

    def start_placing(self, markups_node) -> None:
        """Place points into *markups_node* until stopped (persistent place mode)."""
        selection = slicer.app.applicationLogic().GetSelectionNode()
        selection.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsFiducialNode")
        selection.SetActivePlaceNodeID(markups_node.GetID())
        slicer.app.applicationLogic().GetInteractionNode().SwitchToPersistentPlaceMode()

    def stop_placing(self) -> None:
        slicer.app.applicationLogic().GetInteractionNode().SwitchToViewTransformMode()
