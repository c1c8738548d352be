"""The panel's "Compare with earlier visit" section (issue 31).

The exam selected in the panel is the later visit; the user checks the earlier exam's phase volumes
here (and may type both dates), presses *Compare visits*, and gets both visits side by side in
linked views in the earlier exam's (baseline) frame and the change tables
(:class:`~..followup_view.FollowupViewLogic` does all of it; this only wires widgets).

:func:`build_section` makes the widgets in code (the panel's .ui file stays as it is) and is used
only inside Slicer; :class:`FollowupSection` takes any objects with the widgets' few methods.
The follow-up runs in the Slicer process under a wait cursor (about a minute per pair of exams on a
CPU); unlike a segmentation it cannot be cancelled yet.
"""
from __future__ import annotations

from types import SimpleNamespace

from .qtbind import connect, wait_cursor
from ..followup_view import FollowupViewLogic


def parse_dates(text: str) -> list[str] | None:
    """``"2024-01-08, 2024-03-04"`` -> both dates; empty -> None (DICOM dates or none)."""
    dates = [d.strip() for d in (text or "").split(",") if d.strip()]
    return dates or None


class FollowupSection:
    """Binds the section's widgets to a :class:`FollowupViewLogic` and to the panel's current exam."""

    def __init__(self, widgets, panel, qt, host=None, view_logic: FollowupViewLogic | None = None):
        self.w = widgets
        self.panel = panel
        self.qt = qt
        self.host = host or panel.host
        self.view_logic = view_logic or FollowupViewLogic(panel.logic.ctx)
        self.nodes = None
        connect(self.w.compareVisitsButton, "clicked(bool)", self.onCompareVisits)

    def onCompareVisits(self, *_) -> None:
        try:
            with wait_cursor(self.qt):
                earlier = self.panel.logic.phases(volume_nodes=[n for n in self.w.earlierVolumesSelector.checkedNodes()
                                                                if n is not None])
                current = self.panel.current_phases()
                p = self.panel.param
                self.nodes, res = self.view_logic.compare(
                    [earlier, current], dates=parse_dates(self.w.visitDatesLineEdit.text), model=p.model,
                    device=p.device, nodes=self.nodes, register=p.motionCorrection)
                self.view_logic.show_linked(self.nodes)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one message
            self.host.show_error("The comparison with the earlier visit failed.", exc)
            return
        self.w.visitExamTableView.setMRMLTableNode(self.nodes.exam_table)
        self.w.visitLesionTableView.setMRMLTableNode(self.nodes.lesion_table)
        last = res.table["exams"][-1]
        self.w.visitStatusLabel.setText(f"RECIST {last['recist']}: {last['recist_reason']}")


def build_section(parent_layout, panel, qt, ctk, slicer) -> FollowupSection:
    """Add the collapsed section under *parent_layout* (inside Slicer: PythonQt, ctk, slicer widgets)."""
    box = ctk.ctkCollapsibleButton()
    box.text = "Compare with earlier visit"
    box.collapsed = True
    form = qt.QFormLayout(box)
    earlier = slicer.qMRMLCheckableNodeComboBox()
    earlier.nodeTypes = ["vtkMRMLScalarVolumeNode"]
    earlier.setMRMLScene(slicer.mrmlScene)
    earlier.toolTip = "The phase volumes of the earlier exam (the baseline): pre-contrast and post-contrast phases"
    form.addRow("Earlier exam phases:", earlier)
    dates = qt.QLineEdit()
    dates.placeholderText = "earlier, current: YYYY-MM-DD, YYYY-MM-DD (optional; DICOM dates otherwise)"
    form.addRow("Dates:", dates)
    button = qt.QPushButton("Compare visits")
    button.toolTip = ("Segment both exams, register the current one to the earlier one, match the lesions "
                      "and show both visits in linked views with the change (volume, FTV, RECIST)")
    form.addRow(button)
    status = qt.QLabel("")
    form.addRow(status)
    exams, lesions = slicer.qMRMLTableView(), slicer.qMRMLTableView()
    for view in (exams, lesions):
        view.setMRMLScene(slicer.mrmlScene)
        view.setMinimumHeight(120)
    form.addRow(exams)
    form.addRow(lesions)
    parent_layout.addWidget(box)
    widgets = SimpleNamespace(earlierVolumesSelector=earlier, visitDatesLineEdit=dates, compareVisitsButton=button,
                              visitStatusLabel=status, visitExamTableView=exams, visitLesionTableView=lesions)
    return FollowupSection(widgets, panel, qt)
