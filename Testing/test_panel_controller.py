"""The panel as a user drives it: ``PanelController`` on real PySide6 widgets loaded from the ``.ui``,
the real ``SegmentationLogic`` over real slicer-core MRML, the real engine in a background process.

See ``Testing/qt_harness.py`` for what is stood in (Slicer's own MRML/CTK widget classes, the
parameter-node wrapper and the application's dialogs, none of which exist outside Slicer).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("slicer", reason="slicer-core not installed")
pytest.importorskip("PySide6.QtUiTools", reason="PySide6 not installed")

import qt_harness as qh  # noqa: E402
from BreastTumorSegLib.slicer import mrml_bridge as mb  # noqa: E402
from BreastTumorSegLib.slicer.gui.widget import PanelController  # noqa: E402
from BreastTumorSegLib.slicer.logic import SegmentationLogic  # noqa: E402


@pytest.fixture(scope="module")
def phantom():
    """A small synthetic DCE exam (3 mm voxels, one tumor, no motion) with its ground truth."""
    from BreastTumorSegLib.training.phantom import make_phantom

    return make_phantom(3, spacing=3.0, motion_mm=0.0, n_tumors=1, tumor_radius_mm=9.0)


class Panel:
    """One panel over a fresh scene: ``ctx``, ``ui``, ``controller``, ``param``, ``host``."""

    def __init__(self):
        self.ctx = mb.MRMLContext.headless()
        self.root, self.ui = qh.load_ui(self.ctx.scene)
        self.host = qh.RecordingHost(self.ctx)
        self.logic = SegmentationLogic(self.ctx)
        self.controller = PanelController(self.ui, self.logic, qh.qt_namespace(), self.host)
        self.param = qh.panel_parameter_node(self.ctx.scene)
        self.controller.setParameterNode(self.param)
        self.progress: list[int] = []
        self.ui.progressBar.valueChanged.connect(self.progress.append)

    def add_exam(self, phases, prefix="exam"):
        nodes = [mb.image_to_volume_node(self.ctx, img, f"{prefix}_{i:04d}") for i, img in enumerate(phases)]
        for node in reversed(nodes):  # checked in any order: the panel orders them
            self.ui.phaseVolumesSelector.setCheckState(node, qh.Qt.Checked)
        return nodes

    def choose_model(self, name: str) -> None:
        combo = self.ui.modelComboBox
        combo.setCurrentIndex(combo.findText(name))

    def run(self, timeout_s=180.0) -> None:
        self.ui.applyButton.click()
        assert self.controller.running, self.host.errors
        assert qh.process_until(lambda: not self.controller.running, timeout_s), "the engine did not finish"

    def close(self):
        self.controller.cleanup()
        self.root.deleteLater()


@pytest.fixture
def panel():
    p = Panel()
    yield p
    p.close()


def test_apply_runs_the_engine_with_progress_and_fills_the_result_nodes(panel, phantom):
    nodes = panel.add_exam(phantom.exam.phases)
    assert [n.GetName() for n in panel.param.phaseVolumes] == [n.GetName() for n in nodes]
    assert panel.ui.phaseTable.rowCount() == phantom.exam.n_phases
    panel.choose_model("ftv")
    assert panel.param.model == "ftv"
    assert panel.ui.applyButton.isEnabled() and panel.ui.applyButton.text() == "Apply"

    panel.ui.applyButton.click()
    assert panel.ui.applyButton.text() == "Cancel" and not panel.ui.progressBar.isHidden()
    assert qh.process_until(lambda: not panel.controller.running, 180)
    assert panel.host.errors == []
    assert panel.ui.applyButton.text() == "Apply"
    assert panel.progress and panel.progress[-1] == 100 and panel.progress == sorted(panel.progress)

    seg = panel.param.outputSegmentation
    assert seg is not None and seg.GetSegmentation().GetSegment("Tumor") is not None
    label = mb.segment_to_label(panel.ctx, seg, "Tumor", nodes[0])
    from BreastTumorSegLib.evaluation.metrics import dice
    assert dice(label, phantom.tumor_mask) > 0.7
    assert panel.param.outputLesionTable.GetNumberOfRows() >= 1
    assert panel.ui.lesionTableView.model().rowCount() == panel.param.outputLesionTable.GetNumberOfRows()
    assert panel.param.outputProbability is not None
    assert "lesion(s)" in panel.ui.statusLabel.text()
    assert panel.host.backgrounds  # the result was shown
