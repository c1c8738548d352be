"""The per-breast malignancy result in a real MRML scene (slicer-core wheel): table, heatmap node
with the heatmap's geometry, the colour overlay toggle, and loading what the engine wrote."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed")

from BreastTumorSegLib.engine.classify import ClassificationResult  # noqa: E402
from BreastTumorSegLib.slicer import classify_view as cv  # noqa: E402
from BreastTumorSegLib.slicer import mrml_bridge as mb  # noqa: E402


def oblique(arr: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing((0.8, 0.9, 2.5))
    img.SetOrigin((12.0, -30.0, 40.0))
    img.SetDirection(sitk.VersorTransform((0.2, 0.4, 0.1), 0.5).GetMatrix())
    return img


@pytest.fixture
def result() -> ClassificationResult:
    heat = np.zeros((6, 9, 11), np.float32)
    heat[2:4, 3:6, 7:9] = 0.9  # the left breast's suspicious candidate
    heat[3, 4, 2] = 0.1
    return ClassificationResult("case1", {"L": 0.9, "R": 0.1}, oblique(heat), "breastcls-demo@0123abcd",
                                subtraction=oblique(np.random.default_rng(0).random((6, 9, 11))))


def scene_with_views():
    ctx = mb.MRMLContext.headless()
    for name in ("Red", "Yellow", "Green"):
        view = ctx.scene.AddNewNodeByClass("vtkMRMLSliceNode")
        view.SetName(name)
        view.SetLayoutName(name)
        ctx.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode").SetLayoutName(name)
    ref = mb.image_to_volume_node(ctx, oblique(np.ones((6, 9, 11))), "exam_0000")
    return ctx, ref


def composites(ctx):
    nodes = ctx.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]


def test_table_and_heatmap_node_keep_values_and_geometry(result):
    ctx, ref = scene_with_views()
    nodes = cv.import_result(ctx, result, ref)
    table = nodes.table.GetTable()
    assert [table.GetValue(r, 0).ToString() for r in range(table.GetNumberOfRows())] == ["right", "left"]
    assert [float(table.GetValue(r, 1).ToString()) for r in range(2)] == [0.1, 0.9]
    back = mb.volume_node_to_image(nodes.heatmap)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(result.heatmap))
    np.testing.assert_allclose(back.GetOrigin(), result.heatmap.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetDirection(), result.heatmap.GetDirection(), atol=1e-6)
    display = nodes.heatmap.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == pytest.approx((1.0, 0.5))
    assert display.GetColorNodeID() != "vtkMRMLColorTableNodeGrey"
    assert nodes.probability_text().startswith("P(malignant): right 0.10, left 0.90 (model breastcls-demo@0123abcd")
    # a second result reuses the nodes
    again = cv.import_result(ctx, result, ref, nodes)
    assert again.table is nodes.table and again.heatmap is nodes.heatmap


def test_toggle_shows_and_hides_the_heatmap_layer(result):
    ctx, ref = scene_with_views()
    nodes = cv.import_result(ctx, result, ref)
    assert composites(ctx)
    cv.show_heatmap(ctx, nodes, True)
    assert all(c.GetForegroundVolumeID() == nodes.heatmap.GetID() and c.GetForegroundOpacity() > 0
               for c in composites(ctx))
    cv.show_heatmap(ctx, nodes, False)
    assert all(c.GetForegroundOpacity() == 0 for c in composites(ctx))


def test_engine_output_folder_is_loaded_and_absent_classification_is_none(result, tmp_path):
    from BreastTumorSegLib.cli.classify import write_classification

    ctx, ref = scene_with_views()
    assert cv.import_folder(ctx, tmp_path, "case1", ref) is None  # segment without --classify
    write_classification(result, tmp_path)
    nodes = cv.import_folder(ctx, tmp_path, "case1", ref)
    assert nodes.summary["probabilities"] == {"L": 0.9, "R": 0.1}
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(nodes.heatmap), sitk.GetArrayViewFromImage(result.heatmap))
