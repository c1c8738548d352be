"""One reader's workspace on the server: her study session and her own MRML scene.

The scene (slicer-core: real volume and segmentation nodes and Slicer's segmentation logic) holds
the hanging protocol -- registered subtraction, first post-contrast, pre-contrast -- and the
reader's segmentation. A paint, erase or threshold-paint stroke arrives as a polyline on one
slice of the subtraction, is rasterised on the voxel grid and applied to the segment by Slicer's
segmentation logic; slices and the overlay shown in the browser are read back from the scene.
Saving, timing, locks and the audit log are the study engine's (:mod:`..study.session`).
"""
from __future__ import annotations

import time

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..slicer import mrml_bridge as mb
from ..study.session import ReaderSession
from .render import DisplayFrame, default_window, slice_png, stroke_mask, window_to_uint8

VIEWS = {"sub": "subtraction", "post": "first post-contrast", "pre": "pre-contrast"}
TOOLS = ("paint", "erase", "threshold")
UNDO_DEPTH = 20


class NotFound(Exception):
    """A case or view that is not in this reader's worklist (the server answers 404)."""


class ReaderWorkspace:
    """A reader's engine session (takes her study lock) and the MRML scene of her open case."""

    def __init__(self, study_folder, reader: str, clock=time.monotonic):
        self.reader = reader
        self.session = ReaderSession.open_study(study_folder, reader)
        self.last_seen = clock()
        self._clock = clock
        self.ctx = None
        self.nodes: dict[str, object] = {}
        self.seg_node = None
        self.frame: DisplayFrame | None = None
        self.windows: dict[str, tuple[float, float]] = {}
        self._display: dict[str, np.ndarray] = {}
        self._mask_disp: np.ndarray | None = None
        self._undo: list[tuple[int, np.ndarray]] = []  # (display slice, its mask before the edit)
        self._grid_ref: sitk.Image | None = None
        self.unsaved = False  # edits since the last saved version
        self.pause_reason: str | None = None

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
        if view is not None and view.index == index and self.ctx is not None:
            return None
        if view is None or view.index != index:  # (submit has opened the next one already)
            mask = self.current_mask() if view is not None and self.ctx is not None else None
            view = self.session.open(index, mask)
            self.unsaved = False
        self.release_scene()
        self.session.pause("loading")
        return view

    @staticmethod
    def prepare(view) -> tuple[dict, sitk.Image]:
        """(any thread: SimpleITK only) the registered hanging protocol and the starting mask."""
        return view.hanging_protocol(register=True), view.starting_mask()

    def finish_open(self, view, images: dict, start: sitk.Image) -> None:
        """(scene thread) Fill the scene, unless another case was opened meanwhile; the timer runs again."""
        try:
            if self.session.current is view:
                self._load_scene(images, start)
        finally:
            self.session.resume()

    def ensure_open(self, index: int) -> None:
        """Open reading *index* on one thread (scripts, benchmarks); the station splits it so that
        registration does not hold up the other readers."""
        view = self.begin_open(index)
        if view is None:
            return
        try:
            images, start = self.prepare(view)
        except BaseException:
            self.session.resume()
            raise
        self.finish_open(view, images, start)

    def _load_scene(self, images: dict, start: sitk.Image) -> None:
        self.release_scene()
        ctx = mb.MRMLContext.headless()
        ref = images["pre-contrast"]
        self.nodes = {key: mb.image_to_volume_node(ctx, sitk.Cast(images[name], sitk.sitkFloat32), name)
                      for key, name in VIEWS.items()}
        self.seg_node = mb.label_to_segmentation(ctx, start, reference_node=self.nodes["pre"],
                                                 name="Reader segmentation")
        self.ctx = ctx
        self._size = ref.GetSize()
        self._grid_ref = sitk.Image([1, 1, 1], sitk.sitkUInt8)  # the grid's geometry, without its voxels
        self._grid_ref.SetOrigin(ref.GetOrigin())
        self._grid_ref.SetSpacing(ref.GetSpacing())
        self._grid_ref.SetDirection(ref.GetDirection())
        self.frame = DisplayFrame.of(ref.GetDirection(), ref.GetSpacing())
        del images, start, ref  # the scene holds the voxels now; the views below read them in place
        self._display = {key: self.frame.to_display(mb.volume_array_view(node)) for key, node in self.nodes.items()}
        self.windows = {key: default_window(arr, key == "sub") for key, arr in self._display.items()}
        self._undo = []
        self._refresh_mask()

    def release_scene(self) -> None:
        if self.ctx is not None:
            self.ctx.scene.Clear(True)
        self.ctx = self.seg_node = None
        self.nodes, self._display, self._mask_disp, self._undo = {}, {}, None, []

    # --------------------------------------------------------------------------- display
    def info(self) -> dict:
        view = self.session.current
        n_slices, rows, cols = self._display["sub"].shape
        return {"title": view.title, "index": view.index, "total": view.total, "arm": view.arm,
                "locked": view.locked, "paused": self.session.paused,
                "pause_reason": self.pause_reason if self.session.paused else None, "done": self.session.done(),
                "active_s": round(self.session.active_seconds(), 1), "slices": n_slices, "rows": rows, "cols": cols,
                "spacing": self.frame.spacing, "windows": self.windows, "tools": list(TOOLS),
                "start_slice": self._best_slice(), "undo": len(self._undo), "unsaved": self.unsaved,
                "voxels": int(self._mask_disp.sum()),
                "volume_ml": float(self._mask_disp.sum() * np.prod(self.frame.spacing) / 1000.0),
                "views": [{"key": k, "name": v} for k, v in VIEWS.items()]}

    def _best_slice(self) -> int:
        m = self._mask_disp
        if m is not None and m.any():
            return int(np.argmax(m.sum(axis=(1, 2))))
        return self._display["sub"].shape[0] // 2

    def slice_png(self, key: str, k: int, window: float | None, level: float | None, overlay: bool) -> bytes:
        if key not in self._display:
            raise NotFound(f"view {key}")
        arr = self._display[key]
        if not 0 <= k < arr.shape[0]:
            raise NotFound(f"slice {k}")
        w0, l0 = self.windows[key]
        grey = window_to_uint8(arr[k], w0 if window is None else window, l0 if level is None else level)
        return slice_png(grey, self._mask_disp[k] if overlay else None, color=mb.TUMOR_COLOR)

    # --------------------------------------------------------------------------- editing
    def stroke(self, tool: str, k: int, points, radius_mm: float, lo: float | None = None,
               hi: float | None = None) -> int:
        """Apply one stroke on subtraction slice *k*; returns the number of voxels changed."""
        view = self.session.current
        if view.locked:
            raise InputError("this case was submitted; its mask is locked", f"case {view.index + 1}")
        if tool not in TOOLS:
            raise InputError(f"unknown tool {tool!r}", "stroke", f"use one of {', '.join(TOOLS)}")
        n_slices, rows, cols = self._display["sub"].shape
        if not 0 <= k < n_slices or not 0.1 <= float(radius_mm) <= 50 or not 1 <= len(points) <= 5000:
            raise InputError("stroke outside the image, or brush radius not in 0.1-50 mm", "stroke")
        _, row_mm, col_mm = self.frame.spacing
        brush = stroke_mask((rows, cols), points, radius_mm, row_mm, col_mm)
        before = self._mask_disp[k].copy()
        after = before.copy()
        if tool == "erase":
            after &= ~brush
        else:
            if tool == "threshold":
                sub = self._display["sub"][k]
                lo = -np.inf if lo is None else float(lo)
                hi = np.inf if hi is None else float(hi)
                brush &= (sub >= lo) & (sub <= hi)
            after |= brush
        changed = int(np.count_nonzero(after != before))
        if changed:
            self._undo.append((k, before))
            del self._undo[:-UNDO_DEPTH]
            self._apply_slice(k, after)
            self.unsaved = True
        self.session.activity(edit=bool(changed))
        return changed

    def undo(self) -> bool:
        if not self._undo or self.session.current.locked:
            return False
        k, before = self._undo.pop()
        self._apply_slice(k, before)
        self.unsaved = True
        self.session.activity(edit=True)
        return True

    def _apply_slice(self, k: int, mask2d: np.ndarray) -> None:
        """Put display slice *k* of the mask into the scene's segment (Slicer's segmentation logic,
        that slice only); the overlay cache follows. Saving reads the whole segment back."""
        shape = self._size[::-1]
        slab, start = self.frame.slab(k, mask2d.astype(np.uint8), shape)
        mb.replace_segment_region(self.seg_node, mb.TUMOR_SEGMENT_ID, slab, start, self._grid_ref)
        self._mask_disp[k] = mask2d

    def _refresh_mask(self) -> None:
        label = mb.segment_to_label(self.ctx, self.seg_node, mb.TUMOR_SEGMENT_ID, reference=self.nodes["pre"])
        self._mask_disp = self.frame.to_display(sitk.GetArrayFromImage(label)).astype(bool)

    def current_mask(self) -> sitk.Image:
        """The segment as a label map on the exam's reference grid, read from the scene."""
        label = mb.segment_to_label(self.ctx, self.seg_node, mb.TUMOR_SEGMENT_ID, reference=self.nodes["pre"])
        label.SetOrigin(self._grid_ref.GetOrigin())  # bit for bit the exam's grid
        label.SetSpacing(self._grid_ref.GetSpacing())
        label.SetDirection(self._grid_ref.GetDirection())
        return label

    # ------------------------------------------------------------------ session actions
    def autosave(self):
        if self.ctx is None or self.session.current is None:
            return None
        path = self.session.maybe_autosave(self.current_mask)
        if path is not None:
            self.unsaved = False
        return path

    def pause(self, reason: str = "explicit") -> None:
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
            mask = self.current_mask() if self.ctx is not None and self.session.current is not None else None
            self.session.end(mask)
        finally:
            self.release_scene()
