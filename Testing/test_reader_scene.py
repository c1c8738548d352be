"""A reader's scene on trame-slicer (web/reader_scene.py), headless: Slicer's own effects edit the
segment the study engine saves.

The views are trame-slicer's direct off-screen views; a stroke is a sequence of mouse events on a
slice view's interactor at the display position of known RAS points (the same events trame's remote
view forwards from the browser). Each test checks voxels on a phantom whose truth is known.
"""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("slicer", reason="slicer-core (the `web` / `test` extra) is not installed")
# trame-slicer (with slicer-core 5.11) comes with the `test` extra, which CI installs; an environment
# with another slicer-core (e.g. 5.13 for the Slicer module's tests) has no trame-slicer.
pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (`pip install -e \".[web]\"` or "
                    "\".[test]\"; it pins slicer-core 5.11)")
from trame_slicer.segmentation.paint_effect_parameters import BrushDiameterMode  # noqa: E402
from trame_slicer.views import DirectViewFactory, ViewLayoutDefinition  # noqa: E402

from BreastTumorSegLib.slicer.mrml_bridge import TUMOR_SEGMENT_ID  # noqa: E402

from BreastTumorSegLib.web.reader_scene import PHASES, ReaderScene  # noqa: E402

SPACING = (1.0, 1.0, 2.0)  # mm (x, y, z)
SHAPE = (12, 48, 48)  # (k, j, i)


def _image(arr: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing(SPACING)
    img.SetOrigin((-20.0, -30.0, 5.0))
    return img


def _phantom():
    """Subtraction with a big bright box (k 4-7, j 10-29, i 10-29) and a speck (k 5-6, j 37-38, i 37-38)."""
    sub = np.zeros(SHAPE, np.float32)
    sub[4:8, 10:30, 10:30] = 200.0
    sub[5:7, 37:39, 37:39] = 200.0
    images = {"subtraction": _image(sub), "first post-contrast": _image(sub + 100.0),
              "pre-contrast": _image(np.full(SHAPE, 100.0))}
    return images, sub


def _empty_like(img):
    out = sitk.Image(img.GetSize(), sitk.sitkUInt8)
    out.CopyInformation(img)
    return out


@pytest.fixture(scope="module")
def shared_scene():
    """One scene for the module (software OpenGL makes views slow to create); each test starts empty."""
    images, _ = _phantom()
    empty = _empty_like(images["pre-contrast"])
    sc = ReaderScene(images, empty, lambda vm: vm.register_factory(DirectViewFactory(do_render_offscreen=True)))
    for _, tag, color in PHASES.values():
        sc.app.view_manager.create_view(ViewLayoutDefinition.slice_view("Axial", label=tag, color=color))
    sc.show_in_views()
    for view in sc.slice_views():
        view.update_size(320, 320)
        view.fit_view_to_content()
    yield sc, empty
    sc.close()


@pytest.fixture
def scene(shared_scene):
    sc, empty = shared_scene
    sc.set_effect(None)
    sc.set_orientation("Axial")
    sc.replace_mask(empty)
    sc.undo_stack.clear()
    yield sc


def _ras(img_k_j_i, grid=None):
    """RAS of voxel (k, j, i) of the phantom grid (LPS origin and spacing above, identity direction)."""
    k, j, i = img_k_j_i
    lps = np.array([-20.0 + i * SPACING[0], -30.0 + j * SPACING[1], 5.0 + k * SPACING[2]])
    return lps * np.array([-1.0, -1.0, 1.0])


def _xy(view, ras):
    import vtk

    m = vtk.vtkMatrix4x4()
    m.DeepCopy(view.get_view_node().GetXYToRAS())
    m.Invert()
    x, y, _, _ = m.MultiplyPoint([*map(float, ras), 1.0])
    return int(round(x)), int(round(y))


def _drag(view, points_ras, button="Left"):
    """Press at the first point, move through the others, release (one stroke)."""
    view.set_slice_value(float(points_ras[0][2]))
    view.render()
    iren = view.interactor()
    xy = [_xy(view, p) for p in points_ras]
    iren.SetEventInformation(*xy[0], 0, 0)
    iren.InvokeEvent("MouseMoveEvent")
    iren.InvokeEvent(f"{button}ButtonPressEvent")
    for x, y in xy[1:]:
        iren.SetEventInformation(x, y, 0, 0)
        iren.InvokeEvent("MouseMoveEvent")
    iren.InvokeEvent(f"{button}ButtonReleaseEvent")
    view.render()


def test_start_mask_and_geometry_read_back_bit_for_bit():
    images, sub = _phantom()
    start = sitk.Cast(_image((sub > 0).astype(np.float32)) > 0, sitk.sitkUInt8)
    sc = ReaderScene(images, start, lambda vm: vm.register_factory(DirectViewFactory(do_render_offscreen=True)))
    try:
        out = sc.current_mask()
        assert out.GetSize() == start.GetSize() and out.GetOrigin() == start.GetOrigin()
        assert out.GetSpacing() == start.GetSpacing() and out.GetDirection() == start.GetDirection()
        assert np.array_equal(sitk.GetArrayFromImage(out) > 0, sub > 0)
    finally:
        sc.close()


def test_paint_stroke_paints_where_the_mouse_went_and_undo_takes_it_back(scene):
    view = scene.slice_view("Red")
    effect = scene.set_effect("Paint")
    effect.set_brush_diameter(3.0, BrushDiameterMode.Absolute)  # mm
    _drag(view, [_ras((6, 20, 12)), _ras((6, 20, 24))])
    mask = scene.mask_array()
    assert mask.any(), "the stroke painted nothing"
    ks = np.unique(np.nonzero(mask)[0])
    assert list(ks) == [6], f"painted on slices {ks}, not on slice 6 only"
    assert mask[6, 20, 12:25].all(), "the stroke's line is not painted from end to end"
    js, is_ = np.nonzero(mask[6])
    assert abs(js.mean() - 20) <= 1.0 and 11 <= is_.mean() <= 25
    assert scene.undo() and not scene.mask_array().any()
    assert not scene.undo()


def test_draw_polygon_fills_its_inside(scene):
    view = scene.slice_view("Red")
    scene.set_effect("Draw")
    corners = [(5, 8, 8), (5, 8, 30), (5, 30, 30), (5, 30, 8)]
    path = []
    for a, b in zip(corners, corners[1:] + corners[:1]):
        for t in np.linspace(0.0, 1.0, 6, endpoint=False):
            path.append(_ras(tuple(np.array(a) + t * (np.array(b) - np.array(a)))))
    _drag(view, path)
    mask = scene.mask_array()
    assert set(np.unique(np.nonzero(mask)[0])) == {5}
    inside = mask[5, 10:28, 10:28]
    assert inside.all(), "the polygon's inside is not filled"
    assert not mask[5, :6].any() and not mask[5, 33:].any(), "painted outside the polygon"
    assert 18 * 18 <= mask.sum() <= 24 * 24


def test_threshold_then_islands_keep_largest(scene):
    _, sub = _phantom()
    effect = scene.set_effect("Threshold")
    effect.set_threshold_min_max_values((100.0, 1000.0))
    effect.apply()
    assert np.array_equal(scene.mask_array(), sub > 100), "threshold did not select exactly the bright voxels"
    islands = scene.set_effect("Islands")
    islands.keep_largest_island()
    big = np.zeros(SHAPE, bool)
    big[4:8, 10:30, 10:30] = True
    assert np.array_equal(scene.mask_array(), big), "keep largest did not keep exactly the big box"
    assert scene.undo()
    assert np.array_equal(scene.mask_array(), sub > 100)


def test_smoothing_removes_a_speck(scene):
    effect = scene.set_effect("Threshold")
    effect.set_threshold_min_max_values((100.0, 1000.0))
    effect.apply()
    before = scene.mask_array()
    smoothing = scene.set_effect("Smoothing")
    smoothing.apply_median_smoothing(5.0, TUMOR_SEGMENT_ID)
    after = scene.mask_array()
    assert before[5:7, 37:39, 37:39].all() and not after[5:7, 37:39, 37:39].any(), \
        "median smoothing (5 mm) kept the 2-voxel speck"
    assert after[5:7, 14:26, 14:26].all(), "median smoothing ate the inside of the big box"


def test_orientation_and_linked_slices(scene):
    scene.set_orientation("Coronal")
    assert {v.get_orientation() for v in scene.slice_views()} == {"Coronal"}
    views = scene.slice_views()
    before = [v.get_slice_value() for v in views]
    assert len(set(before)) == 1
    iren = views[0].interactor()
    iren.SetEventInformation(160, 160, 0, 0)
    iren.InvokeEvent("MouseMoveEvent")
    for _ in range(3):  # the reader scrolls in the subtraction's view: the other two follow
        iren.InvokeEvent("MouseWheelForwardEvent")
    after = [v.get_slice_value() for v in views]
    assert after[0] != before[0] and max(after) - min(after) < 1e-6, (before, after)
    with pytest.raises(ValueError):
        scene.set_orientation("Oblique-ish")


def test_click_point_and_replaced_mask_as_one_undo_step(scene):
    """Click-to-correct's two scene steps: the RAS point under a display position of a slice view,
    and the refined mask replacing the segment as one step that Undo takes back."""
    view = scene.slice_view(PHASES["sub"][1])
    want = _ras((5, 20, 12))
    view.set_slice_value(float(want[2]))
    view.render()
    got = scene.ras_at(view, *_xy(view, want))
    assert np.allclose(got, want, atol=0.5), (got, want)  # within a display pixel (48 mm over 320 px)
    images, sub = _phantom()
    box = sitk.Cast(_image((sub > 0).astype(np.float32)) > 0, sitk.sitkUInt8)
    scene.replace_mask(box)
    assert np.array_equal(scene.mask_array(), sub > 0)
    assert scene.undo() and not scene.mask_array().any()
