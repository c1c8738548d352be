"""The panel's per-breast malignancy line and heatmap toggle, under the lesion table.

Built in code (no ``.ui`` change): a label with the L/R probabilities of the last result
(:class:`~..classify_view.ClassificationNodes`) and a check box that shows or hides the heatmap
as the slice views' colour foreground layer (:func:`~..classify_view.show_heatmap`). Qt comes in
from the caller (Slicer's ``qt`` or PySide6 in the tests), as for the rest of the panel.
"""
from __future__ import annotations

from .. import classify_view
from .qtbind import connect

NOT_COMPUTED = "P(malignant): not computed (run the segmentation)"


class ClassificationPanel:
    def __init__(self, qt, ui, logic):
        self.logic = logic
        self.label = qt.QLabel(NOT_COMPUTED)
        self.label.setWordWrap(True)
        self.toggle = qt.QCheckBox("Show malignancy heatmap")
        self.toggle.setEnabled(False)
        layout = ui.resultsCollapsibleButton.layout()
        at = layout.indexOf(ui.lesionTableView) + 1
        layout.insertWidget(at, self.label)
        layout.insertWidget(at + 1, self.toggle)
        connect(self.toggle, "toggled(bool)", self.onToggled)

    def update(self) -> None:
        """Show the logic's last classification (or say there is none)."""
        nodes = self.logic.classification
        self.label.setText(NOT_COMPUTED if nodes is None else nodes.probability_text())
        self.toggle.setEnabled(nodes is not None and nodes.heatmap is not None)
        if nodes is not None and self.toggle.isChecked():
            classify_view.show_heatmap(self.logic.ctx, nodes, True)

    def onToggled(self, checked: bool) -> None:
        classify_view.show_heatmap(self.logic.ctx, self.logic.classification, bool(checked))
