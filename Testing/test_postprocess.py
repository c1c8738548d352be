"""Thresholds, components, minimum size, breast restriction and the lesion table."""
import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.engine.postprocess import PostprocessSettings, postprocess


def _img(arr, spacing=(0.5, 0.5, 2.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)):
    im = sitk.GetImageFromArray(arr.astype(np.float32))
    im.SetSpacing(spacing)
    im.SetDirection(direction)
    im.SetOrigin((-50.0, -20.0, 10.0))
    return im


def _ball(shape, center, radius_vox):
    zz, yy, xx = np.indices(shape)
    r = np.sqrt(((zz - center[0])) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2)
    return r <= radius_vox


def test_absolute_threshold_lesion_table():
    shape = (20, 100, 200)
    prob = np.zeros(shape, np.float32)
    big = np.zeros(shape, bool)
    zz, yy, xx = np.indices(shape)
    # an ellipsoid of semi-axes 10 mm (x), 10 mm (y), 10 mm (z): 20 vox in x/y at 0.5 mm, 5 slices at 2 mm
    big = ((xx - 150) / 20.0) ** 2 + ((yy - 50) / 20.0) ** 2 + ((zz - 10) / 5.0) ** 2 <= 1
    prob[big] = 0.9
    prob[_ball(shape, (10, 50, 30), 1)] = 0.8  # 7 voxels = 3.5 uL, below min size
    label, lesions = postprocess(_img(prob), PostprocessSettings(threshold=0.5, min_lesion_ml=0.01))
    assert len(lesions) == 1
    les = lesions[0]
    true_ml = 4 / 3 * np.pi * 10 * 10 * 10 / 1000
    assert les.volume_ml == pytest.approx(true_ml, rel=0.1)
    assert les.longest_diameter_mm == pytest.approx(20, abs=1.5)
    # centroid in LPS: origin + index * spacing
    assert les.centroid_lps == pytest.approx((-50 + 150 * 0.5, -20 + 50 * 0.5, 10 + 10 * 2.0), abs=0.3)
    assert les.max_probability == pytest.approx(0.9)
    assert sitk.GetArrayViewFromImage(label).sum() == les.voxels


def test_relative_threshold_per_slice():
    prob = np.zeros((3, 20, 20), np.float32)
    prob[0, 5:10, 5:10] = 0.9
    prob[0, 7, 7] = 1.0
    prob[0, 12:15, 12:15] = 0.55  # 0.55 < 0.6 * 1.0: dropped in relative mode
    prob[1, 5:10, 5:10] = 0.3  # slice maximum below the floor: nothing
    prob[2, 5:10, 5:10] = 0.7
    label, _ = postprocess(_img(prob), PostprocessSettings(mode="relative", threshold=0.5, min_lesion_ml=0))
    lab = sitk.GetArrayViewFromImage(label)
    assert lab[0].sum() == 25 and lab[1].sum() == 0 and lab[2].sum() == 25
    label_abs, _ = postprocess(_img(prob), PostprocessSettings(mode="absolute", threshold=0.5, min_lesion_ml=0))
    assert sitk.GetArrayViewFromImage(label_abs)[0].sum() == 34


def test_breast_restriction_and_side():
    shape = (10, 40, 80)
    prob = np.zeros(shape, np.float32)
    prob[_ball(shape, (5, 20, 15), 4)] = 0.9  # low x index = patient right in LPS
    prob[_ball(shape, (5, 20, 65), 4)] = 0.9  # high x = left
    prob[_ball(shape, (5, 38, 40), 2)] = 0.9  # outside the breast mask
    breast = np.zeros(shape, np.uint8)
    breast[:, :30, :] = 1
    img = _img(prob, spacing=(1, 1, 1))
    bm = _img(breast, spacing=(1, 1, 1))
    bm = sitk.Cast(bm, sitk.sitkUInt8)
    _, lesions = postprocess(img, PostprocessSettings(min_lesion_ml=0), breast_mask=bm)
    assert sorted(les.side for les in lesions) == ["left", "right"]
    _, lesions = postprocess(img, PostprocessSettings(min_lesion_ml=0, restrict_to_breast=False), breast_mask=bm)
    assert len(lesions) == 3


def test_empty_probability_gives_no_lesion():
    label, lesions = postprocess(_img(np.zeros((4, 8, 8))))
    assert lesions == [] and sitk.GetArrayViewFromImage(label).sum() == 0
    assert label.GetPixelID() == sitk.sitkUInt8


def test_tumor_crossing_the_breast_mask_edge_is_kept_whole():
    shape = (10, 40, 40)
    prob = np.zeros(shape, np.float32)
    ball = _ball(shape, (5, 24, 20), 6)  # crosses the mask's posterior edge at row 28
    prob[ball] = 0.9
    breast = np.zeros(shape, np.uint8)
    breast[:, :28, :] = 1
    bm = sitk.Cast(_img(breast, spacing=(1, 1, 1)), sitk.sitkUInt8)
    label, lesions = postprocess(_img(prob, spacing=(1, 1, 1)), PostprocessSettings(min_lesion_ml=0), breast_mask=bm)
    assert len(lesions) == 1 and lesions[0].voxels == int(ball.sum())
