"""BreastTumorSegReader: the reader-study module of the BreastTumorSeg extension.

A second module rather than a mode of the segmentation panel, so that a blinded reader sees
nothing of the model, other readers or the case's identity: the panel has only her name, "case 7
of 40", a timer, Previous / Next / Pause / Submit and the Segment Editor on the subtraction with the
effects the study allows. A coordinator can hand out Slicer with just this module. Everything else
lives in ``BreastTumorSegLib``:

* ``study.session.ReaderSession`` — order, blinding, timing, versioned autosaves, locks;
* ``slicer.reader_logic.ReaderLogic`` — the hanging protocol and the mask in MRML;
* ``slicer.gui.reader_panel.ReaderPanelController`` — the buttons, the timer, background autosave.

The study folder is chosen in the panel (or set with the environment variable
``BREASTTUMORSEG_STUDY``; the reader with ``BREASTTUMORSEG_READER``, e.g. from a launcher script).
"""
from __future__ import annotations

import logging
import os
import traceback

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)

from BreastTumorSegLib.slicer.mrml_bridge import MRMLContext
from BreastTumorSegLib.slicer.reader_logic import HANGING_PROTOCOL, ReaderLogic

# Three axial slice views side by side: subtraction (Red), first post-contrast (Yellow), pre-contrast (Green).
READER_LAYOUT_ID = 5701
READER_LAYOUT = """
<layout type="horizontal">
""" + "".join(f"""
 <item><view class="vtkMRMLSliceNode" singletontag="{view}">
  <property name="orientation" action="default">Axial</property>
  <property name="viewlabel" action="default">{view[0]}</property>
  <property name="viewcolor" action="default">{color}</property>
 </view></item>""" for view, color in (("Red", "#F34A33"), ("Yellow", "#EDD54C"), ("Green", "#6EB04B"))) + """
</layout>
"""


class BreastTumorSegReader(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Breast Tumor Reader Study"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["BreastTumorSeg contributors"]
        self.parent.helpText = """
Reader mode of a BreastTumorSeg reader study (made with <tt>breasttumorseg study init</tt>): pick your
name, read the cases in the order the study gives, draw the tumor in the Segment Editor, Submit.
Your work is saved every 30 seconds and on every case switch; after a crash you continue where you
stopped. Cases are shown under pseudonyms. Needs 3D Slicer 5.8 or later. Not a medical device: for research use only.
"""
        self.parent.acknowledgementText = "Part of the BreastTumorSeg extension."


class SlicerReaderHost:
    """What the Slicer application does for the reader panel: messages, confirmation, the
    embedded Segment Editor restricted to the study's effects, the three-view layout."""

    def __init__(self, editor_widget):
        self.editor = editor_widget

    def show_error(self, what: str, exc: BaseException) -> None:
        logging.warning(f"BreastTumorSegReader: {what} {exc}\n{traceback.format_exc()}")
        slicer.util.errorDisplay(f"{what}\n\n{exc}", windowTitle="Reader study")

    def confirm(self, text: str) -> bool:
        if slicer.app.testingEnabled():
            return True
        return slicer.util.confirmOkCancelDisplay(text, windowTitle="Reader study")

    def open_segment_editor(self, segmentation, source, segment_id: str, effects) -> None:
        layout_manager = slicer.app.layoutManager()
        if layout_manager is not None:
            layout_node = layout_manager.layoutLogic().GetLayoutNode()
            if not layout_node.IsLayoutDescription(READER_LAYOUT_ID):
                layout_node.AddLayoutDescription(READER_LAYOUT_ID, READER_LAYOUT)
            layout_manager.setLayout(READER_LAYOUT_ID)
        self.editor.setSegmentationNode(segmentation)
        self.editor.setSourceVolumeNode(source)
        self.editor.setEffectNameOrder(list(effects))
        self.editor.unorderedEffectsVisible = False
        self.editor.setCurrentSegmentID(segment_id)


class BreastTumorSegReaderWidget(ScriptedLoadableModuleWidget):
    """The study folder row, the reader panel and the Segment Editor; what must survive studies and
    scenes (editor node, scene close, application state, view observers) is
    ``slicer.gui.reader_module.ReaderModuleLifecycle``."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.lifecycle = None

    @property
    def panel(self):
        return None if self.lifecycle is None else self.lifecycle.panel

    def setup(self) -> None:
        from BreastTumorSegLib.slicer.gui.reader_module import ReaderModuleLifecycle

        ScriptedLoadableModuleWidget.setup(self)
        study_row = qt.QHBoxLayout()
        self.studyEdit = qt.QLineEdit(os.environ.get("BREASTTUMORSEG_STUDY", ""))
        self.studyEdit.placeholderText = "study folder (from the coordinator)"
        self.openStudyButton = qt.QPushButton("Open study")
        study_row.addWidget(self.studyEdit)
        study_row.addWidget(self.openStudyButton)
        self.layout.addLayout(study_row)
        self.panelFrame = qt.QWidget()
        self.layout.addWidget(self.panelFrame)
        self.editorWidget = slicer.qMRMLSegmentEditorWidget()
        self.editorWidget.setMRMLScene(slicer.mrmlScene)
        self.layout.addWidget(self.editorWidget)
        self.layout.addStretch(1)
        self.lifecycle = ReaderModuleLifecycle(qt, slicer.app, slicer.mrmlScene, self.editorWidget,
                                               self._view_interactors)
        self.openStudyButton.connect("clicked()", self.openStudy)
        if self.studyEdit.text:
            self.openStudy()

    def openStudy(self) -> None:
        from BreastTumorSegLib.slicer.gui.reader_panel import ReaderPanelController
        from BreastTumorSegLib.study.definition import load_study
        from BreastTumorSegLib.study.session import ReaderSession

        folder = self.studyEdit.text.strip()
        try:
            study = load_study(folder)
        except Exception as exc:  # noqa: BLE001 - one message for the reader
            slicer.util.errorDisplay(f"Cannot open the study.\n\n{exc}", windowTitle="Reader study")
            return
        self.lifecycle.set_panel(None)  # the open reading is saved and its lock released first
        readers = study.readers
        assigned = os.environ.get("BREASTTUMORSEG_READER")
        if assigned in readers:  # the study assigns the reader
            readers = [assigned]
        self.panelFrame.deleteLater()
        self.panelFrame = qt.QWidget()
        self.layout.insertWidget(1, self.panelFrame)
        self.lifecycle.set_panel(ReaderPanelController(qt, self.panelFrame, SlicerReaderHost(self.editorWidget),
                                                       BreastTumorSegReaderLogic(),
                                                       lambda reader: ReaderSession(study, reader), readers))

    @staticmethod
    def _view_interactors() -> list:
        layout_manager = slicer.app.layoutManager()
        if layout_manager is None:
            return []
        widgets = [layout_manager.sliceWidget(view) for _, view in HANGING_PROTOCOL]
        return [w.sliceView().interactorStyle().GetInteractor() for w in widgets if w is not None]

    def cleanup(self) -> None:
        if self.lifecycle is not None:
            self.lifecycle.cleanup()
            self.lifecycle = None


class BreastTumorSegReaderLogic(ScriptedLoadableModuleLogic, ReaderLogic):
    """The reader logic on the application's scene; see :class:`ReaderLogic`."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        ReaderLogic.__init__(self, MRMLContext.from_slicer())


class BreastTumorSegReaderTest(ScriptedLoadableModuleTest):
    """Walks one reader through three cases of a small study of phantom exams in real Slicer."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_one_reader_reads_three_cases()

    def test_one_reader_reads_three_cases(self):
        import tempfile
        from pathlib import Path

        import numpy as np
        import SimpleITK as sitk

        from BreastTumorSegLib.slicer import mrml_bridge as mb
        from BreastTumorSegLib.slicer.gui.reader_panel import ReaderPanelController
        from BreastTumorSegLib.study.coordinator import init_study, study_status
        from BreastTumorSegLib.study.session import ReaderSession
        from BreastTumorSegLib.training.phantom import make_phantom, write_phantom

        self.delayDisplay("Making a study of three phantom exams")
        root = Path(tempfile.mkdtemp(prefix="btseg-reader-"))
        rows = ["case,path"]
        for s in (2, 3, 4):
            ph = make_phantom(s, n_phases=3, motion_mm=0.0, spacing=4.0, n_tumors=1, tumor_radius_mm=9.0)
            write_phantom(ph, root / f"P{s}")
            rows.append(f"P{s},P{s}")
        (root / "cases.csv").write_text("\n".join(rows) + "\n")
        study = init_study(root / "cases.csv", ["reader1"], ["unaided"], root / "study", seed=1,
                           breast_region=False)

        frame = qt.QWidget()
        editor = slicer.qMRMLSegmentEditorWidget()
        editor.setMRMLScene(slicer.mrmlScene)
        editor.setMRMLSegmentEditorNode(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode"))
        logic = BreastTumorSegReaderLogic()
        panel = ReaderPanelController(qt, frame, SlicerReaderHost(editor), logic,
                                      lambda r: ReaderSession(study, r), ["reader1"])
        panel.start()
        self.assertEqual(panel.caseLabel.text, "case 1 of 3")
        for k in range(3):
            self.delayDisplay(panel.caseLabel.text)
            assignment = logic.view_assignment()
            self.assertTrue(assignment.get("Red", "").endswith("subtraction"), assignment)
            like = mb.volume_node_to_image(logic.nodes.source)
            mask = np.zeros(sitk.GetArrayFromImage(like).shape, np.uint8)
            mask[tuple(n // 2 for n in mask.shape)] = 1
            img = sitk.GetImageFromArray(mask)
            img.CopyInformation(like)
            mb.label_to_segmentation(logic.ctx, img, logic.nodes.segmentation, reference_node=logic.nodes.source)
            panel.submit()
        self.assertEqual(panel.caseLabel.text, "no case open")
        panel.close()
        status = study_status(study.folder)[0]
        self.assertEqual(status["done"], 3)
        self.delayDisplay("One reader read three cases; every reading submitted and locked")
