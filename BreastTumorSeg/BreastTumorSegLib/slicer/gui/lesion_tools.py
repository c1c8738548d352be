"""The panel's tools on the lesions of a result: a lesion row click (every slice view centred on the
lesion, its signal-time curve in a plot, the SER bands in the label layer), a lesion grown from a
point, and the click mode (points placed on the image add or remove tumor; Undo takes the last
one back).

A sub-controller of :class:`~.widget.PanelController` (*panel*): it wires only its own widgets and
reaches the rest through the panel: ``ui``, ``qt``, ``host``, ``logic``, ``param``, the phases
(``panel.inputs``, a :class:`~.phase_table.PhaseTable`), ``outputs()``, ``update_buttons()`` and
``changing_result()`` (its own changes of the result are not Segment Editor edits).
"""
from __future__ import annotations

import slicer

from .errors import reported
from .qtbind import connect

CLICK_ACTIONS = {"added": "added", "extended": "extended by", "removed": "removed", "cut": "cut off"}


class LesionTools:
    """Lesion row clicks, growth from a point and the click mode of one panel."""

    def __init__(self, panel):
        self.panel = panel
        self.chart = None  # plot chart node of the last lesion curve (reused)
        self.ser = None  # label map node of the SER bands (reused)
        self.click_logic = None  # ClickRefineLogic while the click mode is on
        self._click_observer = None
        ui = panel.ui
        connect(ui.lesionTableView, "clicked(QModelIndex)", self.onLesionClicked)
        connect(ui.growFromPointButton, "clicked(bool)", self.onGrowFromPoint)
        connect(ui.seedPointSelector, "currentNodeChanged(vtkMRMLNode*)", lambda _: panel.update_buttons())
        connect(ui.clickModeButton, "toggled(bool)", self.onClickMode)
        connect(ui.undoClickButton, "clicked(bool)", self.onUndoClick)

    def update_buttons(self, has_result: bool, running: bool) -> None:
        ui = self.panel.ui
        ui.growFromPointButton.setEnabled(has_result and not running and len(self.panel.inputs.phases) >= 2
                                          and ui.seedPointSelector.currentNode() is not None)
        ui.clickModeButton.setEnabled(has_result and not running)
        ui.undoClickButton.setEnabled(self.click_logic is not None
                                      and self.click_logic.clicks_node.GetNumberOfControlPoints() > 0)

    # ------------------------------------------------------------------ lesion table and growth
    def onLesionClicked(self, index) -> None:
        """A row of the lesion table was clicked: centre every slice view on that lesion."""
        panel = self.panel
        outputs = panel.outputs()
        if outputs.lesion_table is None or index.row() < 0:
            return
        if index.row() >= outputs.lesion_table.GetNumberOfRows():
            return
        panel.logic.centre_views_on(panel.logic.lesion_centroid_ras(outputs, index.row()))
        # Its signal-time curve in a plot, and the SER bands of the result in the label layer.
        phases = panel.inputs.phases
        with reported(panel.host, "The lesion's kinetics could not be measured.", panel.qt) as attempt:
            times = panel.inputs.edited_times(len(phases))
            self.chart, _ = panel.logic.lesion_curve(phases, outputs, index.row(), times, self.chart)
            self.ser = panel.logic.ser_overlay(phases, outputs, times, self.ser)
        if attempt.failed:
            return
        panel.logic.show_label_layer(self.ser)
        panel.host.show_chart(self.chart)

    def onGrowFromPoint(self) -> None:
        """Grow one lesion from the last point of the chosen point list and add it to the result."""
        panel = self.panel
        markups = panel.ui.seedPointSelector.currentNode()
        if markups is None or markups.GetNumberOfControlPoints() == 0:
            panel.host.show_error("Place a point on the lesion first.",
                                  ValueError("the point list has no points; click the lesion in a slice view"))
            return
        ras = [0.0, 0.0, 0.0]
        markups.GetNthControlPointPositionWorld(markups.GetNumberOfControlPoints() - 1, ras)
        phases = panel.inputs.phases
        with reported(panel.host, "Growing a lesion from the point failed.", panel.qt) as attempt, \
                panel.changing_result():
            summary = panel.logic.grow_from_point(phases, panel.outputs(), ras, panel.inputs.edited_times(len(phases)))
        if attempt.failed:
            return
        table = panel.param.outputLesionTable
        panel.ui.lesionTableView.setMRMLTableNode(table)
        panel.ui.statusLabel.setText(f"Lesion grown from the point ({summary['volume_ml']:.2f} mL) and added; "
                                     f"{table.GetNumberOfRows()} lesion(s).")

    # ------------------------------------------------------------------ click to correct
    def onClickMode(self, checked: bool) -> None:
        """Start (or stop) the click mode on the current result: points placed on the image
        become positive clicks, negative with Shift held or 'Not tumor' ticked."""
        if not checked:
            self.stop_click_mode()
            return
        panel, p = self.panel, self.panel.param
        with reported(panel.host, "Could not start the click mode.", panel.qt,
                      on_failure=lambda: panel.ui.clickModeButton.setChecked(False)) as attempt:
            from ..click_refine import ClickRefineLogic

            self.click_logic = ClickRefineLogic.from_scene(
                panel.logic.ctx, panel.inputs.guessed(), p.outputSegmentation, p.outputProbability,
                register=bool(p.motionCorrection), lesion_table=p.outputLesionTable)
        if attempt.failed:
            return
        node = self.click_logic.clicks_node
        self._click_observer = node.AddObserver(slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                                                self.onClickPlaced)
        panel.host.start_placing(node)
        panel.ui.statusLabel.setText("Click on the image: a point marks tumor; with Shift (or 'Not tumor') "
                                     "it marks what is not tumor.")
        panel.update_buttons()

    def stop_click_mode(self) -> None:
        cl, self.click_logic = self.click_logic, None
        if cl is not None:
            if self._click_observer is not None:
                cl.clicks_node.RemoveObserver(self._click_observer)
            self.panel.host.stop_placing()
        self._click_observer = None
        self.panel.update_buttons()

    def _negative_click(self) -> bool:
        qt = self.panel.qt
        shift = qt.QGuiApplication.queryKeyboardModifiers() & qt.Qt.ShiftModifier
        return bool(shift) or self.panel.ui.negativeClickCheckBox.isChecked()

    def onClickPlaced(self, caller=None, event=None) -> None:
        cl, panel = self.click_logic, self.panel
        if cl is None or cl.busy:
            return
        with reported(panel.host, "The click could not be applied.", panel.qt) as attempt:
            index = cl.clicks_node.GetNumberOfControlPoints() - 1
            cl.set_sign(index, not self._negative_click())
        if attempt.failed:
            return
        entry = cl.log[-1] if cl.log else {}
        action = entry.get("action", "none")
        panel.ui.statusLabel.setText(
            f"Click {entry.get('sign', '')}: " + (f"{CLICK_ACTIONS.get(action, action)} "
                                                 f"{entry.get('volume_ml', 0):.2f} mL"
                                                 if action != "none" else f"no change ({entry.get('note', '')})"))
        panel.update_buttons()

    def onUndoClick(self) -> None:
        cl, panel = self.click_logic, self.panel
        if cl is None:
            return
        with reported(panel.host, "Undo failed.", panel.qt):
            cl.undo()
        panel.update_buttons()
