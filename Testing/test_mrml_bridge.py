"""The MRML bridge against real MRML (slicer-core wheel): geometry, segmentations, and the engine's
.seg.nrrd files (written without Slicer by io.segnrrd) as Slicer's own reader loads them.

Every comparison is voxel for voxel, and geometry is compared to 1e-4 mm (origin) and 1e-6
(direction cosines), including oblique and near-90-degree direction matrices.
"""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed")

from BreastTumorSegLib.slicer import mrml_bridge as mb  # noqa: E402
from BreastTumorSegLib.core.errors import InputError  # noqa: E402
from BreastTumorSegLib.io import segnrrd  # noqa: E402
from BreastTumorSegLib.io.segnrrd import write_seg_nrrd  # noqa: E402


@pytest.fixture
def mrml() -> mb.MRMLContext:
    """A fresh real MRML scene with volumes and segmentations logics (see ../shared/SLICER.md)."""
    return mb.MRMLContext.headless()


def oblique_label(shape=(7, 9, 11), seed=0) -> sitk.Image:
    """Random binary label map on an anisotropic grid with a rotated direction matrix."""
    rng = np.random.default_rng(seed)
    img = sitk.GetImageFromArray((rng.random(shape) > 0.6).astype(np.uint8))
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((10.0, -20.0, 33.0))
    img.SetDirection(sitk.VersorTransform((0.3, 0.5, 0.2), 0.7).GetMatrix())
    return img


def sag_crop(real_anatomy_dir, size=(96, 80, 40)) -> sitk.Image:
    """A crop of the real sagittal volume (direction matrix ~90 degrees off identity)."""
    img = sitk.ReadImage(str(real_anatomy_dir / "SAG_T1_3D_BILAT.nii.gz"), sitk.sitkFloat32)
    start = [(s - c) // 2 for s, c in zip(img.GetSize(), size)]
    return sitk.RegionOfInterest(img, size, start)


def assert_same_image(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


# ------------------------------------------------------------------------------- geometry
def test_ijk_to_ras_maps_voxels_to_the_same_physical_point():
    img = oblique_label()
    m = mb.ijk_to_ras(img)
    for ijk in [(0, 0, 0), (10, 8, 6), (3, 1, 5)]:
        lps = np.array(img.TransformIndexToPhysicalPoint(ijk))
        ras = (m @ np.array([*ijk, 1.0]))[:3]
        np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-9)


def test_volume_node_round_trip_keeps_voxels_and_geometry(mrml, real_anatomy_dir):
    img = sag_crop(real_anatomy_dir)
    node = mb.image_to_volume_node(mrml, img, "sag")
    assert node.IsA("vtkMRMLScalarVolumeNode")
    # The node's own IJKToRAS must place voxel (i, j, k) where SimpleITK places it (RAS = flipped LPS).
    ijk = (5, 70, 31)
    ras = (mb.node_ijk_to_world(node) @ np.array([*ijk, 1.0]))[:3]
    np.testing.assert_allclose(ras, np.array(img.TransformIndexToPhysicalPoint(ijk)) * [-1, -1, 1], atol=1e-4)
    assert_same_image(mb.volume_node_to_image(node), img)


def test_volume_node_under_linear_transform_comes_back_in_world_coordinates(mrml):
    img = oblique_label()
    node = mb.image_to_volume_node(mrml, sitk.Cast(img, sitk.sitkFloat32), "moved")
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = np.eye(4)
    shift[:3, 3] = [5.0, -3.0, 12.0]  # RAS
    transform.SetMatrixTransformToParent(mb._vtk_matrix(shift))
    node.SetAndObserveTransformNodeID(transform.GetID())
    out = mb.volume_node_to_image(node)
    np.testing.assert_allclose(np.array(out.GetOrigin()), np.array(img.GetOrigin()) + [-5.0, 3.0, 12.0], atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(out), sitk.GetArrayViewFromImage(img))


def test_reusing_a_volume_node_replaces_its_content(mrml):
    a = sitk.Cast(oblique_label(seed=1), sitk.sitkFloat32)
    b = sitk.Cast(oblique_label(shape=(4, 5, 6), seed=2), sitk.sitkFloat32)
    node = mb.image_to_volume_node(mrml, a, "prob")
    n_before = mrml.scene.GetNumberOfNodes()
    same = mb.image_to_volume_node(mrml, b, "prob", node=node)
    assert same is node and mrml.scene.GetNumberOfNodes() == n_before
    assert_same_image(mb.volume_node_to_image(node), b)


# ------------------------------------------------------------------------------- segmentations
@pytest.mark.parametrize("which", ["oblique", "sagittal"])
def test_label_to_segmentation_and_back_is_exact(mrml, real_anatomy_dir, which):
    if which == "oblique":
        label = oblique_label()
        reference = mb.image_to_volume_node(mrml, sitk.Cast(label, sitk.sitkFloat32), "ref")
    else:
        vol = sag_crop(real_anatomy_dir)
        arr = sitk.GetArrayViewFromImage(vol)
        label = sitk.Cast(vol > float(np.percentile(arr, 85)), sitk.sitkUInt8)
        reference = mb.image_to_volume_node(mrml, vol, "sag")
    seg = mb.label_to_segmentation(mrml, label, reference_node=reference)
    segment = seg.GetSegmentation().GetSegment(mb.TUMOR_SEGMENT_ID)
    assert segment.GetName() == "Tumor"
    tag = segment.GetTerminology()
    assert "SCT^49755003^Morphologically Altered Structure" in tag
    assert "SCT^108369006^Neoplasm" in tag and "SCT^76752008^Breast" in tag
    back = mb.segment_to_label(mrml, seg, "Tumor", reference)
    assert int(sitk.GetArrayViewFromImage(label).sum()) > 0
    assert_same_image(back, label)
    # Also without naming the reference: the segmentation's own reference geometry is used.
    assert_same_image(mb.segment_to_label(mrml, seg), label)


def test_segmentation_node_is_reused_not_piled_up(mrml):
    first, second = oblique_label(seed=3), oblique_label(seed=4)
    seg = mb.label_to_segmentation(mrml, first)
    seg.GetSegmentation().AddEmptySegment("reader-note", "reader note")  # a user's own segment
    n_nodes = mrml.scene.GetNumberOfNodes()
    again = mb.label_to_segmentation(mrml, second, seg_node=seg)
    assert again is seg and mrml.scene.GetNumberOfNodes() == n_nodes
    assert seg.GetSegmentation().GetNumberOfSegments() == 2  # the user's segment is kept
    assert_same_image(mb.segment_to_label(mrml, seg, "Tumor"), second)


def test_laterality_goes_into_the_terminology():
    assert "SCT^7771000^Left" in mb.tumor_terminology("left")
    assert "SCT^24028007^Right" in mb.tumor_terminology("right")
    assert mb.tumor_terminology("unknown").endswith("~^^")


@pytest.mark.parametrize("side", [None, "left", "right"])
def test_terminology_string_is_slicers_serialization(side):
    cat, typ, reg = segnrrd.TUMOR_CATEGORY, segnrrd.TUMOR_TYPE, segnrrd.BREAST_REGION
    mod = segnrrd.SIDE_MODIFIERS.get(side, ("", "", ""))
    expected = slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        segnrrd.CATEGORY_CONTEXT, cat[1], cat[0], cat[2], typ[1], typ[0], typ[2], "", "", "",
        segnrrd.REGION_CONTEXT, reg[1], reg[0], reg[2], mod[1], mod[0], mod[2])
    assert segnrrd.tumor_terminology(side) == expected


# ------------------------------------------------------------------------------- .seg.nrrd
def test_seg_nrrd_round_trip_is_exact_with_oblique_direction(tmp_path):
    label = oblique_label()
    path = write_seg_nrrd(label, tmp_path / "case.seg.nrrd")
    assert path == tmp_path / "case.seg.nrrd" and path.is_file()
    assert_same_image(mb.read_seg_nrrd(path), label)
    assert [p.name for p in tmp_path.iterdir()] == ["case.seg.nrrd"]  # no temp files left behind


def test_seg_nrrd_round_trip_on_real_sagittal_volume(tmp_path, real_anatomy_dir):
    vol = sag_crop(real_anatomy_dir, size=(160, 160, 60))
    label = sitk.Cast(vol > float(np.percentile(sitk.GetArrayViewFromImage(vol), 90)), sitk.sitkUInt8)
    assert_same_image(mb.read_seg_nrrd(write_seg_nrrd(label, tmp_path / "sag.seg.nrrd")), label)


def test_seg_nrrd_of_an_empty_label_keeps_the_grid(tmp_path):
    empty = sitk.Image((5, 6, 7), sitk.sitkUInt8)
    empty.SetDirection(oblique_label().GetDirection())
    empty.SetOrigin((1.0, 2.0, 3.0))
    assert_same_image(mb.read_seg_nrrd(write_seg_nrrd(empty, tmp_path / "e.seg.nrrd")), empty)


def test_seg_nrrd_header_carries_name_colour_and_codes(tmp_path):
    path = write_seg_nrrd(oblique_label(), tmp_path / "c.seg.nrrd", color=(0.1, 0.2, 0.3))
    header = sitk.ReadImage(str(path))
    assert header.GetMetaData("Segment0_Name") == "Tumor"
    assert header.GetMetaData("Segment0_NameAutoGenerated") == "0"
    np.testing.assert_allclose([float(v) for v in header.GetMetaData("Segment0_Color").split()], [0.1, 0.2, 0.3])
    tags = header.GetMetaData("Segment0_Tags")
    assert "SCT^108369006^Neoplasm" in tags and "SCT^76752008^Breast" in tags


def test_seg_nrrd_loads_in_slicer_with_voxels_geometry_name_colour_and_terminology(mrml, tmp_path):
    """The engine writes the file without Slicer; Slicer's own segmentation reader loads it."""
    label = oblique_label(seed=3)
    path = write_seg_nrrd(label, tmp_path / "case.seg.nrrd", terminology=segnrrd.tumor_terminology("left"))
    seg_node = mrml.segmentations_logic.LoadSegmentationFromFile(str(path), False)
    assert seg_node is not None
    segmentation = seg_node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    segment = segmentation.GetSegment("Tumor")
    assert segment is not None and segment.GetName() == "Tumor"
    np.testing.assert_allclose(segment.GetColor(), segnrrd.TUMOR_COLOR, atol=1e-6)
    assert not segment.GetNameAutoGenerated() and not segment.GetColorAutoGenerated()
    tag = vtk_string_tag(segment, segment.GetTerminologyEntryTagName())
    assert tag == segnrrd.tumor_terminology("left") and "SCT^108369006^Neoplasm" in tag
    # The reference geometry is the label's grid (in RAS), so the segment maps voxel for voxel.
    assert_same_image(mb.segment_to_label(mrml, seg_node, "Tumor"), label)
    reference = mb.segment_to_label(mrml, seg_node, "Tumor", label)
    assert_same_image(reference, label)


def vtk_string_tag(segment, name: str) -> str:
    import vtk

    value = vtk.reference("")
    assert segment.GetTag(name, value)
    return str(value)


def test_seg_nrrd_replaces_an_existing_file_atomically(tmp_path):
    path = tmp_path / "c.seg.nrrd"
    write_seg_nrrd(oblique_label(seed=5), path)
    newer = oblique_label(seed=6)
    write_seg_nrrd(newer, path)
    assert_same_image(mb.read_seg_nrrd(path), newer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.seg.nrrd"]


def test_seg_nrrd_bad_name_and_missing_file_are_input_errors(tmp_path):
    with pytest.raises(InputError, match=r"\.seg\.nrrd"):
        write_seg_nrrd(oblique_label(), tmp_path / "c.nrrd")
    with pytest.raises(InputError, match="does not exist"):
        mb.read_seg_nrrd(tmp_path / "missing.seg.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_outputs_are_placed_under_the_input_study(mrml):
    img = sitk.Cast(oblique_label(), sitk.sitkFloat32)
    volume = mb.image_to_volume_node(mrml, img, "pre")
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml.scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "patient")
    study = sh.CreateStudyItem(patient, "DCE study")
    sh.CreateItem(study, volume)  # what loading a DICOM series does in Slicer
    seg = mb.label_to_segmentation(mrml, oblique_label(), reference_node=volume)
    table = mb.fill_table(mrml, ["a", "b"], [[1, 2.5]], name="t")
    for node in (seg, table):
        mb.place_next_to(mrml, node, volume)
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == study


def test_reused_nodes_keep_the_users_names(mrml):
    seg = mb.label_to_segmentation(mrml, oblique_label(seed=1), name="first name")
    seg.SetName("my edited tumor")
    mb.label_to_segmentation(mrml, oblique_label(seed=2), seg_node=seg, name="default name")
    assert seg.GetName() == "my edited tumor"
    table = mb.fill_table(mrml, ["x"], [[1.0]], name="lesions")
    table.SetName("my table")
    mb.fill_table(mrml, ["x"], [[2.0]], node=table, name="lesions")
    assert table.GetName() == "my table" and table.GetTable().GetValue(0, 0).ToDouble() == 2.0
