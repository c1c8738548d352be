"""The panel's click mode over real MRML (slicer-core): clicks are control points of a markups
node with their sign in label and description, the tumor segment and the lesion table follow
every click, undo removes the last click and recomputes from the original, and an edited list
(a point removed in the Markups module) is replayed."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed")

from BreastTumorSegLib.engine.refine import Click, refine  # noqa: E402
from BreastTumorSegLib.evaluation.metrics import dice  # noqa: E402
from BreastTumorSegLib.slicer import mrml_bridge as mb  # noqa: E402
from BreastTumorSegLib.slicer.click_refine import ClickRefineLogic  # noqa: E402
from BreastTumorSegLib.slicer.logic import SegmentationLogic  # noqa: E402
from BreastTumorSegLib.training.phantom import make_phantom  # noqa: E402
from refine_fixtures import deepest_ras  # noqa: E402


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(3, motion_mm=0)  # two mass lesions, phases aligned


@pytest.fixture
def scene(phantom):
    """A scene holding the exam's phases and a result that missed lesion 2 and has a false blob."""
    ctx = mb.MRMLContext.headless()
    logic = SegmentationLogic(ctx)
    nodes = [mb.image_to_volume_node(ctx, img, f"phantom_{i:04d}") for i, img in enumerate(phantom.exam.phases)]
    for node, t in zip(nodes, phantom.exam.times_min):
        node.SetAttribute("BreastTumorSeg.AcquisitionTimeMin", str(t))
    phases = logic.phases(volume_nodes=nodes)
    labels = sitk.GetArrayFromImage(phantom.tumor_labels)
    false = np.zeros(labels.shape, bool)
    c = np.asarray(ndimage.center_of_mass(labels == 1)).astype(int)
    c[2] = labels.shape[2] - 1 - c[2]  # the mirror position in the other breast
    false[c[0] - 1:c[0] + 2, c[1] - 2:c[1] + 3, c[2] - 2:c[2] + 3] = True
    assert not (false & (labels > 0)).any()
    start = sitk.GetImageFromArray(((labels == 1) | false).astype(np.uint8))
    start.CopyInformation(phantom.exam.pre)
    seg = mb.label_to_segmentation(ctx, start, None, "result", nodes[0])
    table = mb.fill_table(ctx, ["a"], [], None, "lesions")
    click_logic = ClickRefineLogic.from_scene(ctx, phases, seg, None, register=False, lesion_table=table)
    return ctx, click_logic, labels, false, seg, table


def _segment(ctx, seg, ref):
    return sitk.GetArrayFromImage(mb.segment_to_label(ctx, seg, mb.TUMOR_SEGMENT_ID, ref)) > 0


def test_clicks_update_the_segment_and_are_kept_as_markups(phantom, scene):
    ctx, cl, labels, false, seg, table = scene
    ref = phantom.exam.pre
    entry = cl.add_click(deepest_ras(phantom, labels == 2), positive=True)
    assert entry["action"] == "added"
    got = _segment(ctx, seg, ref)
    assert dice(got & ~(labels == 1) & ~false, labels == 2) >= 0.8
    assert table.GetNumberOfRows() == 3  # two lesions and the false blob

    cl.add_click(deepest_ras(phantom, false), positive=False)
    got = _segment(ctx, seg, ref)
    assert not (got & false).any() and dice(got, labels > 0) >= 0.9
    assert table.GetNumberOfRows() == 2

    node = cl.clicks_node
    assert node.IsA("vtkMRMLMarkupsFiducialNode") and node.GetNumberOfControlPoints() == 2
    assert [node.GetNthControlPointLabel(i) for i in range(2)] == ["+", "-"]
    assert [node.GetNthControlPointDescription(i) for i in range(2)] == ["positive", "negative"]
    res = cl.result()
    assert [c["sign"] for c in res.settings["refine"]["clicks"]] == ["+", "-"] and len(res.lesions) == 2


def test_undo_recomputes_from_the_original(phantom, scene):
    ctx, cl, labels, false, seg, _ = scene
    ref = phantom.exam.pre
    cl.add_click(deepest_ras(phantom, labels == 2), positive=True)
    after_first = _segment(ctx, seg, ref)
    cl.add_click(deepest_ras(phantom, false), positive=False)
    assert cl.undo()
    assert cl.clicks_node.GetNumberOfControlPoints() == 1
    assert np.array_equal(_segment(ctx, seg, ref), after_first)
    assert cl.undo() and not cl.undo()
    assert np.array_equal(_segment(ctx, seg, ref), (labels == 1) | false)  # back to the original


def test_an_edited_click_list_is_replayed(phantom, scene):
    ctx, cl, labels, false, seg, _ = scene
    ref = phantom.exam.pre
    cl.add_click(deepest_ras(phantom, labels == 2), positive=True)
    cl.add_click(deepest_ras(phantom, false), positive=False)
    cl.clicks_node.RemoveNthControlPoint(0)  # the reader deletes the first click in the Markups module
    cl.sync()
    expected = refine(cl.exam, cl.original, [Click.ras(deepest_ras(phantom, false), False)])
    assert np.array_equal(_segment(ctx, seg, ref), sitk.GetArrayFromImage(expected.label) > 0)
    cl.set_sign(0, True)  # re-signed: the blob is tumor after all
    assert _segment(ctx, seg, ref)[false].all()
