"""One reader's workspace on the server: her study session and the trame-slicer session of her open case.

The case's scene (:mod:`.reader_scene`, on trame-slicer: real volume and segmentation nodes,
Slicer's slice views and segment editor) holds the hanging protocol -- registered subtraction,
first post-contrast, pre-contrast -- and the reader's segmentation; the browser shows and edits it
through :mod:`.trame_session`. Saving, timing, locks and the audit log are the study engine's
(:mod:`..study.session`): what is saved is the segment read back from the scene.
"""
from __future__ import annotations

import asyncio
import time

import numpy as np
import SimpleITK as sitk

from ..study.session import ReaderSession
from . import click_correct
from .reader_scene import PHASES

VIEWS = {key: name for key, (name, _, _) in PHASES.items()}
STOPPING: set[asyncio.Task] = set()  # trame servers being stopped (the station awaits them on shutdown)


class NotFound(Exception):
    """A case or view that is not in this reader's worklist (the server answers 404)."""


class ReaderWorkspace:
    """A reader's engine session (takes her study lock) and the MRML scene of her open case."""

    def __init__(self, study_folder, reader: str, clock=time.monotonic):
        self.reader = reader
        self.session = ReaderSession.open_study(study_folder, reader)
        self.last_seen = clock()
        self._clock = clock
        self.view = None  # the open case's TrameReaderSession (None: no scene)
        self._voxels: int | None = None  # the segment's voxel count (None: changed since)
        self._mtime: int | None = None  # the segment's modification time when last checked
        self.unsaved = False  # edits since the last saved version
        self.pause_reason: str | None = None
        self.corrector: click_correct.ClickCorrector | None = None  # click-to-correct of the open case

    # ------------------------------------------------------------------ worklist and cases
    def touch(self) -> None:
        self.last_seen = self._clock()

    def worklist(self) -> list[dict]:
        items = self.session.items()
        return [{"index": it["index"], "title": f"case {it['index'] + 1} of {len(items)}", "status": it["status"],
                 "arm": it["arm"], "available": it["available"]} for it in items]

    def check_index(self, index: int) -> int:
        if not 0 <= index < self.session.total:
            raise NotFound(f"case {index + 1}")
        return index

    def begin_open(self, index: int):
        """(scene thread) Open reading *index* in the engine (saving the open one first) and free
        the old scene; returns the engine's view to prepare, or None when it is open already.
        Preparing a case (registration, scene) is not reading time: the engine's timer is paused
        until :meth:`finish_open` (audit log: paused/resumed, reason "loading")."""
        self.check_index(index)
        view = self.session.current
        if view is not None and view.index == index and self.view is not None:
            return None
        if view is None or view.index != index:  # (submit has opened the next one already)
            mask = self.current_mask() if view is not None and self.view is not None else None
            view = self.session.open(index, mask)
            self.unsaved = False
        self.release_scene()
        self.session.pause("loading")
        return view

    @staticmethod
    def prepare(view) -> tuple[dict, sitk.Image, object]:
        """(any thread: SimpleITK only) the registered hanging protocol, the starting mask and, when
        the reading offers click-to-correct, the registered exam (else None)."""
        exam = view.registered_exam(register=True)
        return (view.hanging_protocol(exam=exam), view.starting_mask(),
                exam if click_correct.offered(view) else None)

    def finish_open(self, view, images: dict, start: sitk.Image, exam=None) -> None:
        """(scene thread) Fill the scene, unless another case was opened meanwhile; the timer runs again."""
        try:
            if self.session.current is view:
                self._load_scene(images, start, exam)
        finally:
            self.session.resume()

    def ensure_open(self, index: int) -> None:
        """Open reading *index* on one thread (scripts, benchmarks); the station splits it so that
        registration does not hold up the other readers."""
        view = self.begin_open(index)
        if view is None:
            return
        try:
            prepared = self.prepare(view)
        except BaseException:
            self.session.resume()
            raise
        self.finish_open(view, *prepared)

    def _load_scene(self, images: dict, start: sitk.Image, exam=None) -> None:
        from .trame_session import TrameReaderSession

        self.release_scene()
        view = self.session.current
        self.corrector = click_correct.ClickCorrector(exam) if exam is not None else None
        self.view = TrameReaderSession(images, start, view.title, on_edit=self._edited,
                                       on_view=self.session.activity, editable=not view.locked,
                                       on_click=self.click if self.corrector is not None else None,
                                       allowed_effects=view.allowed_effects)
        self._voxels = None
        self._mtime = self.view.scene.segment_mtime()  # the starting mask is no edit

    def check_edits(self) -> None:
        """Count a change of the segment that no event announced (its voxels' modification time
        moved) as an edit, so that the engine saves it."""
        if self.view is None:
            return
        mtime = self.view.scene.segment_mtime()
        if mtime != self._mtime:
            if self._mtime is not None:
                self._edited()
            self._mtime = mtime

    def _edited(self) -> None:
        """(an effect changed the segment) unsaved work; the reader is active."""
        if self.session.current is None or self.session.current.locked:
            return
        self.unsaved = True
        self._voxels = None
        self.session.activity(edit=True)

    def release_scene(self) -> None:
        """Free the scene (and stop its trame server: a task on the running loop, when it runs)."""
        view, self.view = self.view, None
        self.corrector = None
        if view is None:
            return
        if view.port is None:
            view.close()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            view.close()
        else:
            task = loop.create_task(view.stop())
            STOPPING.add(task)
            task.add_done_callback(STOPPING.discard)

    async def start_view(self) -> int | None:
        """Start the open case's trame server (once); its loopback port."""
        if self.view is None:
            return None
        if self.view.port is None:
            await self.view.start()
        return self.view.port

    # --------------------------------------------------------------------------- display
    def info(self) -> dict:
        view = self.session.current
        self.check_edits()
        if self._voxels is None:
            mask = self.current_mask()  # kept alive while its voxels are read (a view does not keep it)
            self._voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
        spacing = self.view.scene.grid.GetSpacing()
        return {"title": view.title, "index": view.index, "total": view.total, "arm": view.arm,
                "locked": view.locked, "paused": self.session.paused,
                "pause_reason": self.pause_reason if self.session.paused else None, "done": self.session.done(),
                "active_s": round(self.session.active_seconds(), 1), "unsaved": self.unsaved,
                "undo": int(self.view.scene.undo_stack.can_undo()), "voxels": self._voxels,
                "volume_ml": float(self._voxels * np.prod(spacing) / 1000.0),
                "views": [{"key": k, "name": v} for k, v in VIEWS.items()]}

    # --------------------------------------------------------------------------- editing
    def click(self, ras, positive: bool) -> dict:
        """(scene thread) Click-to-correct at *ras* (mm): the segment refined by the engine, as one
        undoable step; returns what the click did. Refused (InputError) where it is not offered."""
        from ..core.errors import InputError

        view = self.session.current
        if self.view is None or self.corrector is None or view is None or not click_correct.offered(view):
            raise InputError("click-to-correct is not offered for this reading", "click",
                             "it is offered in the assisted arm, before the case is submitted")
        try:
            refined = self.corrector.correct(self.current_mask(), ras, positive)
        except InputError as exc:  # e.g. a click outside the image: nothing changes
            entry = {"action": "none", "note": exc.problem}
            self.corrector.log.append(entry)
            return entry
        self.view.scene.replace_mask(refined)
        return self.corrector.log[-1]

    def undo(self) -> bool:
        if self.view is None or self.session.current.locked:
            return False
        return self.view.scene.undo()

    def current_mask(self) -> sitk.Image:
        """The segment as a label map on the exam's reference grid, read from the scene."""
        return self.view.scene.current_mask()

    # ------------------------------------------------------------------ session actions
    def autosave(self):
        if self.view is None or self.session.current is None:
            return None
        self.check_edits()
        path = self.session.maybe_autosave(self.current_mask)
        if path is not None:
            self.unsaved = False
        return path

    def pause(self, reason: str = "explicit") -> None:
        self.check_edits()
        if self.unsaved and self.session.current is not None and not self.session.current.locked:
            self.session.save(self.current_mask(), reason="pause")
            self.unsaved = False
        self.session.pause(reason)
        self.pause_reason = reason if self.session.paused else None

    def resume(self) -> None:
        self.session.resume()
        self.session.activity()
        self.pause_reason = None

    def submit(self) -> int | None:
        """Submit the open case (locks it) and open the next one; its index, or None when all are done."""
        self.session.submit(self.current_mask())
        self.unsaved = False
        nxt = self.session.next()  # opened in the engine; the page's request fills the scene
        self.release_scene()
        return None if nxt is None else nxt.index

    def release(self) -> None:
        """Save what changed, end the session (releases the study lock) and free the scene."""
        try:
            self.check_edits()
            mask = self.current_mask() if self.view is not None and self.session.current is not None else None
            self.session.end(mask)
        finally:
            self.release_scene()
