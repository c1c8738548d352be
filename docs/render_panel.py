"""Render the BreastTumorSeg panel (Resources/UI/BreastTumorSeg.ui) to docs/panel.png without Slicer.

The .ui uses Slicer and CTK widgets that plain Qt does not have, so a temporary copy of the
file is rewritten with each of them replaced by the Qt class it looks most like (a node combo
box becomes a QComboBox, a collapsible button a QGroupBox, ...). The panel is then loaded with
PySide6's QUiLoader on the offscreen platform, filled with the values a user would see after a
run (example numbers, marked as such in the caption), and grabbed to a PNG.

    QT_QPA_PLATFORM=offscreen python docs/render_panel.py [--output docs/panel.png]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
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


def fill_example_state(panel) -> None:
    """Put the state of a finished run into the widgets (illustrative values)."""
    from PySide6.QtWidgets import QComboBox, QLabel, QProgressBar, QPushButton, QTableWidget, QTableWidgetItem, \
        QCheckBox, QDoubleSpinBox, QGroupBox

    def find(cls, name):
        w = panel.findChild(cls, name)
        if w is None:
            raise SystemExit(f"{UI_FILE}: widget {name} ({cls.__name__}) not found")
        return w

    find(QComboBox, "inputTypeComboBox").addItems(["Volumes", "Sequence"])
    find(QComboBox, "inputSequenceSelector").addItem("None")
    find(QComboBox, "phaseVolumesSelector").addItem("4 volumes checked")
    table = find(QTableWidget, "phaseTable")
    rows = [("pre", "3: T1 AX DYN pre", "0.00", "DICOM AcquisitionTime"),
            ("post 1", "4: T1 AX DYN ph1", "1.52", "DICOM AcquisitionTime"),
            ("post 2", "5: T1 AX DYN ph2", "3.03", "DICOM AcquisitionTime"),
            ("post 3", "6: T1 AX DYN ph3", "4.55", "DICOM AcquisitionTime")]
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(text))
    table.resizeColumnsToContents()
    table.setFixedHeight(150)
    find(QLabel, "phaseStatusLabel").setText("4 phases, times from DICOM. Check the order before Apply.")
    find(QComboBox, "modelComboBox").addItems(["unet-demo", "ftv"])
    find(QLabel, "modelCardLabel").setText(
        "<b>unet-demo</b>: 3D U-Net on pre, first post-contrast and subtraction.<br>"
        "<i>Trained on:</i> synthetic DCE phantoms only (demonstration model, not for clinical use).")
    find(QComboBox, "deviceComboBox").addItems(["auto", "cpu", "cuda"])
    find(QCheckBox, "useModelThresholdCheckBox").setChecked(True)
    find(QDoubleSpinBox, "thresholdSliderWidget").setValue(0.5)
    find(QCheckBox, "motionCorrectionCheckBox").setChecked(True)
    find(QComboBox, "outputSegmentationSelector").addItem("3: T1 AX DYN pre tumor segmentation")
    find(QComboBox, "outputProbabilitySelector").addItem("3: T1 AX DYN pre tumor probability")
    find(QComboBox, "outputLesionTableSelector").addItem("3: T1 AX DYN pre tumor lesions")
    apply = find(QPushButton, "applyButton")
    apply.setEnabled(True)
    apply.setText("Cancel")
    bar = find(QProgressBar, "progressBar")
    bar.setVisible(True)
    bar.setValue(62)
    find(QLabel, "statusLabel").setText("predict: tile 14 of 24 ...")
    lesions = find(QTableWidget, "lesionTableView")
    cols = ["Lesion", "Side", "Volume (mL)", "Longest diameter (mm)", "Max probability"]
    lesions.setColumnCount(len(cols))
    lesions.setHorizontalHeaderLabels(cols)
    lesions.setRowCount(1)
    for c, text in enumerate(["1", "left", "2.41", "21.3", "0.97"]):
        lesions.setItem(0, c, QTableWidgetItem(text))
    lesions.resizeColumnsToContents()
    lesions.setFixedHeight(70)
    for name in ("showResultButton", "refineButton"):
        find(QPushButton, name).setEnabled(True)
    for name in ("compareCollapsibleButton", "advancedCollapsibleButton"):
        box = find(QGroupBox, name)
        box.setCheckable(True)  # stands in for a collapsed ctkCollapsibleButton
        box.setChecked(False)
        for child in box.findChildren(object):
            if hasattr(child, "setVisible") and child.parent() is box:
                child.setVisible(False)


def render(output: Path, width: int = 420) -> Path:
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
    fill_example_state(panel)
    panel.resize(width, panel.sizeHint().height())
    panel.show()
    panel.adjustSize()
    panel.resize(width, panel.sizeHint().height())
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
