"""A reader's trame-slicer session: her :class:`.reader_scene.ReaderScene` served by a trame server.

Each open case gets one trame server (``trame_server``, on the station's own event loop, bound to
127.0.0.1 on a free port). The browser never reaches that port: the station checks the reader's
session cookie and her worklist, then forwards ``/view/<index>/...`` (pages, scripts and the
websocket) to it (:mod:`.app`). The page it serves is trame-slicer's: the hanging protocol as three
linked slice views (Slicer's slice rendering, the segmentation overlay, window/level by dragging
with no effect active, the mouse wheel scrolls all three), a 3D view of the segment, the
orientation buttons, and trame-slicer's segment editor (effects with their parameters, Undo/Redo).

Every VTK/MRML call of the session runs on the event loop's thread (trame renders there too).
"""
from __future__ import annotations

import os
from itertools import count

from ..slicer import mrml_bridge as mb
from .reader_scene import EFFECTS, LAYOUT_ID, ORIENTATIONS, ReaderScene, hanging_layout

_NAMES = count()


def _quiet_cli() -> None:
    # trame reads its options from sys.argv unless TRAME_ARGS is set; the station's own command
    # line (or pytest's) is none of trame's business.
    os.environ.setdefault("TRAME_ARGS", "--server")


# The editor's button for each effect the station offers (trame-slicer's own icons).
EFFECT_ICONS = {"Paint": "mdi-brush", "Erase": "mdi-eraser", "Scissors": "mdi-content-cut", "Draw": "mdi-draw",
                "Threshold": "mdi-auto-fix", "Islands": "mdi-scatter-plot", "Smoothing": "mdi-square-rounded-outline"}


def offered_effects(allowed) -> tuple[str, ...]:
    """The study's effects that the browser editor can offer, in the editor's order. A study may
    list Slicer effects trame-slicer does not have (e.g. "Level tracing"): those are only in Slicer."""
    if allowed is None:
        return tuple(EFFECT_ICONS)
    wanted = {str(a).lower() for a in allowed}
    return tuple(e for e in EFFECT_ICONS if e.lower() in wanted)


def study_editor_ui(base, effects: tuple[str, ...]):
    """trame-slicer's segment editor panel with buttons for *effects* only (and "No tool")."""
    import trame_slicer.segmentation as seg

    class StudyEditorUI(base):
        def build_effect_buttons(self, all: bool = True, **kwargs):  # noqa: A002 (trame-slicer's name)
            self._create_effect_button("No tool", "mdi-cursor-default", seg.SegmentationEffectNoTool, **kwargs)
            for name in effects:
                self._create_effect_button(name, EFFECT_ICONS[name], getattr(seg, EFFECTS[name]), **kwargs)

    return StudyEditorUI


class TrameReaderSession:
    """One case of one reader in trame-slicer. *on_edit()* is called after each change of the
    segment, *on_view()* after each change of a slice view (scrolling, window/level). With
    *on_click*, the toolbar offers click-to-correct (:mod:`.click_correct`): in its "tumor" or
    "not tumor" mode a click (press and release without a drag) in a slice view calls
    ``on_click(ras, positive)`` with the RAS point (mm) under the mouse. *allowed_effects* (the
    study's effect names; None: every effect trame-slicer offers here) decides which effect buttons
    the editor shows, and any other effect activated anyway (a forged client message) is switched
    off on the server at once."""

    def __init__(self, images: dict, start, title: str, on_edit=None, on_view=None, editable: bool = True,
                 on_click=None, allowed_effects=None):
        _quiet_cli()
        from trame.app import get_server
        from trame_slicer import module as trame_slicer_module
        from trame_slicer.app.logic import SegmentEditorLogic
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories

        self._name = f"bts-reader-{next(_NAMES)}"
        self.server = get_server(self._name, client_type="vue3")
        self.server.enable_module(trame_slicer_module)
        app = SlicerApp()
        self.scene = ReaderScene(images, start, lambda vm: register_rca_factories(vm, self.server),
                                 slicer_app=app)
        # The views first: an effect's pipelines are made for the views that exist when its
        # parameters enter the scene (the editor logic below adds them).
        self.layout_manager = LayoutManager(app.scene, app.view_manager, self.server)
        self.layout_manager.register_layout(LAYOUT_ID, hanging_layout())
        self.layout_manager.create_layout_views_if_needed(LAYOUT_ID)
        self.editor_logic = SegmentEditorLogic(self.server, app)
        self.scene.use_undo_stack(self.editor_logic._undo_stack)  # noqa: SLF001 (the editor's undo stack)
        self._on_click = on_click if editable else None
        self.allowed_effects = offered_effects(allowed_effects)
        self._build_ui(title, editable)
        self.scene.editor.active_effect_name_changed.connect(self._enforce_allowed_effects)
        self.layout_manager.set_layout(LAYOUT_ID)
        self.scene.show_in_views()
        self._observers = []
        if on_edit is not None:
            # Every change of the segment's voxels (an effect, Undo/Redo, a replaced mask), observed
            # on the segmentation itself: the editor's own signal misses some (e.g. undo steps).
            self._observers += mb.observe_segment_changes(self.scene.seg_node, on_edit)
        if on_view is not None:
            for view in self.scene.slice_views():
                node = view.get_view_node()
                self._observers.append((node, node.AddObserver("ModifiedEvent", lambda *_: on_view())))
        if self._on_click is not None:
            self._observe_clicks()
        self.port: int | None = None
        self._task = None

    def _build_ui(self, title: str, editable: bool) -> None:
        from trame.widgets import vuetify3 as v3
        from trame_slicer.app.ui import SegmentEditorUI
        from trame_vuetify.ui.vuetify3 import SinglePageWithDrawerLayout

        self.server.state.trame__title = title
        self.server.state.orientation = "Axial"
        with SinglePageWithDrawerLayout(self.server, full_height=True) as ui:
            ui.root.theme = "dark"
            ui.title.set_text(title)
            with ui.toolbar:
                v3.VSpacer()
                if self._on_click is not None:
                    self._click_toggle(v3)
                with v3.VBtnToggle(v_model=("orientation",), mandatory=True, density="compact", id="orientation"):
                    for name in ORIENTATIONS:
                        v3.VBtn(name, value=name, id=f"orient-{name.lower()}")
            with ui.drawer as drawer:  # a submitted (locked) case shows no editor
                drawer.width = 360 if editable else 0
                self.editor_ui = study_editor_ui(SegmentEditorUI, self.allowed_effects)(v_if=(str(editable).lower(),))
            with ui.content:
                self.layout_manager.initialize_layout_grid(ui)
        self.editor_logic.set_ui(self.editor_ui)
        self.ui = ui

        @self.server.state.change("orientation")
        def _orientation(orientation, **_):
            if orientation in ORIENTATIONS and self.scene is not None:
                self.scene.set_orientation(orientation)

    def _enforce_allowed_effects(self, *_):
        if self.scene is None:
            return
        effect = self.scene.editor.active_effect
        name = type(effect).__name__ if effect is not None else None
        if name not in (None, "SegmentationEffectNoTool") and name not in {EFFECTS[e] for e in self.allowed_effects}:
            self.scene.set_effect(None)

    # ------------------------------------------------------------------ click-to-correct
    def _click_toggle(self, v3) -> None:
        from .click_correct import MODES

        self.server.state.click_mode = "off"
        v3.VLabel("correct by clicking:", classes="mx-2 text-caption")
        with v3.VBtnToggle(v_model=("click_mode",), mandatory=True, density="compact", id="click-mode",
                           classes="mr-4"):
            for mode in MODES:
                v3.VBtn(mode, value=mode, id=f"click-{mode.replace(' ', '-')}")

        @self.server.state.change("click_mode")
        def _mode(click_mode, **_):
            if click_mode != "off" and self.scene is not None:  # a click must not paint, draw or cut as well
                self.scene.set_effect(None)

        def _effect_changed(*_):  # an effect chosen in the editor ends the click mode
            if self.scene is not None and self.scene.editor.active_effect is not None and \
                    type(self.scene.editor.active_effect).__name__ != "SegmentationEffectNoTool":
                with self.server.state:
                    self.server.state.click_mode = "off"

        self.scene.editor.active_effect_name_changed.connect(_effect_changed)

    def _observe_clicks(self) -> None:
        """A press and release at (about) one point of a slice view, in a click mode, is a click."""
        for view in self.scene.slice_views():
            iren = view.interactor()
            pressed = {}

            def press(obj, _event, pressed=pressed):
                pressed["xy"] = obj.GetEventPosition()

            def release(obj, _event, pressed=pressed, view=view):
                start, (x, y) = pressed.pop("xy", None), obj.GetEventPosition()
                mode = self.server.state.click_mode
                if start is None or mode not in ("tumor", "not tumor") or abs(start[0] - x) + abs(start[1] - y) > 4:
                    return
                self._on_click(self.scene.ras_at(view, x, y), mode == "tumor")

            self._observers += [(iren, iren.AddObserver("LeftButtonPressEvent", press, 10.0)),
                                (iren, iren.AddObserver("LeftButtonReleaseEvent", release, 10.0))]

    async def start(self) -> int:
        """Listen on 127.0.0.1 (a free port); returns the port. ``thread=True``: no signal handlers of
        wslink's (the station's own Ctrl-C/SIGTERM handling stays in charge)."""
        self._task = self.server.start(exec_mode="task", port=0, host="127.0.0.1", open_browser=False, thread=True,
                                       show_connection_info=False, disable_logging=True, timeout=0)
        await self.server.ready
        self.port = int(self.server.port)
        return self.port

    async def stop(self) -> None:
        try:
            if self._task is not None:
                await self.server.stop()
        finally:
            self.close()

    def close(self) -> None:
        """Free the session on the thread that made it (the station's loop): observers, the scene,
        and trame's own reference to the server (its registry keeps every server it ever made, and
        with it the views; left there, they were freed only at interpreter exit, on another thread
        than their OpenGL context's, which crashed the process after the browser tests)."""
        import gc

        from trame.app import core as trame_core

        mb.remove_observers(self._observers)
        self._observers = []
        if self.scene is not None:
            self.scene.close()
        trame_core.AVAILABLE_SERVERS.pop(self._name, None)
        self.scene = self.layout_manager = self.editor_logic = self.editor_ui = self.ui = None
        gc.collect()
