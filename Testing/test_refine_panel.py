"""The panel's click mode as a reader drives it: PanelController on real PySide6 widgets from the
.ui (Testing/qt_harness.py), real slicer-core MRML. A point placed in the markups node becomes a
positive click (a missed lesion appears), with 'Not tumor' ticked a negative one (a false lesion
goes), 'Undo click' takes the last one back."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

pytest.importorskip("slicer", reason="slicer-core not installed")
pytest.importorskip("PySide6.QtUiTools", reason="PySide6 not installed")

import qt_harness as qh  # noqa: E402
from BreastTumorSegLib.core.results import SegmentationResult  # noqa: E402
from BreastTumorSegLib.evaluation.metrics import dice  # noqa: E402
from BreastTumorSegLib.slicer import mrml_bridge as mb  # noqa: E402
from BreastTumorSegLib.slicer.gui.widget import PanelController  # noqa: E402
from BreastTumorSegLib.slicer.logic import SegmentationLogic  # noqa: E402
from refine_fixtures import deepest_ras  # noqa: E402


class PlacingHost(qh.RecordingHost):
    """RecordingHost that also records the markups place mode the panel switches on and off."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.placing = None

    def start_placing(self, node) -> None:
        self.placing = node

    def stop_placing(self) -> None:
        self.placing = None


@pytest.fixture(scope="module")
def phantom():
    from BreastTumorSegLib.training.phantom import make_phantom

    return make_phantom(3, motion_mm=0)  # two mass lesions, phases aligned


def test_click_mode_adds_removes_and_undoes(phantom):
    ctx = mb.MRMLContext.headless()
    root, ui = qh.load_ui(ctx.scene)
    host = PlacingHost(ctx)
    logic = SegmentationLogic(ctx)
    controller = PanelController(ui, logic, qh.qt_namespace(), host)
    param = qh.panel_parameter_node(ctx.scene)
    controller.setParameterNode(param)
    try:
        nodes = [mb.image_to_volume_node(ctx, img, f"exam_{i:04d}") for i, img in enumerate(phantom.exam.phases)]
        for node in nodes:
            ui.phaseVolumesSelector.setCheckState(node, qh.Qt.Checked)
        ui.motionCorrectionCheckBox.setChecked(False)  # the phantom's phases are aligned
        assert param.motionCorrection is False
        # The engine's result as the panel holds it: lesion 1 found, lesion 2 missed, a false blob.
        labels = sitk.GetArrayFromImage(phantom.tumor_labels)
        false = np.zeros(labels.shape, bool)
        c = np.asarray(ndimage.center_of_mass(labels == 1)).astype(int)
        c[2] = labels.shape[2] - 1 - c[2]
        false[c[0] - 1:c[0] + 2, c[1] - 2:c[1] + 3, c[2] - 2:c[2] + 3] = True
        start = sitk.GetImageFromArray(((labels == 1) | false).astype(np.uint8))
        start.CopyInformation(phantom.exam.pre)
        result = SegmentationResult("exam", start, sitk.Cast(start, sitk.sitkFloat32), [], "test")
        outputs = logic.import_result(result, nodes[0])
        param.outputSegmentation = outputs.segmentation
        param.outputProbability = outputs.probability
        param.outputLesionTable = outputs.lesion_table
        assert ui.clickModeButton.isEnabled() and not ui.undoClickButton.isEnabled()

        ui.clickModeButton.click()  # click mode on
        assert ui.clickModeButton.isChecked() and host.errors == []
        clicks = host.placing
        assert clicks is not None and clicks.IsA("vtkMRMLMarkupsFiducialNode")

        def segment():
            return sitk.GetArrayFromImage(mb.segment_to_label(ctx, outputs.segmentation, "Tumor", nodes[0])) > 0

        clicks.AddControlPoint(*deepest_ras(phantom, labels == 2))  # the reader clicks the missed lesion
        got = segment()
        assert dice(got & ~(labels == 1) & ~false, labels == 2) >= 0.8
        assert clicks.GetNthControlPointLabel(0) == "+" and "added" in ui.statusLabel.text()
        assert ui.undoClickButton.isEnabled()
        assert outputs.lesion_table.GetNumberOfRows() == 3

        ui.negativeClickCheckBox.setChecked(True)
        clicks.AddControlPoint(*deepest_ras(phantom, false))  # ... and the false blob
        got = segment()
        assert not (got & false).any() and dice(got, labels > 0) >= 0.9
        assert clicks.GetNthControlPointLabel(1) == "-" and "removed" in ui.statusLabel.text()
        assert outputs.lesion_table.GetNumberOfRows() == 2

        ui.undoClickButton.click()
        assert clicks.GetNumberOfControlPoints() == 1 and segment()[false].all()
        assert host.errors == []

        ui.clickModeButton.click()  # click mode off: placing stops, the clicks stay in the scene
        assert host.placing is None and ctx.scene.GetNodeByID(clicks.GetID()) is not None
    finally:
        controller.cleanup()
        root.deleteLater()
