"""The MRML bridge: the only place where engine images (SimpleITK, LPS) meet Slicer nodes (RAS).

Everything here takes the MRML scene and the module logics explicitly through an
:class:`MRMLContext`, so the same code runs inside the Slicer application
(:meth:`MRMLContext.from_slicer`) and in plain Python on the ``slicer-core`` wheel
(:meth:`MRMLContext.headless`), which has no ``slicer.mrmlScene`` and no ``slicer.modules``.

Geometry
--------
SimpleITK describes a voxel grid in LPS: ``x_lps = origin + D @ (spacing * ijk)``. Slicer keeps
the same grid in RAS as a volume node's IJKToRAS matrix. The two differ only by the fixed flip
``diag(-1, -1, 1)`` applied to origin and direction; spacing is shared. vtkImageData itself has
no direction, so the direction always travels in the node's IJKToRAS matrix (or in a
``vtkOrientedImageData``'s image-to-world matrix). Voxel order is the same on both sides:
SimpleITK's numpy array is (k, j, i), and so is ``slicer.util.arrayFromVolume``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

import slicer  # real MRML: the Slicer application or the slicer-core wheel
import vtk
from vtk.util import numpy_support

from ..core.errors import InputError
from ..io.segnrrd import TUMOR_COLOR, TUMOR_SEGMENT_ID, TUMOR_SEGMENT_NAME, tumor_terminology

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


# ----------------------------------------------------------------------------------- context
@dataclass
class MRMLContext:
    """A scene with the module logics the bridge needs; pass it to every bridge function."""

    scene: Any
    app_logic: Any
    volumes_logic: Any
    segmentations_logic: Any
    sequences_logic: Any = None

    @classmethod
    def headless(cls) -> "MRMLContext":
        """A fresh scene with real module logics, without the Slicer application (slicer-core wheel)."""
        scene = slicer.vtkMRMLScene()
        app = slicer.vtkSlicerApplicationLogic()
        app.SetMRMLScene(scene)
        # Use the application's own colour logic: a second vtkMRMLColorLogic removes the default
        # colour nodes from the scene when it is destroyed.
        colors = app.GetColorLogic()
        colors.SetMRMLScene(scene)
        colors.AddDefaultColorNodes()

        def register(logic, name):
            logic.SetMRMLScene(scene)
            logic.SetMRMLApplicationLogic(app)
            app.SetModuleLogic(name, logic)
            return logic

        register(colors, "Colors")
        volumes = register(slicer.vtkSlicerVolumesLogic(), "Volumes")
        # Registers the segmentation converter rules (labelmap <-> closed surface) too.
        segmentations = register(slicer.vtkSlicerSegmentationsModuleLogic(), "Segmentations")
        sequences = register(slicer.vtkSlicerSequencesLogic(), "Sequences") \
            if hasattr(slicer, "vtkSlicerSequencesLogic") else None
        return cls(scene, app, volumes, segmentations, sequences)

    @classmethod
    def from_slicer(cls) -> "MRMLContext":
        """The running Slicer application's scene and logics (only inside Slicer)."""
        modules = slicer.modules
        sequences = modules.sequences.logic() if hasattr(modules, "sequences") else None
        return cls(slicer.mrmlScene, slicer.app.applicationLogic(), modules.volumes.logic(),
                   modules.segmentations.logic(), sequences)


# ----------------------------------------------------------------------------------- geometry
def ijk_to_ras(img: sitk.Image) -> np.ndarray:
    """4x4 IJKToRAS matrix of a 3D SimpleITK image."""
    direction = np.asarray(img.GetDirection(), float).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = LPS_TO_RAS @ direction @ np.diag(img.GetSpacing())
    m[:3, 3] = LPS_TO_RAS @ np.asarray(img.GetOrigin(), float)
    return m


def _vtk_matrix(m: np.ndarray) -> vtk.vtkMatrix4x4:
    out = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(m[r, c]))
    return out


def _numpy_matrix(m: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


# Largest |cosine| between two voxel axes taken as rounding noise (RAS<->LPS and transform products
# leave ~1e-7); beyond it the grid is sheared, e.g. a volume under an affine registration's transform.
SHEAR_TOL = 1e-3


def _geometry_from_ijk_to_ras(m: np.ndarray, name: str | None = None) -> tuple[tuple, tuple, tuple]:
    """(origin, spacing, direction) in LPS from an IJKToRAS matrix (which may include a transform).

    Refused, naming the volume *name*: a non-finite matrix (a singular one set on a node reads back
    as NaN), a zero voxel spacing, and axes not at right angles (a sheared grid, which a
    SimpleITK image cannot hold: squaring its axes would move every voxel)."""
    if not np.all(np.isfinite(m)):
        raise InputError("the volume's geometry (IJK to RAS matrix) holds NaN or infinite values", name,
                         "fix or reset the volume's spacing, origin and directions in the Volumes module, or "
                         "reload the volume")
    lin = LPS_TO_RAS @ m[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    if np.any(spacing <= 0):
        raise InputError("volume has a zero voxel spacing", name, "fix the volume's spacing in the Volumes module")
    direction = lin / spacing
    gram = direction.T @ direction
    if np.max(np.abs(gram - np.eye(3))) > SHEAR_TOL:
        raise InputError("the volume's voxel axes are not at right angles (a sheared grid, e.g. under an affine "
                         "transform)", name, "resample the volume onto a grid with perpendicular axes (Resample "
                         "Scalar/Vector/DWI Volume), or remove the transform, then segment it")
    # Rounding noise from RAS<->LPS and transform products must not make the matrix non-orthogonal.
    u, _, vt = np.linalg.svd(direction)
    direction = u @ vt
    origin = LPS_TO_RAS @ m[:3, 3]
    return tuple(map(float, origin)), tuple(map(float, spacing)), tuple(map(float, direction.ravel()))


def set_node_geometry(node, img: sitk.Image) -> None:
    """Give a volume node the grid of *img* (origin, spacing, IJKToRAS directions)."""
    node.SetIJKToRASMatrix(_vtk_matrix(ijk_to_ras(img)))


def node_ijk_to_world(node) -> np.ndarray:
    """IJKToRAS of a volume node in world coordinates, with its linear parent transforms applied."""
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    ijk = _numpy_matrix(m)
    parent = node.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise InputError("the volume is under a non-linear transform", node.GetName(),
                             "harden the transform (Data module, right-click > Harden transform) and try again")
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        ijk = _numpy_matrix(to_world) @ ijk
    return ijk


# ----------------------------------------------------------------------------------- volumes
def image_to_volume_node(ctx: MRMLContext, img: sitk.Image, name: str, node=None,
                         labelmap: bool = False):
    """Put *img* into a scalar (or labelmap) volume node, reusing *node* when given.

    A reused node keeps its name (the user may have chosen it). A new node gets a display node (grey colour map, or the generic label colours) so it shows up
    in the slice views like any volume loaded from a file.
    """
    _check_3d_scalar(img, name)
    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    if node is None:
        node = ctx.scene.AddNewNodeByClass(cls, name)
    elif not node.IsA(cls):
        raise InputError(f"output node '{node.GetName()}' is a {node.GetClassName()}, not a {cls}",
                         name, "pick another output node or create a new one")
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(img))
    set_node_geometry(node, img)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        if display is not None and not labelmap:
            display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    return node


def volume_node_to_image(node) -> sitk.Image:
    """SimpleITK image (LPS) of a scalar volume node, in world coordinates, voxels copied."""
    if node is None or node.GetImageData() is None:
        raise InputError("the volume node holds no image", None if node is None else node.GetName(),
                         "load or select a volume with image data")
    image_data = node.GetImageData()
    if image_data.GetNumberOfScalarComponents() != 1:
        raise InputError(f"volume has {image_data.GetNumberOfScalarComponents()} components, expected one",
                         node.GetName(), "select a scalar (grey-scale) volume per phase")
    arr = np.array(slicer.util.arrayFromVolume(node), copy=True)
    img = sitk.GetImageFromArray(arr)
    origin, spacing, direction = _geometry_from_ijk_to_ras(node_ijk_to_world(node), node.GetName())
    img.SetOrigin(origin)
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    return img


def volume_array_view(node) -> np.ndarray:
    """The voxels of a scalar volume node as a (k, j, i) numpy view of the node's own memory (no
    copy; read-only use, valid while the node keeps its image data)."""
    if node is None or node.GetImageData() is None:
        raise InputError("the volume node holds no image", None if node is None else node.GetName())
    view = slicer.util.arrayFromVolume(node)
    view.flags.writeable = False
    return view


def _check_3d_scalar(img: sitk.Image, what: str) -> None:
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"expected a scalar 3D image, got dimension {img.GetDimension()} with "
                         f"{img.GetNumberOfComponentsPerPixel()} component(s)", what)


# ----------------------------------------------------------------------------------- segmentations
def oriented_image_from_label(label: sitk.Image) -> Any:
    """A binary ``vtkOrientedImageData`` (uint8, 1 = inside) carrying *label*'s geometry."""
    _check_3d_scalar(label, "label map")
    mask = (sitk.GetArrayViewFromImage(label) > 0).astype(np.uint8)
    oriented = slicer.vtkOrientedImageData()
    k, j, i = mask.shape
    oriented.SetDimensions(i, j, k)
    scalars = numpy_support.numpy_to_vtk(mask.ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR)
    oriented.GetPointData().SetScalars(scalars)
    oriented.SetImageToWorldMatrix(_vtk_matrix(ijk_to_ras(label)))
    return oriented


def set_reference_geometry(seg_node, img: sitk.Image) -> None:
    """Make *img*'s grid the segmentation's reference geometry (what the Segment Editor edits on)."""
    geometry = slicer.vtkOrientedImageData()
    geometry.SetDimensions(*img.GetSize())
    geometry.SetImageToWorldMatrix(_vtk_matrix(ijk_to_ras(img)))
    serialized = slicer.vtkSegmentationConverter.SerializeImageGeometry(geometry)
    seg_node.GetSegmentation().SetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(), serialized)


def label_to_segmentation(ctx: MRMLContext, label: sitk.Image, seg_node=None, name: str = "Tumor segmentation",
                          reference_node=None, segment_id: str = TUMOR_SEGMENT_ID,
                          segment_name: str = TUMOR_SEGMENT_NAME,
                          color: Sequence[float] = TUMOR_COLOR, terminology: str | None = None):
    """Fill segment *segment_id* of a segmentation node from a binary label map.

    *seg_node* is reused when given (its name, other segments and display settings are kept; the
    segment is replaced in place), otherwise a new node named *name* is added. The reference geometry comes from
    *reference_node* (the exam's volume, so that DICOM SEG export and the Segment Editor work on
    the exam grid) or else from *label* itself. Voxels > 0 are inside.
    """
    if seg_node is None:
        seg_node = ctx.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        seg_node.CreateDefaultDisplayNodes()
    if reference_node is not None:
        seg_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    else:
        set_reference_geometry(seg_node, label)
    segmentation = seg_node.GetSegmentation()
    if segmentation.GetSegment(segment_id) is None:
        segmentation.AddEmptySegment(segment_id, segment_name, list(map(float, color)))
    segment = segmentation.GetSegment(segment_id)
    segment.SetName(segment_name)
    segment.SetColor(*map(float, color))
    segment.SetNameAutoGenerated(False)  # else Slicer may rename/recolour it from the terminology
    segment.SetColorAutoGenerated(False)
    segment.SetTag(segment.GetTerminologyEntryTagName(), terminology or tumor_terminology())
    ok = slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        oriented_image_from_label(label), seg_node, segment_id,
        slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    if not ok:
        raise RuntimeError(f"Slicer could not set the label map of segment '{segment_id}'")
    return seg_node


def replace_segment_region(seg_node, segment_id: str, mask: np.ndarray, start_ijk: Sequence[int],
                           grid: sitk.Image) -> None:
    """Replace segment *segment_id* inside one box of *grid* by *mask* (a (k, j, i) array whose
    voxel [0, 0, 0] is *start_ijk* (i, j, k) of *grid*); the segment outside the box is kept.

    This is an editor stroke: only the box is sent to Slicer's segmentation logic, so its cost
    follows the box (one slice), not the volume."""
    m = (np.asarray(mask) > 0).astype(np.uint8)
    nk, nj, ni = m.shape
    i0, j0, k0 = (int(v) for v in start_ijk)
    oriented = slicer.vtkOrientedImageData()
    oriented.SetExtent(i0, i0 + ni - 1, j0, j0 + nj - 1, k0, k0 + nk - 1)
    oriented.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(oriented.GetPointData().GetScalars())[:] = m.ravel()
    oriented.SetImageToWorldMatrix(_vtk_matrix(ijk_to_ras(grid)))
    # MODE_REPLACE would clear the segment outside the box too; min then max with the box's extent
    # gives old & mask, then | mask = mask inside the box and leaves the rest alone.
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    for mode in (logic.MODE_MERGE_MIN, logic.MODE_MERGE_MAX):
        if not logic.SetBinaryLabelmapToSegment(oriented, seg_node, segment_id, mode, oriented.GetExtent()):
            raise RuntimeError(f"Slicer could not modify segment '{segment_id}'")


def segment_to_label(ctx: MRMLContext, seg_node, segment_id: str | None = None,
                     reference: "sitk.Image | Any | None" = None) -> sitk.Image:
    """Export one segment to a uint8 label map (1 = inside) on a reference grid.

    *reference* is a SimpleITK image or a volume node; by default the segmentation's own reference
    geometry is used. The temporary labelmap node is removed from the scene afterwards.
    """
    segmentation = seg_node.GetSegmentation()
    if segment_id is None:
        if segmentation.GetNumberOfSegments() == 0:
            raise InputError("the segmentation has no segments", seg_node.GetName())
        segment_id = segmentation.GetNthSegmentID(0)
    if segmentation.GetSegment(segment_id) is None:
        raise InputError(f"segment '{segment_id}' not found", seg_node.GetName(),
                         "pick one of: " + ", ".join(segmentation.GetSegmentIDs()))
    ref_node, temp_ref = reference, None
    if isinstance(reference, sitk.Image):
        temp_ref = ref_node = image_to_volume_node(ctx, _empty_like(reference), "__btseg_ref")
    elif reference is None:
        temp_ref = ref_node = _reference_geometry_node(ctx, seg_node)
    label_node = ctx.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__btseg_export")
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            seg_node, ids, label_node, ref_node, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
        if not ok:
            raise RuntimeError(f"Slicer could not export segment '{segment_id}' to a label map")
        out = volume_node_to_image(label_node)
        return sitk.Cast(out > 0, sitk.sitkUInt8)
    finally:
        ctx.scene.RemoveNode(label_node)
        if temp_ref is not None:
            ctx.scene.RemoveNode(temp_ref)


def _empty_like(img: sitk.Image) -> sitk.Image:
    out = sitk.Image(img.GetSize(), sitk.sitkUInt8)
    out.CopyInformation(img)
    return out


def _reference_geometry_node(ctx: MRMLContext, seg_node):
    """A temporary empty volume node on the segmentation's reference image geometry."""
    segmentation = seg_node.GetSegmentation()
    serialized = segmentation.GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    if not serialized:
        raise InputError("the segmentation has no reference geometry", seg_node.GetName(),
                         "pass the volume the segmentation belongs to")
    geometry = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(serialized, geometry, False)
    m = vtk.vtkMatrix4x4()
    geometry.GetImageToWorldMatrix(m)
    ijk = _numpy_matrix(m)
    extent = geometry.GetExtent()
    # A non-zero extent start shifts the origin to the first voxel of the extent.
    start = np.array([extent[0], extent[2], extent[4], 1.0])
    ijk[:3, 3] = (ijk @ start)[:3]
    size = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
    ref = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    origin, spacing, direction = _geometry_from_ijk_to_ras(ijk)
    ref.SetOrigin(origin)
    ref.SetSpacing(spacing)
    ref.SetDirection(direction)
    return image_to_volume_node(ctx, ref, "__btseg_ref")


# ----------------------------------------------------------------------------------- .seg.nrrd files
def read_seg_nrrd(path: str | os.PathLike, segment_id: str | None = None) -> sitk.Image:
    """Read one segment of a ``.seg.nrrd`` (Slicer's or :func:`..io.segnrrd.write_seg_nrrd`'s) back
    as a uint8 label map on the file's reference grid, through Slicer's own segmentation reader."""
    from ..io.safety import check_input_path

    path = check_input_path(path, "segmentation")  # missing, a folder, a pipe: named, not handed to Slicer
    ctx = MRMLContext.headless()
    seg_node = ctx.segmentations_logic.LoadSegmentationFromFile(str(path), False)
    if seg_node is None:
        raise InputError("Slicer cannot read this segmentation file", path,
                         "make sure it is a complete .seg.nrrd written by Slicer or BreastTumorSeg")
    return segment_to_label(ctx, seg_node, segment_id)


# ----------------------------------------------------------------------------------- tables, views, hierarchy
def fill_table(ctx: MRMLContext, columns: Sequence[str], rows: Sequence[Sequence], node=None,
               name: str = "table"):
    """Fill a ``vtkMRMLTableNode`` (reused when given) with typed columns.

    Column types follow the values of the first row: int, float (double) or text; a table with
    no rows gets text columns. Previous content of a reused node is replaced; its name is kept.
    """
    if node is None:
        node = ctx.scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"row {row!r} has {len(row)} values for {len(columns)} columns")
    table = vtk.vtkTable()
    for c, title in enumerate(columns):
        sample = rows[0][c] if rows else ""
        if isinstance(sample, (bool, np.bool_, str)):
            arr = vtk.vtkStringArray()
        elif isinstance(sample, (int, np.integer)):
            arr = vtk.vtkIntArray()
        else:
            arr = vtk.vtkDoubleArray()
        arr.SetName(title)
        for row in rows:
            value = row[c]
            if isinstance(arr, vtk.vtkStringArray):
                arr.InsertNextValue(str(value))
            else:
                arr.InsertNextValue(value)
        table.AddColumn(arr)
    node.SetAndObserveTable(table)
    # Column names as headers (renamed "title" in Slicer 5.9+; the old name warns there).
    set_header = getattr(node, "SetUseColumnTitleAsColumnHeader", None) or node.SetUseColumnNameAsColumnHeader
    set_header(True)
    node.SetLocked(True)  # results, not a form: the user edits the segmentation, not its numbers
    return node


def place_next_to(ctx: MRMLContext, node, reference_node) -> None:
    """Put *node* in the subject hierarchy under the same parent (study) as *reference_node*."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(ctx.scene)
    if sh is None or reference_node is None:
        return
    ref_item = sh.GetItemByDataNode(reference_node)
    if not ref_item:
        return
    parent = sh.GetItemParent(ref_item)
    item = sh.GetItemByDataNode(node)
    if not item:  # Slicer's GUI adds items for new nodes itself; a headless scene does not
        sh.CreateItem(parent, node)
    elif sh.GetItemParent(item) != parent:
        sh.SetItemParent(item, parent)


def show_in_slice_views(ctx: MRMLContext, background=None, segmentation=None, foreground=None,
                        foreground_opacity: float = 0.0) -> None:
    """Background volume in every slice view with the segmentation outlined over it.

    Works on the scene's slice composite nodes, so it does the same in the Slicer application
    and in a headless scene that has views.
    """
    if background is not None:
        selection = ctx.app_logic.GetSelectionNode()
        if selection is not None:
            selection.SetActiveVolumeID(background.GetID())
    composites = ctx.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    for i in range(composites.GetNumberOfItems()):
        comp = composites.GetItemAsObject(i)
        if background is not None:
            comp.SetBackgroundVolumeID(background.GetID())
        if foreground is not None:
            comp.SetForegroundVolumeID(foreground.GetID())
            comp.SetForegroundOpacity(foreground_opacity)
    if segmentation is not None:
        display = segmentation.GetDisplayNode()
        if display is None:
            segmentation.CreateDefaultDisplayNodes()
            display = segmentation.GetDisplayNode()
        display.SetVisibility(True)
        display.SetVisibility2DFill(True)
        display.SetVisibility2DOutline(True)
        display.SetOpacity2DFill(0.35)


def observe_segment_changes(seg_node, callback) -> list:
    """Call *callback()* after every change of the segmentation's voxels (an effect, undo, a
    replaced segment); returns ``[(object, tag)]`` for :func:`remove_observers`."""
    segmentation = seg_node.GetSegmentation()
    return [(segmentation, segmentation.AddObserver(event, lambda *_: callback()))
            for event in (slicer.vtkSegmentation.SourceRepresentationModified,
                          slicer.vtkSegmentation.SegmentModified)]


def remove_observers(observers) -> None:
    for obj, tag in observers:
        obj.RemoveObserver(tag)
