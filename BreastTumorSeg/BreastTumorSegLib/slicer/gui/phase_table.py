"""The panel's exam section: which volumes (or which Sequence) are the phases, in which order and
at which times, shown in the phase table for the user to confirm; editing a time reorders them.

A sub-controller of :class:`~.widget.PanelController` (*panel*): it wires only its own widgets and
reads the panel's ``ui``, ``qt``, ``host``, ``logic`` and parameter node (``param``) through it.
The panel and its other sub-controllers take the phases from here (:attr:`PhaseTable.phases`,
:meth:`PhaseTable.guessed`, :meth:`PhaseTable.edited_times`).
"""
from __future__ import annotations

import slicer

from ...core.errors import BreastTumorSegError
from ..phases import Phase
from .qtbind import connect, prop

TIME_COLUMN = 2


class PhaseTable:
    """The phases of the selected exam, as guessed by the logic and confirmed in the table."""

    def __init__(self, panel):
        self.panel = panel
        self.phases: list[Phase] = []  # as shown in the table
        self.invalidate()
        ui = panel.ui
        ui.phaseTable.verticalHeader().setVisible(False)
        ui.phaseTable.horizontalHeader().setStretchLastSection(True)
        connect(ui.phaseVolumesSelector, "checkedNodesChanged()", self.onPhaseVolumesChecked)
        connect(ui.phaseTable, "cellChanged(int,int)", self.onPhaseCellChanged)

    def onPhaseVolumesChecked(self) -> None:
        panel = self.panel
        if panel.ignores_widget_signals:
            return
        nodes = list(panel.ui.phaseVolumesSelector.checkedNodes())
        self.invalidate()
        # Order as guessed (DICOM times, names), so the table shows pre-contrast first.
        ordered = [ph.node for ph in panel.logic.phases(volume_nodes=nodes)]
        with slicer.util.NodeModify(panel.param.parameterNode):
            panel.param.phaseVolumes = ordered
            panel.param.phaseTimesMin = ""

    def invalidate(self) -> None:
        """Forget the cached phase guesses (explicit events: inputs re-checked, times edited, refresh)."""
        self._key, self._cache = None, []

    def guessed(self) -> list[Phase]:
        """The phases as guessed, cached per selection: parameter changes (a slider step) do not
        re-read nodes or re-query the DICOM database; a different selection is a new key."""
        p = self.panel.param
        key = (p.inputType, p.inputSequence.GetID() if p.inputSequence is not None else None,
               tuple(n.GetID() for n in p.phaseVolumes if n is not None))
        if key != self._key:
            phases = self._guess_now()
            self._key, self._cache = key, phases
        return list(self._cache)

    def _guess_now(self) -> list[Phase]:
        p, logic = self.panel.param, self.panel.logic
        if p.inputType == "Sequence":
            return logic.phases(sequence_node=p.inputSequence) if p.inputSequence is not None else []
        nodes = [n for n in p.phaseVolumes if n is not None]
        guessed = {ph.node.GetID(): ph for ph in logic.phases(volume_nodes=nodes)}
        # Keep the confirmed order stored in the parameter node; times and sources from the guess.
        return [guessed[n.GetID()] for n in nodes]

    def edited_times(self, n: int) -> list[float | None] | None:
        """The times (minutes) as edited in the table for *n* phases, or None when not edited."""
        text = (self.panel.param.phaseTimesMin or "").strip()
        if not text:
            return None
        values = [v.strip() for v in text.split(",")]
        if len(values) != n:
            return None
        return [None if v in ("", "?", "nan") else float(v) for v in values]

    def refresh(self) -> None:
        """Guess the phases of the selection again (from the cache when unchanged) and show them."""
        ui, qt = self.panel.ui, self.panel.qt
        try:
            self.phases = self.guessed()
            error = ""
        except (BreastTumorSegError, ValueError) as exc:
            self.phases, error = [], str(exc)
        times = self.edited_times(len(self.phases)) or [ph.time_min for ph in self.phases]
        table = ui.phaseTable
        table.blockSignals(True)
        try:
            table.setRowCount(len(self.phases))
            for row, (ph, t) in enumerate(zip(self.phases, times)):
                cells = ["pre" if row == 0 else f"post {row}", ph.name, "?" if t is None else f"{t:.2f}",
                         "edited" if self.edited_times(len(self.phases)) else ph.source]
                for col, text in enumerate(cells):
                    item = qt.QTableWidgetItem(text)
                    if col != TIME_COLUMN:
                        item.setFlags(item.flags() & ~qt.Qt.ItemIsEditable)
                    table.setItem(row, col, item)
            table.resizeColumnsToContents()
        finally:
            table.blockSignals(False)
        if error:
            ui.phaseStatusLabel.setText(error)
        elif not self.phases:
            ui.phaseStatusLabel.setText("Select the exam: a Sequence node, or the pre- and post-contrast volumes.")
        else:
            known = all(t is not None for t in times)
            ui.phaseStatusLabel.setText(
                f"{len(self.phases)} phases; " + ("times known." if known else
                                                  "times unknown: the engine assumes 1.5 min spacing.")
                + " Check the order (pre-contrast first) before Apply; edit a time to reorder.")

    def onPhaseCellChanged(self, row: int, column: int) -> None:
        panel = self.panel
        if panel.ignores_widget_signals or column != TIME_COLUMN:
            return
        p, table = panel.param, panel.ui.phaseTable
        texts = [table.item(r, TIME_COLUMN).text().strip() for r in range(prop(table, "rowCount"))]
        try:
            times = [None if t in ("", "?") else float(t) for t in texts]
        except ValueError:
            panel.host.show_error("Phase times are minutes.", ValueError(f"'{texts[row]}' is not a time in minutes."))
            panel.refresh()
            return
        nodes = [ph.node for ph in self.phases]
        if p.inputType == "Volumes" and all(t is not None for t in times):
            order = sorted(range(len(nodes)), key=lambda i: times[i])
            nodes, times = [nodes[i] for i in order], [times[i] for i in order]
            t0 = times[0]
            times = [t - t0 for t in times]
        with slicer.util.NodeModify(p.parameterNode):
            if p.inputType == "Volumes":
                p.phaseVolumes = nodes
            p.phaseTimesMin = ", ".join("?" if t is None else f"{t:g}" for t in times)
