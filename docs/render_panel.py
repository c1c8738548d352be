"""Render the BreastTumorSeg panel (Resources/UI/BreastTumorSeg.ui) to docs/panel.png without Slicer.

The .ui uses Slicer and CTK widgets that plain Qt does not have, so a temporary copy of the
file is rewritten with each of them replaced by the Qt class it looks most like (a node combo
box becomes a QComboBox, a collapsible button a QGroupBox, ...). The panel is then loaded with
PySide6's QUiLoader on the offscreen platform, filled with the state after a real run of the
module logic (``SegmentationLogic`` on a headless MRML scene) on the demo phantom with the default
model, and grabbed to a PNG.

    QT_QPA_PLATFORM=offscreen python docs/render_panel.py [--output docs/panel.png]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
UI_FILE = ROOT / "BreastTumorSeg" / "Resources" / "UI" / "BreastTumorSeg.ui"

# Slicer/CTK class -> the plain Qt class that stands in for it in the picture.
STAND_INS = {
    "qMRMLWidget": "QWidget",
    "ctkCollapsibleButton": "QGroupBox",
    "qMRMLNodeComboBox": "QComboBox",
    "qMRMLCheckableNodeComboBox": "QComboBox",
    "qMRMLSegmentSelectorWidget": "QComboBox",
    "ctkSliderWidget": "QDoubleSpinBox",
    "qMRMLTableView": "QTableWidget",
}
# Properties of the Slicer classes that their stand-ins do not have.
SLICER_ONLY_PROPERTIES = {"nodeTypes", "showChildNodeTypes", "noneEnabled", "addEnabled", "removeEnabled",
                          "renameEnabled", "baseName", "collapsed", "pageStep", "text"}


def plain_qt_ui(ui_text: str) -> str:
    """The .ui text with Slicer/CTK widgets replaced by Qt stand-ins."""
    import xml.etree.ElementTree as ET

    tree = ET.ElementTree(ET.fromstring(ui_text))
    root = tree.getroot()
    for w in root.iter("widget"):
        cls = w.get("class")
        if cls in STAND_INS:
            new = STAND_INS[cls]
            for p in list(w.findall("property")):
                name = p.get("name")
                if name in SLICER_ONLY_PROPERTIES and not (new == "QGroupBox" and name == "text"):
                    w.remove(p)
                elif new == "QGroupBox" and name == "text":
                    p.set("name", "title")
            w.set("class", new)
    for section in ("customwidgets", "connections"):
        el = root.find(section)
        if el is not None:
            root.remove(el)
    return ET.tostring(root, encoding="unicode")


def example_run(seed: int = 7) -> dict:
    """A real run of the module logic on the demo phantom, in a headless MRML scene.

    The picture then shows what the panel shows after Apply: the phase table as the logic guessed
    it, the installed models with the chosen one's card, and the lesion table of the result.
    """
    sys.path.insert(0, str(ROOT / "BreastTumorSeg"))
    from BreastTumorSegLib.slicer import mrml_bridge
    from BreastTumorSegLib.models.registry import DEFAULT_MODEL, model_card, model_summaries
    from BreastTumorSegLib.training.phantom import make_phantom
    from BreastTumorSegLib.slicer.logic import SegmentationLogic, TIME_ATTRIBUTE, model_card_html

    ph = make_phantom(seed)
    ctx = mrml_bridge.MRMLContext.headless()
    nodes = []
    for i, (img, t) in enumerate(zip(ph.exam.phases, ph.exam.effective_times())):
        node = mrml_bridge.image_to_volume_node(ctx, img, f"{ph.exam.case_id}_{i:04d}")
        node.SetAttribute(TIME_ATTRIBUTE, f"{t:g}")  # as a DICOM or JSON-aware loader would
        nodes.append(node)
    logic = SegmentationLogic(ctx)
    phases = logic.phases(volume_nodes=list(reversed(nodes)))  # the logic restores the order
    models = [summary.name for summary in model_summaries()]
    model = DEFAULT_MODEL if DEFAULT_MODEL in models else models[0]  # what the panel starts with
    t0 = time.perf_counter()
    outputs, result = logic.segment(phases, model=model, device="cpu")
    elapsed = time.perf_counter() - t0
    table = outputs.lesion_table.GetTable()
    columns = [table.GetColumn(c).GetName() for c in range(4)]
    lesions = [[table.GetValue(r, c).ToString() for c in range(4)] for r in range(table.GetNumberOfRows())]
    for row in lesions:
        row[2], row[3] = f"{float(row[2]):.2f}", f"{float(row[3]):.1f}"
    return {
        "phases": [("pre" if i == 0 else f"post {i}", ph.name, f"{ph.time_min:.2f}", ph.source)
                   for i, ph in enumerate(phases)],
        "models": models, "model": model, "card": model_card_html(model_card(model)),
        "threshold": result.settings["postprocess"]["threshold"],
        "segmentation": outputs.segmentation.GetName(), "probability": outputs.probability.GetName(),
        "table": outputs.lesion_table.GetName(), "columns": columns, "lesions": lesions,
        "status": f"Done in {elapsed:.0f} s: {len(lesions)} lesion(s). Correct the result with "
                  "'Refine in Segment Editor'.",
    }


def fill_panel(panel, run: dict) -> None:
    """Put the state after *run* into the widgets, as the module's widget code would."""
    from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QGroupBox, QLabel, QProgressBar,
                                   QPushButton, QTableWidget, QTableWidgetItem, QWidget)

    def find(cls, name):
        w = panel.findChild(cls, name)
        if w is None:
            raise SystemExit(f"{UI_FILE}: widget {name} ({cls.__name__}) not found")
        return w

    find(QComboBox, "inputTypeComboBox").addItems(["Volumes", "Sequence"])
    for name in ("inputSequenceLabel", "inputSequenceSelector"):  # hidden when the input is volumes
        find(QWidget, name).setVisible(False)
    find(QComboBox, "phaseVolumesSelector").addItem(", ".join(p[1] for p in run["phases"]))
    table = find(QTableWidget, "phaseTable")
    table.setRowCount(len(run["phases"]))
    for r, row in enumerate(run["phases"]):
        for c, text in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(text))
    table.resizeColumnsToContents()
    table.setFixedHeight(table.horizontalHeader().height() + len(run["phases"]) * table.rowHeight(0) + 4)
    find(QLabel, "phaseStatusLabel").setText(
        f"{len(run['phases'])} phases; times known. Check the order (pre-contrast first) before Apply; "
        "edit a time to reorder.")
    models = find(QComboBox, "modelComboBox")
    models.addItems(run["models"])
    models.setCurrentText(run["model"])
    find(QLabel, "modelCardLabel").setText(run["card"])
    find(QComboBox, "deviceComboBox").addItems(["auto", "cpu", "cuda"])
    find(QCheckBox, "useModelThresholdCheckBox").setChecked(True)
    threshold = find(QDoubleSpinBox, "thresholdSliderWidget")
    threshold.setValue(run["threshold"])
    threshold.setEnabled(False)
    find(QCheckBox, "motionCorrectionCheckBox").setChecked(True)
    find(QComboBox, "outputSegmentationSelector").addItem(run["segmentation"])
    find(QComboBox, "outputProbabilitySelector").addItem(run["probability"])
    find(QComboBox, "outputLesionTableSelector").addItem(run["table"])
    find(QPushButton, "applyButton").setEnabled(True)
    find(QProgressBar, "progressBar").setVisible(False)
    find(QLabel, "statusLabel").setText(run["status"])
    lesions = find(QTableWidget, "lesionTableView")
    lesions.setColumnCount(len(run["columns"]))
    lesions.setHorizontalHeaderLabels(run["columns"])
    lesions.setRowCount(len(run["lesions"]))
    for r, row in enumerate(run["lesions"]):
        for c, text in enumerate(row):
            lesions.setItem(r, c, QTableWidgetItem(text))
    lesions.verticalHeader().setVisible(False)
    lesions.resizeColumnsToContents()
    lesions.setFixedHeight(lesions.horizontalHeader().height()
                           + min(len(run["lesions"]), 4) * lesions.rowHeight(0) + 4)
    for name in ("showResultButton", "refineButton"):
        find(QPushButton, name).setEnabled(True)
    for name in ("compareCollapsibleButton", "advancedCollapsibleButton"):
        box = find(QGroupBox, name)
        box.setCheckable(True)  # stands in for a collapsed ctkCollapsibleButton
        box.setChecked(False)
        box.setFlat(True)
        for child in box.findChildren(QWidget):
            if child.parent() is box:
                child.setVisible(False)
        box.setFixedHeight(box.fontMetrics().height() + 8)


def render(output: Path, width: int = 440) -> Path:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    text = plain_qt_ui(UI_FILE.read_text(encoding="utf-8"))
    data = QByteArray(text.encode("utf-8"))
    buf = QBuffer(data)
    buf.open(QIODevice.ReadOnly)
    panel = QUiLoader().load(buf)
    if panel is None:
        raise SystemExit(f"{UI_FILE}: QUiLoader could not load the panel")
    fill_panel(panel, example_run())
    # A module panel is narrow: let long texts elide or wrap instead of widening it.
    from PySide6.QtWidgets import QComboBox

    for combo in panel.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(12)
    panel.setFixedWidth(width)
    panel.show()
    app.processEvents()
    panel.setFixedHeight(panel.heightForWidth(width) if panel.hasHeightForWidth() else panel.sizeHint().height())
    app.processEvents()
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".png", dir=output.parent, delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        if not panel.grab().save(str(tmp_path), "PNG"):
            raise SystemExit(f"could not write {output}")
        os.replace(tmp_path, output)
    finally:
        tmp_path.unlink(missing_ok=True)
    panel.close()
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "panel.png")
    args = parser.parse_args(argv)
    print(render(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
