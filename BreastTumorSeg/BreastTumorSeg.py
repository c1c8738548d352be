"""BreastTumorSeg: tumor segmentation in breast DCE-MRI, as a 3D Slicer scripted module.

This file stays thin: the module description, and the Widget / Logic / Test classes Slicer
expects, each delegating to ``BreastTumorSegLib`` (the engine and its Slicer bridge):

* ``slicer.gui.widget.PanelController`` wires the panel to the parameter node and the logic;
* ``slicer.logic.SegmentationLogic`` does everything that must also work in batch mode;
* ``slicer.mrml_bridge`` converts between engine images (SimpleITK, LPS) and MRML nodes (RAS).
"""
from __future__ import annotations

import logging
import os
import unittest

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from BreastTumorSegLib.slicer.mrml_bridge import MRMLContext
from BreastTumorSegLib.slicer.logic import SegmentationLogic
from BreastTumorSegLib.slicer.gui.parameters import BreastTumorSegParameterNode

README_URL = "https://github.com/BreastTumorSeg/BreastTumorSeg#readme"


class BreastTumorSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Breast Tumor Segmentation"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["BreastTumorSeg contributors"]
        self.parent.helpText = f"""
Segments breast tumors in a dynamic contrast-enhanced (DCE) MRI exam: select the pre-contrast and
post-contrast phases (a Sequence node or separate volumes), pick a model, press Apply. The result is
an editable segmentation (segment "Tumor"), a tumor probability map and a lesion table; refine the
result in the Segment Editor and compare it with other readers' segmentations.
Needs 3D Slicer 5.8 or later (Windows, macOS, Linux). On first use it installs, after asking: PyTorch through
the PyTorch extension (only for the network models; FTV needs none), then a few Python packages, never
changing the ones Slicer ships.
Not a medical device: for research use only.
See the <a href="{README_URL}">documentation</a>.
"""
        self.parent.acknowledgementText = """
The network design follows Hirsch L. et al., "Radiologist-level performance by using deep learning for
segmentation of breast cancers on MRI scans", Radiology: Artificial Intelligence 4(1):e200231, 2022,
and Zhang J. et al., "A robust and efficient AI assistant for breast tumor segmentation from DCE-MRI
via a spatial-temporal framework", Patterns 4(9):100826, 2023. Kinetic (FTV) analysis follows the
I-SPY trials' functional tumor volume rules.
"""


class BreastTumorSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.panel = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        from BreastTumorSegLib.slicer.gui.widget import PanelController  # Qt code only where Qt exists

        ui_widget = slicer.util.loadUI(self.resourcePath("UI/BreastTumorSeg.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        self.logic = BreastTumorSegLogic()
        self.panel = PanelController(self.ui, self.logic, qt)
        self.panel.observe_scene(slicer.mrmlScene)  # a run is stopped and its files removed on close
        import ctk
        from BreastTumorSegLib.slicer.gui.followup_section import build_section  # "Compare with earlier visit"

        self.followup = build_section(self.layout, self.panel, qt, ctk, slicer)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self.panel is not None:
            self.panel.cleanup()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        # The panel stays bound while a run is in progress, so its results still arrive.
        if self.panel is not None and not self.panel.running:
            self.panel.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        param = self.logic.getParameterNode()
        if param.inputType == "Sequence" and param.inputSequence is None:
            param.inputSequence = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSequenceNode")
        self.panel.setParameterNode(param)


def _dicom_value(uid: str, tag: str) -> str:
    """A DICOM tag of one instance from Slicer's DICOM database ("" when unknown)."""
    db = getattr(slicer, "dicomDatabase", None)
    if db is None or not db.isOpen:
        return ""
    try:
        return db.instanceValue(uid, tag) or ""
    except Exception:  # noqa: BLE001 - a missing database entry is just an unknown time
        return ""


class BreastTumorSegLogic(ScriptedLoadableModuleLogic, SegmentationLogic):
    """The module logic on the application's scene; see :class:`SegmentationLogic` for the API."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        SegmentationLogic.__init__(self, MRMLContext.from_slicer(), dicom_value=_dicom_value)

    def getParameterNode(self) -> BreastTumorSegParameterNode:
        return BreastTumorSegParameterNode(super().getParameterNode())


class BreastTumorSegTest(ScriptedLoadableModuleTest):
    """Self-test inside real Slicer (also run by ctest through ``slicer_add_python_unittest``)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Reload & Test runs every test here; ctest (``slicer_add_python_unittest``) runs each
        ``test_*`` method on its own and reports a ``skipTest`` as skipped."""
        for test in (self.test_segmentation_round_trip, self.test_rerun_reuses_nodes_and_scene_reload,
                     self.test_parameter_node_survives_scene_save, self.test_background_engine_run,
                     self.test_panel_opens, self.test_panel_flow):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as why:
                logging.warning(f"{test.__name__} skipped: {why}")

    # ---------------------------------------------------------------- helpers
    def _exam_nodes(self):
        """A small synthetic DCE exam with an oblique grid and one enhancing ellipsoid."""
        import numpy as np
        import SimpleITK as sitk

        from BreastTumorSegLib.slicer import mrml_bridge

        rng = np.random.default_rng(0)
        shape = (24, 40, 36)
        pre_arr = (100 + 10 * rng.standard_normal(shape)).astype(np.float32)
        z, y, x = np.indices(shape)
        ball = ((z - 12) / 4.0) ** 2 + ((y - 20) / 6.0) ** 2 + ((x - 18) / 6.0) ** 2 < 1
        nodes = []
        for k in range(4):
            arr = pre_arr.copy()
            if k:
                arr[ball] += 150 + 20 * k
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing((0.8, 0.8, 2.0))
            img.SetOrigin((-30.0, 20.0, -15.0))
            img.SetDirection(sitk.VersorTransform((0.1, 0.9, 0.3), 0.4).GetMatrix())
            node = mrml_bridge.image_to_volume_node(MRMLContext.from_slicer(), img, f"selftest_{k:04d}")
            node.SetAttribute("BreastTumorSeg.AcquisitionTimeMin", str(1.5 * k))
            nodes.append(node)
        return nodes, ball

    class _Subtraction:
        """Stand-in model (the real ones may need weights or PyTorch not installed here)."""

        model_id = "selftest-subtraction"
        card = {"postprocess": {"threshold": 0.5, "mode": "absolute", "min_lesion_ml": 0.0,
                                "restrict_to_breast": False}}

        def predict(self, exam, breast_mask, reporter, device="auto", **options):
            import numpy as np
            import SimpleITK as sitk

            sub = sitk.GetArrayFromImage(exam.first_post) - sitk.GetArrayFromImage(exam.pre)
            prob = sitk.GetImageFromArray(np.clip(sub / 200.0, 0, 1).astype(np.float32))
            prob.CopyInformation(exam.pre)
            return prob

    # ---------------------------------------------------------------- tests
    def test_segmentation_round_trip(self):
        import numpy as np
        import SimpleITK as sitk

        from BreastTumorSegLib.slicer import mrml_bridge

        nodes, ball = self._exam_nodes()
        logic = BreastTumorSegLogic()
        phases = logic.phases(volume_nodes=list(reversed(nodes)))
        self.assertEqual([p.node for p in phases], nodes)
        outputs, result = logic.segment(phases, model=self._Subtraction(), register=False)
        back = mrml_bridge.segment_to_label(logic.ctx, outputs.segmentation, "Tumor", nodes[0])
        self.assertTrue(np.array_equal(sitk.GetArrayFromImage(back) > 0, sitk.GetArrayFromImage(result.label) > 0))
        self.assertTrue(np.allclose(back.GetDirection(), result.label.GetDirection(), atol=1e-6))
        self.assertGreater((sitk.GetArrayFromImage(result.label) > 0)[ball].mean(), 0.95)
        self.assertIsNotNone(outputs.probability.GetImageData())
        self.assertEqual(outputs.lesion_table.GetNumberOfRows(), 1)
        logic.show_results(outputs)
        self.delayDisplay("Segmentation in the scene matches the engine voxel for voxel")

    def test_rerun_reuses_nodes_and_scene_reload(self):
        import tempfile

        nodes, _ = self._exam_nodes()
        logic = BreastTumorSegLogic()
        phases = logic.phases(volume_nodes=nodes)
        first, _ = logic.segment(phases, model=self._Subtraction(), register=False)
        count = slicer.mrmlScene.GetNumberOfNodes()
        second, _ = logic.segment(phases, model=self._Subtraction(), register=False, outputs=first)
        self.assertEqual(first.ids(), second.ids())
        self.assertEqual(count, slicer.mrmlScene.GetNumberOfNodes())
        path = os.path.join(tempfile.mkdtemp(), "selftest.mrb")
        self.assertTrue(slicer.util.saveScene(path))
        slicer.mrmlScene.Clear()
        slicer.util.loadScene(path)
        seg = slicer.mrmlScene.GetFirstNodeByName(first.segmentation.GetName())
        self.assertIsNotNone(seg)
        self.assertIsNotNone(seg.GetSegmentation().GetSegment("Tumor"))
        self.delayDisplay("Re-run reused the nodes; the scene reloads with the segmentation")

    def test_parameter_node_survives_scene_save(self):
        import tempfile

        nodes, _ = self._exam_nodes()
        logic = BreastTumorSegLogic()
        param = logic.getParameterNode()
        param.inputType = "Volumes"
        param.phaseVolumes = nodes
        param.device = "cpu"
        param.useModelThreshold = False
        param.threshold = 0.35
        param.phaseTimesMin = "0, 1.5, 3, 4.5"
        path = os.path.join(tempfile.mkdtemp(), "params.mrb")
        self.assertTrue(slicer.util.saveScene(path))
        slicer.mrmlScene.Clear()
        slicer.util.loadScene(path)
        again = BreastTumorSegLogic().getParameterNode()
        self.assertEqual([n.GetName() for n in again.phaseVolumes], [n.GetName() for n in nodes])
        self.assertEqual((again.device, again.useModelThreshold), ("cpu", False))
        self.assertAlmostEqual(again.threshold, 0.35)
        self.assertEqual(again.phaseTimesMin, "0, 1.5, 3, 4.5")
        self.delayDisplay("Parameter node restored from the saved scene")

    def test_background_engine_run(self):
        """The panel's path: export, engine CLI in a background process, import."""
        nodes, _ = self._exam_nodes()
        logic = BreastTumorSegLogic()
        run = logic.start_background(logic.phases(volume_nodes=nodes), model="ftv", device="cpu", register=False)
        state = run.process.wait(timeout=600)
        if not state.succeeded:
            logging.error("\n".join(run.process.lines))
        outputs = logic.finish_background(run)
        self.assertIsNotNone(outputs.segmentation.GetSegmentation().GetSegment("Tumor"))
        self.assertFalse(os.path.exists(run.workdir))
        self.delayDisplay("Background engine run imported")

    def test_panel_opens(self):
        if slicer.app.commandOptions().noMainWindow:
            self.skipTest("the panel needs the main window (--no-main-window)")
        slicer.util.selectModule("BreastTumorSeg")
        widget = slicer.util.getModuleWidget("BreastTumorSeg")
        self.assertEqual(widget.ui.applyButton.text, "Apply")
        self.assertGreater(widget.ui.modelComboBox.count, 0)
        self.delayDisplay("Panel opened")

    def _wait(self, condition, timeout_s: float = 600.0) -> bool:
        import time

        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                return False
            slicer.app.processEvents()
            time.sleep(0.05)
        return True

    def test_panel_flow(self):
        """What a user does: check the phases, Apply, wait, re-threshold, Refine, Compare."""
        if slicer.app.commandOptions().noMainWindow:
            self.skipTest("the panel flow needs the main window (--no-main-window)")
        nodes, _ = self._exam_nodes()
        slicer.util.selectModule("BreastTumorSeg")
        widget = slicer.util.getModuleWidget("BreastTumorSeg")
        ui, panel = widget.ui, widget.panel
        for node in reversed(nodes):
            ui.phaseVolumesSelector.setCheckState(node, qt.Qt.Checked)
        self.assertEqual(ui.phaseTable.rowCount, len(nodes))
        ui.modelComboBox.setCurrentIndex(ui.modelComboBox.findText("ftv"))
        ui.deviceComboBox.setCurrentIndex(ui.deviceComboBox.findText("cpu"))
        ui.applyButton.click()
        self.assertEqual(ui.applyButton.text, "Cancel")
        self.assertTrue(self._wait(lambda: not panel.running), "the engine did not finish in 10 min")
        param = widget.logic.getParameterNode()
        seg = param.outputSegmentation
        self.assertIsNotNone(seg)
        self.assertIsNotNone(seg.GetSegmentation().GetSegment("Tumor"))
        self.assertEqual(ui.applyButton.text, "Apply")
        self.delayDisplay("Apply ran the engine in the background and loaded the result")

        voxels = lambda: int(slicer.util.arrayFromSegmentBinaryLabelmap(seg, "Tumor", nodes[0]).sum())  # noqa: E731
        before = voxels()
        ui.useModelThresholdCheckBox.checked = False
        ui.thresholdSliderWidget.value = 0.95
        self.assertTrue(self._wait(lambda: "thresholded again" in ui.statusLabel.text, 30))
        self.assertLessEqual(voxels(), before)
        self.delayDisplay("Threshold changed without re-running the model")

        ui.refineButton.click()
        self.assertEqual(slicer.util.selectedModule(), "SegmentEditor")
        editor = slicer.util.getModuleWidget("SegmentEditor").editor
        self.assertEqual(editor.segmentationNode(), seg)
        slicer.util.selectModule("BreastTumorSeg")
        self.delayDisplay("Refine handed the result to the Segment Editor")

        reader = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "reader 1")
        reader.GetSegmentation().CopySegmentFromSegmentation(seg.GetSegmentation(), "Tumor")
        ui.referenceSegmentationsSelector.setCheckState(reader, qt.Qt.Checked)
        ui.compareSegmentSelector.setCurrentNode(seg)
        ui.compareSegmentSelector.setCurrentSegmentID("Tumor")
        ui.compareButton.click()
        table = param.comparisonTable
        self.assertIsNotNone(table)
        self.assertAlmostEqual(float(table.GetTable().GetColumnByName("Dice").GetValue(0)), 1.0, places=6)
        self.delayDisplay("Compare gave Dice 1 against an identical reader segmentation")
