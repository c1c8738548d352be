"""Render the BreastTumorSeg panel to docs/panel.png from the running panel code, without Slicer.

The panel's own controller (``PanelController``) runs on PySide6 widgets loaded from
``Resources/UI/BreastTumorSeg.ui`` with the test harness (``Testing/qt_harness.py``: stand-ins
for Slicer's MRML/CTK widget classes) over a headless MRML scene. The demo phantom's phases are
checked in the phase selector, Apply is pressed, the engine runs in its background process with
the default model, and the panel is grabbed once the result is in: what the picture shows is
what the code put there.

    QT_QPA_PLATFORM=offscreen python docs/render_panel.py [--output docs/panel.png] [--seed 7]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))
sys.path.insert(0, str(ROOT / "Testing"))


def run_panel(seed: int, timeout_s: float = 900.0):
    """The panel after a real Apply on the demo phantom: (root widget, ui, controller)."""
    import qt_harness as qh
    from BreastTumorSegLib.models.registry import DEFAULT_MODEL
    from BreastTumorSegLib.slicer import mrml_bridge
    from BreastTumorSegLib.slicer.gui.widget import PanelController
    from BreastTumorSegLib.slicer.logic import TIME_ATTRIBUTE, SegmentationLogic
    from BreastTumorSegLib.training.phantom import make_phantom

    ph = make_phantom(seed)
    ctx = mrml_bridge.MRMLContext.headless()
    root, ui = qh.load_ui(ctx.scene)
    host = qh.RecordingHost(ctx)
    controller = PanelController(ui, SegmentationLogic(ctx), qh.qt_namespace(), host)
    controller.setParameterNode(qh.panel_parameter_node(ctx.scene))
    nodes = []
    for i, (img, t) in enumerate(zip(ph.exam.phases, ph.exam.effective_times())):
        node = mrml_bridge.image_to_volume_node(ctx, img, f"{ph.exam.case_id}_{i:04d}")
        node.SetAttribute(TIME_ATTRIBUTE, f"{t:g}")  # as a DICOM or JSON-aware loader would
        nodes.append(node)
    for node in reversed(nodes):  # checked in any order: the panel orders them
        ui.phaseVolumesSelector.setCheckState(node, qh.Qt.Checked)
    ui.modelComboBox.setCurrentIndex(ui.modelComboBox.findText(DEFAULT_MODEL))
    ui.deviceComboBox.setCurrentText("cpu")
    ui.applyButton.click()
    if not qh.process_until(lambda: not controller.running, timeout_s):
        raise SystemExit("the engine did not finish")
    if host.errors:
        raise SystemExit(host.errors[0])
    return root, ui, controller


def render(output: Path, seed: int = 7, width: int = 440) -> Path:
    from PySide6.QtWidgets import QApplication, QComboBox, QTableView, QWidget

    root, ui, controller = run_panel(seed)
    app = QApplication.instance()
    # A module panel is narrow: long texts elide or wrap instead of widening it.
    for combo in root.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(12)
    for view in (ui.phaseTable, ui.lesionTableView):
        view.verticalHeader().setVisible(False)
        view.resizeColumnsToContents()
        rows = min(view.model().rowCount(), 4)
        view.setFixedHeight(view.horizontalHeader().height() + rows * max(view.rowHeight(0), 1) + 4
                            + view.horizontalScrollBar().sizeHint().height())
    for box in (ui.compareCollapsibleButton, ui.advancedCollapsibleButton):  # collapsed, as in Slicer
        box.setCheckable(True)
        box.setChecked(False)
        box.setFlat(True)
        for child in box.findChildren(QWidget):
            if child.parent() is box:
                child.setVisible(False)
        box.setFixedHeight(box.fontMetrics().height() + 8)
    ui.comparisonTableView.setVisible(False)
    root.setFixedWidth(width)
    root.show()
    app.processEvents()
    root.setFixedHeight(root.heightForWidth(width) if root.hasHeightForWidth() else root.sizeHint().height())
    app.processEvents()
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".png", dir=output.parent, delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        if not root.grab().save(str(tmp_path), "PNG"):
            raise SystemExit(f"could not write {output}")
        os.replace(tmp_path, output)
    finally:
        tmp_path.unlink(missing_ok=True)
    controller.cleanup()
    import qt_harness

    qt_harness.close_ui(root)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "panel.png")
    parser.add_argument("--seed", type=int, default=7, help="demo phantom seed")
    args = parser.parse_args(argv)
    print(render(args.output, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
