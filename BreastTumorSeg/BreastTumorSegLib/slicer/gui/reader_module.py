"""What the reader-study module's widget owns across studies and scenes (its lifecycle).

``BreastTumorSegReader.py`` stays thin and hands the application's objects to
:class:`ReaderModuleLifecycle`, which

* keeps the embedded Segment Editor's parameter node in the scene: made at set-up and made again
  after the scene is cleared (File > Close Scene removes every node, that one included);
* closes the open reading when the scene starts closing (the case is saved, the reader's lock is
  released, its nodes go), so nothing of a case survives into the next scene;
* connects ``applicationStateChanged`` once and disconnects it in :meth:`cleanup`;
* observes the slice views' mouse and keys once per view, whatever the number of studies opened
  (the observers of the previous study are removed first).

Qt comes in as an argument (Slicer's PythonQt ``qt`` in the application, PySide6 in the tests) and
the scene is a real ``vtkMRMLScene``, so this is tested over slicer-core MRML.
"""
from __future__ import annotations

from typing import Any, Callable

EDITOR_NODE_NAME = "BreastTumorSegReader editor"
# Mouse and keys in a slice view count as activity (the reading timer runs).
VIEW_EVENTS = ("MouseMoveEvent", "LeftButtonPressEvent", "KeyPressEvent", "MouseWheelForwardEvent",
               "MouseWheelBackwardEvent")


class ReaderModuleLifecycle:
    """*app* emits ``applicationStateChanged(Qt::ApplicationState)``; *editor* is the embedded
    Segment Editor widget (``setMRMLSegmentEditorNode``/``mrmlSegmentEditorNode``);
    *interactors()* returns the VTK interactors of the reader's slice views."""

    def __init__(self, qt, app, scene, editor, interactors: Callable[[], list]):
        self.qt = qt
        self.app = app
        self.scene = scene
        self.editor = editor
        self.interactors = interactors
        self.panel = None
        self._views: list[tuple[Any, int]] = []
        self._scene_tags = [scene.AddObserver(scene.StartCloseEvent, self._on_scene_closing),
                            scene.AddObserver(scene.EndCloseEvent, self._on_scene_closed)]
        app.applicationStateChanged.connect(self._on_application_state)
        self.ensure_editor_node()

    # ------------------------------------------------------------------------------ editor node
    def ensure_editor_node(self):
        """The Segment Editor's parameter node, added to the scene if it is not there (any more)."""
        node = self.editor.mrmlSegmentEditorNode()
        if node is None or not self.scene.IsNodePresent(node):
            node = self.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode", EDITOR_NODE_NAME)
            self.editor.setMRMLSegmentEditorNode(node)
        return node

    # ------------------------------------------------------------------------------ the panel
    def set_panel(self, panel) -> None:
        """A newly opened study's panel: the previous one is closed (saved, lock released) and the
        views are observed for this one only."""
        if self.panel is not None and self.panel is not panel:
            self.panel.close()
        self.panel = panel
        if panel is None:
            self.stop_observing_views()
        else:
            self.observe_views()

    def observe_views(self) -> None:
        self.stop_observing_views()
        for interactor in self.interactors():
            for event in VIEW_EVENTS:
                self._views.append((interactor, interactor.AddObserver(event, self._on_view_activity)))

    def stop_observing_views(self) -> None:
        for interactor, tag in self._views:
            interactor.RemoveObserver(tag)
        self._views = []

    @property
    def view_observer_count(self) -> int:
        return len(self._views)

    # ------------------------------------------------------------------------------ events
    def _on_view_activity(self, caller=None, event=None) -> None:
        if self.panel is not None:
            self.panel.user_activity()

    def _on_application_state(self, state) -> None:
        if self.panel is not None:
            self.panel.application_state_changed(state == self.qt.Qt.ApplicationActive)

    def _on_scene_closing(self, caller=None, event=None) -> None:
        if self.panel is not None:
            self.panel.close()

    def _on_scene_closed(self, caller=None, event=None) -> None:
        self.ensure_editor_node()

    # ------------------------------------------------------------------------------ teardown
    def cleanup(self) -> None:
        """Undo everything set up: views, scene observers, the application signal; close the panel."""
        self.stop_observing_views()
        for tag in self._scene_tags:
            self.scene.RemoveObserver(tag)
        self._scene_tags = []
        if self.app is not None:
            self.app.applicationStateChanged.disconnect(self._on_application_state)
            self.app = None
        if self.panel is not None:
            self.panel.close()
            self.panel = None
