"""Reader mode: one reading of a study (:class:`..study.session.CaseView`) in MRML, and back.

Qt-free, so it runs (and is tested) over the real MRML of the ``slicer-core`` wheel. For a case it
loads the hanging protocol a breast reader expects — subtraction (first post-contrast minus
pre-contrast, motion-corrected), first post-contrast and pre-contrast, in the Red, Yellow and Green
views — and a segmentation node (segment "Tumor") filled from the reading's starting mask (her
latest autosave, the model's mask in the assisted arm, or empty), on the exam's reference grid.
Nodes are named by the case's pseudonym only. :meth:`ReaderLogic.current_mask` turns the edited
segment back into a SimpleITK mask on that grid for the session to save.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import SimpleITK as sitk

from . import mrml_bridge as bridge

# The hanging protocol: which image goes to which slice view.
HANGING_PROTOCOL = (("subtraction", "Red"), ("first post-contrast", "Yellow"), ("pre-contrast", "Green"))


@dataclass
class ReadingNodes:
    """The scene nodes of the open reading."""

    label: str
    volumes: dict[str, Any] = field(default_factory=dict)  # hanging-protocol name -> volume node
    segmentation: Any = None

    @property
    def source(self):
        """The volume the Segment Editor works on (the subtraction)."""
        return self.volumes.get("subtraction")


class ReaderLogic:
    """Load a reading into the scene, read the edited mask back, clear it on case switch."""

    def __init__(self, ctx: bridge.MRMLContext, register: bool = True):
        self.ctx = ctx
        self.register = register  # motion correction of the post-contrast phase before subtraction
        self.nodes: ReadingNodes | None = None

    def load(self, view) -> ReadingNodes:
        """Replace whatever reading is shown by *view*'s images and starting mask."""
        self.clear()
        images = view.hanging_protocol(register=self.register)
        nodes = ReadingNodes(view.label)
        for name, _ in HANGING_PROTOCOL:
            nodes.volumes[name] = bridge.image_to_volume_node(self.ctx, images[name], f"{view.label} {name}")
        mask = view.starting_mask()
        nodes.segmentation = bridge.label_to_segmentation(self.ctx, mask, name=f"{view.label} reading",
                                                          reference_node=nodes.source)
        self.nodes = nodes
        self.show()
        return nodes

    def show(self) -> None:
        """Subtraction, first post-contrast and pre-contrast in the Red, Yellow and Green views
        (axial), the reading outlined on each; the selection points at the subtraction."""
        if self.nodes is None:
            return
        bridge.show_in_slice_views(self.ctx, background=self.nodes.source, segmentation=self.nodes.segmentation)
        composites = self.ctx.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
        by_view = {}
        for i in range(composites.GetNumberOfItems()):
            comp = composites.GetItemAsObject(i)
            by_view[comp.GetLayoutName()] = comp
        for name, view in HANGING_PROTOCOL:
            if view in by_view:
                by_view[view].SetBackgroundVolumeID(self.nodes.volumes[name].GetID())
        slices = self.ctx.scene.GetNodesByClass("vtkMRMLSliceNode")
        for i in range(slices.GetNumberOfItems()):
            node = slices.GetItemAsObject(i)
            if node.GetLayoutName() in dict((v, n) for n, v in HANGING_PROTOCOL):
                node.SetOrientation("Axial")

    def view_assignment(self) -> dict[str, str]:
        """Slice view -> name of the volume it shows (what the reader sees where)."""
        out = {}
        composites = self.ctx.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
        for i in range(composites.GetNumberOfItems()):
            comp = composites.GetItemAsObject(i)
            node = self.ctx.scene.GetNodeByID(comp.GetBackgroundVolumeID() or "")
            if node is not None:
                out[comp.GetLayoutName()] = node.GetName()
        return out

    def current_mask(self) -> sitk.Image:
        """The "Tumor" segment as a uint8 mask on the exam's reference grid."""
        if self.nodes is None:
            raise RuntimeError("no reading is loaded")
        return bridge.segment_to_label(self.ctx, self.nodes.segmentation, bridge.TUMOR_SEGMENT_ID,
                                       reference=self.nodes.source)

    def clear(self) -> None:
        """Remove the open reading's nodes (nothing of one case stays visible in the next)."""
        if self.nodes is None:
            return
        for node in list(self.nodes.volumes.values()) + [self.nodes.segmentation]:
            if node is not None and self.ctx.scene.IsNodePresent(node):
                self.ctx.scene.RemoveNode(node)
        self.nodes = None


def observe_edits(seg_node, callback) -> tuple[Any, list[int]]:
    """Call ``callback()`` whenever a segment of *seg_node* changes (an edit in the Segment Editor).
    Returns what :func:`stop_observing` needs."""
    import slicer

    segmentation = seg_node.GetSegmentation()
    # painting changes the source representation (a binary label map)
    tags = [segmentation.AddObserver(slicer.vtkSegmentation.SourceRepresentationModified, lambda *args: callback())]
    return segmentation, tags


def stop_observing(observation: tuple[Any, list[int]] | None) -> None:
    if observation is not None:
        obj, tags = observation
        for tag in tags:
            obj.RemoveObserver(tag)
