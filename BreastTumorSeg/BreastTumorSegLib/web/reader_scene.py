"""One reader's MRML scene on trame-slicer: the hanging protocol, her segmentation and Slicer's editor.

A :class:`ReaderScene` owns a trame-slicer ``SlicerApp`` (a real MRML scene with Slicer's module
logics, the segment editor and its effects) filled with the study engine's blinded view of one case:
the registered subtraction, the first post-contrast and the pre-contrast phase as volume nodes and
the reader's segmentation (empty, or the model's mask in the assisted arm). Three linked slice
views -- one per phase, any orientation -- and a 3D view show it; the reader edits with the editor's
effects (Paint, Erase, Draw, Scissors, Threshold, Islands, Smoothing) and their undo stack.

The views are created by a factory: trame-slicer's remote views in the station
(:mod:`.trame_station`), or its direct off-screen views in tests and benchmarks. Rendering,
stroke handling and the overlay are Slicer's; this module only wires the scene. Saving, timing,
locks and the audit log stay the study engine's: :meth:`current_mask` reads the segment back.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..slicer import mrml_bridge as mb

# view key -> (phase name in the engine's hanging protocol, slice view tag, its colour)
PHASES = {"sub": ("subtraction", "Red", "#F34A33"),
          "post": ("first post-contrast", "Green", "#6DAD4A"),
          "pre": ("pre-contrast", "Yellow", "#EFD64D")}
ORIENTATIONS = ("Axial", "Coronal", "Sagittal")
# the study's effects: the label shown to the reader -> trame-slicer's effect class name
EFFECTS = {"Paint": "SegmentationEffectPaint", "Erase": "SegmentationEffectErase",
           "Draw": "SegmentationEffectDraw", "Scissors": "SegmentationEffectScissors",
           "Threshold": "SegmentationEffectThreshold", "Islands": "SegmentationEffectIslands",
           "Smoothing": "SegmentationEffectSmoothing"}
UNDO_DEPTH = 20
LAYOUT_ID = "Hanging protocol"


def hanging_layout(orientation: str = "Axial"):
    """Three slice views side by side (subtraction, post-contrast, pre-contrast) over a 3D view."""
    from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

    slices = [ViewLayoutDefinition.slice_view(orientation, label=tag, color=color)
              for _, tag, color in PHASES.values()]
    return Layout(LayoutDirection.Vertical,
                  [Layout(LayoutDirection.Horizontal, slices), ViewLayoutDefinition.threed_view()])


def default_window(node, subtraction: bool) -> tuple[float, float]:
    """(window, level) from robust percentiles: 1-99.5 % of the phase, 50-99.8 % of the
    subtraction (whose background is ~0 and whose enhancing tissue is what the reader looks for)."""
    arr = mb.volume_array_view(node)
    sample = arr[:: max(1, arr.shape[0] // 16)].ravel()
    lo, hi = np.percentile(sample, (50.0, 99.8) if subtraction else (1.0, 99.5))
    if hi <= lo:
        hi = lo + 1.0
    return float(hi - lo), float((hi + lo) / 2.0)


class ReaderScene:
    """A reader's scene of one case. *register_views(view_manager)* adds the view factory
    (remote trame views, or direct off-screen views); *layout_manager_factory(scene, view_manager)*
    returns the LayoutManager that creates the views (``None``: create them directly)."""

    def __init__(self, images: dict, start: sitk.Image, register_views, slicer_app=None):
        from trame_slicer.core import SlicerApp
        from undo_stack import UndoStack

        self.app = slicer_app or SlicerApp()
        register_views(self.app.view_manager)
        self.ctx = mb.MRMLContext(scene=self.app.scene, app_logic=self.app.app_logic,
                                  volumes_logic=self.app.volumes_logic,
                                  segmentations_logic=self.app.segmentations_logic)
        ref = images["pre-contrast"]
        self.grid = sitk.Image([1, 1, 1], sitk.sitkUInt8)  # the exam's grid, without its voxels
        self.grid.SetOrigin(ref.GetOrigin())
        self.grid.SetSpacing(ref.GetSpacing())
        self.grid.SetDirection(ref.GetDirection())
        self.nodes = {key: mb.image_to_volume_node(self.ctx, sitk.Cast(images[name], sitk.sitkFloat32), name)
                      for key, (name, _, _) in PHASES.items()}
        self.windows = {}
        for key, node in self.nodes.items():
            self.windows[key] = default_window(node, key == "sub")
            self.set_window(key, *self.windows[key])
        self.seg_node = mb.label_to_segmentation(self.ctx, start, reference_node=self.nodes["sub"],
                                                 name="Reader segmentation")
        self.editor = self.app.segmentation_editor
        self.undo_stack = UndoStack(undo_limit=UNDO_DEPTH)
        self.editor.set_undo_stack(self.undo_stack)
        self.editor.set_active_segmentation(self.seg_node, self.nodes["sub"])
        self.editor.set_active_segment_id(mb.TUMOR_SEGMENT_ID)
        # The 3D view shows the segment's surface when the reader switches it on (the editor's
        # "Rendering" section): rebuilding the surface after every stroke costs more than the
        # stroke (benchmarks/bench_web_sessions.py), so it is off when a case opens.
        self.editor.set_surface_representation_enabled(False)

    def use_undo_stack(self, stack) -> None:
        """Share the editor UI's undo stack (its Undo button and :meth:`undo` undo the same steps)."""
        self.undo_stack = stack
        self.editor.set_undo_stack(stack)
        self.editor.active_segmentation.set_undo_stack(stack)

    # ------------------------------------------------------------------ views
    def show_in_views(self) -> None:
        """Each slice view shows its phase (linked: one slice position, one orientation for all)
        with the segmentation over it; the 3D view shows the segment's surface."""
        for key, (_, tag, _) in PHASES.items():
            view = self.slice_view(tag)
            if view is None:
                continue
            view.set_background_volume_id(self.nodes[key].GetID())
            view._logic.GetSliceCompositeNode().SetLinkedControl(True)  # noqa: SLF001 (no public accessor)
            view.fit_view_to_content()
        for view in self.app.view_manager.get_threed_views():
            view.reset_view()

    def slice_view(self, tag: str):
        from trame_slicer.views import SliceView

        view = self.app.view_manager.get_view(tag)
        return view if isinstance(view, SliceView) else None

    def slice_views(self) -> list:
        return [v for v in (self.slice_view(tag) for _, tag, _ in PHASES.values()) if v is not None]

    def set_orientation(self, orientation: str) -> None:
        if orientation not in ORIENTATIONS:
            raise ValueError(f"orientation {orientation!r}: use one of {', '.join(ORIENTATIONS)}")
        for view in self.slice_views():
            view.set_orientation(orientation)
            view.fit_view_to_content()

    def set_window(self, key: str, window: float, level: float) -> None:
        from trame_slicer.core.volume_window_level import VolumeWindowLevel

        VolumeWindowLevel.set_volume_node_window_level(self.nodes[key], float(window), float(level))

    # ------------------------------------------------------------------ editing
    def set_effect(self, label: str | None):
        """Activate one of the study's effects by its label (None: no effect, views navigate)."""
        if label is None:
            self.editor.deactivate_effect()
            return None
        if label not in EFFECTS:
            raise ValueError(f"effect {label!r}: use one of {', '.join(EFFECTS)}")
        import trame_slicer.segmentation as effects

        return self.editor.set_active_effect_type(getattr(effects, EFFECTS[label]))

    def undo(self) -> bool:
        if not self.undo_stack.can_undo():
            return False
        self.undo_stack.undo()
        return True

    def segment_mtime(self) -> int:
        """Modification time of the segment's voxels: changes with every edit, whether or not an
        event announced it (the station checks it before saving)."""
        segmentation = self.seg_node.GetSegmentation()
        segment = segmentation.GetSegment(mb.TUMOR_SEGMENT_ID)
        rep = segment.GetRepresentation(segmentation.GetSourceRepresentationName()) if segment else None
        return int(rep.GetMTime()) if rep is not None else 0

    def mask_array(self) -> np.ndarray:
        """The segment as a (k, j, i) bool array on the exam's grid."""
        return sitk.GetArrayFromImage(self.current_mask()).astype(bool)

    def current_mask(self) -> sitk.Image:
        """The segment as a label map on the exam's reference grid, read from the scene."""
        # Exported on the segmentation's own reference geometry (the subtraction's, which the
        # editor set): a second grid, even one equal up to rounding, would resample the segment.
        label = mb.segment_to_label(self.ctx, self.seg_node, mb.TUMOR_SEGMENT_ID, reference=self.nodes["sub"])
        label.SetOrigin(self.grid.GetOrigin())  # bit for bit the exam's grid
        label.SetSpacing(self.grid.GetSpacing())
        label.SetDirection(self.grid.GetDirection())
        return label

    def replace_mask(self, label: sitk.Image) -> None:
        """Replace the segment (click-to-correct's refined mask) as one step of the editor's undo stack."""
        from trame_slicer.segmentation.segmentation_undo_command import SegmentationLabelMapUndoCommand

        with SegmentationLabelMapUndoCommand.push_state_change(self.editor.active_segmentation):
            mb.label_to_segmentation(self.ctx, label, seg_node=self.seg_node, reference_node=self.nodes["sub"])

    @staticmethod
    def ras_at(view, x: float, y: float) -> tuple[float, float, float]:
        """The RAS point (mm) under display position (*x*, *y*) of slice view *view* (Slicer's XY-to-RAS)."""
        node = view.get_view_node()
        return tuple(float(v) for v in node.GetXYToRAS().MultiplyPoint((float(x), float(y), 0.0, 1.0))[:3])

    def close(self) -> None:
        self.editor.deactivate_effect()
        self.app.scene.Clear(True)
