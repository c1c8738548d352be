"""The panel: wires the widgets of ``Resources/UI/BreastTumorSeg.ui`` to the parameter node and the logic.

The only modules of the package that work with Qt widgets are this one and its sub-controllers
(:mod:`.phase_table`: the exam's phases; :mod:`.lesion_tools`: lesion clicks, growth from a point,
the click mode), made in :meth:`PanelController.__init__`. They do not import Qt themselves: the
module file (``BreastTumorSeg.py``) passes Slicer's ``qt`` module in (the tests pass PySide6, see
``Testing/qt_harness.py``), and the few calls the two bindings spell differently go through
:mod:`.qtbind`; what only the Slicer application does (dialogs, slice-view layers, switching to the
Segment Editor, plots in the layout) goes through a host object (:class:`~.host.SlicerHost` in Slicer).
So ``BreastTumorSegLib`` stays importable without Qt (``Testing/test_repository.py``).
It holds no computation: inputs are turned into phases, runs are started, results imported and
compared by :class:`~..logic.SegmentationLogic`. The engine runs in a background process
(:mod:`..process`) polled by a timer, so the GUI stays responsive; Apply becomes Cancel
while it runs. Every failure is shown as one readable message through :func:`.errors.reported`
(details go to the log).
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager

import slicer
import vtk

from ...core.errors import BreastTumorSegError
from .classify_panel import ClassificationPanel
from ...models.cards import default_threshold
from ...models.registry import model_card, model_summaries, needs_torch
from ..logic import POSTPROCESS_ATTRIBUTE, EngineFailed, OutputNodes, SegmentationLogic, model_card_html
from .errors import reported
from .host import SlicerHost
from .install import ensure_dependencies
from .lesion_tools import LesionTools
from .phase_table import PhaseTable
from .qtbind import connect, prop

# Every widget the panel uses (this module and its sub-controllers), with the class it must have
# (or derive from) in the .ui file. Testing/test_slicer_module.py checks this against the .ui and the code.
UI_WIDGETS = {
    "inputTypeComboBox": "QComboBox",
    "inputSequenceLabel": "QLabel",
    "inputSequenceSelector": "qMRMLNodeComboBox",
    "phaseVolumesLabel": "QLabel",
    "phaseVolumesSelector": "qMRMLCheckableNodeComboBox",
    "phaseTable": "QTableWidget",
    "phaseStatusLabel": "QLabel",
    "modelComboBox": "QComboBox",
    "modelCardLabel": "QLabel",
    "deviceComboBox": "QComboBox",
    "useModelThresholdCheckBox": "QCheckBox",
    "thresholdSliderWidget": "ctkSliderWidget",
    "motionCorrectionCheckBox": "QCheckBox",
    "outputSegmentationSelector": "qMRMLNodeComboBox",
    "outputProbabilitySelector": "qMRMLNodeComboBox",
    "outputLesionTableSelector": "qMRMLNodeComboBox",
    "applyButton": "QPushButton",
    "progressBar": "QProgressBar",
    "statusLabel": "QLabel",
    "resultsCollapsibleButton": "ctkCollapsibleButton",
    "lesionTableView": "qMRMLTableView",
    "showResultButton": "QPushButton",
    "seedPointSelector": "qMRMLNodeComboBox",
    "growFromPointButton": "QPushButton",
    "refineButton": "QPushButton",
    "clickModeButton": "QPushButton",
    "negativeClickCheckBox": "QCheckBox",
    "undoClickButton": "QPushButton",
    "compareCollapsibleButton": "ctkCollapsibleButton",
    "compareSegmentSelector": "qMRMLSegmentSelectorWidget",
    "referenceSegmentationsSelector": "qMRMLCheckableNodeComboBox",
    "compareButton": "QPushButton",
    "comparisonTableView": "qMRMLTableView",
    "installDependenciesButton": "QPushButton",
    "dependencyStatusLabel": "QLabel",
}

POLL_INTERVAL_MS = 200
RETHRESHOLD_DELAY_MS = 150  # slider steps within this time re-threshold once
EDIT_DELAY_MS = 300  # Segment Editor strokes within this time re-measure the lesions once


class PanelController:
    """Binds one panel (``ui``, from ``slicer.util.childWidgetVariables``) to a logic and a parameter node."""

    def __init__(self, ui, logic: SegmentationLogic, qt, host=None):
        self.qt = qt  # Slicer's PythonQt module (or PySide6 merged into one namespace, in the tests)
        self.host = host or SlicerHost()
        self.ui = ui
        self.logic = logic
        self.param = None  # BreastTumorSegParameterNode
        self._gui_tag = None
        self._observer = None
        self._updating = False
        self._run = None  # BackgroundRun while the engine works
        self._started = 0.0
        self._timer = self.qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        connect(self._timer, "timeout()", self._poll)
        self._rethreshold_timer = self._single_shot(RETHRESHOLD_DELAY_MS, self._rethreshold)
        self._edit_timer = self._single_shot(EDIT_DELAY_MS, self._remeasure_lesions)
        self._watched_segmentation = None
        self._segment_observer = None
        self._changing_result = False
        # Ask the engine for the motion-corrected phases as a Sequence (a full extra copy of the exam).
        self.registered_phases = False
        # Sub-controllers, one per section of the panel: each wires its own widgets. A new section
        # is made here, and says which of its buttons are enabled in update_buttons().
        self.inputs = PhaseTable(self)
        self.lesions = LesionTools(self)
        self._setup_widgets()
        self._connect()

    def _single_shot(self, ms: int, slot):
        timer = self.qt.QTimer()
        timer.setSingleShot(True)
        timer.setInterval(ms)
        connect(timer, "timeout()", slot)
        return timer

    @property
    def running(self) -> bool:
        """Whether an engine run is in progress."""
        return self._run is not None

    @property
    def ignores_widget_signals(self) -> bool:
        """True while the panel writes the parameter node into the widgets, or has no parameter node:
        a widget's signal is then an echo, not the user's input."""
        return self._updating or self.param is None

    # ------------------------------------------------------------------ set-up
    def _setup_widgets(self) -> None:
        self.ui.progressBar.setVisible(False)
        self.classification_panel = ClassificationPanel(self.qt, self.ui, self.logic)
        self.refresh_models()

    def _connect(self) -> None:
        ui = self.ui
        connect(ui.applyButton, "clicked(bool)", self.onApply)
        connect(ui.showResultButton, "clicked(bool)", self.onShow)
        connect(ui.refineButton, "clicked(bool)", self.onRefine)
        connect(ui.compareButton, "clicked(bool)", self.onCompare)
        connect(ui.installDependenciesButton, "clicked(bool)", self.onInstallDependencies)
        connect(ui.modelComboBox, "currentIndexChanged(int)", self.onModelChanged)
        connect(ui.referenceSegmentationsSelector, "checkedNodesChanged()", self.onReferencesChecked)
        connect(ui.compareSegmentSelector, "currentSegmentChanged(QString)", lambda _: self.update_buttons())

    def refresh_models(self) -> None:
        """Fill the model list from the registry (and forget the cached model cards)."""
        self._cards = {}
        combo = self.ui.modelComboBox
        was = self._updating
        self._updating = True
        try:
            combo.clear()
            for summary in model_summaries():
                combo.addItem(summary.name)
                combo.setItemData(prop(combo, "count") - 1, summary.description, self.qt.Qt.ToolTipRole)
        finally:
            self._updating = was

    # ------------------------------------------------------------------ parameter node
    def setParameterNode(self, node) -> None:
        if self.param is not None:
            if self._gui_tag is not None:
                self.param.disconnectGui(self._gui_tag)
            if self._observer is not None:
                self.param.parameterNode.RemoveObserver(self._observer)
        self.param, self._gui_tag, self._observer = node, None, None
        if node is None:
            self._watch_segmentation(None)
            return
        self._gui_tag = node.connectGui(self.ui)
        self._observer = node.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, self._on_parameters_modified)
        self._on_parameters_modified()

    def refresh(self) -> None:
        """Show the parameter node's state in every widget again."""
        self._on_parameters_modified()

    def _on_parameters_modified(self, caller=None, event=None) -> None:
        if self.ignores_widget_signals:
            return
        self._updating = True
        try:
            p, ui = self.param, self.ui
            sequence = p.inputType == "Sequence"
            for w in (ui.inputSequenceLabel, ui.inputSequenceSelector):
                w.setVisible(sequence)
            for w in (ui.phaseVolumesLabel, ui.phaseVolumesSelector):
                w.setVisible(not sequence)
            checked = {n.GetID() for n in p.phaseVolumes if n is not None}
            self._set_checked(ui.phaseVolumesSelector, checked)
            self._set_checked(ui.referenceSegmentationsSelector,
                              {n.GetID() for n in p.referenceSegmentations if n is not None})
            index = ui.modelComboBox.findText(p.model)
            if index >= 0 and index != prop(ui.modelComboBox, "currentIndex"):
                ui.modelComboBox.setCurrentIndex(index)
            self._show_model_card()
            ui.thresholdSliderWidget.setEnabled(not p.useModelThreshold)
            ui.lesionTableView.setMRMLTableNode(p.outputLesionTable)
            ui.comparisonTableView.setMRMLTableNode(p.comparisonTable)
            if p.outputSegmentation is not None and ui.compareSegmentSelector.currentNode() is None:
                ui.compareSegmentSelector.setCurrentNode(p.outputSegmentation)
            self.inputs.refresh()
            self.update_buttons()
            self._watch_segmentation(p.outputSegmentation)
            if self._run is None and self._result_threshold() not in (None, float(p.threshold)):
                self._rethreshold_timer.start()
        finally:
            self._updating = False

    def _set_checked(self, combo, ids: set[str]) -> None:
        for i in range(combo.nodeCount()):
            node = combo.nodeFromIndex(i)
            state = self.qt.Qt.Checked if node.GetID() in ids else self.qt.Qt.Unchecked
            if combo.checkState(node) != state:
                combo.setCheckState(node, state)

    def onReferencesChecked(self) -> None:
        if self.ignores_widget_signals:
            return
        self.param.referenceSegmentations = list(self.ui.referenceSegmentationsSelector.checkedNodes())

    def current_phases(self) -> list:
        """The exam selected in the panel, as phases (the "Compare with earlier visit" section's later visit)."""
        return self.inputs.guessed()

    # ------------------------------------------------------------------ model
    def onModelChanged(self, index: int) -> None:
        if self.ignores_widget_signals or index < 0:
            return
        self.param.model = self.ui.modelComboBox.itemText(index)

    def _show_model_card(self) -> None:
        name = self.param.model
        if name not in self._cards:  # read once per model; refresh_models() forgets them
            try:
                self._cards[name] = model_card(name)
            except (BreastTumorSegError, ValueError) as exc:
                self.ui.modelCardLabel.setText(str(exc))
                return
        card = self._cards[name]
        self.ui.modelCardLabel.setText(model_card_html(card))
        if self.param.useModelThreshold:
            self.param.threshold = default_threshold(card, 0.5)

    # ------------------------------------------------------------------ run
    def update_buttons(self) -> None:
        ui, p = self.ui, self.param
        running = self._run is not None
        ui.applyButton.setEnabled(running or (p is not None and len(self.inputs.phases) >= 2))
        ui.applyButton.setText("Cancel" if running else "Apply")
        has_result = p is not None and p.outputSegmentation is not None
        ui.showResultButton.setEnabled(has_result and not running)
        ui.refineButton.setEnabled(has_result and not running)
        self.lesions.update_buttons(has_result, running)
        ui.compareButton.setEnabled(ui.compareSegmentSelector.currentNode() is not None
                                    and bool(ui.compareSegmentSelector.currentSegmentID())
                                    and len(ui.referenceSegmentationsSelector.checkedNodes()) > 0)

    def onApply(self) -> None:
        if self._run is not None:
            self.cancel()
            return
        p = self.param
        with reported(self.host, "Could not start the segmentation.", self.qt) as attempt:
            phases = self.inputs.guessed()
            times = self.inputs.edited_times(len(phases))
            ensure_dependencies(need_torch=needs_torch(p.model))
            self._run = self.logic.start_background(
                phases, model=p.model, device=p.device,
                threshold=None if p.useModelThreshold else float(p.threshold),
                times_min=times, register=p.motionCorrection, registered_phases=self.registered_phases)
        if attempt.failed:
            return
        self._started = time.monotonic()
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.setVisible(True)
        self.ui.statusLabel.setText("Starting the engine...")
        self.update_buttons()
        self._timer.start()

    def cancel(self) -> None:
        """Stop a running engine (the whole process tree); nothing is put into the scene."""
        if self._run is not None:
            self.ui.statusLabel.setText("Cancelling...")
            self._run.process.cancel()

    def _poll(self) -> None:
        run = self._run
        if run is None:
            self._timer.stop()
            return
        state = run.process.poll()
        for line in state.new_lines:
            logging.info(f"[BreastTumorSeg engine] {line}")
        if state.progress is not None:
            self.ui.progressBar.setValue(int(round(100 * state.progress.fraction)))
            self.ui.statusLabel.setText(state.progress.message)
        if not state.running:
            self._timer.stop()
            self._finish(run)

    def _finish(self, run) -> None:
        p = self.param
        if p is None:  # unbound meanwhile (the scene closed): nothing to put the results into
            self._run = None
            run.cleanup()
            self.update_buttons()
            return
        try:
            outputs = self._load_results(run)
        finally:
            self._run = None
            self.ui.progressBar.setVisible(False)
            self.update_buttons()
        if outputs is None:
            return
        with slicer.util.NodeModify(p.parameterNode):
            p.outputSegmentation = outputs.segmentation
            p.outputProbability = outputs.probability
            p.outputLesionTable = outputs.lesion_table
            p.outputSubtraction = outputs.subtraction
            p.outputBreastMask = outputs.breast_mask
            p.outputRegisteredPhases = outputs.registered_phases
        n = outputs.lesion_table.GetNumberOfRows() if outputs.lesion_table else 0
        notes = "".join(f"\nWarning: {w}" for w in getattr(self.logic, "last_warnings", []))
        self.ui.statusLabel.setText(f"Done in {time.monotonic() - self._started:.0f} s: {n} lesion(s). "
                                    "Correct the result with 'Refine in Segment Editor'." + notes)
        self.ui.compareSegmentSelector.setCurrentNode(outputs.segmentation)
        self.onShow()
        self.classification_panel.update()

    def _load_results(self, run) -> OutputNodes | None:
        """The finished run's results in the scene, or None (the status line says why). A failed
        run is reported with the engine's line; a cancelled one only in the status line."""
        outputs = self.outputs()
        with reported(self.host, "Loading the results failed.",
                      on_failure=lambda: self.ui.statusLabel.setText("Loading the results failed.")):
            try:
                return self.logic.finish_background(run, outputs)
            except EngineFailed as exc:
                self.ui.statusLabel.setText(str(exc))
                if not run.process.cancelled:
                    self.host.show_error("The segmentation failed.", exc)
        return None

    # ------------------------------------------------------------------ results
    def outputs(self) -> OutputNodes:
        """The result nodes of the parameter node."""
        p = self.param
        return OutputNodes(p.outputSegmentation, p.outputProbability, p.outputLesionTable, p.outputSubtraction,
                           p.outputBreastMask, p.outputRegisteredPhases)

    def onShow(self) -> None:
        outputs = self.outputs()
        phases = self.inputs.phases
        background = outputs.subtraction or (phases[0].node if phases else None)
        self.logic.show_results(outputs, background)
        if background is not None:
            self.host.show_background(background)

    def onRefine(self) -> None:
        outputs = self.outputs()
        if outputs.segmentation is None:
            return
        phases = self.inputs.phases
        source = outputs.subtraction or (phases[1].node if len(phases) > 1 else None)
        self.host.open_segment_editor(outputs.segmentation, source, "Tumor")

    # ------------------------------------------------------------------ working on the result
    @contextmanager
    def changing_result(self):
        """The panel itself replaces the result in this block: the segment events it causes are not
        Segment Editor edits (after it, a pending re-measurement of edits is dropped)."""
        self._changing_result = True
        try:
            yield
        finally:
            self._changing_result = False
        self._edit_timer.stop()

    def _result_threshold(self) -> float | None:
        """The threshold the segmentation in the scene was made with (None without a result)."""
        p = self.param
        if p is None or p.outputSegmentation is None or p.outputProbability is None:
            return None
        text = p.outputSegmentation.GetAttribute(POSTPROCESS_ATTRIBUTE)
        return float(json.loads(text)["threshold"]) if text else None

    def _rethreshold(self) -> None:
        """The threshold changed: threshold the stored probability map again, without the model."""
        p = self.param
        if p is None or self._run is not None or self._result_threshold() in (None, float(p.threshold)):
            return
        with reported(self.host, "Re-thresholding the result failed.") as attempt, self.changing_result():
            outputs = self.logic.rethreshold(self.outputs(), float(p.threshold))
        if attempt.failed:
            return
        self.ui.lesionTableView.setMRMLTableNode(outputs.lesion_table)
        n = outputs.lesion_table.GetNumberOfRows()
        self.ui.statusLabel.setText(f"Threshold {float(p.threshold):.2f}: {n} lesion(s) (probability map "
                                    "thresholded again; the model was not re-run).")

    def _watch_segmentation(self, node) -> None:
        """Observe the result segmentation so edits in the Segment Editor update the lesion table."""
        if node is self._watched_segmentation:
            return
        if self._watched_segmentation is not None:
            for tag in self._segment_observer or []:
                self._watched_segmentation.RemoveObserver(tag)
        self._watched_segmentation, self._segment_observer = node, []
        if node is not None:
            # Segment Editor strokes modify the source (binary labelmap) representation.
            # The node re-invokes its segmentation's events.
            cls = slicer.vtkSegmentation
            self._segment_observer = [node.AddObserver(event, self._on_segment_edited)
                                      for event in (cls.SourceRepresentationModified, cls.SegmentModified)]

    def _on_segment_edited(self, caller=None, event=None) -> None:
        if not self._changing_result and self._run is None:
            self._edit_timer.start()

    def _remeasure_lesions(self) -> None:
        p = self.param
        if p is None or p.outputSegmentation is None or p.outputProbability is None or self._run is not None:
            return
        with reported(self.host, "Measuring the edited lesions failed.") as attempt:
            outputs = self.logic.lesions_from_segmentation(self.outputs())
        if attempt.failed:
            return
        self.ui.lesionTableView.setMRMLTableNode(outputs.lesion_table)
        self.ui.statusLabel.setText(f"Segmentation edited: {outputs.lesion_table.GetNumberOfRows()} lesion(s) "
                                    "measured again.")

    # ------------------------------------------------------------------ comparison, dependencies
    def onCompare(self) -> None:
        ui, p = self.ui, self.param
        with reported(self.host, "The comparison failed.", self.qt) as attempt:
            _, table = self.logic.compare(ui.compareSegmentSelector.currentNode(),
                                          list(ui.referenceSegmentationsSelector.checkedNodes()),
                                          ui.compareSegmentSelector.currentSegmentID(), p.comparisonTable)
        if attempt.failed:
            return
        p.comparisonTable = table
        ui.comparisonTableView.setMRMLTableNode(table)

    def onInstallDependencies(self) -> None:
        with reported(self.host, "Installing the dependencies failed.") as attempt:
            ensure_dependencies(need_torch=True)
        if not attempt.failed:
            self.ui.dependencyStatusLabel.setText("All dependencies are installed.")

    # ------------------------------------------------------------------ teardown
    def _stop_run(self, status: str) -> None:
        """Cancel a running engine, wait for its process tree to end and remove its temporary folder."""
        run, self._run = self._run, None
        self._timer.stop()
        if run is not None:
            run.process.cancel()
            try:
                run.process.wait(timeout=10)
            except TimeoutError:
                logging.warning("BreastTumorSeg: the engine did not stop within 10 s of cancel")
            run.cleanup()
            self.ui.statusLabel.setText(status)
        self.ui.progressBar.setVisible(False)
        self.update_buttons()

    def observe_scene(self, scene) -> None:
        """Stop the run and unbind when *scene* starts closing (``vtkMRMLScene.StartCloseEvent``)."""
        self._scene_observer = (scene, scene.AddObserver(scene.StartCloseEvent,
                                                         lambda caller, event: self.on_scene_closing()))

    def on_scene_closing(self) -> None:
        """The scene is about to close: a run's results would have no inputs to go with, so the run
        is stopped (process tree killed, temporary folder removed) and the panel unbound; Apply is
        Apply again (disabled until an exam is selected in the next scene)."""
        self._stop_run("Cancelled: the scene was closed.")
        self.setParameterNode(None)

    def cleanup(self) -> None:
        self.lesions.stop_click_mode()
        scene, tag = getattr(self, "_scene_observer", (None, None))
        if scene is not None:
            scene.RemoveObserver(tag)
            self._scene_observer = (None, None)
        self._stop_run("Cancelled.")
        self._watch_segmentation(None)
        self.setParameterNode(None)
