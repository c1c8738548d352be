"""The panel: wires the widgets of ``Resources/UI/BreastTumorSeg.ui`` to the parameter node and the logic.

The only module of the package that works with Qt widgets. It does not import Qt itself: the
module file (``BreastTumorSeg.py``) passes Slicer's ``qt`` module in (the tests pass PySide6, see
``Testing/qt_harness.py``), and the few calls the two bindings spell differently go through
:mod:`.qtbind`; what only the Slicer application does (dialogs, slice-view layers, switching to the
Segment Editor, plots in the layout) goes through a host object (:class:`SlicerHost` in Slicer).
So ``BreastTumorSegLib`` stays importable without Qt (``Testing/test_repository.py``).
It holds no computation: inputs are turned into phases, runs are started, results imported and
compared by :class:`~..logic.SegmentationLogic`. The engine runs in a background process
(:mod:`..process`) polled by a timer, so the GUI stays responsive; Apply becomes Cancel
while it runs. Errors are shown as one readable message (details go to the log).
"""
from __future__ import annotations

import json
import logging
import time
import traceback

import slicer
import vtk

from ...core.errors import BreastTumorSegError
from .install import DependencyError, ensure_dependencies
from .qtbind import connect, prop, wait_cursor
from ...models.cards import default_threshold
from ...models.registry import model_card, model_summaries, needs_torch
from ..logic import POSTPROCESS_ATTRIBUTE, EngineFailed, OutputNodes, Phase, SegmentationLogic, model_card_html

# Every widget this module uses, with the class it must have (or derive from) in the .ui file.
# Testing/test_slicer_module.py checks this against the .ui and against the code below.
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
_TIME_COLUMN = 2


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
        self._phases: list[Phase] = []
        self._run = None  # BackgroundRun while the engine works
        self._click_logic = None  # ClickRefineLogic while the click mode is on
        self._click_observer = None
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
        self.invalidate_inputs()
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

    # ------------------------------------------------------------------ set-up
    def _setup_widgets(self) -> None:
        ui = self.ui
        table = ui.phaseTable
        table.verticalHeader().setVisible(False)
        table.horizontalHeader().setStretchLastSection(True)
        ui.progressBar.setVisible(False)
        self.refresh_models()

    def _connect(self) -> None:
        ui = self.ui
        connect(ui.applyButton, "clicked(bool)", self.onApply)
        connect(ui.showResultButton, "clicked(bool)", self.onShow)
        connect(ui.refineButton, "clicked(bool)", self.onRefine)
        connect(ui.compareButton, "clicked(bool)", self.onCompare)
        connect(ui.installDependenciesButton, "clicked(bool)", self.onInstallDependencies)
        connect(ui.modelComboBox, "currentIndexChanged(int)", self.onModelChanged)
        connect(ui.phaseVolumesSelector, "checkedNodesChanged()", self.onPhaseVolumesChecked)
        connect(ui.referenceSegmentationsSelector, "checkedNodesChanged()", self.onReferencesChecked)
        connect(ui.compareSegmentSelector, "currentSegmentChanged(QString)", lambda _: self._update_buttons())
        connect(ui.phaseTable, "cellChanged(int,int)", self.onPhaseCellChanged)
        connect(ui.lesionTableView, "clicked(QModelIndex)", self.onLesionClicked)
        connect(ui.growFromPointButton, "clicked(bool)", self.onGrowFromPoint)
        connect(ui.seedPointSelector, "currentNodeChanged(vtkMRMLNode*)", lambda _: self._update_buttons())
        connect(ui.clickModeButton, "toggled(bool)", self.onClickMode)
        connect(ui.undoClickButton, "clicked(bool)", self.onUndoClick)

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

    def _on_parameters_modified(self, caller=None, event=None) -> None:
        if self._updating or self.param is None:
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
            self._refresh_phases()
            self._update_buttons()
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

    # ------------------------------------------------------------------ inputs and the phase table
    def onPhaseVolumesChecked(self) -> None:
        if self._updating or self.param is None:
            return
        nodes = list(self.ui.phaseVolumesSelector.checkedNodes())
        self.invalidate_inputs()
        # Order as guessed (DICOM times, names), so the table shows pre-contrast first.
        ordered = [ph.node for ph in self.logic.phases(volume_nodes=nodes)]
        with slicer.util.NodeModify(self.param.parameterNode):
            self.param.phaseVolumes = ordered
            self.param.phaseTimesMin = ""

    def onReferencesChecked(self) -> None:
        if self._updating or self.param is None:
            return
        self.param.referenceSegmentations = list(self.ui.referenceSegmentationsSelector.checkedNodes())

    def invalidate_inputs(self) -> None:
        """Forget the cached phase guesses (explicit events: inputs re-checked, times edited, refresh)."""
        self._phase_key, self._phase_cache = None, []

    def _guessed_phases(self) -> list[Phase]:
        """The phases as guessed, cached per selection: parameter changes (a slider step) do not
        re-read nodes or re-query the DICOM database; a different selection is a new key."""
        p = self.param
        key = (p.inputType, p.inputSequence.GetID() if p.inputSequence is not None else None,
               tuple(n.GetID() for n in p.phaseVolumes if n is not None))
        if key != self._phase_key:
            phases = self._guess_phases_now()
            self._phase_key, self._phase_cache = key, phases
        return list(self._phase_cache)

    def current_phases(self) -> list[Phase]:
        """The exam selected in the panel, as phases (the "Compare with earlier visit" section's later visit)."""
        return self._guessed_phases()

    def _guess_phases_now(self) -> list[Phase]:
        p = self.param
        if p.inputType == "Sequence":
            return self.logic.phases(sequence_node=p.inputSequence) if p.inputSequence is not None else []
        nodes = [n for n in p.phaseVolumes if n is not None]
        guessed = {ph.node.GetID(): ph for ph in self.logic.phases(volume_nodes=nodes)}
        # Keep the confirmed order stored in the parameter node; times and sources from the guess.
        return [guessed[n.GetID()] for n in nodes]

    def _edited_times(self, n: int) -> list[float | None] | None:
        text = (self.param.phaseTimesMin or "").strip()
        if not text:
            return None
        values = [v.strip() for v in text.split(",")]
        if len(values) != n:
            return None
        return [None if v in ("", "?", "nan") else float(v) for v in values]

    def _refresh_phases(self) -> None:
        ui = self.ui
        try:
            self._phases = self._guessed_phases()
            error = ""
        except (BreastTumorSegError, ValueError) as exc:
            self._phases, error = [], str(exc)
        times = self._edited_times(len(self._phases)) or [ph.time_min for ph in self._phases]
        table = ui.phaseTable
        table.blockSignals(True)
        try:
            table.setRowCount(len(self._phases))
            for row, (ph, t) in enumerate(zip(self._phases, times)):
                cells = ["pre" if row == 0 else f"post {row}", ph.name, "?" if t is None else f"{t:.2f}",
                         "edited" if self._edited_times(len(self._phases)) else ph.source]
                for col, text in enumerate(cells):
                    item = self.qt.QTableWidgetItem(text)
                    if col != _TIME_COLUMN:
                        item.setFlags(item.flags() & ~self.qt.Qt.ItemIsEditable)
                    table.setItem(row, col, item)
            table.resizeColumnsToContents()
        finally:
            table.blockSignals(False)
        if error:
            ui.phaseStatusLabel.setText(error)
        elif not self._phases:
            ui.phaseStatusLabel.setText("Select the exam: a Sequence node, or the pre- and post-contrast volumes.")
        else:
            known = all(t is not None for t in times)
            ui.phaseStatusLabel.setText(
                f"{len(self._phases)} phases; " + ("times known." if known else
                                                   "times unknown: the engine assumes 1.5 min spacing.")
                + " Check the order (pre-contrast first) before Apply; edit a time to reorder.")

    def onPhaseCellChanged(self, row: int, column: int) -> None:
        if self._updating or self.param is None or column != _TIME_COLUMN:
            return
        table = self.ui.phaseTable
        texts = [table.item(r, _TIME_COLUMN).text().strip() for r in range(prop(table, "rowCount"))]
        try:
            times = [None if t in ("", "?") else float(t) for t in texts]
        except ValueError:
            self.host.show_error("Phase times are minutes.", ValueError(f"'{texts[row]}' is not a time in minutes."))
            self._on_parameters_modified()
            return
        nodes = [ph.node for ph in self._phases]
        if self.param.inputType == "Volumes" and all(t is not None for t in times):
            order = sorted(range(len(nodes)), key=lambda i: times[i])
            nodes, times = [nodes[i] for i in order], [times[i] for i in order]
            t0 = times[0]
            times = [t - t0 for t in times]
        with slicer.util.NodeModify(self.param.parameterNode):
            if self.param.inputType == "Volumes":
                self.param.phaseVolumes = nodes
            self.param.phaseTimesMin = ", ".join("?" if t is None else f"{t:g}" for t in times)

    # ------------------------------------------------------------------ model
    def onModelChanged(self, index: int) -> None:
        if self._updating or self.param is None or index < 0:
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
    def _update_buttons(self) -> None:
        ui, p = self.ui, self.param
        running = self._run is not None
        ui.applyButton.setEnabled(running or (p is not None and len(self._phases) >= 2))
        ui.applyButton.setText("Cancel" if running else "Apply")
        has_result = p is not None and p.outputSegmentation is not None
        ui.showResultButton.setEnabled(has_result and not running)
        ui.refineButton.setEnabled(has_result and not running)
        ui.growFromPointButton.setEnabled(has_result and not running and len(self._phases) >= 2
                                          and ui.seedPointSelector.currentNode() is not None)
        ui.clickModeButton.setEnabled(has_result and not running)
        ui.undoClickButton.setEnabled(self._click_logic is not None
                                      and self._click_logic.clicks_node.GetNumberOfControlPoints() > 0)
        ui.compareButton.setEnabled(ui.compareSegmentSelector.currentNode() is not None
                                    and bool(ui.compareSegmentSelector.currentSegmentID())
                                    and len(ui.referenceSegmentationsSelector.checkedNodes()) > 0)

    def onApply(self) -> None:
        if self._run is not None:
            self.cancel()
            return
        p = self.param
        try:
            with wait_cursor(self.qt):
                phases = self._guessed_phases()
                times = self._edited_times(len(phases))
                ensure_dependencies(need_torch=needs_torch(p.model))
                self._run = self.logic.start_background(
                    phases, model=p.model, device=p.device,
                    threshold=None if p.useModelThreshold else float(p.threshold),
                    times_min=times, register=p.motionCorrection, registered_phases=self.registered_phases)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one message
            self._run = None
            self.host.show_error("Could not start the segmentation.", exc)
            return
        self._started = time.monotonic()
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.setVisible(True)
        self.ui.statusLabel.setText("Starting the engine...")
        self._update_buttons()
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
            self._update_buttons()
            return
        outputs = self._outputs()
        try:
            outputs = self.logic.finish_background(run, outputs)
        except EngineFailed as exc:
            self.ui.statusLabel.setText(str(exc))
            if not run.process.cancelled:
                self.host.show_error("The segmentation failed.", exc)
            return
        except Exception as exc:  # noqa: BLE001
            self.ui.statusLabel.setText("Loading the results failed.")
            self.host.show_error("Loading the results failed.", exc)
            return
        finally:
            self._run = None
            self.ui.progressBar.setVisible(False)
            self._update_buttons()
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

    # ------------------------------------------------------------------ results
    def _outputs(self) -> OutputNodes:
        p = self.param
        return OutputNodes(p.outputSegmentation, p.outputProbability, p.outputLesionTable, p.outputSubtraction,
                           p.outputBreastMask, p.outputRegisteredPhases)

    def onShow(self) -> None:
        outputs = self._outputs()
        background = outputs.subtraction or (self._phases[0].node if self._phases else None)
        self.logic.show_results(outputs, background)
        if background is not None:
            self.host.show_background(background)

    def onRefine(self) -> None:
        outputs = self._outputs()
        if outputs.segmentation is None:
            return
        source = outputs.subtraction or (self._phases[1].node if len(self._phases) > 1 else None)
        self.host.open_segment_editor(outputs.segmentation, source, "Tumor")

    # ------------------------------------------------------------------ working on the result
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
        self._changing_result = True
        try:
            outputs = self.logic.rethreshold(self._outputs(), float(p.threshold))
        except Exception as exc:  # noqa: BLE001
            self.host.show_error("Re-thresholding the result failed.", exc)
            return
        finally:
            self._changing_result = False
        self._edit_timer.stop()
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
        try:
            outputs = self.logic.lesions_from_segmentation(self._outputs())
        except Exception as exc:  # noqa: BLE001
            self.host.show_error("Measuring the edited lesions failed.", exc)
            return
        self.ui.lesionTableView.setMRMLTableNode(outputs.lesion_table)
        self.ui.statusLabel.setText(f"Segmentation edited: {outputs.lesion_table.GetNumberOfRows()} lesion(s) "
                                    "measured again.")

    def onLesionClicked(self, index) -> None:
        """A row of the lesion table was clicked: centre every slice view on that lesion."""
        outputs = self._outputs()
        if outputs.lesion_table is None or index.row() < 0:
            return
        if index.row() >= outputs.lesion_table.GetNumberOfRows():
            return
        self.logic.centre_views_on(self.logic.lesion_centroid_ras(outputs, index.row()))
        # Its signal-time curve in a plot, and the SER bands of the result in the label layer.
        try:
            with wait_cursor(self.qt):
                times = self._edited_times(len(self._phases))
                self._chart, _ = self.logic.lesion_curve(self._phases, outputs, index.row(), times,
                                                         getattr(self, "_chart", None))
                self._ser = self.logic.ser_overlay(self._phases, outputs, times, getattr(self, "_ser", None))
        except Exception as exc:  # noqa: BLE001
            self.host.show_error("The lesion's kinetics could not be measured.", exc)
            return
        self.logic.show_label_layer(self._ser)
        self.host.show_chart(self._chart)

    def onGrowFromPoint(self) -> None:
        """Grow one lesion from the last point of the chosen point list and add it to the result."""
        markups = self.ui.seedPointSelector.currentNode()
        if markups is None or markups.GetNumberOfControlPoints() == 0:
            self.host.show_error("Place a point on the lesion first.",
                                 ValueError("the point list has no points; click the lesion in a slice view"))
            return
        ras = [0.0, 0.0, 0.0]
        markups.GetNthControlPointPositionWorld(markups.GetNumberOfControlPoints() - 1, ras)
        self._changing_result = True
        try:
            with wait_cursor(self.qt):
                summary = self.logic.grow_from_point(self._phases, self._outputs(), ras,
                                                     self._edited_times(len(self._phases)))
        except Exception as exc:  # noqa: BLE001
            self.host.show_error("Growing a lesion from the point failed.", exc)
            return
        finally:
            self._changing_result = False
        self._edit_timer.stop()
        self.ui.lesionTableView.setMRMLTableNode(self.param.outputLesionTable)
        self.ui.statusLabel.setText(f"Lesion grown from the point ({summary['volume_ml']:.2f} mL) and added; "
                                    f"{self.param.outputLesionTable.GetNumberOfRows()} lesion(s).")
    # ------------------------------------------------------------------ click to correct
    def onClickMode(self, checked: bool) -> None:
        """Start (or stop) the click mode on the current result: points placed on the image
        become positive clicks, negative with Shift held or 'Not tumor' ticked."""
        if not checked:
            self._stop_click_mode()
            return
        p = self.param
        try:
            with wait_cursor(self.qt):
                from ..click_refine import ClickRefineLogic

                self._click_logic = ClickRefineLogic.from_scene(
                    self.logic.ctx, self._guessed_phases(), p.outputSegmentation, p.outputProbability,
                    register=bool(p.motionCorrection), lesion_table=p.outputLesionTable)
        except Exception as exc:  # noqa: BLE001
            self._click_logic = None
            self.ui.clickModeButton.setChecked(False)
            self.host.show_error("Could not start the click mode.", exc)
            return
        node = self._click_logic.clicks_node
        self._click_observer = node.AddObserver(slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                                                self.onClickPlaced)
        self.host.start_placing(node)
        self.ui.statusLabel.setText("Click on the image: a point marks tumor; with Shift (or 'Not tumor') "
                                    "it marks what is not tumor.")
        self._update_buttons()

    def _stop_click_mode(self) -> None:
        cl, self._click_logic = self._click_logic, None
        if cl is not None:
            if self._click_observer is not None:
                cl.clicks_node.RemoveObserver(self._click_observer)
            self.host.stop_placing()
        self._click_observer = None
        self._update_buttons()

    def _negative_click(self) -> bool:
        shift = self.qt.QGuiApplication.queryKeyboardModifiers() & self.qt.Qt.ShiftModifier
        return bool(shift) or self.ui.negativeClickCheckBox.isChecked()

    def onClickPlaced(self, caller=None, event=None) -> None:
        cl = self._click_logic
        if cl is None or cl.busy:
            return
        try:
            with wait_cursor(self.qt):
                index = cl.clicks_node.GetNumberOfControlPoints() - 1
                cl.set_sign(index, not self._negative_click())
        except Exception as exc:  # noqa: BLE001
            self.host.show_error("The click could not be applied.", exc)
            return
        entry = cl.log[-1] if cl.log else {}
        what = {"added": "added", "extended": "extended by", "removed": "removed", "cut": "cut off"}
        action = entry.get("action", "none")
        self.ui.statusLabel.setText(
            f"Click {entry.get('sign', '')}: " + (f"{what.get(action, action)} {entry.get('volume_ml', 0):.2f} mL"
                                                 if action != "none" else f"no change ({entry.get('note', '')})"))
        self._update_buttons()

    def onUndoClick(self) -> None:
        cl = self._click_logic
        if cl is None:
            return
        try:
            with wait_cursor(self.qt):
                cl.undo()
        except Exception as exc:  # noqa: BLE001
            self.host.show_error("Undo failed.", exc)
        self._update_buttons()

    def onCompare(self) -> None:
        ui, p = self.ui, self.param
        try:
            with wait_cursor(self.qt):
                _, table = self.logic.compare(ui.compareSegmentSelector.currentNode(),
                                              list(ui.referenceSegmentationsSelector.checkedNodes()),
                                              ui.compareSegmentSelector.currentSegmentID(), p.comparisonTable)
        except Exception as exc:  # noqa: BLE001
            self.host.show_error("The comparison failed.", exc)
            return
        p.comparisonTable = table
        ui.comparisonTableView.setMRMLTableNode(table)

    def onInstallDependencies(self) -> None:
        try:
            ensure_dependencies(need_torch=True)
        except Exception as exc:  # noqa: BLE001
            self.host.show_error("Installing the dependencies failed.", exc)
            return
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
        self._update_buttons()

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
        self._stop_click_mode()
        scene, tag = getattr(self, "_scene_observer", (None, None))
        if scene is not None:
            scene.RemoveObserver(tag)
            self._scene_observer = (None, None)
        self._stop_run("Cancelled.")
        self._watch_segmentation(None)
        self.setParameterNode(None)
