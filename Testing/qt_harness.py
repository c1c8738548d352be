"""Drive the Slicer panel (``PanelController``) with real PySide6 widgets over real slicer-core MRML.

Reusable by every test of a panel (the segmentation panel, a reader-mode panel, a click mode):

* :func:`qt_namespace` - PySide6's QtCore/QtGui/QtWidgets as one ``qt`` namespace, the way Slicer's
  PythonQt ``qt`` module presents them (``qt.QTimer``, ``qt.Qt.Checked``, ``qt.QTableWidgetItem``);
* :func:`load_ui` - ``Resources/UI/*.ui`` loaded by PySide6's ``QUiLoader``, with the scene set on
  the MRML widgets, returning the root widget and the ``ui`` namespace of named children
  (``slicer.util.childWidgetVariables``);
* :func:`process_until` - run the Qt event loop (timers fire) until a condition holds.

What is real and what is stood in, honestly:

* Real: PySide6 widgets for every plain Qt class of the ``.ui`` (QComboBox, QTableWidget,
  QPushButton, QLabel, QProgressBar, QCheckBox ...), Qt's event loop and timers, the MRML scene,
  nodes and module logics (``MRMLContext.headless()``), the engine process.
* Stood in, because the classes exist only in the Slicer application (not in PySide6 or in the
  ``slicer-core`` wheel): Slicer's MRML/CTK widgets (``qMRMLNodeComboBox``,
  ``qMRMLCheckableNodeComboBox``, ``qMRMLSegmentSelectorWidget``, ``qMRMLTableView``,
  ``ctkSliderWidget``, ``ctkCollapsibleButton``, ``qMRMLWidget``) by small PySide6 widgets with the
  same method and signal names, listing real scene nodes; ``parameterNodeWrapper`` by
  :class:`ParameterNode` (typed fields over a real ``vtkMRMLScriptedModuleNode``, ``connectGui``
  for the widgets that carry ``SlicerParameterName``); the application's dialogs and module
  switching by :class:`RecordingHost`, which records what the panel would show.
"""
from __future__ import annotations

import os
import time
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402
from PySide6.QtCore import Qt, Signal  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UI_FILE = ROOT / "BreastTumorSeg" / "Resources" / "UI" / "BreastTumorSeg.ui"


# ----------------------------------------------------------------------------- the qt namespace
def qt_namespace() -> types.SimpleNamespace:
    """QtCore, QtGui and QtWidgets merged into one namespace, as PythonQt's ``qt`` module."""
    ns = types.SimpleNamespace()
    for module in (QtCore, QtGui, QtWidgets):
        for name in dir(module):
            if not name.startswith("_"):
                setattr(ns, name, getattr(module, name))
    return ns


def application() -> QtWidgets.QApplication:
    """The one QApplication of the test process (offscreen platform)."""
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication(["pytest"])


def process_until(condition: Callable[[], bool], timeout_s: float = 60.0, interval_s: float = 0.02) -> bool:
    """Run the Qt event loop until *condition()* is true; returns it (False on timeout)."""
    app = application()
    deadline = time.monotonic() + timeout_s
    while True:
        app.processEvents()
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)


# ----------------------------------------------------------------------------- Slicer widget stand-ins
def _nodes_of(scene, classes) -> list:
    if scene is None:
        return []
    out = []
    for cls in classes or ["vtkMRMLNode"]:
        col = scene.GetNodesByClass(cls)
        for i in range(col.GetNumberOfItems()):
            node = col.GetItemAsObject(i)
            if node.GetHideFromEditors() or node.GetSingletonTag():
                continue
            if node not in out:
                out.append(node)
    return out


class qMRMLWidget(QtWidgets.QWidget):  # noqa: N801 - the .ui's class name
    mrmlSceneChanged = Signal(object)

    def setMRMLScene(self, scene) -> None:
        self.mrmlSceneChanged.emit(scene)


class ctkCollapsibleButton(QtWidgets.QGroupBox):  # noqa: N801
    def __init__(self, parent=None):
        super().__init__(parent)
        self._collapsed = False

    def getText(self) -> str:
        return self.title()

    def setText(self, text: str) -> None:
        self.setTitle(text)

    def getCollapsed(self) -> bool:
        return self._collapsed

    def setCollapsed(self, value: bool) -> None:
        self._collapsed = bool(value)

    text = QtCore.Property(str, getText, setText)
    collapsed = QtCore.Property(bool, getCollapsed, setCollapsed)


class ctkSliderWidget(QtWidgets.QDoubleSpinBox):  # noqa: N801 - value/minimum/maximum/valueChanged(double)
    def getPageStep(self) -> float:
        return getattr(self, "_page", 0.1)

    def setPageStep(self, value: float) -> None:
        self._page = value

    pageStep = QtCore.Property(float, getPageStep, setPageStep)


class qMRMLNodeComboBox(QtWidgets.QComboBox):  # noqa: N801
    """Lists the scene's nodes of ``nodeTypes``; ``currentNode``/``setCurrentNode``/``currentNodeChanged``."""

    currentNodeChanged = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None
        self._types: list[str] = []
        self._none = False
        self._nodes: list = []
        self._observers: list = []
        self.currentIndexChanged.connect(lambda _i: self.currentNodeChanged.emit(self.currentNode()))

    # properties the .ui sets
    def getNodeTypes(self) -> list:
        return self._types

    def setNodeTypes(self, types_) -> None:
        self._types = list(types_)
        self._refresh()

    def getNoneEnabled(self) -> bool:
        return self._none

    def setNoneEnabled(self, value: bool) -> None:
        self._none = bool(value)
        self._refresh()

    nodeTypes = QtCore.Property("QStringList", getNodeTypes, setNodeTypes)
    noneEnabled = QtCore.Property(bool, getNoneEnabled, setNoneEnabled)
    for _name in ("showChildNodeTypes", "addEnabled", "removeEnabled", "renameEnabled"):
        locals()[_name] = QtCore.Property(bool, lambda self: True, lambda self, v: None)
    baseName = QtCore.Property(str, lambda self: "", lambda self, v: None)

    def setMRMLScene(self, scene) -> None:
        if self._scene is not None:
            for tag in self._observers:
                self._scene.RemoveObserver(tag)
        self._scene, self._observers = scene, []
        if scene is not None:
            for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent, scene.EndCloseEvent):
                self._observers.append(scene.AddObserver(event, lambda *a: self._refresh()))
        self._refresh()

    def mrmlScene(self):
        return self._scene

    def _refresh(self) -> None:
        current = self.currentNode() if self._nodes or self._none else None
        self._nodes = ([None] if self._none else []) + _nodes_of(self._scene, self._types)
        self.blockSignals(True)
        try:
            self.clear()
            for node in self._nodes:
                self.addItem("None" if node is None else node.GetName())
            if current in self._nodes:
                self.setCurrentIndex(self._nodes.index(current))
        finally:
            self.blockSignals(False)

    def nodeCount(self) -> int:
        return len([n for n in self._nodes if n is not None])

    def nodeFromIndex(self, i: int):
        return [n for n in self._nodes if n is not None][i]

    def currentNode(self):
        i = self.currentIndex()
        return self._nodes[i] if 0 <= i < len(self._nodes) else None

    def setCurrentNode(self, node) -> None:
        self._refresh()
        if node in self._nodes:
            self.setCurrentIndex(self._nodes.index(node))


class qMRMLCheckableNodeComboBox(qMRMLNodeComboBox):  # noqa: N801
    checkedNodesChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._checked: list = []

    def checkedNodes(self) -> list:
        return [n for n in self._checked if n in self._nodes]

    def checkState(self, node):
        return Qt.Checked if node in self._checked else Qt.Unchecked

    def setCheckState(self, node, state) -> None:
        was = list(self._checked)
        if state == Qt.Checked and node not in self._checked:
            self._checked.append(node)
        elif state != Qt.Checked and node in self._checked:
            self._checked.remove(node)
        if was != self._checked:
            self.checkedNodesChanged.emit()


class qMRMLSegmentSelectorWidget(qMRMLNodeComboBox):  # noqa: N801
    currentSegmentChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setNodeTypes(["vtkMRMLSegmentationNode"])

    def currentSegmentID(self) -> str:
        node = self.currentNode()
        if node is None or node.GetSegmentation().GetNumberOfSegments() == 0:
            return ""
        return node.GetSegmentation().GetNthSegmentID(0)


class qMRMLTableView(QtWidgets.QTableView):  # noqa: N801
    """Shows a ``vtkMRMLTableNode``'s rows (refreshed when the node is modified)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._node = None
        self._tag = None
        self.setModel(QtGui.QStandardItemModel(self))
        self.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)

    def setMRMLScene(self, scene) -> None:
        pass

    def mrmlTableNode(self):
        return self._node

    def setMRMLTableNode(self, node) -> None:
        if self._node is not None and self._tag is not None:
            self._node.RemoveObserver(self._tag)
        self._node, self._tag = node, None
        if node is not None:
            self._tag = node.AddObserver("ModifiedEvent", lambda *a: self._fill())
        self._fill()

    def _fill(self) -> None:
        model = self.model()
        model.clear()
        if self._node is None or self._node.GetTable() is None:
            return
        table = self._node.GetTable()
        model.setHorizontalHeaderLabels([table.GetColumnName(c) for c in range(table.GetNumberOfColumns())])
        for r in range(table.GetNumberOfRows()):
            model.appendRow([QtGui.QStandardItem(table.GetValue(r, c).ToString())
                             for c in range(table.GetNumberOfColumns())])


STAND_INS = (qMRMLWidget, ctkCollapsibleButton, ctkSliderWidget, qMRMLNodeComboBox, qMRMLCheckableNodeComboBox,
             qMRMLSegmentSelectorWidget, qMRMLTableView)


def load_ui(scene, ui_file: str | os.PathLike = UI_FILE):
    """(root widget, ``ui`` namespace of every named child) of a Slicer ``.ui`` file, scene set."""
    application()
    loader = QUiLoader()
    for cls in STAND_INS:
        loader.registerCustomWidget(cls)
    # The .ui connects mrmlSceneChanged(vtkMRMLScene*) to each MRML widget's setMRMLScene; those C++
    # signatures do not exist in PySide6, so the connections are dropped and the scene set below.
    tree = ET.parse(str(ui_file))
    for connections in tree.getroot().findall("connections"):
        tree.getroot().remove(connections)
    buffer = QtCore.QBuffer()
    buffer.setData(QtCore.QByteArray(ET.tostring(tree.getroot())))
    buffer.open(QtCore.QIODevice.ReadOnly)
    try:
        root = loader.load(buffer)
    finally:
        buffer.close()
    if root is None:
        raise RuntimeError(f"QUiLoader could not load {ui_file}: {loader.errorString()}")
    ui = types.SimpleNamespace()
    for child in root.findChildren(QtCore.QObject):
        if child.objectName():
            setattr(ui, child.objectName(), child)
    for child in root.findChildren(QtWidgets.QWidget):
        if hasattr(child, "setMRMLScene"):
            child.setMRMLScene(scene)
    return root, ui


# ----------------------------------------------------------------------------- parameter node
class ParameterNode:
    """Stand-in for a ``parameterNodeWrapper`` instance: typed fields stored on a real
    ``vtkMRMLScriptedModuleNode`` (so ``parameterNode`` fires ``ModifiedEvent`` on every change),
    and ``connectGui``/``disconnectGui`` for the widgets with a ``SlicerParameterName`` property."""

    def __init__(self, scene, fields: dict, choices: dict | None = None, node_lists=(), node_refs=()):
        object.__setattr__(self, "_scene", scene)
        object.__setattr__(self, "_defaults", dict(fields))
        object.__setattr__(self, "_choices", dict(choices or {}))
        object.__setattr__(self, "_lists", set(node_lists))
        object.__setattr__(self, "_refs", set(node_refs))
        node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "BreastTumorSeg")
        object.__setattr__(self, "parameterNode", node)
        object.__setattr__(self, "_guis", {})

    def __getattr__(self, name):
        if name.startswith("_") or name not in self._defaults and name not in self._lists and name not in self._refs:
            raise AttributeError(name)
        node = self.parameterNode
        if name in self._lists:
            return [node.GetNthNodeReference(name, i) for i in range(node.GetNumberOfNodeReferences(name))]
        if name in self._refs:
            return node.GetNodeReference(name)
        default = self._defaults[name]
        text = node.GetParameter(name)
        if text == "":
            return default
        if isinstance(default, bool):
            return text == "true"
        return type(default)(text)

    def __setattr__(self, name, value):
        node = self.parameterNode
        if name in self._lists:
            was = node.StartModify()
            node.RemoveNodeReferenceIDs(name)
            for n in value:
                node.AddNodeReferenceID(name, n.GetID())
            node.EndModify(was)
        elif name in self._refs:
            node.SetNodeReferenceID(name, None if value is None else value.GetID())
        elif name in self._defaults:
            default = self._defaults[name]
            node.SetParameter(name, ("true" if value else "false") if isinstance(default, bool) else str(value))
        else:
            raise AttributeError(name)

    # -- GUI binding (the widgets carrying SlicerParameterName) --
    def connectGui(self, ui) -> int:  # noqa: N802 - parameterNodeWrapper's name
        bound = []
        for widget in vars(ui).values():
            if not isinstance(widget, QtWidgets.QWidget):
                continue
            name = widget.property("SlicerParameterName")
            if not name:
                continue
            if isinstance(widget, QtWidgets.QComboBox) and not isinstance(widget, qMRMLNodeComboBox):
                widget.clear()
                widget.addItems(self._choices.get(name, []))
                signal, apply = widget.currentTextChanged, (lambda w, n: lambda v: setattr(self, n, v))(widget, name)
            elif isinstance(widget, QtWidgets.QCheckBox):
                signal, apply = widget.toggled, (lambda n: lambda v: setattr(self, n, bool(v)))(name)
            elif isinstance(widget, QtWidgets.QDoubleSpinBox):
                signal, apply = widget.valueChanged, (lambda n: lambda v: setattr(self, n, float(v)))(name)
            elif isinstance(widget, qMRMLNodeComboBox):
                signal, apply = widget.currentNodeChanged, (lambda n: lambda v: setattr(self, n, v))(name)
            else:
                continue
            signal.connect(apply)
            bound.append((widget, name, signal, apply))
        tag = len(self._guis) + 1
        observer = self.parameterNode.AddObserver("ModifiedEvent", lambda *a: self._to_gui(bound))
        self._guis[tag] = (bound, observer)
        self._to_gui(bound)
        return tag

    def _to_gui(self, bound) -> None:
        for widget, name, _signal, _apply in bound:
            value = getattr(self, name)
            widget.blockSignals(True)
            try:
                if isinstance(widget, qMRMLNodeComboBox):
                    widget.setCurrentNode(value)
                elif isinstance(widget, QtWidgets.QComboBox):
                    widget.setCurrentText(str(value))
                elif isinstance(widget, QtWidgets.QCheckBox):
                    widget.setChecked(bool(value))
                elif isinstance(widget, QtWidgets.QDoubleSpinBox):
                    widget.setValue(float(value))
            finally:
                widget.blockSignals(False)

    def disconnectGui(self, tag: int) -> None:  # noqa: N802
        bound, observer = self._guis.pop(tag)
        self.parameterNode.RemoveObserver(observer)
        for _widget, _name, signal, apply in bound:
            signal.disconnect(apply)


def panel_parameter_node(scene) -> ParameterNode:
    """The BreastTumorSeg panel's parameters (fields and defaults of ``slicer/gui/parameters.py``)."""
    from BreastTumorSegLib.models.registry import DEFAULT_MODEL

    return ParameterNode(
        scene,
        {"inputType": "Volumes", "phaseTimesMin": "", "model": DEFAULT_MODEL, "device": "auto",
         "useModelThreshold": True, "threshold": 0.5, "motionCorrection": True},
        choices={"inputType": ["Volumes", "Sequence"], "device": ["auto", "cpu", "cuda"]},
        node_lists=("phaseVolumes", "referenceSegmentations"),
        node_refs=("inputSequence", "outputSegmentation", "outputProbability", "outputLesionTable",
                   "outputSubtraction", "comparisonTable"))


# ----------------------------------------------------------------------------- the application's services
class RecordingHost:
    """What the Slicer application does for the panel (dialogs, slice-view layers, module switch),
    recorded instead of shown: ``errors`` holds every message the user would have seen."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.errors: list[str] = []
        self.backgrounds: list = []
        self.editor_calls: list = []

    def show_error(self, what: str, exc: BaseException) -> None:
        self.errors.append(f"{what}\n\n{exc}")

    def show_background(self, node) -> None:
        self.backgrounds.append(node)

    def open_segment_editor(self, segmentation, source, segment_id) -> None:
        self.editor_calls.append((segmentation, source, segment_id))
